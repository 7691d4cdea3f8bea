package ops

import (
	"math"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"

	"github.com/moetrain/moetrain/internal/blas"
)

// Benchmarks of the routed MoE op at N = 2048 tokens, float32, through its
// Do methods as the TapeMachine calls them (allocations and routing
// included; the backward uses the forward's cache, as in training), at the
// two shapes of benchShapes:
//
//	                          bench (d = 256)   sci (d = 128)
//	DeepSeekMoE routed part:  E 63, k 7, W 256  E 63, k 7, W 86
//	GShard (renormalised):    E 16, k 2, W 1024 E 16, k 2, W 344
//
// Both activate about the same expert FLOPs per token (k·W). Switch (top-1,
// raw gates) and the Hash layer (top-1 through a random token-id table over
// the shape's vocabulary) run GShard's 16 experts. Run with e.g.
// go test ./model/ops -run '^$' -bench MoE -benchtime 10x.

var moeBenchOnce sync.Once

func moeBenchBLAS(b *testing.B) {
	moeBenchOnce.Do(func() {
		info, err := blas.Init()
		if err != nil {
			b.Fatal(err)
		}
		b.Logf("sgemm kernel: %s", info)
	})
}

func moeBenchTensor(r *rand.Rand, scale float64, shape ...int) *tensor.Dense {
	n := 1
	for _, s := range shape {
		n *= s
	}
	d := make([]float32, n)
	for i := range d {
		d[i] = float32(scale * (2*r.Float64() - 1)) // never all zero: gonum's Sgemm skips zero entries
	}
	return tensor.New(tensor.WithShape(shape...), tensor.WithBacking(d))
}

// moeBenchProbs is a softmax of N(0, 1) logits: a plausible early-training
// router, roughly balanced.
func moeBenchProbs(r *rand.Rand, n, e int) *tensor.Dense {
	p := make([]float32, n*e)
	for t := 0; t < n; t++ {
		row := p[t*e : (t+1)*e]
		var z float64
		for i := range row {
			v := math.Exp(r.NormFloat64())
			row[i] = float32(v)
			z += v
		}
		for i := range row {
			row[i] /= float32(z)
		}
	}
	return tensor.New(tensor.WithShape(n, e), tensor.WithBacking(p))
}

// moeBenchStep returns one forward (and backward) pass of a routed MoE op
// at N = 2048, d = 256 on fixed random inputs.
func moeBenchStep(b *testing.B, e, k, w int, renorm, backward bool) func() {
	return moeBenchStepAt(b, 2048, 256, e, k, w, renorm, backward)
}

func moeBenchStepAt(b *testing.B, n, d, e, k, w int, renorm, backward bool) func() {
	r := rand.New(rand.NewPCG(31, 32))
	in := []G.Value{
		moeBenchTensor(r, 1, n, d),
		moeBenchProbs(r, n, e),
		moeBenchTensor(r, 0.06, e, w, d),
		moeBenchTensor(r, 0.06, e, w, d),
		moeBenchTensor(r, 0.06, e, d, w),
	}
	dy := moeBenchTensor(r, 1, n, d)
	op := &moeOp{base: base{name: "MoE", arity: 5}, k: k, gating: Gating{K: k, Renorm: renorm}, cache: &expertCache{}, differentiated: backward}
	bwd := &moeBackward{base: base{name: "MoEBackward", arity: 6}, k: k, gating: op.gating, cache: op.cache}
	bin := append(append([]G.Value(nil), in...), dy)
	step := func() {
		if _, err := op.Do(in...); err != nil {
			b.Fatal(err)
		}
		if backward {
			if _, err := bwd.Do(bin...); err != nil {
				b.Fatal(err)
			}
		}
	}
	return step
}

// benchmarkMoE runs one sub-benchmark per shape; w is the expert width
// at the bench shape, scaled with f at the science shape (256 → 86 =
// 344/4, 1024 → 344).
func benchmarkMoE(b *testing.B, e, k, w int, renorm, backward bool) {
	moeBenchBLAS(b)
	forShapes(b, func(b *testing.B, sh benchShape) {
		ww := w
		if sh.d != 256 {
			ww = w * sh.f / 1024
		}
		benchmarkMoEAt(b, sh.n, sh.d, e, k, ww, renorm, backward)
	})
}

func benchmarkMoEAt(b *testing.B, n, d, e, k, w int, renorm, backward bool) {
	benchmarkExperts(b, moeBenchStepAt(b, n, d, e, k, w, renorm, backward), n, d, k, w, backward)
}

// hashBenchStepAt is moeBenchStepAt for a Hash layer: 16 experts, each
// token sent to table[id] for random ids over the shape's vocabulary.
func hashBenchStepAt(b *testing.B, n, d, w, vocab int, backward bool) func() {
	const e = 16
	r := rand.New(rand.NewPCG(33, 34))
	ids := make([]int, n)
	for i := range ids {
		ids[i] = r.IntN(vocab)
	}
	in := []G.Value{
		moeBenchTensor(r, 1, n, d),
		tensor.New(tensor.WithShape(n), tensor.WithBacking(ids)),
		tensor.New(tensor.WithShape(vocab), tensor.WithBacking(HashTable(vocab, e, 1))),
		moeBenchTensor(r, 0.06, e, w, d),
		moeBenchTensor(r, 0.06, e, w, d),
		moeBenchTensor(r, 0.06, e, d, w),
	}
	dy := moeBenchTensor(r, 1, n, d)
	op := &hashOp{base: base{name: "HashMoE", arity: 6}, cache: &expertCache{}}
	bwd := &hashBackward{base: base{name: "HashMoEBackward", arity: 7}, cache: op.cache}
	bin := append(append([]G.Value(nil), in...), dy)
	return func() {
		if _, err := op.Do(in...); err != nil {
			b.Fatal(err)
		}
		if backward {
			if _, err := bwd.Do(bin...); err != nil {
				b.Fatal(err)
			}
		}
	}
}

// benchmarkExperts times step, a routed layer's forward (and backward)
// pass over n tokens with k experts of width w each, reporting tokens/s
// and the expert products' GFLOP/s.
func benchmarkExperts(b *testing.B, step func(), n, d, k, w int, backward bool) {
	step() // warm up: page faults, buffers, OpenBLAS
	step()
	iters := 0
	for b.Loop() {
		step()
		iters++
	}
	sec := b.Elapsed().Seconds()
	b.ReportMetric(float64(n*iters)/sec, "tokens/s")
	flops := 3 * 2 * float64(n*k*d*w) // three expert GEMMs per (token, slot)
	if backward {
		flops *= 3 // backward: five GEMMs plus the down projection's input gradient
	}
	b.ReportMetric(flops*float64(iters)/sec/1e9, "GFLOP/s")
}

func BenchmarkMoEDeepSeekForward(b *testing.B) { benchmarkMoE(b, 63, 7, 256, false, false) }
func BenchmarkMoEDeepSeekTrain(b *testing.B)   { benchmarkMoE(b, 63, 7, 256, false, true) }
func BenchmarkMoEGShardForward(b *testing.B)   { benchmarkMoE(b, 16, 2, 1024, true, false) }
func BenchmarkMoEGShardTrain(b *testing.B)     { benchmarkMoE(b, 16, 2, 1024, true, true) }
func BenchmarkMoESwitchForward(b *testing.B)   { benchmarkMoE(b, 16, 1, 1024, false, false) }
func BenchmarkMoESwitchTrain(b *testing.B)     { benchmarkMoE(b, 16, 1, 1024, false, true) }
func BenchmarkHashMoEForward(b *testing.B)     { benchmarkHash(b, false) }
func BenchmarkHashMoETrain(b *testing.B)       { benchmarkHash(b, true) }

// benchmarkHash runs the Hash layer (16 experts, top-1, the Switch
// baseline's expert sizes) at both shapes.
func benchmarkHash(b *testing.B, backward bool) {
	moeBenchBLAS(b)
	forShapes(b, func(b *testing.B, sh benchShape) {
		benchmarkExperts(b, hashBenchStepAt(b, sh.n, sh.d, sh.f, sh.v, backward), sh.n, sh.d, 1, sh.f, backward)
	})
}

// BenchmarkMoETrainAlternating alternates forward+backward passes of the
// DeepSeekMoE and GShard routed parts, with expert GEMMs run as single
// kernel calls (the rule of expertMatMul) and split over the workers, in
// one process, at both shapes: on a shared machine only such same-run
// ratios mean much. It reports the median and the fastest pass of each of
// the four.
func BenchmarkMoETrainAlternating(b *testing.B) {
	moeBenchBLAS(b)
	defer func() { expertSplit = false }()
	forShapes(b, func(b *testing.B, sh benchShape) {
		ds, gs := 256, 1024 // expert widths at the bench shape
		if sh.d != 256 {
			ds, gs = ds*sh.f/1024, gs*sh.f/1024
		}
		steps := []func(){
			moeBenchStepAt(b, sh.n, sh.d, 63, 7, ds, false, true),
			moeBenchStepAt(b, sh.n, sh.d, 16, 2, gs, true, true),
		}
		names := []string{"deepseek", "gshard"}
		times := map[string][]float64{}
		for range 2 {
			for _, st := range steps {
				st()
			}
		}
		for b.Loop() {
			for _, split := range []bool{false, true} {
				expertSplit = split
				for i, st := range steps {
					t0 := time.Now()
					st()
					key := names[i] + "-serial-ms"
					if split {
						key = names[i] + "-split-ms"
					}
					times[key] = append(times[key], time.Since(t0).Seconds())
				}
			}
		}
		for key, ts := range times {
			slices.Sort(ts)
			b.ReportMetric(ts[len(ts)/2]*1e3, key)
			b.ReportMetric(ts[0]*1e3, "min-"+key) // least disturbed by other load
		}
	})
}

// routerBench is a science layer's router output for the router
// benchmarks: 2048 rows of e softmax probabilities, k chosen a row.
type routerBench struct {
	name string
	e, k int
	rows []float32
}

// routerBenches returns DeepSeekMoE's (63 experts, k = 7) and GShard's
// (16, k = 2).
func routerBenches() []routerBench {
	var out []routerBench
	for _, c := range []routerBench{{name: "sci-deepseekmoe-63-k7", e: 63, k: 7}, {name: "sci-gshard-16-k2", e: 16, k: 2}} {
		probs := widen(randomProbs(rand.New(rand.NewPCG(1, 2)), 2048, c.e))
		c.rows = make([]float32, len(probs))
		for i, v := range probs {
			c.rows[i] = float32(v)
		}
		out = append(out, c)
	}
	return out
}

// BenchmarkTopK selects the top k of 2048 router rows of softmax
// probabilities (the science batch) with TopK's small-k path (the AVX-512
// selection where the CPU has it), its scalar list and the general
// insertion list.
func BenchmarkTopK(b *testing.B) {
	for _, s := range routerBenches() {
		rows := s.rows
		idx := make([]int32, 2048*s.k)
		byRow := func(fn func(idx []int32, row []float32, k int)) func() {
			return func() {
				for t := 0; t < 2048; t++ {
					fn(idx[t*s.k:(t+1)*s.k], rows[t*s.e:(t+1)*s.e], s.k)
				}
			}
		}
		for _, p := range []struct {
			name string
			fn   func()
		}{
			{"small", byRow(topKSmall[float32])}, {"small-list", byRow(topKSmallList[float32])}, {"list", byRow(topKList[float32])},
			{"pairs", func() { topKPairs(idx, rows, 0, 2048, s.e, s.k) }},
		} {
			b.Run(s.name+"/"+p.name, func(b *testing.B) {
				for b.Loop() {
					p.fn()
				}
			})
		}
	}
}

// BenchmarkDownWeightGrad times an expert's dWd (downWeightGrad: for
// widths not a multiple of 32, the transpose on whole tiles, then
// transposed) at the science shapes: DeepSeekMoE's 228 slots of width 86,
// GShard's 256 of 344 and the regime models' 228 of 43 (d = 64), the
// slots' dy rows scattered over 2048 tokens, in cache.
func BenchmarkDownWeightGrad(b *testing.B) {
	if !blas.RowsOK() {
		b.Skip("no row tiles on this CPU")
	}
	for _, sh := range []struct {
		name    string
		c, d, w int
	}{{"sci-deepseekmoe", 228, 128, 86}, {"sci-gshard", 256, 128, 344}, {"regime-deepseekmoe", 228, 64, 43}} {
		const n = 2048
		r := rand.New(rand.NewPCG(5, 6))
		dy, h := make([]float32, n*sh.d), make([]float32, sh.c*sh.w)
		for i := range dy {
			dy[i] = float32(r.NormFloat64())
		}
		for i := range h {
			h[i] = float32(r.NormFloat64())
		}
		offs, hoffs := make([]int, sh.c), make([]int, sh.c)
		for i, t := range r.Perm(n)[:sh.c] {
			offs[i], hoffs[i] = t*sh.d, i*sh.w
		}
		dwd := make([]float32, sh.d*sh.w)
		b.Run(sh.name, func(b *testing.B) {
			for b.Loop() {
				downWeightGrad(dwd, dy, offs, h, hoffs, sh.d, sh.w)
			}
			b.ReportMetric(2*float64(sh.c*sh.d*sh.w)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
		})
	}
}

// BenchmarkRoute routes the science batch's 2048 router rows of softmax
// probabilities (top-k, gates, the counting sort into expert order) as
// the MoE op does, and the counting sort (group) alone.
func BenchmarkRoute(b *testing.B) {
	for _, s := range routerBenches() {
		rows, g := s.rows, Gating{K: s.k}
		b.Run(s.name+"/route", func(b *testing.B) {
			for b.Loop() {
				r := routeShared(nil, rows, nil, 2048, s.e, g)
				r.release()
			}
		})
		b.Run(s.name+"/group", func(b *testing.B) {
			r := routeShared(nil, rows, nil, 2048, s.e, g)
			for b.Loop() {
				r.group()
			}
		})
	}
}
