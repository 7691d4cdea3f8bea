// Package tol is moetrain's one way of comparing floating-point numbers in
// tests: a value is close to its reference when |got-want| <= abs + rel*|want|.
package tol

import (
	"fmt"
	"math"
)

// Tol is an absolute plus relative tolerance.
type Tol struct {
	Abs, Rel float64
}

// Float64 is the default for float64 checks against analytic or float64 references.
var Float64 = Tol{Abs: 1e-9, Rel: 1e-7}

// Close reports whether got is within t of want. NaN is never close.
func (t Tol) Close(got, want float64) bool {
	if math.IsNaN(got) || math.IsNaN(want) {
		return false
	}
	if got == want {
		return true
	}
	return math.Abs(got-want) <= t.Abs+t.Rel*math.Abs(want)
}

// CheckSlice returns an error naming the first few elements of got that are
// not within t of want, or nil.
func (t Tol) CheckSlice(name string, got, want []float64) error {
	if len(got) != len(want) {
		return fmt.Errorf("%s: got %d values, want %d", name, len(got), len(want))
	}
	bad, first := 0, ""
	for i := range got {
		if !t.Close(got[i], want[i]) {
			if bad < 4 {
				first += fmt.Sprintf(" [%d] got %.10g want %.10g;", i, got[i], want[i])
			}
			bad++
		}
	}
	if bad > 0 {
		return fmt.Errorf("%s: %d of %d values off (abs %g, rel %g):%s", name, bad, len(got), t.Abs, t.Rel, first)
	}
	return nil
}

// MaxAbsDiff returns max|got-want| and max|want|; callers comparing against a
// reference tensor use the relative-to-scale rule max|Δ| <= r*max|ref|.
func MaxAbsDiff(got, want []float64) (maxDiff, maxRef float64) {
	for i := range got {
		if d := math.Abs(got[i] - want[i]); d > maxDiff || math.IsNaN(d) {
			maxDiff = d
			if math.IsNaN(d) {
				maxDiff = math.Inf(1)
			}
		}
		if a := math.Abs(want[i]); a > maxRef {
			maxRef = a
		}
	}
	return maxDiff, maxRef
}

// CheckScaled returns an error when max|got-want| > rel*max|want| (the
// per-tensor rule used against the PyTorch reference).
func CheckScaled(name string, got, want []float64, rel float64) error {
	if len(got) != len(want) {
		return fmt.Errorf("%s: got %d values, want %d", name, len(got), len(want))
	}
	d, m := MaxAbsDiff(got, want)
	if d > rel*m {
		return fmt.Errorf("%s: max|got-want| = %.3g > %.1g * max|want| (%.3g)", name, d, rel, m)
	}
	return nil
}
