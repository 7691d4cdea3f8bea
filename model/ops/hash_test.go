package ops

import (
	"math/rand/v2"
	"slices"
	"testing"

	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"

	"github.com/moetrain/moetrain/internal/gradcheck"
	"github.com/moetrain/moetrain/internal/tol"
)

func buildHash(rec *RouteRecord) func(in []*G.Node) (*G.Node, error) {
	return func(in []*G.Node) (*G.Node, error) {
		return HashMoEWithRecord(in[0], in[1], in[2], in[3], in[4], in[5], rec)
	}
}

func TestHashTable(t *testing.T) {
	const vocab, experts = 4000, 16
	a, b, c := HashTable(vocab, experts, 7), HashTable(vocab, experts, 7), HashTable(vocab, experts, 8)
	if !slices.Equal(a, b) {
		t.Error("the same seed gave two different tables")
	}
	if slices.Equal(a, c) {
		t.Error("seeds 7 and 8 gave the same table")
	}
	load := make([]int, experts)
	for _, x := range a {
		if x < 0 || x >= experts {
			t.Fatalf("table entry %d outside [0, %d)", x, experts)
		}
		load[x]++
	}
	// 250 expected per expert; a uniform draw stays well inside [150, 350].
	if slices.Min(load) < 150 || slices.Max(load) > 350 {
		t.Errorf("loads %v: not a uniform random table", load)
	}
}

func hashInputs(seed uint64, n, d, e, w, vocab int) []*tensor.Dense {
	r := rand.New(rand.NewPCG(seed, 9))
	ids := make([]int, n)
	for i := range ids {
		ids[i] = r.IntN(vocab)
	}
	return []*tensor.Dense{
		gradcheck.Rand(r, 1, n, d),
		intTensor(ids...),
		intTensor(HashTable(vocab, e, seed)...),
		gradcheck.Rand(r, 0.5, e, w, d),
		gradcheck.Rand(r, 0.5, e, w, d),
		gradcheck.Rand(r, 0.5, e, d, w),
	}
}

func TestHashMoEGradient(t *testing.T) {
	ins := hashInputs(1, 6, 4, 3, 3, 10)
	names := []string{"u", "ids", "table", "wg", "wu", "wd"}
	var gi []gradcheck.Input
	for i, v := range ins {
		gi = append(gi, gradcheck.Input{Name: names[i], Value: v, Diff: v.Dtype() != tensor.Int})
	}
	gradcheck.Check(t, 2, gi, func(g *G.ExprGraph, in []*G.Node) (*G.Node, error) {
		return HashMoE(in[0], in[1], in[2], in[3], in[4], in[5])
	}, gradcheck.Default)
}

// A Hash layer is a top-1 MoE whose router puts probability 1 on
// table[id]: both must give the same output and the same gradients of u and
// of the experts.
func TestHashMoEEqualsOneHotMoE(t *testing.T) {
	const n, d, e, w, vocab = 30, 8, 5, 6, 12
	ins := hashInputs(3, n, d, e, w, vocab)
	ids, table := ints(ins[1]), ints(ins[2])
	onehot := make([]float64, n*e)
	for tok, id := range ids {
		onehot[tok*e+table[id]] = 1
	}
	var rec RouteRecord
	yh, gh := runOp(t, ins, true, buildHash(&rec))
	moeIns := []*tensor.Dense{ins[0], tensor.New(tensor.WithShape(n, e), tensor.WithBacking(onehot)), ins[3], ins[4], ins[5]}
	ym, gm := runOp(t, moeIns, true, buildMoE(1, false, nil))
	if err := tol.Float64.CheckSlice("y", yh, ym); err != nil {
		t.Error(err)
	}
	// gh: u, wg, wu, wd; gm: u, probs, wg, wu, wd.
	for i, name := range []string{"du", "dwg", "dwu", "dwd"} {
		j := i
		if i > 0 {
			j = i + 1
		}
		if err := tol.Float64.CheckSlice(name, gh[i], gm[j]); err != nil {
			t.Error(err)
		}
	}
	for tok, id := range ids {
		if rec.Experts[tok] != int32(table[id]) {
			t.Fatalf("record: token %d went to %d, want table[%d] = %d", tok, rec.Experts[tok], id, table[id])
		}
	}
}

func TestHashMoEBadIDs(t *testing.T) {
	tests := []struct {
		name  string
		ids   []int
		table []int
	}{
		{"id past the table", []int{0, 4}, []int{0, 1, 0, 1}},
		{"negative id", []int{-1, 0}, []int{0, 1, 0, 1}},
		{"table entry past the experts", []int{0, 1}, []int{0, 2, 0, 1}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := rand.New(rand.NewPCG(1, 1))
			g := G.NewGraph()
			val := func(x *tensor.Dense) *G.Node {
				return G.NewTensor(g, x.Dtype(), x.Shape().Dims(), G.WithShape(x.Shape()...), G.WithValue(x))
			}
			_, err := HashMoE(val(gradcheck.Rand(r, 1, 2, 3)), val(intTensor(tc.ids...)), val(intTensor(tc.table...)),
				val(gradcheck.Rand(r, 1, 2, 4, 3)), val(gradcheck.Rand(r, 1, 2, 4, 3)), val(gradcheck.Rand(r, 1, 2, 3, 4)))
			if err != nil {
				t.Fatalf("build: %v", err)
			}
			vm := G.NewTapeMachine(g)
			defer vm.Close()
			if err := vm.RunAll(); err == nil {
				t.Error("got no error")
			}
		})
	}
}

// Every expert is a SwiGLU FFN: a Hash layer whose table sends every token
// to expert 1 must equal the dense SwiGLU op on expert 1's weights, in
// output and in the gradients of u and of that expert (float32, the
// training dtype, where both ops share the same activation code).
func TestHashMoEExpertIsSwiGLU(t *testing.T) {
	const n, d, e, w = 20, 8, 3, 6
	ins := hashInputs(5, n, d, e, w, 4)
	ins[2] = intTensor(1, 1, 1, 1)
	for i := range ins {
		ins[i] = toDtype(ins[i], tensor.Float32)
	}
	yh, gh := runOp(t, ins, true, buildHash(nil))
	expert := func(x *tensor.Dense) *tensor.Dense {
		v, err := x.Slice(G.S(1))
		if err != nil {
			t.Fatal(err)
		}
		return v.(*tensor.Dense).Materialize().(*tensor.Dense)
	}
	ys, gs := runOp(t, []*tensor.Dense{ins[0], expert(ins[3]), expert(ins[4]), expert(ins[5])}, true,
		func(in []*G.Node) (*G.Node, error) { return SwiGLU(in[0], in[1], in[2], in[3]) })
	if err := tol.CheckScaled("y", yh, ys, 1e-6); err != nil {
		t.Error(err)
	}
	if err := tol.CheckScaled("du", gh[0], gs[0], 1e-6); err != nil {
		t.Error(err)
	}
	for i, name := range []string{"dwg", "dwu", "dwd"} {
		one := gh[i+1][len(gs[i+1]) : 2*len(gs[i+1])]
		if err := tol.CheckScaled(name, one, gs[i+1], 1e-6); err != nil {
			t.Error(err)
		}
		for _, v := range gh[i+1][:len(gs[i+1])] {
			if v != 0 {
				t.Fatalf("%s of an expert with no tokens is %g, want 0", name, v)
			}
		}
	}
}

// An op run a second time, on ids that leave an expert without tokens,
// gives a new op's output and gradients: its output buffers are reused
// unzeroed, so the backward must clear the weight gradients of experts no
// token reached (it fails without that clear).
func TestHashMoERerunMatchesNewOp(t *testing.T) {
	const n, d, e, w, vocab = 12, 4, 3, 5, 6
	first := hashInputs(5, n, d, e, w, vocab)
	second := hashInputs(6, n, d, e, w, vocab)
	table := []int{0, 1, 2, 1, 2, 1}
	first[2], second[2] = intTensor(table...), intTensor(table...)
	ids := make([]int, n)
	for i := range ids {
		ids[i] = i % vocab // every expert gets tokens
	}
	first[1] = intTensor(ids...)
	for i := range ids {
		ids[i] = 1 + i%2 // experts 1 and 2 only: expert 0's gradients are zero
	}
	second[1] = intTensor(ids...)
	dy := gradcheck.Rand(rand.New(rand.NewPCG(8, 8)), 1, n, d)
	wantG := rerunMatchesNewOp(t, func() (doer, doer) {
		op := &hashOp{base: base{name: "HashMoE", arity: 6}, cache: &expertCache{}}
		return op, &hashBackward{base: base{name: "HashMoEBackward", arity: 7}, cache: op.cache}
	}, values(first), values(second), dy)
	dwg0 := wantG[n*d : n*d+w*d]
	if slices.ContainsFunc(dwg0, func(v float64) bool { return v != 0 }) {
		t.Errorf("expert 0 had no tokens but its gate gradient is %v", dwg0)
	}
}
