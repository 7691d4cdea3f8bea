package optim

import (
	"math"

	"github.com/moetrain/moetrain/internal/parallel"
)

// normBlock is the fixed block size of the norm's partial sums: blocks, not
// goroutines, decide the summation order, so the norm is bit-identical for
// any worker count.
const normBlock = 1 << 13

// GlobalNorm returns the L2 norm over every gradient element of params,
// summed in float64: squares within fixed blocks of each parameter, then
// the block sums in parameter order.
func GlobalNorm(params []Param) float64 {
	type block struct{ p, lo, hi int }
	var blocks []block
	for i, p := range params {
		for lo := 0; lo < len(p.Grad); lo += normBlock {
			blocks = append(blocks, block{i, lo, min(lo+normBlock, len(p.Grad))})
		}
	}
	partial := make([]float64, len(blocks))
	parallel.For(len(blocks), 4, func(lo, hi int) {
		for b := lo; b < hi; b++ {
			var s float64
			for _, g := range params[blocks[b].p].Grad[blocks[b].lo:blocks[b].hi] {
				s += float64(g) * float64(g)
			}
			partial[b] = s
		}
	})
	var sum float64
	for _, s := range partial {
		sum += s
	}
	return math.Sqrt(sum)
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
