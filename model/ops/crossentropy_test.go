package ops

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"

	"github.com/moetrain/moetrain/internal/blas"
	"github.com/moetrain/moetrain/internal/gradcheck"
	"github.com/moetrain/moetrain/internal/tol"
)

func buildCE(_ *G.ExprGraph, in []*G.Node) (*G.Node, error) {
	return LMHeadCrossEntropy(in[0], in[1], in[2])
}

// ceInputs: x [n, d] of scale xs, w [v, d] of scale 1, targets drawn in [0, v).
func ceInputs(seed uint64, n, d, v int, xs float64) []gradcheck.Input {
	r := rand.New(rand.NewPCG(seed, 9))
	t := make([]int, n)
	for i := range t {
		t[i] = r.IntN(v)
	}
	return []gradcheck.Input{
		{Name: "x", Value: gradcheck.Rand(r, xs, n, d), Diff: true},
		{Name: "w", Value: gradcheck.Rand(r, 1, v, d), Diff: true},
		{Name: "targets", Value: intTensor(t...)},
	}
}

// ceDirect computes the mean loss, dx and dw of the mean loss from the
// textbook formulas over full float64 logits.
func ceDirect(x, w []float64, targets []int, n, d, v int) (loss float64, dx, dw []float64) {
	dx, dw = make([]float64, n*d), make([]float64, v*d)
	for i := 0; i < n; i++ {
		z := make([]float64, v)
		m := math.Inf(-1)
		for o := range z {
			for k := 0; k < d; k++ {
				z[o] += x[i*d+k] * w[o*d+k]
			}
			m = math.Max(m, z[o])
		}
		var s float64
		for _, zo := range z {
			s += math.Exp(zo - m)
		}
		lse := m + math.Log(s)
		loss += (lse - z[targets[i]]) / float64(n)
		for o, zo := range z {
			dl := math.Exp(zo - lse)
			if o == targets[i] {
				dl--
			}
			dl /= float64(n)
			for k := 0; k < d; k++ {
				dx[i*d+k] += dl * w[o*d+k]
				dw[o*d+k] += dl * x[i*d+k]
			}
		}
	}
	return loss, dx, dw
}

func TestCEGradient(t *testing.T) {
	gradcheck.Check(t, 18, ceInputs(1, 5, 6, 7, 1), buildCE, gradcheck.Default)
}

// TestCEGradientScaled feeds the backward an incoming gradient other than 1
// (the loss enters a larger cost with weight 2.5).
func TestCEGradientScaled(t *testing.T) {
	gradcheck.Check(t, 19, ceInputs(2, 5, 6, 7, 1), func(g *G.ExprGraph, in []*G.Node) (*G.Node, error) {
		l, err := LMHeadCrossEntropy(in[0], in[1], in[2])
		if err != nil {
			return nil, err
		}
		return G.Mul(l, G.NewConstant(2.5))
	}, gradcheck.Default)
}

func TestCEFloat32(t *testing.T) {
	checkOpFloat32(t, ceInputs(3, 5, 6, 7, 1), buildCE)
}

// TestCELargeLogits: logits of several hundred must give the exact
// log-sum-exp loss, finite in float64 and float32, and finite gradients.
func TestCELargeLogits(t *testing.T) {
	const n, d, v = 5, 6, 7
	ins := ceInputs(4, n, d, v, 1)
	x := ins[0].Value.Data().([]float64)
	w := ins[1].Value.Data().([]float64)
	for i := 0; i < n; i++ { // make every row's logits span about ±200
		var norm float64
		for k := 0; k < d; k++ {
			norm += x[i*d+k] * w[k]
		}
		for k := 0; k < d; k++ {
			x[i*d+k] *= 200 / math.Abs(norm)
		}
	}
	targets := ins[2].Value.Data().([]int)
	want, wantDx, wantDw := ceDirect(x, w, targets, n, d, v)
	if want < 10 {
		t.Fatalf("fixture too easy: loss %g", want)
	}
	for _, dt := range []tensor.Dtype{tensor.Float64, tensor.Float32} {
		got, grads := runOpGraph(t, dt, ins, buildCE)
		tl := tol.Float64
		if dt == tensor.Float32 {
			tl = tol.Tol{Abs: 1e-4, Rel: 1e-5} // logits of 200 carry float32 rounding of ~1e-5
		}
		if math.IsNaN(got[0]) || math.IsInf(got[0], 0) || !tl.Close(got[0], want) {
			t.Errorf("%v: loss %.10g, want %.10g", dt, got[0], want)
		}
		if dt == tensor.Float64 {
			if err := tl.CheckSlice("d/dx", grads["x"], wantDx); err != nil {
				t.Error(err)
			}
			if err := tl.CheckSlice("d/dw", grads["w"], wantDw); err != nil {
				t.Error(err)
			}
		}
		for _, g := range [][]float64{grads["x"], grads["w"]} {
			for i, v := range g {
				if math.IsNaN(v) || math.IsInf(v, 0) {
					t.Fatalf("%v: non-finite gradient %v at %d", dt, v, i)
				}
			}
		}
	}
}

// TestCEChunks uses more rows than one chunk (and a partial last chunk) and
// checks loss and gradients against full-logit formulas.
func TestCEChunks(t *testing.T) {
	const n, d, v = 2*ceChunk + 37, 3, 5
	ins := ceInputs(5, n, d, v, 2)
	x, w := ins[0].Value.Data().([]float64), ins[1].Value.Data().([]float64)
	targets := ins[2].Value.Data().([]int)
	want, wantDx, wantDw := ceDirect(x, w, targets, n, d, v)
	got, grads := runOpGraph(t, tensor.Float64, ins, buildCE)
	if !tol.Float64.Close(got[0], want) {
		t.Errorf("loss %.12g, want %.12g", got[0], want)
	}
	if err := tol.Float64.CheckSlice("d/dx", grads["x"], wantDx); err != nil {
		t.Error(err)
	}
	if err := tol.Float64.CheckSlice("d/dw", grads["w"], wantDw); err != nil {
		t.Error(err)
	}
	// TokenLogProbs is the same kernel: minus the mean of its values is the loss.
	lp := make([]float64, n)
	if err := TokenLogProbs(lp, x, w, targets, n, d, v); err != nil {
		t.Fatal(err)
	}
	var s float64
	for _, l := range lp {
		if l > 0 {
			t.Fatalf("log-probability %g > 0", l)
		}
		s -= l
	}
	if !tol.Float64.Close(s/n, want) {
		t.Errorf("-mean TokenLogProbs %.12g, want %.12g", s/n, want)
	}
}

func TestCEBadTarget(t *testing.T) {
	for _, bad := range []int{7, -2} {
		ins := ceInputs(6, 5, 6, 7, 1)
		ins[2].Value.Data().([]int)[3] = bad
		g := G.NewGraph()
		x := G.NewMatrix(g, tensor.Float64, G.WithShape(5, 6), G.WithName("x"), G.WithValue(ins[0].Value))
		w := G.NewMatrix(g, tensor.Float64, G.WithShape(7, 6), G.WithName("w"), G.WithValue(ins[1].Value))
		tg := G.NewVector(g, tensor.Int, G.WithShape(5), G.WithName("targets"), G.WithValue(ins[2].Value))
		if _, err := LMHeadCrossEntropy(x, w, tg); err != nil {
			t.Fatal(err)
		}
		vm := G.NewTapeMachine(g)
		err := vm.RunAll()
		vm.Close()
		if err == nil || !strings.Contains(err.Error(), "outside [0, 7)") {
			t.Errorf("target %d: got error %v, want one naming the range [0, 7)", bad, err)
		}
	}
	lp := make([]float64, 2)
	if err := TokenLogProbs(lp, make([]float32, 4), make([]float32, 6), []int{0, 3}, 2, 2, 3); err == nil {
		t.Error("TokenLogProbs accepted target 3 with v=3")
	}
	if err := TokenLogProbs(lp, make([]float32, 4), make([]float32, 6), []int{0}, 2, 2, 3); err == nil {
		t.Error("TokenLogProbs accepted 1 target for 2 rows")
	}
}

// TestTokenLogProbsFloat32 checks the float32 evaluation path against float64.
func TestTokenLogProbsFloat32(t *testing.T) {
	const n, d, v = 9, 6, 7
	ins := ceInputs(7, n, d, v, 1)
	x, w := ins[0].Value.Data().([]float64), ins[1].Value.Data().([]float64)
	targets := ins[2].Value.Data().([]int)
	want, got := make([]float64, n), make([]float64, n)
	if err := TokenLogProbs(want, x, w, targets, n, d, v); err != nil {
		t.Fatal(err)
	}
	x32 := toDtype(ins[0].Value, tensor.Float32).Data().([]float32)
	w32 := toDtype(ins[1].Value, tensor.Float32).Data().([]float32)
	if err := TokenLogProbs(got, x32, w32, targets, n, d, v); err != nil {
		t.Fatal(err)
	}
	if err := float32Tol.CheckSlice("log-probs", got, want); err != nil {
		t.Error(err)
	}
}

func TestLogitsRows(t *testing.T) {
	ins := linearInputs(8, 4) // x [5, 6], w [4, 6]
	want, _ := runOpGraph(t, tensor.Float64, ins, buildLinear)
	got := make([]float64, 5*4)
	LogitsRows(got, ins[0].Value.Data().([]float64), ins[1].Value.Data().([]float64), 5, 6, 4)
	if err := tol.Float64.CheckSlice("logits", got, want); err != nil {
		t.Error(err)
	}
}

// TestCEEagerCache runs the ops directly in float32: the eager forward gives
// the plain forward's loss, and the backward from its cache (scaled by an
// incoming gradient of 1.7) equals a recomputation, which is what it falls
// back to when the cache is spent or x is another array.
func TestCEEagerCache(t *testing.T) {
	const n, d, v = ceChunk + 9, 6, 7
	ins := ceInputs(9, n, d, v, 1)
	x := toDtype(ins[0].Value, tensor.Float32)
	w := toDtype(ins[1].Value, tensor.Float32)
	tg := ins[2].Value
	dloss := G.NewF32(1.7)
	plain := &ceOp{base: base{name: "LMHeadCrossEntropy", arity: 3}, cache: &ceCache{}}
	eager := &ceOp{base: base{name: "LMHeadCrossEntropy", arity: 3}, cache: &ceCache{eager: true}}
	bwd := &ceBackward{base: base{name: "LMHeadCrossEntropyBackward", arity: 4}, cache: eager.cache}
	lp, err := plain.Do(x, w, tg)
	if err != nil {
		t.Fatal(err)
	}
	le, err := eager.Do(x, w, tg)
	if err != nil {
		t.Fatal(err)
	}
	if lp.Data() != le.Data() {
		t.Errorf("eager loss %v, plain loss %v", le.Data(), lp.Data())
	}
	backward := func(name string, xv *tensor.Dense) []float64 {
		t.Helper()
		p, err := bwd.Do(xv, w, tg, dloss)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		return widen(p.Data())
	}
	cached := backward("cached", x)
	if eager.cache.hits != 1 {
		t.Errorf("%d cache hits after forward+backward, want 1", eager.cache.hits)
	}
	spent := backward("spent", x)
	if _, err := eager.Do(x, w, tg); err != nil {
		t.Fatal(err)
	}
	other := backward("other x", x.Clone().(*tensor.Dense))
	if eager.cache.hits != 1 {
		t.Errorf("%d cache hits after two misses, want 1", eager.cache.hits)
	}
	if err := float32Tol.CheckSlice("spent cache", spent, cached); err != nil {
		t.Error(err)
	}
	if err := float32Tol.CheckSlice("other x", other, cached); err != nil {
		t.Error(err)
	}
}

// TestCECacheInGraph checks that Grad switches the op to eager gradients and
// that a TapeMachine's backward finds them on every step.
func TestCECacheInGraph(t *testing.T) {
	ins := ceInputs(10, 5, 6, 7, 1)
	g := G.NewGraph()
	x := G.NewMatrix(g, tensor.Float32, G.WithShape(5, 6), G.WithName("x"), G.WithValue(toDtype(ins[0].Value, tensor.Float32)))
	w := G.NewMatrix(g, tensor.Float32, G.WithShape(7, 6), G.WithName("w"), G.WithValue(toDtype(ins[1].Value, tensor.Float32)))
	tg := G.NewVector(g, tensor.Int, G.WithShape(5), G.WithName("targets"), G.WithValue(ins[2].Value))
	l, err := LMHeadCrossEntropy(x, w, tg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := G.Grad(l, x, w); err != nil {
		t.Fatal(err)
	}
	vm := G.NewTapeMachine(g)
	defer vm.Close()
	for step := 1; step <= 3; step++ {
		vm.Reset()
		if err := vm.RunAll(); err != nil {
			t.Fatal(err)
		}
		if hits := l.Op().(*ceOp).cache.hits; hits != step {
			t.Fatalf("after step %d: %d cache hits, want %d", step, hits, step)
		}
	}
}

// The evaluation rows (ceRows: for a small head, chunks on the workers,
// serial products against a transposed copy of w) give the training
// kernel's loss terms bit for bit, so an evaluation loss equals the
// training loss.
func TestCEEvalMatchesTraining(t *testing.T) {
	blas.Init()
	// The last head (717 KB) takes the path for heads too large for L2.
	for _, sh := range [][3]int{{2048, 128, 258}, {37, 128, 258}, {300, 128, 258}, {300, 128, 1400}} {
		n, d, v := sh[0], sh[1], sh[2]
		r := rand.New(rand.NewPCG(1, 2))
		x, w := make([]float32, n*d), make([]float32, v*d)
		for i := range x {
			x[i] = float32(r.NormFloat64())
		}
		for i := range w {
			w[i] = float32(r.NormFloat64() * 0.1)
		}
		tg := make([]int, n)
		for i := range tg {
			tg[i] = r.IntN(v)
		}
		a, b := make([]float64, n), make([]float64, n)
		ceRows(a, x, w, tg, n, d, v)
		ceGradKernel(b, make([]float32, n*d), make([]float32, v*d), x, w, tg, n, d, v, 1)
		for i := range a {
			if a[i] != b[i] {
				t.Fatalf("n=%d: row %d: evaluation %v, training %v", n, i, a[i], b[i])
			}
		}
	}
}
