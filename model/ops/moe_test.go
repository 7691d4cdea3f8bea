package ops

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sort"
	"testing"

	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"

	"github.com/moetrain/moetrain/internal/blas"
	"github.com/moetrain/moetrain/internal/gradcheck"
	"github.com/moetrain/moetrain/internal/parallel"
	"github.com/moetrain/moetrain/internal/tol"
)

// separatedProbs returns [n, e] softmax rows whose sorted logits are 0.5
// apart, in a random order per row: every gap between consecutive
// probabilities is far larger than any finite-difference step, so top-k
// routing cannot flip under a perturbation.
func separatedProbs(r *rand.Rand, n, e int) *tensor.Dense {
	p := make([]float64, n*e)
	for t := 0; t < n; t++ {
		row := p[t*e : (t+1)*e]
		var z float64
		for j, x := range r.Perm(e) {
			row[x] = math.Exp(-0.5 * float64(j))
			z += row[x]
		}
		for i := range row {
			row[i] /= z
		}
	}
	return tensor.New(tensor.WithShape(n, e), tensor.WithBacking(p))
}

// sortedTopK is the test's own top-k: indices by descending value, ties by
// ascending index (a stable sort), independent of TopK's insertion scheme.
func sortedTopK(row []float64, k int) []int32 {
	idx := make([]int32, len(row))
	for i := range idx {
		idx[i] = int32(i)
	}
	sort.SliceStable(idx, func(a, b int) bool { return row[idx[a]] > row[idx[b]] })
	return idx[:k]
}

// naiveMoE is the per-token reference: for every token, for every chosen
// expert, an explicit SwiGLU with scalar loops.
func naiveMoE(u, probs, wg, wu, wd []float64, n, d, e, w, k int, renorm bool) []float64 {
	y := make([]float64, n*d)
	for t := 0; t < n; t++ {
		row := probs[t*e : (t+1)*e]
		idx := sortedTopK(row, k)
		var sum float64
		for _, x := range idx {
			sum += row[x]
		}
		for _, x := range idx {
			gate := row[x]
			if renorm && k > 1 {
				gate /= sum + 1e-20
			}
			h := make([]float64, w)
			for j := 0; j < w; j++ {
				var a, b float64
				for i := 0; i < d; i++ {
					a += wg[(int(x)*w+j)*d+i] * u[t*d+i]
					b += wu[(int(x)*w+j)*d+i] * u[t*d+i]
				}
				h[j] = a / (1 + math.Exp(-a)) * b
			}
			for i := 0; i < d; i++ {
				var o float64
				for j := 0; j < w; j++ {
					o += wd[(int(x)*d+i)*w+j] * h[j]
				}
				y[t*d+i] += gate * o
			}
		}
	}
	return y
}

// moeCase is one MoE configuration under test.
type moeCase struct {
	name          string
	n, d, e, w, k int
	renorm        bool
}

func (c moeCase) inputs(seed uint64) []*tensor.Dense {
	r := rand.New(rand.NewPCG(seed, 7))
	return []*tensor.Dense{
		gradcheck.Rand(r, 1, c.n, c.d),
		separatedProbs(r, c.n, c.e),
		gradcheck.Rand(r, 0.5, c.e, c.w, c.d),
		gradcheck.Rand(r, 0.5, c.e, c.w, c.d),
		gradcheck.Rand(r, 0.5, c.e, c.d, c.w),
	}
}

var moeCases = []moeCase{
	{"switch k=1", 5, 4, 6, 3, 1, false},
	{"k=2", 5, 4, 6, 3, 2, false},
	{"gshard k=2 renorm", 5, 4, 6, 3, 2, true},
	{"k=3", 5, 4, 6, 3, 3, false},
	{"k=3 renorm", 5, 4, 6, 3, 3, true},
}

// inputs32 is c.inputs(seed) in float32.
func (c moeCase) inputs32(seed uint64) []*tensor.Dense {
	ins := c.inputs(seed)
	for i, v := range ins {
		ins[i] = toDtype(v, tensor.Float32)
	}
	return ins
}

// sameRunBits fails t unless runEachWay's two runs gave the same output and
// gradients, bit for bit; how names the two ways.
func sameRunBits(t *testing.T, how string, ys [][]float64, gs [][][]float64) {
	t.Helper()
	if !slices.Equal(ys[0], ys[1]) {
		t.Errorf("outputs differ %s", how)
	}
	for i := range gs[0] {
		if !slices.Equal(gs[0][i], gs[1][i]) {
			t.Errorf("gradient %d differs %s", i, how)
		}
	}
}

// runEachWay runs c's MoE op forward and backward on ins once per
// setting, set(setting) before each run, and returns each run's output
// and gradients in the settings' order.
func runEachWay[T any](t *testing.T, c moeCase, ins []*tensor.Dense, settings []T, set func(T)) (ys [][]float64, gs [][][]float64) {
	t.Helper()
	for _, v := range settings {
		set(v)
		y, g := runOp(t, ins, true, buildMoE(c.k, c.renorm, nil))
		ys, gs = append(ys, y), append(gs, g)
	}
	return ys, gs
}

// runOp builds the graph on copies of ins, runs it, and returns the output
// and, when withGrads, the gradients of Σ weights ⊙ output (fixed random
// weights) for every float input, all as float64.
func runOp(t *testing.T, ins []*tensor.Dense, withGrads bool, build func(in []*G.Node) (*G.Node, error)) ([]float64, [][]float64) {
	t.Helper()
	g := G.NewGraph()
	nodes := make([]*G.Node, len(ins))
	for i, v := range ins {
		v = v.Clone().(*tensor.Dense)
		nodes[i] = G.NewTensor(g, v.Dtype(), v.Shape().Dims(), G.WithShape(v.Shape()...), G.WithName(fmt.Sprint("in", i)), G.WithValue(v))
	}
	out, err := build(nodes)
	if err != nil {
		t.Fatalf("build: %v", err)
	}
	var wrt []*G.Node
	if withGrads {
		cost := out
		if !out.IsScalar() {
			w := toDtype(gradcheck.Rand(rand.New(rand.NewPCG(5, 5)), 1, out.Shape()...), out.Dtype())
			wn := G.NewTensor(g, out.Dtype(), out.Shape().Dims(), G.WithShape(out.Shape()...), G.WithValue(w))
			cost = G.Must(G.Sum(G.Must(G.HadamardProd(out, wn))))
		}
		for _, n := range nodes {
			if n.Dtype() != tensor.Int {
				wrt = append(wrt, n)
			}
		}
		if _, err := G.Grad(cost, wrt...); err != nil {
			t.Fatalf("grad: %v", err)
		}
	}
	var y G.Value
	G.Read(out, &y)
	vm := G.NewTapeMachine(g)
	defer vm.Close()
	if err := vm.RunAll(); err != nil {
		t.Fatalf("run: %v", err)
	}
	res := widen(y.Data())
	var grads [][]float64
	for _, n := range wrt {
		gv, err := n.Grad()
		if err != nil {
			t.Fatalf("grad of %s: %v", n.Name(), err)
		}
		grads = append(grads, widen(gv.Data()))
	}
	return res, grads
}

// TestMoECacheHitInGraph checks that in a real TapeMachine run the backward
// pass finds the forward's activations (the cache is what makes the
// backward cheap; a silent miss would only cost time).
func TestMoECacheHitInGraph(t *testing.T) {
	c := moeCases[2]
	var y *G.Node
	runOp(t, c.inputs(70), true, func(in []*G.Node) (*G.Node, error) {
		var err error
		y, err = MoE(in[0], in[1], in[2], in[3], in[4], c.k, c.renorm)
		return y, err
	})
	if hits := y.Op().(*moeOp).cache.hits; hits != 1 {
		t.Errorf("backward cache hits = %d, want 1", hits)
	}
}

func buildMoE(k int, renorm bool, rec *RouteRecord) func(in []*G.Node) (*G.Node, error) {
	return func(in []*G.Node) (*G.Node, error) {
		return MoEWithRecord(in[0], in[1], in[2], in[3], in[4], k, renorm, rec)
	}
}

func TestTopK(t *testing.T) {
	nan := math.NaN()
	tests := []struct {
		name string
		row  []float64
		k    int
		want []int32
	}{
		{"descending order", []float64{0.1, 0.4, 0.2, 0.3}, 3, []int32{1, 3, 2}},
		{"ties go to the lower index", []float64{0.2, 0.5, 0.5, 0.1, 0.5}, 2, []int32{1, 2}},
		{"ties across the cut", []float64{0.2, 0.5, 0.5, 0.1, 0.5}, 3, []int32{1, 2, 4}},
		{"all equal", []float64{1, 1, 1, 1}, 3, []int32{0, 1, 2}},
		{"k = E", []float64{3, 1, 2}, 3, []int32{0, 2, 1}},
		{"late maximum", []float64{0, 0, 0, 9}, 1, []int32{3}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := make([]int32, tc.k)
			TopK(got, tc.row, tc.k)
			if !slices.Equal(got, tc.want) {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
	t.Run("NaN yields distinct indices", func(t *testing.T) {
		got := make([]int32, 3)
		TopK(got, []float64{nan, 0.3, nan, 0.1}, 3)
		seen := map[int32]bool{}
		for _, x := range got {
			if x < 0 || x > 3 || seen[x] {
				t.Fatalf("got %v, want 3 distinct indices in [0, 4)", got)
			}
			seen[x] = true
		}
	})
	t.Run("random rows match a stable sort", func(t *testing.T) {
		r := rand.New(rand.NewPCG(3, 3))
		for it := 0; it < 200; it++ {
			e := 1 + r.IntN(12)
			k := 1 + r.IntN(e)
			row := make([]float64, e)
			for i := range row {
				row[i] = float64(r.IntN(5)) // many ties
			}
			got := make([]int32, k)
			TopK(got, row, k)
			if want := sortedTopK(row, k); !slices.Equal(got, want) {
				t.Fatalf("row %v k=%d: got %v, want %v", row, k, got, want)
			}
		}
	})
}

// topKSmall (k ≤ 16) chooses exactly as the general insertion list, on
// router-like rows, rows with many ties and rows holding NaN and ±Inf
// (which the vector path hands to the list).
func TestTopKSmallMatchesList(t *testing.T) {
	r := rand.New(rand.NewPCG(4, 4))
	nonFinite := []float32{float32(math.NaN()), float32(math.Inf(1)), float32(math.Inf(-1))}
	for it := 0; it < 20000; it++ {
		e := 1 + r.IntN(70)
		k := 1 + r.IntN(min(e, 16))
		row := routerRow(r, e, nonFinite)
		got, want := make([]int32, k), make([]int32, k)
		topKSmall(got, row, k)
		topKList(want, row, k)
		if !slices.Equal(got, want) {
			t.Fatalf("row %v k=%d: %v, insertion list %v", row, k, got, want)
		}
	}
}

// routerRow is e values for the top-k tests: mostly uniform in [0, 1),
// some negative, many ties (small integers) and some drawn from special.
func routerRow(r *rand.Rand, e int, special []float32) []float32 {
	row := make([]float32, e)
	for i := range row {
		switch r.IntN(10) {
		case 0:
			row[i] = float32(r.IntN(3))
		case 1:
			row[i] = special[r.IntN(len(special))]
		case 2:
			row[i] = -float32(r.Float64())
		default:
			row[i] = float32(r.Float64())
		}
	}
	return row
}

// topK32x64, the AVX-512 selection, chooses exactly as the scalar list on
// every row it accepts: widths 1..64, router-like values, ties, signed
// zeros, subnormals and +Inf; it refuses rows holding NaN or −Inf.
func TestTopKVectorMatchesList(t *testing.T) {
	if !topK512 {
		t.Skip("no AVX-512 on this CPU")
	}
	r := rand.New(rand.NewPCG(9, 9))
	special := []float32{0, float32(math.Copysign(0, -1)), math.SmallestNonzeroFloat32, float32(math.Inf(1)), 1}
	for it := 0; it < 50000; it++ {
		e := 1 + r.IntN(64)
		k := 1 + r.IntN(min(e, 16))
		row := routerRow(r, e, special)
		got, want := make([]int32, k), make([]int32, k)
		if !topK32x64(&got[0], &row[0], e, k) {
			t.Fatalf("row %v k=%d: refused a row without NaN or -Inf", row, k)
		}
		topKSmallList(want, row, k)
		if !slices.Equal(got, want) {
			t.Fatalf("row %v k=%d: %v, scalar list %v", row, k, got, want)
		}
		row[r.IntN(e)] = []float32{float32(math.NaN()), float32(math.Inf(-1))}[r.IntN(2)]
		if topK32x64(&got[0], &row[0], e, k) {
			t.Fatalf("row %v k=%d: took a row holding NaN or -Inf", row, k)
		}
	}
}

// TestTopKPairsMatchRows: topK32x64x2 makes topK32x64's choices and
// refusals on each of its two rows (ties, zeros of both signs, +Inf, and
// NaN or -Inf in either row, both, or neither), and topKPairs, over odd
// and even row counts, TopK's choices row by row.
func TestTopKPairsMatchRows(t *testing.T) {
	if !topK512 {
		t.Skip("no AVX-512 on this CPU")
	}
	r := rand.New(rand.NewPCG(10, 10))
	special := []float32{0, float32(math.Copysign(0, -1)), math.SmallestNonzeroFloat32, float32(math.Inf(1)), 1}
	bad := []float32{float32(math.NaN()), float32(math.Inf(-1))}
	for it := 0; it < 30000; it++ {
		e := 1 + r.IntN(64)
		k := 1 + r.IntN(min(e, 16))
		a, b := routerRow(r, e, special), routerRow(r, e, special)
		if r.IntN(4) == 0 {
			a[r.IntN(e)] = bad[r.IntN(2)]
		}
		if r.IntN(4) == 0 {
			b[r.IntN(e)] = bad[r.IntN(2)]
		}
		wantA, wantB := make([]int32, k), make([]int32, k)
		okA, okB := topK32x64(&wantA[0], &a[0], e, k), topK32x64(&wantB[0], &b[0], e, k)
		gotA, gotB := make([]int32, k), make([]int32, k)
		gA, gB := topK32x64x2(&gotA[0], &a[0], &gotB[0], &b[0], e, k)
		if gA != okA || gB != okB {
			t.Fatalf("rows %v, %v k=%d: took %t, %t; one at a time %t, %t", a, b, k, gA, gB, okA, okB)
		}
		if okA && !slices.Equal(gotA, wantA) || okB && !slices.Equal(gotB, wantB) {
			t.Fatalf("rows %v, %v k=%d: %v, %v; one at a time %v, %v", a, b, k, gotA, gotB, wantA, wantB)
		}
	}
	for _, n := range []int{1, 2, 5, 64} {
		const e, k = 63, 7
		scores := make([]float32, 0, n*e)
		for range n {
			scores = append(scores, routerRow(r, e, special)...)
		}
		scores[r.IntN(n*e)] = float32(math.NaN())
		got, want := make([]int32, n*k), make([]int32, n*k)
		lo := topKPairs(got, scores, 0, n, e, k)
		if lo != n&^1 {
			t.Fatalf("n=%d: topKPairs left rows from %d, want %d", n, lo, n&^1)
		}
		for i := range lo {
			TopK(want[i*k:(i+1)*k], scores[i*e:(i+1)*e], k)
		}
		if !slices.Equal(got[:lo*k], want[:lo*k]) {
			t.Fatalf("n=%d: topKPairs chose %v, TopK row by row %v", n, got[:lo*k], want[:lo*k])
		}
	}
}

// TestRoute checks routings against the scores, each made after the last
// was released: a routing over a released one's slices (newRouting) must
// be as good as one over fresh slices.
func TestRoute(t *testing.T) {
	const n, e, k = 40, 7, 3
	r := rand.New(rand.NewPCG(4, 4))
	for _, renorm := range []bool{false, true, false, true} {
		probs := separatedProbs(r, n, e).Data().([]float64)
		rt := Route(probs, n, e, k, renorm)
		total := 0
		for x := 0; x < e; x++ {
			total += rt.Load(x)
			slots := rt.Slots[rt.Offsets[x]:rt.Offsets[x+1]]
			for i, s := range slots {
				if rt.Experts[s] != int32(x) {
					t.Fatalf("expert %d lists slot %d of expert %d", x, s, rt.Experts[s])
				}
				if i > 0 && slots[i-1] >= s {
					t.Fatalf("expert %d: slots %v not in token order", x, slots)
				}
				if rt.Pos[s] != rt.Offsets[x]+int32(i) {
					t.Fatalf("Pos[%d] = %d, want %d", s, rt.Pos[s], rt.Offsets[x]+int32(i))
				}
				if p := rt.Offsets[x] + int32(i); rt.PosGates[p] != rt.Gates[s] {
					t.Fatalf("PosGates[%d] = %g, slot %d's gate %g", p, rt.PosGates[p], s, rt.Gates[s])
				}
			}
		}
		if total != n*k || slices.Max(rt.Loads()) == n*k {
			t.Fatalf("loads %v: total %d, want %d spread over experts", rt.Loads(), total, n*k)
		}
		for tok := 0; tok < n; tok++ {
			row := probs[tok*e : (tok+1)*e]
			if want := sortedTopK(row, k); !slices.Equal(rt.Experts[tok*k:(tok+1)*k], want) {
				t.Fatalf("token %d: experts %v, want %v", tok, rt.Experts[tok*k:(tok+1)*k], want)
			}
			var sum float64
			for j, x := range rt.Experts[tok*k : (tok+1)*k] {
				g := rt.Gates[tok*k+j]
				sum += g
				if !renorm && g != row[x] {
					t.Fatalf("token %d: raw gate %g, want probability %g", tok, g, row[x])
				}
			}
			if renorm && !tol.Float64.Close(sum, 1) {
				t.Fatalf("token %d: renormalised gates sum to %g, want 1", tok, sum)
			}
		}
		rt.release()
		if rt.Experts != nil || rt.Offsets != nil {
			t.Fatal("a released routing still holds its slices")
		}
	}
}

func TestMoEMatchesNaive(t *testing.T) {
	cases := append(slices.Clone(moeCases), moeCase{"larger k=4", 37, 8, 9, 5, 4, false})
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ins := c.inputs(uint64(10 + i))
			var rec RouteRecord
			got, _ := runOp(t, ins, false, buildMoE(c.k, c.renorm, &rec))
			f := func(j int) []float64 { return ins[j].Data().([]float64) }
			want := naiveMoE(f(0), f(1), f(2), f(3), f(4), c.n, c.d, c.e, c.w, c.k, c.renorm)
			if err := (tol.Tol{Abs: 1e-12, Rel: 1e-12}).CheckSlice("y", got, want); err != nil {
				t.Error(err)
			}
			// The record holds the routing of that forward pass.
			rt := Route(f(1), c.n, c.e, c.k, c.renorm)
			if !slices.Equal(rec.Experts, rt.Experts) || !slices.Equal(rec.Load, rt.Loads()) || rec.N != c.n || rec.K != c.k || rec.E != c.e {
				t.Errorf("record %+v does not match the routing %v / %v", rec, rt.Experts, rt.Loads())
			}
		})
	}
}

func TestMoEGradient(t *testing.T) {
	for i, c := range moeCases {
		t.Run(c.name, func(t *testing.T) {
			ins := c.inputs(uint64(20 + i))
			// The finite differences must not cross a routing switch.
			probs := ins[1].Data().([]float64)
			bumped := slices.Clone(probs)
			r := rand.New(rand.NewPCG(uint64(i), 1))
			for j := range bumped {
				bumped[j] += 1e-4 * (2*r.Float64() - 1)
			}
			if a, b := Route(probs, c.n, c.e, c.k, c.renorm), Route(bumped, c.n, c.e, c.k, c.renorm); !slices.Equal(a.Experts, b.Experts) {
				t.Fatalf("routing changes under a 1e-4 perturbation: %v vs %v", a.Experts, b.Experts)
			}
			names := []string{"u", "probs", "wg", "wu", "wd"}
			var gi []gradcheck.Input
			for j, v := range ins {
				gi = append(gi, gradcheck.Input{Name: names[j], Value: v, Diff: true})
			}
			got := gradcheck.Check(t, uint64(30+i), gi, func(g *G.ExprGraph, in []*G.Node) (*G.Node, error) {
				return MoE(in[0], in[1], in[2], in[3], in[4], c.k, c.renorm)
			}, gradcheck.Default)
			// dprobs is zero outside each token's chosen experts.
			rt := Route(probs, c.n, c.e, c.k, c.renorm)
			for tok := 0; tok < c.n; tok++ {
				for x := 0; x < c.e; x++ {
					if !slices.Contains(rt.Experts[tok*c.k:(tok+1)*c.k], int32(x)) && got["probs"][tok*c.e+x] != 0 {
						t.Errorf("dprobs[%d,%d] = %g at an unchosen expert", tok, x, got["probs"][tok*c.e+x])
					}
				}
			}
		})
	}
}

// TestMoEGatedShared: the op with shared experts gives, and passes back,
// what a SwiGLU beside it added to the op without them gives (rows and
// u's gradient summed in another order: to rounding), with and without a
// selection bias, in a training graph and an evaluation one (the shared
// forward in blocks); its gradient checks by finite differences, and its
// float32 run matches float64.
func TestMoEGatedShared(t *testing.T) {
	c := moeCase{"k=3", 7, 4, 6, 3, 3, false}
	const fs = 5 // the shared experts' merged width
	for _, withBias := range []bool{false, true} {
		r := rand.New(rand.NewPCG(61, 62))
		names := []string{"u", "probs", "wg", "wu", "wd"}
		var ins []gradcheck.Input
		for j, v := range c.inputs(60) {
			ins = append(ins, gradcheck.Input{Name: names[j], Value: v, Diff: true})
		}
		if withBias {
			bias := make([]float64, c.e)
			for i := range bias {
				bias[i] = 0.01 * r.NormFloat64()
			}
			ins = append(ins, gradcheck.Input{Name: "bias", Value: tensor.New(tensor.WithShape(c.e), tensor.WithBacking(bias))})
		}
		ins = append(ins,
			gradcheck.Input{Name: "sg", Value: gradcheck.Rand(r, 0.5, fs, c.d), Diff: true},
			gradcheck.Input{Name: "su", Value: gradcheck.Rand(r, 0.5, fs, c.d), Diff: true},
			gradcheck.Input{Name: "sd", Value: gradcheck.Rand(r, 0.5, c.d, fs), Diff: true})
		g := Gating{K: c.k}
		bias := func(in []*G.Node) *G.Node {
			if withBias {
				return in[5]
			}
			return nil
		}
		build := func(_ *G.ExprGraph, in []*G.Node) (*G.Node, error) {
			n := len(in)
			return MoEGatedShared(in[0], in[1], in[2], in[3], in[4], bias(in), in[n-3], in[n-2], in[n-1], g, nil)
		}
		beside := func(_ *G.ExprGraph, in []*G.Node) (*G.Node, error) {
			n := len(in)
			routed, err := MoEGated(in[0], in[1], in[2], in[3], in[4], bias(in), g, nil)
			if err != nil {
				return nil, err
			}
			shared, err := SwiGLU(in[0], in[n-3], in[n-2], in[n-1])
			if err != nil {
				return nil, err
			}
			return Add(routed, shared)
		}
		got, gotG := runOpGraph(t, tensor.Float64, ins, build)
		want, wantG := runOpGraph(t, tensor.Float64, ins, beside)
		close := tol.Tol{Abs: 1e-12, Rel: 1e-12}
		if err := close.CheckSlice("y", got, want); err != nil {
			t.Errorf("bias %t: %v", withBias, err)
		}
		for name, w := range wantG {
			if err := close.CheckSlice("d/d"+name, gotG[name], w); err != nil {
				t.Errorf("bias %t: %v", withBias, err)
			}
		}
		// Without gradients the graph is an evaluation one: no backward,
		// the shared forward in blocks that keep nothing.
		var eval []gradcheck.Input
		for _, in := range ins {
			in.Diff = false
			eval = append(eval, in)
		}
		y, _ := runOpGraph(t, tensor.Float64, eval, build)
		if err := close.CheckSlice("evaluation y", y, got); err != nil {
			t.Errorf("bias %t: %v", withBias, err)
		}
		gradcheck.Check(t, 63, ins, build, gradcheck.Default)
		checkOpFloat32(t, ins, build)
	}
	// An evaluation op (no backward built) keeps no shared activations.
	r := rand.New(rand.NewPCG(64, 65))
	vals := []G.Value{}
	for _, v := range c.inputs(60) {
		vals = append(vals, v)
	}
	vals = append(vals, gradcheck.Rand(r, 0.5, fs, c.d), gradcheck.Rand(r, 0.5, fs, c.d), gradcheck.Rand(r, 0.5, c.d, fs))
	op := &moeOp{base: base{name: "MoE", arity: 8}, k: c.k, gating: Gating{K: c.k}, cache: &expertCache{}, shared: &swigluCache{}}
	if _, err := op.Do(vals...); err != nil {
		t.Fatal(err)
	}
	if op.shared.valid || op.shared.gu != nil {
		t.Error("an evaluation op kept its shared experts' activations")
	}
}

// TestMoEGatedSharedRejects: shared experts need all three weights, of
// shapes that fit u.
func TestMoEGatedSharedRejects(t *testing.T) {
	g := G.NewGraph()
	mk := func(name string, shape ...int) *G.Node {
		return G.NewTensor(g, tensor.Float64, len(shape), G.WithShape(shape...), G.WithName(name))
	}
	u, probs := mk("u", 7, 4), mk("probs", 7, 6)
	wg, wu, wd := mk("wg", 6, 3, 4), mk("wu", 6, 3, 4), mk("wd", 6, 4, 3)
	sg, su, sd := mk("sg", 5, 4), mk("su", 5, 4), mk("sd", 4, 5)
	if _, err := MoEGatedShared(u, probs, wg, wu, wd, nil, sg, su, nil, Gating{K: 2}, nil); err == nil {
		t.Error("accepted shared experts without a down weight")
	}
	if _, err := MoEGatedShared(u, probs, wg, wu, wd, nil, sg, su, mk("sd3", 3, 5), Gating{K: 2}, nil); err == nil {
		t.Error("accepted a shared down weight [3, 5] for d = 4")
	}
	if _, err := MoEGatedShared(u, probs, wg, wu, wd, nil, sg, su, sd, Gating{K: 2}, nil); err != nil {
		t.Errorf("rejected fitting shared experts: %v", err)
	}
}

// TestMoEFloat32MatchesFloat64 runs the float32 op on both ways of
// forming the gate and up products (gathered rows through the library;
// rows read in place through blas.RowsMatMul, where the CPU has it)
// against float64.
func TestMoEFloat32MatchesFloat64(t *testing.T) {
	defer func(r bool) { rowsProducts = r }(rowsProducts)
	c := moeCase{"k=3", 50, 16, 8, 12, 3, false}
	ins, ins32 := c.inputs(40), c.inputs32(40)
	y64, g64 := runOp(t, ins, true, buildMoE(c.k, c.renorm, nil))
	for _, rows := range []bool{false, blas.RowsOK()} {
		rowsProducts = rows
		y32, g32 := runOp(t, ins32, true, buildMoE(c.k, c.renorm, nil))
		if err := tol.CheckScaled(fmt.Sprintf("rows %t: y", rows), y32, y64, 1e-5); err != nil {
			t.Error(err)
		}
		for i, name := range []string{"du", "dprobs", "dwg", "dwu", "dwd"} {
			if err := tol.CheckScaled(fmt.Sprintf("rows %t: %s", rows, name), g32[i], g64[i], 1e-5); err != nil {
				t.Error(err)
			}
		}
	}
}

func TestMoEDeterministicAcrossWorkers(t *testing.T) {
	defer func(w int) { parallel.Workers = w }(parallel.Workers)
	c := moeCase{"k=2 renorm", 300, 16, 8, 12, 2, true}
	ys, gs := runEachWay(t, c, c.inputs32(50), []int{1, 4}, func(w int) { parallel.Workers = w })
	sameRunBits(t, "between 1 and 4 workers", ys, gs)
}

// TestMoESlotOutputsSameBits: the forward with the experts' outputs
// streamed out by slot (downRows with slots, on the row tiles) gives the bits
// of the one that keeps them in the experts' order, with a partial last
// tile in some experts; the gradients agree to float32 rounding (by slot,
// the experts' dx rows come from the row tiles, not oneDNN's GEMM).
func TestMoESlotOutputsSameBits(t *testing.T) {
	if !rowTiles() {
		t.Skip("no row tiles on this CPU")
	}
	defer func(on bool, b int) { slotOutputs, slotRowsBytes = on, b }(slotOutputs, slotRowsBytes)
	slotRowsBytes = 0
	c := moeCase{"k=3", 203, 64, 9, 24, 3, true}
	ins := c.inputs32(70)
	r := Route(slice[float32](ins[1]), c.n, c.e, c.k, c.renorm) // the op's own routing
	if !slotRows[float32](&r, c.d, c.w) {
		t.Fatal("slotRows refuses the case: the test would not stream outputs by slot")
	}
	ys, gs := runEachWay(t, c, ins, []bool{true, false}, func(on bool) { slotOutputs = on })
	if !slices.Equal(ys[0], ys[1]) {
		t.Error("outputs by slot and in the experts' order differ")
	}
	for i := range gs[0] {
		if err := tol.CheckScaled(fmt.Sprintf("gradient %d by slot", i), gs[0][i], gs[1][i], 1e-5); err != nil {
			t.Error(err)
		}
	}
}

// TestMoEStreamedProjectionSameBits: a kept forward whose gate and up
// products go through projectStreamed (blocks of streamRows, streamed to
// the kept activations; here with more rows than a block in some experts)
// gives the bits of the direct products, output and gradients.
func TestMoEStreamedProjectionSameBits(t *testing.T) {
	if !rowTiles() {
		t.Skip("no row tiles on this CPU")
	}
	defer func(on bool) { streamProjections = on }(streamProjections)
	c := moeCase{"k=2", 300, 32, 4, 24, 2, true}
	if !streamedProjection(c.w, c.d) {
		t.Fatal("streamedProjection refuses the case: the test would not reach projectStreamed")
	}
	ys, gs := runEachWay(t, c, c.inputs32(80), []bool{true, false}, func(on bool) { streamProjections = on })
	sameRunBits(t, "with the streamed projection and without", ys, gs)
}

// TestMoEBackwardRecomputes checks the cache key: a backward pass on inputs
// other than the forward's (here copies at other addresses) recomputes the
// routing and activations, and gets the same answer as the cached path.
func TestMoEBackwardRecomputes(t *testing.T) {
	c := moeCase{"k=2 renorm", 20, 6, 5, 4, 2, true}
	ins := c.inputs(60)
	dy := gradcheck.Rand(rand.New(rand.NewPCG(6, 6)), 1, c.n, c.d)
	op := &moeOp{base: base{name: "MoE", arity: 5}, k: c.k, gating: Gating{K: c.k, Renorm: c.renorm}, cache: &expertCache{}, differentiated: true} // as SymDiff marks it
	bwd := &moeBackward{base: base{name: "MoEBackward", arity: 6}, k: c.k, gating: op.gating, cache: op.cache}
	vals := func(ts []*tensor.Dense) []G.Value {
		out := make([]G.Value, len(ts))
		for i, x := range ts {
			out[i] = x
		}
		return out
	}
	if _, err := op.Do(vals(ins)...); err != nil {
		t.Fatal(err)
	}
	if _, a := op.cache.load(ins); a == nil {
		t.Fatal("forward left no cache for its own inputs")
	}
	cached, err := bwd.Do(vals(append(slices.Clone(ins), dy))...)
	if err != nil {
		t.Fatal(err)
	}
	copies := make([]*tensor.Dense, len(ins))
	for i, x := range ins {
		copies[i] = x.Clone().(*tensor.Dense)
	}
	if _, a := op.cache.load(copies); a != nil {
		t.Fatal("cache hit for inputs at other addresses")
	}
	fresh, err := bwd.Do(vals(append(copies, dy))...)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(cached.Data().([]float64), fresh.Data().([]float64)) {
		t.Error("backward from the cache differs from a recomputed backward")
	}
}

func TestMoEShapeErrors(t *testing.T) {
	g := G.NewGraph()
	mk := func(shape ...int) *G.Node {
		return G.NewTensor(g, tensor.Float64, len(shape), G.WithShape(shape...))
	}
	u, p := mk(4, 3), mk(4, 5)
	wg, wd := mk(5, 2, 3), mk(5, 3, 2)
	if _, err := MoE(u, p, wg, wg, wd, 6, false); err == nil {
		t.Error("k > E: got no error")
	}
	if _, err := MoE(u, p, wg, wg, wd, 0, false); err == nil {
		t.Error("k = 0: got no error")
	}
	if _, err := MoE(u, mk(4, 4), wg, wg, wd, 2, false); err == nil {
		t.Error("probs with the wrong expert count: got no error")
	}
	if _, err := MoE(u, p, wg, wg, mk(5, 2, 3), 2, false); err == nil {
		t.Error("wd in [E, W, D] layout: got no error")
	}
	if _, err := MoE(u, p, wg, wg, wd, 2, false); err != nil {
		t.Errorf("valid shapes: %v", err)
	}
}

// An evaluation graph's MoE op (no backward) gives the training forward's
// output bit for bit, from expert-sized scratch, and leaves nothing cached.
func TestMoEEvaluationForwardMatchesTraining(t *testing.T) {
	c := moeCase{"k=3", 40, 16, 9, 11, 3, false}
	var ins []G.Value
	for _, x := range c.inputs(73) {
		ins = append(ins, toDtype(x, tensor.Float32))
	}
	var ys [2][]float32
	for i, diff := range []bool{true, false} {
		op := &moeOp{base: base{name: "MoE", arity: 5}, k: c.k, gating: Gating{K: c.k}, cache: &expertCache{}, differentiated: diff}
		for range 2 { // the second pass reuses the first's buffers
			y, err := op.Do(ins...)
			if err != nil {
				t.Fatal(err)
			}
			ys[i] = slices.Clone(y.Data().([]float32))
		}
		if _, a := op.cache.load(denseOf(ins)); (a != nil) != diff {
			t.Errorf("differentiated=%t: cache filled %t", diff, a != nil)
		}
	}
	for i := range ys[0] {
		if math.Float32bits(ys[0][i]) != math.Float32bits(ys[1][i]) {
			t.Fatalf("y[%d] = %g in evaluation, %g in training", i, ys[1][i], ys[0][i])
		}
	}
}

func denseOf(vs []G.Value) []*tensor.Dense {
	out := make([]*tensor.Dense, len(vs))
	for i, v := range vs {
		out[i] = v.(*tensor.Dense)
	}
	return out
}

// The backward's reused output holds zero weight gradients for an expert
// that got no tokens in this run, even when it had some in the run before.
func TestMoEBackwardZeroesUnusedExperts(t *testing.T) {
	c := moeCase{"k=2", 12, 4, 5, 3, 2, false}
	ins := c.inputs(74)
	dy := gradcheck.Rand(rand.New(rand.NewPCG(7, 7)), 1, c.n, c.d)
	op := &moeOp{base: base{name: "MoE", arity: 5}, k: c.k, gating: Gating{K: c.k}, cache: &expertCache{}, differentiated: true}
	bwd := &moeBackward{base: base{name: "MoEBackward", arity: 6}, k: c.k, gating: op.gating, cache: op.cache}
	run := func(probs *tensor.Dense) []float64 {
		in := []G.Value{ins[0], probs, ins[2], ins[3], ins[4]}
		if _, err := op.Do(in...); err != nil {
			t.Fatal(err)
		}
		p, err := bwd.Do(append(in, dy)...)
		if err != nil {
			t.Fatal(err)
		}
		return p.Data().([]float64)
	}
	probs := ins[1].Clone().(*tensor.Dense)
	pd := probs.Data().([]float64)
	for tok := 0; tok < c.n; tok++ {
		pd[tok*c.e] = 2 // expert 0 first choice of every token
	}
	sizes := []int{c.n * c.d, c.n * c.e, c.e * c.w * c.d, c.e * c.w * c.d, c.e * c.d * c.w}
	if g := split(run(probs), sizes); !slices.ContainsFunc(g[2][:c.w*c.d], func(v float64) bool { return v != 0 }) {
		t.Fatal("expert 0 got no weight gradient with every token routed to it")
	}
	for tok := 0; tok < c.n; tok++ {
		pd[tok*c.e] = -1 // never chosen
	}
	g := split(run(probs), sizes)
	for i, dw := range g[2:] {
		for j, v := range dw[:c.w*c.d] {
			if v != 0 {
				t.Fatalf("weight gradient %d of the unused expert 0: element %d = %g, want 0", i, j, v)
			}
		}
	}
}

// An op run again on other inputs gives what a new op gives on them, in
// the forward and the backward: buffers kept from the first run (the
// output, the packed gradient) hold nothing that reaches the second.
func TestMoERerunMatchesNewOp(t *testing.T) {
	c := moeCase{"k=2", 12, 4, 5, 3, 2, false}
	dy := gradcheck.Rand(rand.New(rand.NewPCG(8, 8)), 1, c.n, c.d)
	rerunMatchesNewOp(t, func() (doer, doer) {
		op := &moeOp{base: base{name: "MoE", arity: 5}, k: c.k, gating: Gating{K: c.k}, cache: &expertCache{}, differentiated: true}
		return op, &moeBackward{base: base{name: "MoEBackward", arity: 6}, k: c.k, gating: op.gating, cache: op.cache}
	}, values(c.inputs(81)), values(c.inputs(82)), dy)
}

// doer is an op's Do, forward or backward.
type doer interface {
	Do(...G.Value) (G.Value, error)
}

// values returns ts as op inputs.
func values(ts []*tensor.Dense) []G.Value {
	v := make([]G.Value, len(ts))
	for i, x := range ts {
		v[i] = x
	}
	return v
}

// rerunMatchesNewOp runs a forward op and its backward (inputs, then dy)
// from newOps on first and then on second, and a new pair on second; the
// outputs and gradients of the two runs on second must be equal, bit for
// bit. It returns the new pair's gradients.
func rerunMatchesNewOp(t *testing.T, newOps func() (doer, doer), first, second []G.Value, dy G.Value) []float64 {
	t.Helper()
	run := func(op, bwd doer, in []G.Value) (y, grads []float64) {
		out, err := op.Do(in...)
		if err != nil {
			t.Fatal(err)
		}
		y = slices.Clone(out.Data().([]float64))
		p, err := bwd.Do(append(slices.Clone(in), dy)...)
		if err != nil {
			t.Fatal(err)
		}
		return y, slices.Clone(p.Data().([]float64))
	}
	op, bwd := newOps()
	run(op, bwd, first)
	gotY, gotG := run(op, bwd, second)
	fresh, freshBwd := newOps()
	wantY, wantG := run(fresh, freshBwd, second)
	if !slices.Equal(gotY, wantY) {
		t.Errorf("forward run second: %v, on a new op: %v", gotY, wantY)
	}
	if !slices.Equal(gotG, wantG) {
		t.Errorf("backward run second differs from a new op's")
	}
	return wantG
}

// TestMoEBF16ProductsSkipRowTiles: with bfloat16 products on, the experts'
// products go through the library's bfloat16 GEMM as every other product
// does, not through the float32 row tiles: the op gives the same bits
// with the tiles allowed as with them off.
func TestMoEBF16ProductsSkipRowTiles(t *testing.T) {
	bf16WithRowTiles(t)
	c := moeCase{"k=3", 50, 16, 8, 12, 3, false}
	ys, gs := runEachWay(t, c, c.inputs32(41), []bool{false, true}, func(rows bool) { rowsProducts = rows })
	sameRunBits(t, "bf16 products, with the row tiles allowed and not", ys, gs)
}
