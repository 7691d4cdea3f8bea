package ops

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"

	"github.com/moetrain/moetrain/internal/blas"
	"github.com/moetrain/moetrain/internal/gradcheck"
	"github.com/moetrain/moetrain/internal/parallel"
	"github.com/moetrain/moetrain/internal/tol"
)

// attnCase is one set of sizes; T above attnBlock exercises the blocked
// causal products.
type attnCase struct {
	name         string
	b, t, h, dh  int
	theta, scale float64
}

var attnCases = []attnCase{
	{"tiny", 2, 4, 2, 4, 10000, 1},
	{"blocks", 2, 70, 3, 6, 500, 1},
	{"exact-block", 1, 128, 2, 8, 10000, 0.5},
}

func attnInputs(seed uint64, c attnCase) (q, k, v *tensor.Dense) {
	r := rand.New(rand.NewPCG(seed, 7))
	n := c.b * c.t
	return gradcheck.Rand(r, c.scale, n, c.h*c.dh), gradcheck.Rand(r, c.scale, n, c.h*c.dh), gradcheck.Rand(r, c.scale, n, c.h*c.dh)
}

// runForward applies the op directly (no graph) to q, k, v.
func runForward(t testing.TB, c attnCase, q, k, v *tensor.Dense) *tensor.Dense {
	t.Helper()
	op := newAttentionOp(c.b, c.t, c.h, c.dh, c.theta)
	y, err := op.Do(q, k, v)
	if err != nil {
		t.Fatalf("forward: %v", err)
	}
	return y.(*tensor.Dense)
}

// backwardOf is the backward op SymDiff builds for op, sharing its P cache
// (and, like SymDiff, marks op as differentiated, so its forward keeps P).
func backwardOf(op *attentionOp) *attentionBackward {
	op.differentiated = true
	return &attentionBackward{base: base{name: "AttentionBackward", arity: 4, key: op.key}, attnDims: op.attnDims, rope: op.rope, probs: op.probs}
}

// runBackward returns the packed [dq | dk | dv] for upstream gradient dy,
// recomputing P (a fresh op has no cached forward).
func runBackward(t testing.TB, c attnCase, q, k, v, dy *tensor.Dense) *tensor.Dense {
	t.Helper()
	p, err := backwardOf(newAttentionOp(c.b, c.t, c.h, c.dh, c.theta)).Do(q, k, v, dy)
	if err != nil {
		t.Fatalf("backward: %v", err)
	}
	return p.(*tensor.Dense)
}

// naiveAttention is the reference written straight from DESIGN.md §1 with
// explicit loops: build C = [cos, cos], S = [sin, sin], rotate_half, scores,
// masked softmax and P·v per sequence and head.
func naiveAttention(q, k, v []float64, B, T, H, dh int, theta float64) []float64 {
	W := H * dh
	out := make([]float64, B*T*W)
	rope := func(x []float64, p int) []float64 {
		C, S := make([]float64, dh), make([]float64, dh)
		for j := 0; j < dh/2; j++ {
			inv := 1 / math.Pow(theta, float64(2*j)/float64(dh))
			C[j], C[j+dh/2] = math.Cos(float64(p)*inv), math.Cos(float64(p)*inv)
			S[j], S[j+dh/2] = math.Sin(float64(p)*inv), math.Sin(float64(p)*inv)
		}
		rot := make([]float64, dh)
		for j := 0; j < dh/2; j++ {
			rot[j] = -x[dh/2+j]
			rot[dh/2+j] = x[j]
		}
		y := make([]float64, dh)
		for j := range y {
			y[j] = x[j]*C[j] + rot[j]*S[j]
		}
		return y
	}
	head := func(x []float64, b, t, h int) []float64 {
		off := (b*T+t)*W + h*dh
		return x[off : off+dh]
	}
	for b := 0; b < B; b++ {
		for h := 0; h < H; h++ {
			for i := 0; i < T; i++ {
				qi := rope(head(q, b, i, h), i)
				scores := make([]float64, i+1)
				m := math.Inf(-1)
				for j := 0; j <= i; j++ {
					kj := rope(head(k, b, j, h), j)
					for d := 0; d < dh; d++ {
						scores[j] += qi[d] * kj[d]
					}
					scores[j] /= math.Sqrt(float64(dh))
					m = math.Max(m, scores[j])
				}
				var z float64
				for j := range scores {
					scores[j] = math.Exp(scores[j] - m)
					z += scores[j]
				}
				o := head(out, b, i, h)
				for j := 0; j <= i; j++ {
					vj := head(v, b, j, h)
					for d := 0; d < dh; d++ {
						o[d] += scores[j] / z * vj[d]
					}
				}
			}
		}
	}
	return out
}

func TestAttentionMatchesNaive(t *testing.T) {
	for i, c := range attnCases {
		t.Run(c.name, func(t *testing.T) {
			q, k, v := attnInputs(uint64(i), c)
			got := widen(runForward(t, c, q, k, v))
			want := naiveAttention(widen(q), widen(k), widen(v), c.b, c.t, c.h, c.dh, c.theta)
			if err := (tol.Tol{Abs: 1e-12, Rel: 1e-12}).CheckSlice("attention", got, want); err != nil {
				t.Error(err)
			}
		})
	}
}

func TestAttentionGradient(t *testing.T) {
	cases := []attnCase{
		attnCases[0],
		// T = 66 spans two query blocks; one head of width 2 keeps the
		// finite-difference loop short.
		{"blocks", 1, 66, 1, 2, 100, 1},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			q, k, v := attnInputs(uint64(10+i), c)
			gradcheck.Check(t, 5, []gradcheck.Input{
				{Name: "q", Value: q, Diff: true},
				{Name: "k", Value: k, Diff: true},
				{Name: "v", Value: v, Diff: true},
			}, func(g *G.ExprGraph, in []*G.Node) (*G.Node, error) {
				return Attention(in[0], in[1], in[2], c.b, c.t, c.h, c.theta)
			}, gradcheck.Default)
		})
	}
}

// TestAttentionFloat32 checks the float32 forward and backward against float64
// on the same inputs, with heads of width 8 (scalar RoPE) and 32 (the
// vector kernels' rows).
func TestAttentionFloat32(t *testing.T) {
	for _, dh := range []int{8, 32} {
		testAttentionFloat32(t, attnCase{"f32", 2, 80, 2, dh, 10000, 1})
	}
	// The fused kernels' shapes (fusedAttention): heads of one to four
	// column chunks, one block and two.
	for _, c := range []attnCase{{"f32-16", 1, 48, 3, 16, 10000, 1}, {"f32-64", 2, 128, 2, 64, 10000, 1}, {"f32-32", 1, 128, 2, 32, 500, 1}, {"f32-48", 1, 32, 2, 48, 10000, 1}} {
		testAttentionFloat32(t, c)
	}
}

func testAttentionFloat32(t *testing.T, c attnCase) {
	q, k, v := attnInputs(3, c)
	dy := gradcheck.Rand(rand.New(rand.NewPCG(4, 4)), 1, c.b*c.t, c.h*c.dh)
	y64 := widen(runForward(t, c, q, k, v))
	y32 := widen(runForward(t, c, toDtype(q, tensor.Float32), toDtype(k, tensor.Float32), toDtype(v, tensor.Float32)))
	if err := tol.CheckScaled("forward", y32, y64, 1e-5); err != nil {
		t.Error(err)
	}
	g64 := widen(runBackward(t, c, q, k, v, dy))
	g32 := widen(runBackward(t, c, toDtype(q, tensor.Float32), toDtype(k, tensor.Float32), toDtype(v, tensor.Float32), toDtype(dy, tensor.Float32)))
	n := len(g64) / 3
	for i, name := range []string{"dq", "dk", "dv"} {
		if err := tol.CheckScaled(name, g32[i*n:(i+1)*n], g64[i*n:(i+1)*n], 1e-5); err != nil {
			t.Error(err)
		}
	}
}

// TestAttentionCausal changes the tokens after position t0 of one sequence:
// outputs up to t0 (and the other sequence) must not move, and the output
// just after t0 must. The float32 case runs the fused kernels where the
// CPU has them (fusedAttention), with t0 inside an 8-row tile whose scores
// are computed past the diagonal.
func TestAttentionCausal(t *testing.T) {
	for _, tc := range []struct {
		c  attnCase
		t0 int
		dt tensor.Dtype
	}{
		{attnCase{"causal", 2, 70, 2, 4, 10000, 1}, 40, tensor.Float64},
		{attnCase{"causal-f32", 2, 128, 2, 32, 10000, 1}, 43, tensor.Float32},
	} {
		c, t0 := tc.c, tc.t0
		q, k, v := attnInputs(5, c)
		q, k, v = toDtype(q, tc.dt), toDtype(k, tc.dt), toDtype(v, tc.dt)
		y0 := widen(runForward(t, c, q, k, v))
		w := c.h * c.dh
		r := rand.New(rand.NewPCG(6, 6))
		for _, x := range []*tensor.Dense{q, k, v} {
			for i := (t0 + 1) * w; i < c.t*w; i++ { // sequence 0, rows t0+1..T-1
				switch d := x.Data().(type) {
				case []float64:
					d[i] = 3 * (2*r.Float64() - 1)
				case []float32:
					d[i] = float32(3 * (2*r.Float64() - 1))
				}
			}
		}
		y1 := widen(runForward(t, c, q, k, v))
		exact := tol.Tol{}
		if err := exact.CheckSlice(c.name+": seq 0 up to t0", y1[:(t0+1)*w], y0[:(t0+1)*w]); err != nil {
			t.Error(err)
		}
		if err := exact.CheckSlice(c.name+": seq 1", y1[c.t*w:], y0[c.t*w:]); err != nil {
			t.Error(err)
		}
		if exact.CheckSlice("seq 0 at t0+1", y1[(t0+1)*w:(t0+2)*w], y0[(t0+1)*w:(t0+2)*w]) == nil {
			t.Errorf("%s: output at t0+1 did not change when its own token changed", c.name)
		}
	}
}

// TestAttentionLargeScores uses entries of ±100 (scores ~1e4): the output
// must stay finite and, being a convex combination of visible values, inside
// their range; the gradients must stay finite.
func TestAttentionLargeScores(t *testing.T) {
	c := attnCase{"large", 2, 70, 2, 8, 10000, 100}
	q, k, v := attnInputs(7, c)
	dy := gradcheck.Rand(rand.New(rand.NewPCG(8, 8)), 1, c.b*c.t, c.h*c.dh)
	for _, f32 := range []bool{false, true} {
		qq, kk, vv, gg := q, k, v, dy
		if f32 {
			qq, kk, vv, gg = toDtype(q, tensor.Float32), toDtype(k, tensor.Float32), toDtype(v, tensor.Float32), toDtype(dy, tensor.Float32)
		}
		y := widen(runForward(t, c, qq, kk, vv))
		vs := widen(v)
		w := c.h * c.dh
		for b := 0; b < c.b; b++ {
			for col := 0; col < w; col++ {
				lo, hi := math.Inf(1), math.Inf(-1)
				for i := 0; i < c.t; i++ {
					row := (b*c.t + i) * w
					lo, hi = math.Min(lo, vs[row+col]), math.Max(hi, vs[row+col])
					// slack: float32 rounding of values of size 100
					if got := y[row+col]; !(got >= lo-1e-2 && got <= hi+1e-2) {
						t.Fatalf("f32=%v: y[b=%d,t=%d,col=%d] = %g outside visible v range [%g, %g]", f32, b, i, col, got, lo, hi)
					}
				}
			}
		}
		for i, g := range widen(runBackward(t, c, qq, kk, vv, gg)) {
			if math.IsNaN(g) || math.IsInf(g, 0) {
				t.Fatalf("f32=%v: packed gradient [%d] = %g", f32, i, g)
			}
		}
	}
}

// decode runs every sequence token by token with ApplyRoPE and a growing KV
// cache, the way generation will.
func decode[F Float](q, k, v []F, c attnCase) []F {
	w := c.h * c.dh
	out := make([]F, len(q))
	for b := 0; b < c.b; b++ {
		var kCache, vCache []F
		for p := 0; p < c.t; p++ {
			row := (b*c.t + p) * w
			qt := append([]F(nil), q[row:row+w]...)
			kt := append([]F(nil), k[row:row+w]...)
			ApplyRoPE(qt, p, c.h, c.dh, c.theta)
			ApplyRoPE(kt, p, c.h, c.dh, c.theta)
			kCache = append(kCache, kt...)
			vCache = append(vCache, v[row:row+w]...)
			AttendOne(out[row:row+w], qt, kCache, vCache, p+1, c.h, c.dh)
		}
	}
	return out
}

// TestAttendOneMatchesOp compares decoding with the op's rows.
func TestAttendOneMatchesOp(t *testing.T) {
	c := attnCases[1]
	q, k, v := attnInputs(9, c)
	want := widen(runForward(t, c, q, k, v))
	got := decode(widen(q), widen(k), widen(v), c)
	if err := (tol.Tol{Abs: 1e-12, Rel: 1e-12}).CheckSlice("decode float64", got, want); err != nil {
		t.Error(err)
	}
	q32, k32, v32 := toDtype(q, tensor.Float32), toDtype(k, tensor.Float32), toDtype(v, tensor.Float32)
	want32 := widen(runForward(t, c, q32, k32, v32))
	got32 := widen(tensor.New(tensor.WithBacking(decode(slice[float32](q32), slice[float32](k32), slice[float32](v32), c))))
	if err := tol.CheckScaled("decode float32", got32, want32, 1e-5); err != nil {
		t.Error(err)
	}
}

func TestAttentionShapeErrors(t *testing.T) {
	tests := []struct {
		name              string
		q, k, v           []int
		batch, seq, heads int
	}{
		{"heads do not divide width", []int{8, 6}, []int{8, 6}, []int{8, 6}, 2, 4, 4},
		{"odd head width", []int{8, 6}, []int{8, 6}, []int{8, 6}, 2, 4, 2},
		{"rows not batch·seq", []int{8, 8}, []int{8, 8}, []int{8, 8}, 3, 4, 2},
		{"k differs", []int{8, 8}, []int{8, 4}, []int{8, 8}, 2, 4, 2},
		{"v differs", []int{8, 8}, []int{8, 8}, []int{4, 8}, 2, 4, 2},
		{"zero heads", []int{8, 8}, []int{8, 8}, []int{8, 8}, 2, 4, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			g := G.NewGraph()
			mk := func(name string, s []int) *G.Node {
				return G.NewMatrix(g, tensor.Float64, G.WithShape(s...), G.WithName(name))
			}
			if _, err := Attention(mk("q", tc.q), mk("k", tc.k), mk("v", tc.v), tc.batch, tc.seq, tc.heads, 10000); err == nil {
				t.Error("got nil error, want a shape error")
			}
		})
	}
}

// Benchmarks of attention at benchShapes (bench: B=8, T=256, H=4, dh=64;
// sci: B=16, T=128, H=4, dh=32), float32. GFLOP/s counts the causal half
// of each T×T×dh product (T²·dh·2/2 per product per head): 2 products
// forward, 4 more backward.
func benchmarkAttention(b *testing.B, backward bool) {
	forShapes(b, func(b *testing.B, sh benchShape) {
		benchmarkAttentionAt(b, attnCase{sh.name, sh.b, sh.t, sh.h, sh.d / sh.h, 10000, 1}, backward)
	})
}

func benchmarkAttentionAt(b *testing.B, c attnCase, backward bool) {
	q, k, v := attnInputs(11, c)
	dy := gradcheck.Rand(rand.New(rand.NewPCG(12, 12)), 1, c.b*c.t, c.h*c.dh)
	q32, k32, v32, dy32 := toDtype(q, tensor.Float32), toDtype(k, tensor.Float32), toDtype(v, tensor.Float32), toDtype(dy, tensor.Float32)
	op := newAttentionOp(c.b, c.t, c.h, c.dh, c.theta)
	bwd := backwardOf(op) // uses the P cached by op.Do, as in training
	products := 2.0
	if backward {
		products = 6
	}
	flops := products * float64(c.b*c.h) * float64(c.t*c.t*c.dh)
	info, err := blas.Init() // OpenBLAS when present, else pure Go
	if err != nil {
		b.Fatal(err)
	}
	b.Logf("sgemm kernel: %s", info)
	run := func() {
		if _, err := op.Do(q32, k32, v32); err != nil {
			b.Fatal(err)
		}
		if backward {
			if _, err := bwd.Do(q32, k32, v32, dy32); err != nil {
				b.Fatal(err)
			}
		}
	}
	run() // warm up
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		run()
	}
	b.ReportMetric(flops*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
}

func BenchmarkAttentionForward(b *testing.B)         { benchmarkAttention(b, false) }
func BenchmarkAttentionForwardBackward(b *testing.B) { benchmarkAttention(b, true) }

// TestExp32 compares exp32 with math.Exp over the softmax range.
func TestExp32(t *testing.T) {
	tl := tol.Tol{Rel: 3e-7}
	for x := -87.0; x <= 0; x += 0.0137 {
		got, want := float64(exp32(float32(x))), math.Exp(float64(float32(x)))
		if !tl.Close(got, want) {
			t.Fatalf("exp32(%g) = %.9g, want %.9g", x, got, want)
		}
	}
	if got := exp32(-1000); got != 0 {
		t.Errorf("exp32(-1000) = %g, want 0", got)
	}
	if got := exp32(0); got != 1 {
		t.Errorf("exp32(0) = %g, want 1", got)
	}
}

// TestAttentionDeterministic runs forward and backward on 1 and 3 workers:
// every bit must agree, since no sum depends on how pairs are split.
func TestAttentionDeterministic(t *testing.T) {
	defer func(w int) { parallel.Workers = w }(parallel.Workers)
	c := attnCase{"det", 2, 70, 3, 8, 10000, 1}
	q, k, v := attnInputs(13, c)
	dy := gradcheck.Rand(rand.New(rand.NewPCG(14, 14)), 1, c.b*c.t, c.h*c.dh)
	q, k, v, dy = toDtype(q, tensor.Float32), toDtype(k, tensor.Float32), toDtype(v, tensor.Float32), toDtype(dy, tensor.Float32)
	var runs [][]float64
	for _, w := range []int{1, 3} {
		parallel.Workers = w
		runs = append(runs, append(widen(runForward(t, c, q, k, v)), widen(runBackward(t, c, q, k, v, dy))...))
	}
	if err := (tol.Tol{}).CheckSlice("1 vs 3 workers", runs[1], runs[0]); err != nil {
		t.Error(err)
	}
}

// TestAttentionCachedProbs checks that the backward gives the same bits with
// the forward's cached P as with a recomputed one, and that the cache is used
// only once: after q is rewritten in place, a second backward must recompute.
func TestAttentionCachedProbs(t *testing.T) {
	// The second case's float32 heads take the fused kernels where the CPU
	// has them (fusedAttention).
	for _, c := range []attnCase{{"cache", 2, 70, 2, 8, 10000, 1}, {"cache-fused", 2, 64, 2, 16, 10000, 1}} {
		testAttentionCachedProbs(t, c)
	}
}

func testAttentionCachedProbs(t *testing.T, c attnCase) {
	q, k, v := attnInputs(15, c)
	dy := gradcheck.Rand(rand.New(rand.NewPCG(16, 16)), 1, c.b*c.t, c.h*c.dh)
	for _, f32 := range []bool{false, true} {
		qq, kk, vv, gg := q.Clone().(*tensor.Dense), k, v, dy
		if f32 {
			qq, kk, vv, gg = toDtype(q, tensor.Float32), toDtype(k, tensor.Float32), toDtype(v, tensor.Float32), toDtype(dy, tensor.Float32)
		}
		// Without a backward (an evaluation graph) the forward keeps no P.
		op := newAttentionOp(c.b, c.t, c.h, c.dh, c.theta)
		if _, err := op.Do(qq, kk, vv); err != nil {
			t.Fatal(err)
		}
		if op.probs.filled || op.probs.p != nil || op.probs.qr != nil {
			t.Errorf("f32=%v: a forward-only op kept P or q'", f32)
		}
		bwd := backwardOf(op)
		if _, err := op.Do(qq, kk, vv); err != nil {
			t.Fatal(err)
		}
		if !op.probs.filled {
			t.Errorf("f32=%v: a differentiated op's forward did not keep P", f32)
		}
		got, err := bwd.Do(qq, kk, vv, gg)
		if err != nil {
			t.Fatal(err)
		}
		if op.probs.filled {
			t.Errorf("f32=%v: cache still marked filled after the backward used it", f32)
		}
		want := runBackward(t, c, qq, kk, vv, gg)
		if err := (tol.Tol{}).CheckSlice("cached vs recomputed", widen(got.(*tensor.Dense)), widen(want)); err != nil {
			t.Errorf("f32=%v: %v", f32, err)
		}
		switch d := qq.Data().(type) {
		case []float32:
			d[3] += 0.5
		case []float64:
			d[3] += 0.5
		}
		got2, err := bwd.Do(qq, kk, vv, gg)
		if err != nil {
			t.Fatal(err)
		}
		want2 := runBackward(t, c, qq, kk, vv, gg)
		if err := (tol.Tol{}).CheckSlice("second backward after q changed", widen(got2.(*tensor.Dense)), widen(want2)); err != nil {
			t.Errorf("f32=%v: %v", f32, err)
		}
	}
}

// rotateHead and unrotateHead (one kernel call for a head's rows) give
// rotate's and unrotate's bits row by row, and touch no other column.
func TestRotateHeadMatchesRowByRow(t *testing.T) {
	for _, dh := range []int{2, 16, 32, 48} {
		d := attnDims{b: 2, t: 9, h: 3, dh: dh}
		rope := newRopeTable(d.t, dh, 10000)
		r := rand.New(rand.NewPCG(3, uint64(dh)))
		x := make([]float32, d.b*d.t*d.w())
		for i := range x {
			x[i] = float32(r.NormFloat64())
		}
		cos, sin := ropeAll[float32](rope)
		for _, back := range []bool{false, true} {
			got, want := slices.Clone(x), slices.Clone(x)
			b, h := 1, 2
			if back {
				unrotateHead(got, b, h, d, rope)
			} else {
				rotateHead(got, x, b, h, d, rope)
			}
			for tt := range d.t {
				off := d.at(b, h, d.w()) + tt*d.w()
				c, s := cos[tt*rope.half:(tt+1)*rope.half], sin[tt*rope.half:(tt+1)*rope.half]
				if back {
					unrotate(want[off:off+dh], x[off:off+dh], c, s)
				} else {
					rotate(want[off:off+dh], x[off:off+dh], c, s)
				}
			}
			for i := range got {
				if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
					t.Fatalf("dh=%d back=%v: element %d = %v, row by row %v", dh, back, i, got[i], want[i])
				}
			}
		}
	}
}

// packQKV lays q, k, v ([N, W] each) side by side: [N, 3W].
func packQKV[F Float](q, k, v []F, n, w int) []F {
	out := make([]F, 0, 3*n*w)
	for r := range n {
		out = append(append(append(out, q[r*w:(r+1)*w]...), k[r*w:(r+1)*w]...), v[r*w:(r+1)*w]...)
	}
	return out
}

// The packed form gives the separate form's output and gradients bit for
// bit, its gradient in the packed layout, with the forward's cache and
// without (recomputed P), in float32 (both RoPE paths) and float64.
func TestAttentionPackedMatchesSeparate(t *testing.T) {
	for _, dh := range []int{8, 32} {
		c := attnCase{"packed", 2, 70, 2, dh, 10000, 1}
		n, w := c.b*c.t, c.h*c.dh
		q, k, v := attnInputs(31, c)
		dy := gradcheck.Rand(rand.New(rand.NewPCG(32, 32)), 1, n, w)
		for _, f32 := range []bool{false, true} {
			qq, kk, vv, gg := q, k, v, dy
			if f32 {
				qq, kk, vv, gg = toDtype(q, tensor.Float32), toDtype(k, tensor.Float32), toDtype(v, tensor.Float32), toDtype(dy, tensor.Float32)
			}
			wq, wk, wv := widen(qq), widen(kk), widen(vv)
			packed := tensor.New(tensor.WithShape(n, 3*w), tensor.WithBacking(packQKV(wq, wk, wv, n, w)))
			if f32 {
				packed = toDtype(packed, tensor.Float32)
			}
			want := widen(runForward(t, c, qq, kk, vv))
			wantG := runBackward(t, c, qq, kk, vv, gg)
			g := widen(wantG)
			wantPacked := packQKV(g[:n*w], g[n*w:2*n*w], g[2*n*w:], n, w)
			for _, cached := range []bool{true, false} {
				op := newAttentionOp(c.b, c.t, c.h, c.dh, c.theta)
				op.packOp()
				bwd := backwardOf(op)
				bwd.arity = 2
				y, err := op.Do(packed)
				if err != nil {
					t.Fatal(err)
				}
				if !cached {
					op.probs.filled = false
				}
				got, err := bwd.Do(packed, gg)
				if err != nil {
					t.Fatal(err)
				}
				name := fmt.Sprintf("dh=%d f32=%v cached=%v", dh, f32, cached)
				if err := (tol.Tol{}).CheckSlice(name+" output", widen(y.(*tensor.Dense)), want); err != nil {
					t.Error(err)
				}
				if err := (tol.Tol{}).CheckSlice(name+" gradient", widen(got.(*tensor.Dense)), wantPacked); err != nil {
					t.Error(err)
				}
			}
		}
	}
}

func TestAttentionPackedGradient(t *testing.T) {
	c := attnCase{"packed", 1, 66, 1, 2, 100, 1}
	qkv := gradcheck.Rand(rand.New(rand.NewPCG(33, 7)), 1, c.b*c.t, 3*c.h*c.dh)
	gradcheck.Check(t, 5, []gradcheck.Input{{Name: "qkv", Value: qkv, Diff: true}}, func(g *G.ExprGraph, in []*G.Node) (*G.Node, error) {
		return AttentionPacked(in[0], c.b, c.t, c.h, c.theta)
	}, gradcheck.Default)
}

// Above maxCachedProbs the forward keeps q' and k' but not P, and the
// backward recomputes P from them: the same bits as with P cached, packed
// or not.
func TestAttentionWithoutCachedProbs(t *testing.T) {
	c := attnCase{"nop", 2, 70, 2, 32, 10000, 1}
	q, k, v := attnInputs(35, c)
	dy := gradcheck.Rand(rand.New(rand.NewPCG(36, 36)), 1, c.b*c.t, c.h*c.dh)
	q, k, v, dy = toDtype(q, tensor.Float32), toDtype(k, tensor.Float32), toDtype(v, tensor.Float32), toDtype(dy, tensor.Float32)
	run := func() []float64 {
		op := newAttentionOp(c.b, c.t, c.h, c.dh, c.theta)
		bwd := backwardOf(op)
		y, err := op.Do(q, k, v)
		if err != nil {
			t.Fatal(err)
		}
		g, err := bwd.Do(q, k, v, dy)
		if err != nil {
			t.Fatal(err)
		}
		if op.probs.p != nil && maxCachedProbs == 0 {
			t.Error("P was cached above maxCachedProbs")
		}
		return append(widen(y.(*tensor.Dense)), widen(g.(*tensor.Dense))...)
	}
	want := run()
	defer func(m int) { maxCachedProbs = m }(maxCachedProbs)
	maxCachedProbs = 0
	if err := (tol.Tol{}).CheckSlice("without cached P", run(), want); err != nil {
		t.Error(err)
	}
}

// TestAttentionPooledScratch: the heads' scratch comes from the
// activations pool unzeroed, so the op must give the same bits when the
// pool holds buffers full of NaN, on the fused kernels' path and the
// GEMM blocks' path (T = 70 is not a multiple of 16).
func TestAttentionPooledScratch(t *testing.T) {
	for _, c := range []attnCase{{"pool-fused", 2, 64, 2, 16, 10000, 1}, {"pool-blocks", 2, 70, 2, 8, 10000, 1}} {
		q, k, v := attnInputs(19, c)
		dy := gradcheck.Rand(rand.New(rand.NewPCG(20, 20)), 1, c.b*c.t, c.h*c.dh)
		q, k, v, dy = toDtype(q, tensor.Float32), toDtype(k, tensor.Float32), toDtype(v, tensor.Float32), toDtype(dy, tensor.Float32)
		y0, g0 := widen(runForward(t, c, q, k, v)), widen(runBackward(t, c, q, k, v, dy))
		for range 16 {
			for _, n := range []int{c.t * c.t, c.dh * c.t} {
				b := getScratch[float32](n)
				for i := range b {
					b[i] = float32(math.NaN())
				}
				putScratch(b)
			}
		}
		y1, g1 := widen(runForward(t, c, q, k, v)), widen(runBackward(t, c, q, k, v, dy))
		exact := tol.Tol{}
		if err := exact.CheckSlice(c.name+": forward", y1, y0); err != nil {
			t.Error(err)
		}
		if err := exact.CheckSlice(c.name+": backward", g1, g0); err != nil {
			t.Error(err)
		}
	}
}

// TestBitsKernelNamesAttentionPath: a run records the attention path with
// its BLAS kernel, so a resume on a CPU that takes the other path (whose
// sums run in another order) is told it no longer continues bit for bit.
func TestBitsKernelNamesAttentionPath(t *testing.T) {
	defer func(v, r bool) { vexp512, rowsProducts = v, r }(vexp512, rowsProducts)
	rowsProducts = false
	vexp512 = false
	without := BitsKernel("oneDNN 2.6.3 avx2", true, false)
	vexp512 = true
	with := BitsKernel("oneDNN 2.6.3 avx2", true, false)
	if without == with {
		t.Errorf("BitsKernel gives %q with and without the AVX-512 attention tiles", with)
	}
	if !strings.HasPrefix(with, "oneDNN 2.6.3 avx2") || !strings.HasPrefix(without, "oneDNN 2.6.3 avx2") {
		t.Errorf("BitsKernel dropped the BLAS kernel: %q, %q", with, without)
	}
	// The expert products' tiles, for models with routed experts only: a
	// dense run's bits do not depend on them.
	rowsProducts = true
	if moe := BitsKernel("oneDNN 2.6.3 avx2", true, false); moe == with {
		t.Errorf("BitsKernel gives %q with and without the expert rows' tiles", moe)
	}
	if dense := BitsKernel("oneDNN 2.6.3 avx2", false, false); dense != with {
		t.Errorf("BitsKernel of a dense model = %q with the expert rows' tiles, %q without", dense, with)
	}
	// bfloat16 products keep the experts off the tiles, whatever the
	// process's own setting: a run records what its training will use.
	if bf16 := BitsKernel("oneDNN 2.6.3 avx2", true, true); bf16 != with {
		t.Errorf("BitsKernel under bf16 products = %q, want the tiles left out as %q", bf16, with)
	}
}

// BenchmarkAttentionKernels times each causal kernel of attn_amd64.s alone
// on one head (T = 128, dh = 32, every operand in L1) on the calling
// goroutine, reporting its rate on the FLOPs it does: where it stands
// against the core's FMA rate. Run with e.g.
//
//	go test ./model/ops -run '^$' -bench AttentionKernels -benchtime 20000x
func BenchmarkAttentionKernels(b *testing.B) {
	if !fusedAttention[float32](attnDims{t: 128, dh: 32}) {
		b.Skip("no AVX-512 kernels here")
	}
	const T, dh = 128, 32
	p, m := make([]float32, T*T), make([]float32, T*dh)
	out := make([]float32, T*dh)
	for i := range p {
		p[i] = 0.001
	}
	for i := range m {
		m[i] = 0.5
	}
	tiles := 0 // Σ over 8-row tiles of their first query + 8 (keys or, rounded up to 16, columns)
	scoreCols, ptRows := 0, 0
	for i0 := 0; i0 < T; i0 += 8 {
		tiles += i0 + 8
		scoreCols += (i0 + 8 + 15) &^ 15
		ptRows += T - i0
	}
	for _, c := range []struct {
		name  string
		flops int
		run   func()
	}{
		{"scores", 2 * 8 * scoreCols * dh, func() { causalScores32(&p[0], T, &m[0], dh, &m[0], T, T, 0, dh, 1) }},
		{"pv", 2 * 8 * tiles * dh, func() { causalPV32(&out[0], dh, &p[0], T, &m[0], dh, T, 0, dh, 1) }},
		{"ptb", 2 * 8 * ptRows * dh, func() { causalPTB32(&out[0], dh, &p[0], T, &m[0], dh, T, dh, 1) }},
		// The causal softmax of a head's scores (no FLOP count: its rate is
		// not an FMA rate); p's values stay probabilities from run to run.
		{"softmax", 0, func() { causalSoftmax32(p, T) }},
	} {
		b.Run(c.name, func(b *testing.B) {
			for b.Loop() {
				c.run()
			}
			if c.flops > 0 {
				b.ReportMetric(float64(c.flops)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
			}
		})
	}
}
