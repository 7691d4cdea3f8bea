package sweep

import (
	"math"
	"strings"
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

// The task-score table: each task's last main-metric score per group,
// mean ± std over the seeds that have it, in percent; a task a group lacks
// is "–".
func TestScoreTable(t *testing.T) {
	rs := []RunResult{
		{Scores: map[string]float64{"last_word": 0.45, "trivia": 0.10}},
		{Scores: map[string]float64{"last_word": 0.49}},
	}
	g := GroupResult{Group: "a", Scores: groupScores(rs)}
	h := GroupResult{Group: "b", Scores: groupScores([]RunResult{{Scores: map[string]float64{"last_word": 0.40}}})}
	var md strings.Builder
	Summary{Groups: []GroupResult{g, h}}.writeScoreTable(&md)
	for _, want := range []string{
		"| group | last_word | trivia |",
		"| a | 47.0 ± 2.8 | 10.0 ± – |",
		"| b | 40.0 ± – | – |",
	} {
		if !strings.Contains(md.String(), want) {
			t.Errorf("the table lacks %q:\n%s", want, md.String())
		}
	}
}
