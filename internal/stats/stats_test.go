package stats

import (
	"math"
	"slices"
	"testing"
)

func TestMeanStd(t *testing.T) {
	tests := []struct {
		xs                []float64
		wantMean, wantStd float64 // NaN: want NaN
	}{
		{nil, math.NaN(), math.NaN()},
		{[]float64{2.5}, 2.5, math.NaN()},
		{[]float64{1, 3}, 2, math.Sqrt2},
		// 2, 4, 4, 4, 5, 5, 7, 9: mean 5, squared deviations sum to 32, 32/7.
		{[]float64{2, 4, 4, 4, 5, 5, 7, 9}, 5, math.Sqrt(32.0 / 7)},
	}
	same := func(got, want float64) bool {
		if math.IsNaN(want) {
			return math.IsNaN(got)
		}
		return math.Abs(got-want) < 1e-12
	}
	for _, tt := range tests {
		m, s := MeanStd(tt.xs)
		if !same(m, tt.wantMean) || !same(s, tt.wantStd) {
			t.Errorf("MeanStd(%v) = %v, %v; want %v, %v", tt.xs, m, s, tt.wantMean, tt.wantStd)
		}
	}
}

func TestMedian(t *testing.T) {
	tests := []struct {
		xs   []float64
		want float64
	}{
		{nil, 0},
		{[]float64{3, 1, 2}, 2},
		{[]float64{4, 1, 2, 3}, 2.5},
		{[]float64{7}, 7},
	}
	for _, tt := range tests {
		in := slices.Clone(tt.xs)
		if got := Median(tt.xs); got != tt.want {
			t.Errorf("Median(%v) = %v, want %v", in, got, tt.want)
		}
		if !slices.Equal(tt.xs, in) {
			t.Errorf("Median reordered its input: %v, was %v", tt.xs, in)
		}
	}
}
