// Package stats holds the summary statistics that seed groups are reported
// with, so the sweep summary and the plots compute them the same way.
package stats

import "math"

// MeanStd returns the mean and the sample standard deviation (divisor n-1) of
// xs. The standard deviation of one value is NaN, not 0: one seed says
// nothing about seed noise, and callers must not print it as "± 0". Both are
// NaN for no values.
func MeanStd(xs []float64) (mean, std float64) {
	if len(xs) == 0 {
		return math.NaN(), math.NaN()
	}
	for _, x := range xs {
		mean += x
	}
	mean /= float64(len(xs))
	if len(xs) < 2 {
		return mean, math.NaN()
	}
	for _, x := range xs {
		std += (x - mean) * (x - mean)
	}
	return mean, math.Sqrt(std / float64(len(xs)-1))
}
