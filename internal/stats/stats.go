// Package stats holds the summary statistics that seed groups and timings
// are reported with, so the sweep summary, the plots and the benchmarks
// compute them the same way.
package stats

import (
	"math"
	"slices"
)

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

// Median returns the median of xs (the mean of the two middle values for an
// even count; 0 for none), leaving xs as it was. Timings on a shared
// machine are reported by it: one slow outlier does not move it.
func Median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
