package ops

import (
	"math"
	"math/rand/v2"
	"testing"
)

// expRow gives math.Exp's bits for every value: across exp64x4's range
// (random values at every scale, the ends, integers and halves of ln 2,
// where the exponent's rounding flips) and outside it, where it falls back.
func TestExpRowMatchesMathExp(t *testing.T) {
	if !vexp64OK {
		t.Skip("no vector float64 exp on this CPU")
	}
	r := rand.New(rand.NewPCG(11, 12))
	var xs []float64
	for range 200000 {
		xs = append(xs, (r.Float64()*2-1)*math.Pow(10, float64(r.IntN(6)-3)), -r.Float64()*700, r.NormFloat64()*30)
	}
	for k := -1010; k <= 1010; k++ {
		for _, f := range []float64{0, 0.5, -0.5} {
			x := (float64(k) + f) * math.Ln2
			xs = append(xs, x, math.Nextafter(x, 1), math.Nextafter(x, -1))
		}
	}
	xs = append(xs, 0, math.Copysign(0, -1), -700, 700, math.Nextafter(-700, 0), -745, 709, 710, math.Inf(-1), math.Inf(1), math.NaN(), 1e-300, -1e-300)
	for len(xs)%4 != 0 {
		xs = append(xs, 1)
	}
	for _, block := range []int{4, 64, len(xs)} { // rows wholly in range, and rows with values outside
		for lo := 0; lo < len(xs); lo += block {
			row := append([]float64(nil), xs[lo:min(lo+block, len(xs))]...)
			expRow(row)
			for i, got := range row {
				x := xs[lo+i]
				if want := math.Exp(x); math.Float64bits(got) != math.Float64bits(want) && !(got != got && want != want) {
					t.Fatalf("expRow(%v [%#x]) = %v [%#x], math.Exp %v [%#x]", x, math.Float64bits(x), got, math.Float64bits(got), want, math.Float64bits(want))
				}
			}
		}
	}
}

// The router softmax gives the bits of its scalar formula, written out
// below, at router widths with and without a tail: float32 rows
// exponentiate with exp32 (eight lanes at a time where the CPU allows),
// float64 rows with math.Exp (four at a time).
func TestRowSoftmaxMatchesScalar(t *testing.T) {
	r := rand.New(rand.NewPCG(13, 14))
	for _, e := range []int{1, 3, 7, 8, 9, 16, 63, 64, 257} {
		for range 200 {
			x := make([]float32, e)
			x64 := make([]float64, e)
			for i := range x {
				x[i] = float32(r.NormFloat64() * 4)
				x64[i] = float64(x[i])
			}
			got := make([]float32, e)
			RowSoftmax(got, x)
			for j, want := range rowSoftmax32Scalar(x) {
				if math.Float32bits(got[j]) != math.Float32bits(want) {
					t.Fatalf("e=%d: element %d = %v, scalar %v", e, j, got[j], want)
				}
			}
			got64 := make([]float64, e)
			RowSoftmax(got64, x64)
			m := maxOfRow(x64)
			want := make([]float64, e)
			var sum float64
			for j, v := range x64 {
				want[j] = math.Exp(v - m)
				sum += want[j]
			}
			for j := range want {
				want[j] *= 1 / sum
				if math.Float64bits(got64[j]) != math.Float64bits(want[j]) {
					t.Fatalf("float64, e=%d: element %d = %v, scalar %v", e, j, got64[j], want[j])
				}
			}
		}
	}
}

// rowSoftmax32Scalar is rowSoftmax32's formula one element at a time,
// the sum in laneSum's order.
func rowSoftmax32Scalar(x []float32) []float32 {
	m := maxOfRow(x)
	y := make([]float32, len(x))
	terms := make([]float64, len(x))
	for j, v := range x {
		y[j] = exp32(v - m)
		terms[j] = float64(y[j])
	}
	inv := float32(1 / laneSum(terms))
	for j := range y {
		y[j] *= inv
	}
	return y
}
