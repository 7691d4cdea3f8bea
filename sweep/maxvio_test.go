package sweep

import (
	"math"
	"testing"

	"github.com/moetrain/moetrain/rundir"
)

// A metrics line written before MaxVio was logged reads max_vio 0 with an
// uneven load: the summary shows it as missing, not as a perfect balance.
func TestMaxVioOfOldLines(t *testing.T) {
	for _, tc := range []struct {
		l    rundir.LayerStats
		want float64
	}{
		{rundir.LayerStats{MaxVio: 0.8, LoadMaxOverMean: 1.8}, 0.8},
		{rundir.LayerStats{MaxVio: 0, LoadMaxOverMean: 1}, 0},            // balanced
		{rundir.LayerStats{MaxVio: 0, LoadMaxOverMean: 2.1}, math.NaN()}, // no max_vio field
	} {
		got := maxVioOf(tc.l)
		if got != tc.want && !(math.IsNaN(got) && math.IsNaN(tc.want)) {
			t.Errorf("maxVioOf(%+v) = %v, want %v", tc.l, got, tc.want)
		}
	}
}
