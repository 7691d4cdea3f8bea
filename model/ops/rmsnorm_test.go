package ops

import (
	"math"
	"math/rand/v2"
	"testing"

	G "gorgonia.org/gorgonia"

	"github.com/moetrain/moetrain/internal/gradcheck"
)

func TestRMSNormGradient(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	gradcheck.Check(t, 3, []gradcheck.Input{
		{Name: "x", Value: gradcheck.Rand(r, 1, 5, 7), Diff: true},
		{Name: "w", Value: gradcheck.Rand(r, 1, 7), Diff: true},
	}, func(g *G.ExprGraph, in []*G.Node) (*G.Node, error) {
		return RMSNorm(in[0], in[1], 1e-6)
	}, gradcheck.Default)
}

// TestRMSRowsMatchRowByRow: the float32 row kernels (rmsRows32) give the
// bits of the per-row calls they replace, forward and backward, at widths
// of one and several vectors and row counts across rowBlock and the
// forward's chunks.
func TestRMSRowsMatchRowByRow(t *testing.T) {
	if !rmsRows32[float32](8) {
		t.Skip("no vector kernels here")
	}
	r := rand.New(rand.NewPCG(41, 42))
	const eps = 1e-6
	for _, d := range []int{8, 64, 136} {
		for _, n := range []int{1, 37, 2*rowBlock + 5} {
			x, w, dy := make([]float32, n*d), make([]float32, d), make([]float32, n*d)
			for i := range x {
				x[i], dy[i] = float32(r.NormFloat64()), float32(r.NormFloat64())
			}
			for i := range w {
				w[i] = float32(1 + 0.3*r.NormFloat64())
			}
			y, dx, dw := make([]float32, n*d), make([]float32, n*d), make([]float32, d)
			rmsNormForward(y, x, w, n, d, eps)
			rmsNormBackwardKernel(dx, dw, x, w, dy, n, d, eps)
			wantY, wantDx, wantDw := make([]float32, n*d), make([]float32, n*d), make([]float32, d)
			partial := make([]float32, d)
			for b := 0; b*rowBlock < n; b++ {
				clear(partial)
				for i := b * rowBlock; i < min(n, (b+1)*rowBlock); i++ {
					xr, gr := x[i*d:(i+1)*d], dy[i*d:(i+1)*d]
					rmsScale(wantY[i*d:(i+1)*d], w, xr, float32(rmsFromSquares(rowSquares(xr), d, eps)))
					ss, dot := rowSquaresDot(xr, gr, w)
					rr := rmsFromSquares(ss, d, eps)
					rmsGrad(wantDx[i*d:(i+1)*d], partial, w, gr, xr, float32(rr), float32(rr*rr*rr*dot/float64(d)))
				}
				for j, v := range partial {
					wantDw[j] += v
				}
			}
			for name, pair := range map[string][2][]float32{"y": {y, wantY}, "dx": {dx, wantDx}, "dw": {dw, wantDw}} {
				for i := range pair[1] {
					if math.Float32bits(pair[0][i]) != math.Float32bits(pair[1][i]) {
						t.Fatalf("d=%d n=%d: %s[%d] = %g, row by row %g", d, n, name, i, pair[0][i], pair[1][i])
					}
				}
			}
		}
	}
}
