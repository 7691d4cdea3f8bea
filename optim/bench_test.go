package optim

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/moetrain/moetrain/internal/parallel"
)

// benchParams is moe-small's parameter set in size (55.6 M floats in 20
// tensors of 2.8 M), with random gradients.
func benchParams() []Param {
	rng := rand.New(rand.NewPCG(1, 2))
	sizes := make([]int, 20)
	for i := range sizes {
		sizes[i] = 2_780_000
	}
	ps := randomParams(rng, sizes...)
	fillGrads(rng, ps)
	return ps
}

// BenchmarkAdamWStep times one update of 55.6 M parameters.
func BenchmarkAdamWStep(b *testing.B) {
	ps := benchParams()
	opt, err := NewAdamW(testCfg, ps)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(28 * 55_600_000)) // reads w, g, m, v; writes w, m, v
	b.ResetTimer()
	for range b.N {
		if err := opt.Step(ps, 1e-4); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkClipGlobalNorm times the norm and the scaling of 55.6 M gradients.
func BenchmarkClipGlobalNorm(b *testing.B) {
	ps := benchParams()
	norm := GlobalNorm(ps)
	b.ResetTimer()
	for range b.N {
		// Halve the norm each time: always clips, and 2^-b.N stays normal
		// for the iteration counts a benchmark uses.
		norm = ClipGlobalNorm(ps, norm/2) / 2
	}
}

// stepFloat64 is the earlier AdamW loop (float64 arithmetic per element,
// one parallel loop per tensor), kept to measure the current one against.
func stepFloat64(o *AdamW, params []Param, lr float64) {
	o.step++
	b1, b2 := o.cfg.Beta1, o.cfg.Beta2
	t := float64(o.step)
	stepSize := lr / (1 - math.Pow(b1, t))
	sqrtBc2 := math.Sqrt(1 - math.Pow(b2, t))
	eps := o.cfg.Eps
	for i, p := range params {
		keep := 1.0
		if o.decay[i] {
			keep = 1 - lr*o.cfg.WeightDecay
		}
		w, g, m, v := p.Data, p.Grad, o.m[i], o.v[i]
		parallel.For(len(w), 1<<14, func(lo, hi int) {
			for j := lo; j < hi; j++ {
				gj := float64(g[j])
				mj := b1*float64(m[j]) + (1-b1)*gj
				vj := b2*float64(v[j]) + (1-b2)*gj*gj
				wj := float64(w[j]) * keep
				wj -= stepSize * mj / (math.Sqrt(vj)/sqrtBc2 + eps)
				m[j], v[j], w[j] = float32(mj), float32(vj), float32(wj)
			}
		})
	}
}

// BenchmarkAdamWVsFloat64 alternates the earlier float64 loop plus a
// separate clipping pass with the current fused StepScaled, on a shared
// machine where only same-process ratios mean anything.
func BenchmarkAdamWVsFloat64(b *testing.B) {
	ps := benchParams()
	opt, err := NewAdamW(testCfg, ps)
	if err != nil {
		b.Fatal(err)
	}
	var old, cur []float64
	for i := range 2 * b.N {
		t0 := time.Now()
		if i%2 == 0 {
			ClipGlobalNorm(ps, math.MaxFloat64) // norm only
			scale := ClipScale(1, 1)            // no rescaling pass either way
			_ = opt.StepScaled(ps, 1e-4, scale)
			cur = append(cur, time.Since(t0).Seconds())
		} else {
			ClipGlobalNorm(ps, math.MaxFloat64)
			stepFloat64(opt, ps, 1e-4)
			old = append(old, time.Since(t0).Seconds())
		}
	}
	slices.Sort(old)
	slices.Sort(cur)
	b.ReportMetric(old[len(old)/2]*1e3, "float64-ms")
	b.ReportMetric(cur[len(cur)/2]*1e3, "fused-ms")
}

// BenchmarkGlobalNorm times the norm of 55.6 M gradients.
func BenchmarkGlobalNorm(b *testing.B) {
	ps := benchParams()
	b.SetBytes(4 * 55_600_000)
	for b.Loop() {
		GlobalNorm(ps)
	}
}
