package optim

import (
	"math"
	"sort"

	"github.com/moetrain/moetrain/internal/parallel"
)

// normBlock is the fixed block size of the norm's partial sums: blocks, not
// goroutines, decide the summation order, so the norm is bit-identical for
// any worker count.
const normBlock = 1 << 13

// GlobalNorm returns the L2 norm over every gradient element of params
// that are not Frozen, summed in float64: squares within fixed blocks of
// each parameter, then the block sums in parameter order.
func GlobalNorm(params []Param) float64 {
	// start[i] is parameter i's first block (a table of parameters, not
	// of blocks: one entry a block came to 74 KB a step at the science
	// shape, fresh memory the step paid page faults for).
	start := make([]int, len(params)+1)
	for i, p := range params {
		n := 0
		if !p.Frozen {
			n = (len(p.Grad) + normBlock - 1) / normBlock
		}
		start[i+1] = start[i] + n
	}
	partial := make([]float64, start[len(params)])
	parallel.For(len(partial), 4, func(lo, hi int) {
		i := sort.SearchInts(start, lo+1) - 1 // the last parameter starting at or before block lo
		for b := lo; b < hi; b++ {
			for b >= start[i+1] {
				i++
			}
			g, off := params[i].Grad, (b-start[i])*normBlock
			partial[b] = sumSquares(g[off:min(off+normBlock, len(g))])
		}
	})
	var sum float64
	for _, s := range partial {
		sum += s
	}
	return math.Sqrt(sum)
}

// sumSquares is Σ g² in a fixed order: eight float32 partial sums over runs
// of 64 elements, each run's partials then added into float64 lanes.
// Converting every element to float64 ran at under half the speed (the
// conversion, not memory, was the bottleneck), and a run of 64 squares in
// float32 carries a relative error of a few ulp of float32 at most, which
// averages out over the many runs of a gradient.
//
// With AVX2 the runs go eight lanes at a time in one register
// (sumSquares64x8), lane k doing what s[k] and t[k] do here: the same bits.
func sumSquares(g []float32) float64 {
	var t [8]float64
	i := 0
	if runs := len(g) / 64; adamVecOK && runs > 0 {
		sumSquares64x8(&t, &g[0], runs)
		i = 64 * runs
	}
	for ; i+64 <= len(g); i += 64 {
		var s [8]float32
		for j := i; j < i+64; j += 8 {
			h := g[j : j+8 : j+8]
			s[0] += h[0] * h[0]
			s[1] += h[1] * h[1]
			s[2] += h[2] * h[2]
			s[3] += h[3] * h[3]
			s[4] += h[4] * h[4]
			s[5] += h[5] * h[5]
			s[6] += h[6] * h[6]
			s[7] += h[7] * h[7]
		}
		for k, v := range s {
			t[k] += float64(v)
		}
	}
	for ; i < len(g); i++ {
		t[0] += float64(g[i]) * float64(g[i])
	}
	return ((t[0] + t[1]) + (t[2] + t[3])) + ((t[4] + t[5]) + (t[6] + t[7]))
}

// ClipGlobalNorm scales every gradient by ClipScale(norm, maxNorm) and
// returns the norm before clipping (the global norm of params' gradients).
// A non-finite norm is returned as is and the gradients are left alone: the
// caller decides whether to stop or skip the step. maxNorm <= 0 only
// measures. A trainer that goes on to AdamW should instead pass the scale to
// AdamW.StepScaled, which gives the same update without rewriting the
// gradients.
func ClipGlobalNorm(params []Param, maxNorm float64) (norm float64) {
	norm = GlobalNorm(params)
	scale := ClipScale(norm, maxNorm)
	if scale == 1 {
		return norm
	}
	for _, p := range params {
		g := p.Grad
		parallel.For(len(g), 1<<15, func(lo, hi int) {
			for j := lo; j < hi; j++ {
				g[j] *= scale
			}
		})
	}
	return norm
}

// ClipScale is the factor global-norm clipping multiplies the gradients by:
// maxNorm/norm when norm exceeds maxNorm > 0 (no ε, unlike torch's
// clip_grad_norm_, so the clipped norm is maxNorm up to float32 rounding),
// else 1, also for a non-finite norm.
func ClipScale(norm, maxNorm float64) float32 {
	if !(maxNorm > 0) || !(norm > maxNorm) || math.IsInf(norm, 0) {
		return 1
	}
	return float32(maxNorm / norm)
}
