package optim

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/moetrain/moetrain/internal/parallel"
	"github.com/moetrain/moetrain/internal/tol"
)

// naiveNorm is the reference: one float64 sum over all squares in order.
func naiveNorm(ps []Param) float64 {
	var s float64
	for _, p := range ps {
		for _, g := range p.Grad {
			s += float64(g) * float64(g)
		}
	}
	return math.Sqrt(s)
}

func TestClipGlobalNormScalesToMaxNorm(t *testing.T) {
	ps := randomParams(rand.New(rand.NewPCG(1, 1)), 5, 20000, 1)
	fillGrads(rand.New(rand.NewPCG(2, 2)), ps) // norm ≈ 0.01·√20006 ≈ 1.4
	want := naiveNorm(ps)
	const maxNorm = 0.5
	got := ClipGlobalNorm(ps, maxNorm)
	if !tol.Float64.Close(got, want) {
		t.Errorf("returned norm %.12g, want pre-clip norm %.12g", got, want)
	}
	// Each element and the scale carry one float32 rounding (≤ 6e-8
	// relative), so the clipped norm is maxNorm to within ~1.2e-7.
	if after := naiveNorm(ps); !(tol.Tol{Rel: 2e-7}).Close(after, maxNorm) {
		t.Errorf("norm after clipping %.9g, want %g", after, maxNorm)
	}
}

func TestClipGlobalNormLeavesSmallOrBadGradients(t *testing.T) {
	for _, tc := range []struct {
		name    string
		maxNorm float64
		poison  float32
	}{
		{"below max", 1e6, 0},
		{"disabled", 0, 0},
		{"NaN", 0.1, float32(math.NaN())},
		{"Inf", 0.1, float32(math.Inf(1))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ps := randomParams(rand.New(rand.NewPCG(3, 3)), 6, 9)
			fillGrads(rand.New(rand.NewPCG(4, 4)), ps)
			if tc.poison != 0 {
				ps[1].Grad[4] = tc.poison
			}
			before := cloneParams(ps)
			norm := ClipGlobalNorm(ps, tc.maxNorm)
			want := naiveNorm(before)
			same := tol.Float64.Close(norm, want) ||
				math.IsNaN(norm) && math.IsNaN(want) ||
				math.IsInf(norm, 1) && math.IsInf(want, 1)
			if !same {
				t.Errorf("norm %g, want %g", norm, want)
			}
			for i := range ps {
				for j := range ps[i].Grad {
					if math.Float32bits(ps[i].Grad[j]) != math.Float32bits(before[i].Grad[j]) {
						t.Fatalf("%s grad[%d] changed from %g to %g", ps[i].Name, j, before[i].Grad[j], ps[i].Grad[j])
					}
				}
			}
		})
	}
}

// TestGlobalNormIgnoresWorkerCount: fixed blocks, not goroutines, set the
// summation order.
func TestGlobalNormIgnoresWorkerCount(t *testing.T) {
	ps := randomParams(rand.New(rand.NewPCG(5, 5)), 3*normBlock+7, 11, normBlock)
	fillGrads(rand.New(rand.NewPCG(6, 6)), ps)
	defer func(w int) { parallel.Workers = w }(parallel.Workers)
	var norms []float64
	for _, w := range []int{1, 2, 3, 8} {
		parallel.Workers = w
		norms = append(norms, GlobalNorm(ps))
	}
	for i, n := range norms {
		if math.Float64bits(n) != math.Float64bits(norms[0]) {
			t.Errorf("workers case %d: norm %.17g, with 1 worker %.17g", i, n, norms[0])
		}
	}
}

// TestGlobalNormBlocks: the norm is the square root of the blocks' sums
// of squares, parameter by parameter and block by block in order, frozen
// parameters left out and empty ones adding nothing, whatever the worker
// count (its chunks start inside parameters, at empty ones, at frozen ones).
func TestGlobalNormBlocks(t *testing.T) {
	ps := randomParams(rand.New(rand.NewPCG(7, 7)), 0, 3*normBlock+7, 5, 0, 2*normBlock, 11, normBlock, 0)
	fillGrads(rand.New(rand.NewPCG(8, 8)), ps)
	ps[2].Frozen, ps[5].Frozen = true, true
	var sum float64
	for _, p := range ps {
		if p.Frozen {
			continue
		}
		for lo := 0; lo < len(p.Grad); lo += normBlock {
			sum += sumSquares(p.Grad[lo:min(lo+normBlock, len(p.Grad))])
		}
	}
	want := math.Sqrt(sum)
	defer func(w int) { parallel.Workers = w }(parallel.Workers)
	for _, w := range []int{1, 2, 3, 5, 8} {
		parallel.Workers = w
		if got := GlobalNorm(ps); math.Float64bits(got) != math.Float64bits(want) {
			t.Errorf("%d workers: norm %.17g, want %.17g", w, got, want)
		}
	}
}

// sumSquares gives the bits of its scalar loop (written out here), with the
// vector runs or without, at lengths with and without a tail.
func TestSumSquaresMatchesScalarBits(t *testing.T) {
	r := rand.New(rand.NewPCG(19, 20))
	for _, n := range []int{0, 5, 64, 65, 128, 1000, normBlock} {
		g := make([]float32, n)
		for i := range g {
			g[i] = float32(r.NormFloat64() * math.Pow(10, float64(r.IntN(9)-4)))
		}
		var tt [8]float64
		i := 0
		for ; i+64 <= n; i += 64 {
			var s [8]float32
			for j := i; j < i+64; j++ {
				s[j%8] += g[j] * g[j]
			}
			for k, v := range s {
				tt[k] += float64(v)
			}
		}
		for ; i < n; i++ {
			tt[0] += float64(g[i]) * float64(g[i])
		}
		want := ((tt[0] + tt[1]) + (tt[2] + tt[3])) + ((tt[4] + tt[5]) + (tt[6] + tt[7]))
		if got := sumSquares(g); math.Float64bits(got) != math.Float64bits(want) {
			t.Fatalf("n=%d: %v, scalar %v", n, got, want)
		}
	}
}
