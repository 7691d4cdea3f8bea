package ops

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"

	"github.com/moetrain/moetrain/internal/gradcheck"
	"github.com/moetrain/moetrain/internal/tol"
)

func buildSwiGLU(_ *G.ExprGraph, in []*G.Node) (*G.Node, error) {
	return SwiGLU(in[0], in[1], in[2], in[3])
}

// swigluInputs: N=5, d=6, f=4; weights of scale 1 so the gate spans the
// curved part of silu.
func swigluInputs(seed uint64) []gradcheck.Input {
	r := rand.New(rand.NewPCG(seed, 8))
	return []gradcheck.Input{
		{Name: "x", Value: gradcheck.Rand(r, 1, 5, 6), Diff: true},
		{Name: "wg", Value: gradcheck.Rand(r, 1, 4, 6), Diff: true},
		{Name: "wu", Value: gradcheck.Rand(r, 1, 4, 6), Diff: true},
		{Name: "wd", Value: gradcheck.Rand(r, 1, 6, 4), Diff: true},
	}
}

func TestSwiGLUGradient(t *testing.T) {
	gradcheck.Check(t, 17, swigluInputs(1), buildSwiGLU, gradcheck.Default)
}

func TestSwiGLUFloat32(t *testing.T) {
	checkOpFloat32(t, swigluInputs(2), buildSwiGLU)
}

// TestSwiGLUForward compares with the formula evaluated term by term.
func TestSwiGLUForward(t *testing.T) {
	ins := swigluInputs(3)
	x, wg := ins[0].Value.Data().([]float64), ins[1].Value.Data().([]float64)
	wu, wd := ins[2].Value.Data().([]float64), ins[3].Value.Data().([]float64)
	const n, d, f = 5, 6, 4
	want := make([]float64, n*d)
	for i := 0; i < n; i++ {
		for k := 0; k < f; k++ {
			var a, b float64
			for j := 0; j < d; j++ {
				a += x[i*d+j] * wg[k*d+j]
				b += x[i*d+j] * wu[k*d+j]
			}
			h := a / (1 + math.Exp(-a)) * b
			for o := 0; o < d; o++ {
				want[i*d+o] += h * wd[o*f+k]
			}
		}
	}
	got, _ := runOpGraph(t, tensor.Float64, ins, buildSwiGLU)
	if err := tol.Float64.CheckSlice("y", got, want); err != nil {
		t.Error(err)
	}
}

// TestSwiGLUCache runs the backward op directly: with the forward's cache,
// after the cache was spent, and after the forward saw another x. All three
// must give the same packed gradient (the last two recompute).
func TestSwiGLUCache(t *testing.T) {
	ins := swigluInputs(4)
	vals := make([]G.Value, 5)
	for i, in := range ins {
		vals[i] = in.Value
	}
	vals[4] = gradcheck.Rand(rand.New(rand.NewPCG(5, 8)), 1, 5, 6)
	op := &swigluOp{base: base{name: "SwiGLU", arity: 4}, cache: &swigluCache{}, differentiated: true}
	bwd := &swigluBackward{base: base{name: "SwiGLUBackward", arity: 5}, cache: op.cache}
	run := func(name string, forwardX G.Value) []float64 {
		t.Helper()
		if forwardX != nil {
			if _, err := op.Do(forwardX, vals[1], vals[2], vals[3]); err != nil {
				t.Fatalf("%s: forward: %v", name, err)
			}
		}
		p, err := bwd.Do(vals...)
		if err != nil {
			t.Fatalf("%s: backward: %v", name, err)
		}
		if op.cache.valid {
			t.Errorf("%s: cache still valid after backward", name)
		}
		return widen(p.Data())
	}
	cached := run("cached", vals[0])
	if op.cache.hits != 1 {
		t.Errorf("backward after forward: %d cache hits, want 1", op.cache.hits)
	}
	spent := run("spent", nil)
	otherX := ins[0].Value.Clone().(*tensor.Dense) // same values, other array
	other := run("other x", otherX)
	if err := tol.Float64.CheckSlice("spent cache", spent, cached); err != nil {
		t.Error(err)
	}
	if err := tol.Float64.CheckSlice("other x", other, cached); err != nil {
		t.Error(err)
	}
	if op.cache.hits != 1 {
		t.Errorf("%d cache hits after two misses, want 1", op.cache.hits)
	}
}

// TestSwiGLUCacheInGraph checks that a TapeMachine hands the backward the
// very arrays the forward read, so the cache is used on every step.
func TestSwiGLUCacheInGraph(t *testing.T) {
	ins := swigluInputs(7)
	g := G.NewGraph()
	nodes := make([]*G.Node, 4)
	for i, in := range ins {
		nodes[i] = G.NewMatrix(g, tensor.Float32, G.WithShape(in.Value.Shape()...), G.WithName(in.Name), G.WithValue(toDtype(in.Value, tensor.Float32)))
	}
	y, err := SwiGLU(nodes[0], nodes[1], nodes[2], nodes[3])
	if err != nil {
		t.Fatal(err)
	}
	if _, err := G.Grad(G.Must(G.Sum(y)), nodes...); err != nil {
		t.Fatal(err)
	}
	vm := G.NewTapeMachine(g)
	defer vm.Close()
	for step := 1; step <= 3; step++ {
		vm.Reset()
		if err := vm.RunAll(); err != nil {
			t.Fatal(err)
		}
		if hits := y.Op().(*swigluOp).cache.hits; hits != step {
			t.Fatalf("after step %d: %d cache hits, want %d", step, hits, step)
		}
	}
}

// TestSwiGLUEvalMatchesTraining: an op without a backward (an evaluation
// graph) runs in row blocks (swigluEval) and must give the differentiated
// op's output (within a few ulp: the blocks' products sum in another
// order), keep nothing for a backward, and leave a backward that is handed
// its inputs anyway to recompute. Row counts that are not a multiple of
// the block, and the science shape, are covered.
func TestSwiGLUEvalMatchesTraining(t *testing.T) {
	for _, c := range []struct{ n, d, f int }{{1, 6, 4}, {100, 16, 12}, {2048, 128, 344}} {
		for _, dt := range []tensor.Dtype{tensor.Float32, tensor.Float64} {
			r := rand.New(rand.NewPCG(uint64(c.n), 9))
			ins := []G.Value{
				toDtype(gradcheck.Rand(r, 1, c.n, c.d), dt), toDtype(gradcheck.Rand(r, 0.3, c.f, c.d), dt),
				toDtype(gradcheck.Rand(r, 0.3, c.f, c.d), dt), toDtype(gradcheck.Rand(r, 0.3, c.d, c.f), dt),
			}
			if !swigluBlocked(dt, c.d, c.f) {
				continue
			}
			train := &swigluOp{base: base{name: "SwiGLU", arity: 4}, cache: &swigluCache{}, differentiated: true}
			eval := &swigluOp{base: base{name: "SwiGLU", arity: 4}, cache: &swigluCache{}}
			want, err := train.Do(ins...)
			if err != nil {
				t.Fatal(err)
			}
			got, err := eval.Do(ins...)
			if err != nil {
				t.Fatal(err)
			}
			// Products of another row count and another operand layout
			// may sum in another order (oneDNN picks its kernel by shape,
			// gonum's float64 kernels by layout): a few ulp apart.
			tl := tol.Tol{Abs: 1e-14, Rel: 1e-12}
			if dt == tensor.Float32 {
				tl = tol.Tol{Abs: 1e-5, Rel: 1e-5} // y is of order 1 here
			}
			if err := tl.CheckSlice(fmt.Sprintf("%v n=%d d=%d f=%d", dt, c.n, c.d, c.f), widen(got.Data()), widen(want.Data())); err != nil {
				t.Error(err)
			}
			if eval.cache.valid || eval.cache.gu != nil {
				t.Errorf("%v n=%d: an evaluation op kept activations", dt, c.n)
			}
			// A backward handed the evaluation op's cache anyway recomputes
			// and gives the training op's gradients.
			dy := toDtype(gradcheck.Rand(r, 1, c.n, c.d), dt)
			bin := append(append([]G.Value(nil), ins...), dy)
			wantG, err := (&swigluBackward{base: base{name: "SwiGLUBackward", arity: 5}, cache: train.cache}).Do(bin...)
			if err != nil {
				t.Fatal(err)
			}
			gotG, err := (&swigluBackward{base: base{name: "SwiGLUBackward", arity: 5}, cache: eval.cache}).Do(bin...)
			if err != nil {
				t.Fatal(err)
			}
			if err := tl.CheckSlice(fmt.Sprintf("%v n=%d gradients", dt, c.n), widen(gotG.Data()), widen(wantG.Data())); err != nil {
				t.Error(err)
			}
			if train.cache.hits != 1 || eval.cache.hits != 0 {
				t.Errorf("%v n=%d: cache hits %d (training op), %d (evaluation op); want 1, 0", dt, c.n, train.cache.hits, eval.cache.hits)
			}
		}
	}
	if swigluBlocked(tensor.Float32, 256, 1024) {
		t.Error("the bench models' FFN (d = 256, f = 1024) would run in blocks")
	}
}

// TestSwiGLULargeGate: pre-activations of ±1000 must give silu ≈ relu and
// finite gradients.
func TestSwiGLULargeGate(t *testing.T) {
	ins := swigluInputs(6)
	x := ins[0].Value.Data().([]float64)
	for i := range x {
		x[i] *= 400
	}
	for _, dt := range []tensor.Dtype{tensor.Float64, tensor.Float32} {
		got, grads := runOpGraph(t, dt, ins, buildSwiGLU)
		for _, vs := range append([][]float64{got}, grads["x"], grads["wg"], grads["wu"], grads["wd"]) {
			for i, v := range vs {
				if math.IsNaN(v) || math.IsInf(v, 0) {
					t.Fatalf("%v: non-finite value %v at %d", dt, v, i)
				}
			}
		}
	}
}

func TestSwiGLUShapeError(t *testing.T) {
	g := G.NewGraph()
	m := func(name string, r, c int) *G.Node {
		return G.NewMatrix(g, tensor.Float64, G.WithShape(r, c), G.WithName(name))
	}
	if _, err := SwiGLU(m("x", 5, 6), m("wg", 4, 6), m("wu", 4, 6), m("wd", 4, 6)); err == nil {
		t.Error("SwiGLU accepted wd [4 6] for d=6, f=4")
	}
}

// TestEvalBlocksBF16ProductsSkipRowTiles: with bfloat16 products on, the
// evaluation passes' row blocks (swigluEval, ceRows) take the library's
// bfloat16 GEMM as every other product does, not the float32 row tiles:
// the same bits with the tiles allowed as with them off.
func TestEvalBlocksBF16ProductsSkipRowTiles(t *testing.T) {
	bf16WithRowTiles(t)
	const n, d, f, v = 100, 16, 12, 40
	r := rand.New(rand.NewPCG(12, 13))
	rnd := func(scale float64, k int) []float32 {
		x := make([]float32, k)
		for i := range x {
			x[i] = float32(scale * r.NormFloat64())
		}
		return x
	}
	x, wg, wu, wd, head := rnd(1, n*d), rnd(0.3, f*d), rnd(0.3, f*d), rnd(0.3, d*f), rnd(0.3, v*d)
	targets := make([]int, n)
	for i := range targets {
		targets[i] = r.IntN(v)
	}
	var ys [2][]float32
	var nlls [2][]float64
	for i, rows := range []bool{false, true} {
		rowsProducts = rows
		ys[i], nlls[i] = make([]float32, n*d), make([]float64, n)
		swigluEval(ys[i], x, wg, wu, wd, n, d, f)
		ceRows(nlls[i], x, head, targets, n, d, v)
	}
	if !slices.Equal(ys[0], ys[1]) {
		t.Error("bf16 products: swigluEval differs with the row tiles allowed")
	}
	if !slices.Equal(nlls[0], nlls[1]) {
		t.Error("bf16 products: ceRows differs with the row tiles allowed")
	}
}
