package ops

import (
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"

	"github.com/moetrain/moetrain/internal/blas"
	"github.com/moetrain/moetrain/internal/stats"
)

// Benchmarks of the hot ops, each at two shapes (sub-benchmarks):
//
//	bench: the speed benchmark models (configs/bench/*-small.yaml): N = 2048
//	       tokens (B=8 × T=256), d = 256, f = 1024, V = 8192, E = 63
//	sci:   the science yardsticks (configs/bench/sci-*.yaml): N = 2048
//	       (B=16 × T=128), d = 128, f = 344, V = 258 (bytes), E = 63
//
// float32 throughout. Each op is timed through its Do methods, allocations
// included, as the TapeMachine calls them. GFLOP/s counts only the GEMM
// work of the formula (2·m·n·k per product), not recomputation; the
// memory-bound ops report GB/s of tensor data read plus written. Compare
// runs with benchstat:
//
//	go test ./model/ops -run '^$' -bench . -benchtime 20x -count 5 > new.txt
type benchShape struct {
	name          string
	n, d, f, v, e int
	b, t, h       int // attention: batch, sequence, heads (dh = d/h)
}

var benchShapes = []benchShape{
	{name: "bench", n: 2048, d: 256, f: 1024, v: 8192, e: 63, b: 8, t: 256, h: 4},
	{name: "sci", n: 2048, d: 128, f: 344, v: 258, e: 63, b: 16, t: 128, h: 4},
	{name: "shared", n: 2048, d: 128, f: 86, v: 258, e: 63, b: 16, t: 128, h: 4},
}

// forShapes runs fn as one sub-benchmark per shape.
func forShapes(b *testing.B, fn func(b *testing.B, s benchShape)) {
	for _, s := range benchShapes {
		b.Run(s.name, func(b *testing.B) { fn(b, s) })
	}
}

var benchBLASOnce sync.Once

// benchBLAS installs OpenBLAS when present (pure Go otherwise) once per run.
func benchBLAS(b *testing.B) {
	benchBLASOnce.Do(func() {
		info, err := blas.Init()
		if err != nil {
			b.Fatal(err)
		}
		b.Logf("sgemm kernel: %s", info)
	})
}

// benchRand is a float32 tensor with entries uniform in [-scale, scale)
// (never all zero: gonum's Sgemm skips zero entries of A and would look faster).
func benchRand(r *rand.Rand, scale float64, shape ...int) *tensor.Dense {
	n := 1
	for _, s := range shape {
		n *= s
	}
	d := make([]float32, n)
	for i := range d {
		d[i] = float32(scale * (2*r.Float64() - 1))
	}
	return tensor.New(tensor.WithShape(shape...), tensor.WithBacking(d))
}

func benchIDs(r *rand.Rand, n, v int) *tensor.Dense {
	ids := make([]int, n)
	for i := range ids {
		ids[i] = r.IntN(v)
	}
	return tensor.New(tensor.WithShape(n), tensor.WithBacking(ids))
}

// denseBench is one op's benchmark case: forward and backward ops with
// their inputs, and the work per forward and per backward call.
type denseBench struct {
	fwd, bwd         G.Op
	fwdIn, bwdIn     []G.Value
	fwdWork, bwdWork float64
	unit             string // "GFLOP/s" or "GB/s"
}

func newDenseBench(name string, sh benchShape, backward bool) denseBench {
	r := rand.New(rand.NewPCG(21, 22))
	n, d, f, v, e := float64(sh.n), float64(sh.d), float64(sh.f), float64(sh.v), float64(sh.e)
	const fl = 4 // bytes per float32
	switch name {
	case "Linear": // an attention projection, d → d
		x, w, dy := benchRand(r, 1, sh.n, sh.d), benchRand(r, 0.06, sh.d, sh.d), benchRand(r, 1, sh.n, sh.d)
		return denseBench{
			fwd: newLinearOp(1), bwd: &linearBackward{base{name: "LinearBackward", arity: 3, key: "weights=1"}},
			fwdIn: []G.Value{x, w}, bwdIn: []G.Value{x, w, dy},
			fwdWork: 2 * n * d * d, bwdWork: 4 * n * d * d, unit: "GFLOP/s",
		}
	case "SwiGLU": // the dense FFN
		// differentiated as in a training graph: the forward keeps what the backward reads
		op := &swigluOp{base: base{name: "SwiGLU", arity: 4}, cache: &swigluCache{}, differentiated: backward}
		x := benchRand(r, 1, sh.n, sh.d)
		wg, wu, wd := benchRand(r, 0.06, sh.f, sh.d), benchRand(r, 0.06, sh.f, sh.d), benchRand(r, 0.03, sh.d, sh.f)
		dy := benchRand(r, 1, sh.n, sh.d)
		return denseBench{
			fwd: op, bwd: &swigluBackward{base: base{name: "SwiGLUBackward", arity: 5}, cache: op.cache},
			fwdIn: []G.Value{x, wg, wu, wd}, bwdIn: []G.Value{x, wg, wu, wd, dy},
			fwdWork: 6 * n * d * f, bwdWork: 12 * n * d * f, unit: "GFLOP/s",
		}
	case "Embed":
		ids, table, dy := benchIDs(r, sh.n, sh.v), benchRand(r, 1, sh.v, sh.d), benchRand(r, 1, sh.n, sh.d)
		return denseBench{
			fwd: newEmbedOp(), bwd: &embedBackward{base{name: "EmbedBackward", arity: 3}},
			fwdIn: []G.Value{ids, table}, bwdIn: []G.Value{ids, table, dy},
			fwdWork: 2 * n * d * fl, bwdWork: (n*d + v*d) * fl, unit: "GB/s",
		}
	case "RMSNorm": // before every attention and FFN
		x, w, dy := benchRand(r, 1, sh.n, sh.d), benchRand(r, 1, sh.d), benchRand(r, 1, sh.n, sh.d)
		return denseBench{
			fwd: newRMSNormOp(1e-6), bwd: &rmsNormBackward{base: base{name: "RMSNormBackward", arity: 3}, eps: 1e-6},
			fwdIn: []G.Value{x, w}, bwdIn: []G.Value{x, w, dy},
			fwdWork: 2 * n * d * fl, bwdWork: 4 * n * d * fl, unit: "GB/s",
		}
	case "Add": // a residual connection
		a, c, dy := benchRand(r, 1, sh.n, sh.d), benchRand(r, 1, sh.n, sh.d), benchRand(r, 1, sh.n, sh.d)
		return denseBench{
			fwd: newAddOp(2), fwdIn: []G.Value{a, c}, bwdIn: []G.Value{dy},
			fwdWork: 3 * n * d * fl, unit: "GB/s",
		}
	case "Softmax": // the MoE router
		x, dy := benchRand(r, 3, sh.n, sh.e), benchRand(r, 1, sh.n, sh.e)
		s, err := newSoftmaxOp().Do(x)
		if err != nil {
			panic(err)
		}
		return denseBench{
			fwd: newSoftmaxOp(), bwd: &softmaxBackward{base: base{name: "SoftmaxBackward", arity: 2}},
			fwdIn: []G.Value{x}, bwdIn: []G.Value{s, dy},
			fwdWork: 2 * n * e * fl, bwdWork: 3 * n * e * fl, unit: "GB/s",
		}
	case "ExpertBalance": // DeepSeekMoE's expert-level balance loss, top-7 of E
		x, err := newSoftmaxOp().Do(benchRand(r, 3, sh.n, sh.e))
		if err != nil {
			panic(err)
		}
		op := &balanceOp{base: base{name: "ExpertBalance", arity: 1}, batch: sh.b, seq: sh.t, k: 7, gsize: 1, alpha: 0.01}
		return denseBench{
			fwd: op, bwd: &balanceBackward{base: base{name: "ExpertBalanceBackward", arity: 2}, fwd: op},
			fwdIn: []G.Value{x}, bwdIn: []G.Value{x, G.NewF32(1)},
			fwdWork: n * e * fl, bwdWork: 2 * n * e * fl, unit: "GB/s",
		}
	case "DeviceBalance": // the device-level balance loss, 63 experts in 7 groups of 9
		x, err := newSoftmaxOp().Do(benchRand(r, 3, sh.n, sh.e))
		if err != nil {
			panic(err)
		}
		op := &balanceOp{base: base{name: "DeviceBalance", arity: 1}, batch: sh.b, seq: sh.t, k: 7, gsize: sh.e / 7, alpha: 0.01}
		return denseBench{
			fwd: op, bwd: &balanceBackward{base: base{name: "DeviceBalanceBackward", arity: 2}, fwd: op},
			fwdIn: []G.Value{x}, bwdIn: []G.Value{x, G.NewF32(1)},
			fwdWork: n * e * fl, bwdWork: 2 * n * e * fl, unit: "GB/s",
		}
	case "Sigmoid": // the sigmoid router's scores (router.score: sigmoid)
		x, dy := benchRand(r, 3, sh.n, sh.e), benchRand(r, 1, sh.n, sh.e)
		s, err := (&sigmoidOp{base{name: "Sigmoid", arity: 1}}).Do(x)
		if err != nil {
			panic(err)
		}
		return denseBench{
			fwd: &sigmoidOp{base{name: "Sigmoid", arity: 1}}, bwd: &sigmoidBackward{base: base{name: "SigmoidBackward", arity: 2}},
			fwdIn: []G.Value{x}, bwdIn: []G.Value{s, dy},
			fwdWork: 2 * n * e * fl, bwdWork: 3 * n * e * fl, unit: "GB/s",
		}
	case "ZLoss": // the router z-loss on the logits
		x := benchRand(r, 3, sh.n, sh.e)
		return denseBench{
			fwd: &zLossOp{base: base{name: "ZLoss", arity: 1}, alpha: 1e-3}, bwd: &zLossBackward{base: base{name: "ZLossBackward", arity: 2}, alpha: 1e-3},
			fwdIn: []G.Value{x}, bwdIn: []G.Value{x, G.NewF32(1)},
			fwdWork: n * e * fl, bwdWork: 2 * n * e * fl, unit: "GB/s",
		}
	case "CrossEntropy": // LM head + loss; eager gradients when differentiated
		x, w, t := benchRand(r, 1, sh.n, sh.d), benchRand(r, 0.06, sh.v, sh.d), benchIDs(r, sh.n, sh.v)
		cache := &ceCache{eager: backward}
		return denseBench{
			fwd:   &ceOp{base: base{name: "LMHeadCrossEntropy", arity: 3}, cache: cache},
			bwd:   &ceBackward{base: base{name: "LMHeadCrossEntropyBackward", arity: 4}, cache: cache},
			fwdIn: []G.Value{x, w, t}, bwdIn: []G.Value{x, w, t, G.NewF32(1)},
			fwdWork: 2 * n * d * v, bwdWork: 4 * n * d * v, unit: "GFLOP/s",
		}
	}
	panic("no dense benchmark " + name)
}

// benchmarkDense times the forward op, or forward then backward (Add's
// backward is the incoming gradient itself, so it has none to time), at
// every shape.
func benchmarkDense(b *testing.B, name string, backward bool) {
	benchBLAS(b)
	forShapes(b, func(b *testing.B, sh benchShape) {
		c := newDenseBench(name, sh, backward)
		run := func() {
			if _, err := c.fwd.Do(c.fwdIn...); err != nil {
				b.Fatal(err)
			}
			if backward && c.bwd != nil {
				if _, err := c.bwd.Do(c.bwdIn...); err != nil {
					b.Fatal(err)
				}
			}
		}
		run() // warm up: page faults, OpenBLAS threads
		work := c.fwdWork
		if backward {
			work += c.bwdWork
		}
		b.ReportAllocs()
		b.ResetTimer()
		for b.Loop() {
			run()
		}
		sec := b.Elapsed().Seconds() / float64(b.N)
		b.ReportMetric(work/sec/1e9, c.unit)
		b.ReportMetric(float64(sh.n)/sec, "tok/s")
	})
}

func BenchmarkLinearForward(b *testing.B)                { benchmarkDense(b, "Linear", false) }
func BenchmarkLinearForwardBackward(b *testing.B)        { benchmarkDense(b, "Linear", true) }
func BenchmarkSwiGLUForward(b *testing.B)                { benchmarkDense(b, "SwiGLU", false) }
func BenchmarkSwiGLUForwardBackward(b *testing.B)        { benchmarkDense(b, "SwiGLU", true) }
func BenchmarkRMSNormForward(b *testing.B)               { benchmarkDense(b, "RMSNorm", false) }
func BenchmarkRMSNormForwardBackward(b *testing.B)       { benchmarkDense(b, "RMSNorm", true) }
func BenchmarkEmbedForward(b *testing.B)                 { benchmarkDense(b, "Embed", false) }
func BenchmarkEmbedForwardBackward(b *testing.B)         { benchmarkDense(b, "Embed", true) }
func BenchmarkAddForward(b *testing.B)                   { benchmarkDense(b, "Add", false) }
func BenchmarkSoftmaxForward(b *testing.B)               { benchmarkDense(b, "Softmax", false) }
func BenchmarkSoftmaxForwardBackward(b *testing.B)       { benchmarkDense(b, "Softmax", true) }
func BenchmarkExpertBalanceForward(b *testing.B)         { benchmarkDense(b, "ExpertBalance", false) }
func BenchmarkExpertBalanceForwardBackward(b *testing.B) { benchmarkDense(b, "ExpertBalance", true) }
func BenchmarkDeviceBalanceForward(b *testing.B)         { benchmarkDense(b, "DeviceBalance", false) }
func BenchmarkDeviceBalanceForwardBackward(b *testing.B) { benchmarkDense(b, "DeviceBalance", true) }
func BenchmarkSigmoidForward(b *testing.B)               { benchmarkDense(b, "Sigmoid", false) }
func BenchmarkSigmoidForwardBackward(b *testing.B)       { benchmarkDense(b, "Sigmoid", true) }
func BenchmarkZLossForward(b *testing.B)                 { benchmarkDense(b, "ZLoss", false) }
func BenchmarkZLossForwardBackward(b *testing.B)         { benchmarkDense(b, "ZLoss", true) }
func BenchmarkCrossEntropyForward(b *testing.B)          { benchmarkDense(b, "CrossEntropy", false) }
func BenchmarkCrossEntropyForwardBackward(b *testing.B)  { benchmarkDense(b, "CrossEntropy", true) }

// BenchmarkSwiGLUEvalBlocks alternates the two forward paths of a SwiGLU op
// on the same inputs at both shapes: in row blocks (swigluEval, what an
// evaluation graph runs where swigluBlocked) and unblocked (swigluForward,
// the training forward). It reports each one's median and the speed-up.
// The bench shape's FFN is above evalBlockWeightBytes and an evaluation
// graph leaves it unblocked; it is timed in blocks anyway, to show why.
//
//	go test ./model/ops -run '^$' -bench SwiGLUEvalBlocks -benchtime 200x
func BenchmarkSwiGLUEvalBlocks(b *testing.B) {
	benchBLAS(b)
	forShapes(b, func(b *testing.B, sh benchShape) {
		r := rand.New(rand.NewPCG(23, 24))
		x := benchRand(r, 1, sh.n, sh.d).Data().([]float32)
		wg, wu := benchRand(r, 0.06, sh.f, sh.d).Data().([]float32), benchRand(r, 0.06, sh.f, sh.d).Data().([]float32)
		wd := benchRand(r, 0.03, sh.d, sh.f).Data().([]float32)
		y := make([]float32, sh.n*sh.d)
		cache := &swigluCache{}
		paths := []func(){
			func() { swigluEval(y, x, wg, wu, wd, sh.n, sh.d, sh.f) },
			func() { swigluForward(cache, y, x, wg, wu, wd, sh.n, sh.d, sh.f) },
		}
		med := alternatedMedians(b, paths)
		blocked, unblocked := med[0], med[1]
		b.ReportMetric(blocked*1e3, "blocked-ms")
		b.ReportMetric(unblocked*1e3, "unblocked-ms")
		b.ReportMetric(unblocked/blocked, "speedup")
	})
}

// BenchmarkLinearStacked times the attention's q, k and v projections at
// each shape as one stacked product and as three, forward and backward,
// alternated in one process (medians, ms).
func BenchmarkLinearStacked(b *testing.B) {
	benchBLAS(b)
	forShapes(b, func(b *testing.B, sh benchShape) {
		r := rand.New(rand.NewPCG(25, 26))
		n, d := sh.n, sh.d
		x := benchRand(r, 1, n, d).Data().([]float32)
		ws := [][]float32{benchRand(r, 0.06, d, d).Data().([]float32), benchRand(r, 0.06, d, d).Data().([]float32), benchRand(r, 0.06, d, d).Data().([]float32)}
		y, dy := make([]float32, 3*n*d), benchRand(r, 1, n, 3*d).Data().([]float32)
		packed := make([]float32, n*d+3*d*d)
		parts := make([]float32, n*d+d*d)
		paths := []func(){
			func() { mulStackedTransposed(y, x, ws, n, d) },
			func() {
				for i, w := range ws {
					mulTransposed(y[i*n*d:(i+1)*n*d], x, w, n, d, d)
				}
			},
			func() { linearBackwardKernel(packed, x, ws, dy, n, d, 3*d) },
			func() {
				for i, w := range ws {
					linearBackwardKernel(parts, x, [][]float32{w}, dy[i*n*d:(i+1)*n*d], n, d, d)
				}
			},
		}
		med := alternatedMedians(b, paths)
		for i, name := range []string{"stacked-fwd-ms", "three-fwd-ms", "stacked-bwd-ms", "three-bwd-ms"} {
			b.ReportMetric(med[i]*1e3, name)
		}
	})
}

// alternatedMedians runs each path once to warm up, then all of them in
// turn every iteration of b, and returns each one's median time in
// seconds: load that drifts slows every path alike.
func alternatedMedians(b *testing.B, paths []func()) []float64 {
	times := make([][]float64, len(paths))
	for _, p := range paths {
		p()
	}
	for b.Loop() {
		for i, p := range paths {
			t0 := time.Now()
			p()
			times[i] = append(times[i], time.Since(t0).Seconds())
		}
	}
	med := make([]float64, len(paths))
	for i, t := range times {
		med[i] = stats.Median(t)
	}
	return med
}
