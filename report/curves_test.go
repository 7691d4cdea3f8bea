package report

import (
	"math"
	"testing"
)

// Seeds that log at shifted token counts (one resumed between two log
// points) still make a curve at every point: the other seeds are
// interpolated, not dropped.
func TestSpreadOfShiftedSeeds(t *testing.T) {
	a := []Point{{100, 4}, {200, 3}, {300, 2}, {400, 1}}
	b := []Point{{100, 6}, {250, 4}, {350, 2}, {400, 3}} // resumed at 250
	s := spreadOf([][]Point{a, b})
	if len(s.Tokens) != 4 {
		t.Fatalf("tokens %v, want all 4 of the first seed's", s.Tokens)
	}
	// At 200, b is 6 + (200-100)/(250-100)·(4-6) = 4.6667; at 300, 4 + 0.5·(2-4) = 3.
	want := []float64{5, (3 + 4 + 2.0/3) / 2, 2.5, 2}
	for i, w := range want {
		if math.Abs(s.Mean[i]-w) > 1e-12 {
			t.Errorf("mean at %d = %v, want %v", s.Tokens[i], s.Mean[i], w)
		}
	}
	if s.Lo[1] != 3 || math.Abs(s.Hi[1]-(4+2.0/3)) > 1e-12 {
		t.Errorf("band at 200 = [%v, %v], want [3, 4.6667]", s.Lo[1], s.Hi[1])
	}
}
