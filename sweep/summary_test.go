package sweep

import (
	"encoding/json"
	"math"
	"strings"
	"testing"

	"github.com/moetrain/moetrain/rundir"
)

// A metrics line written before MaxVio was logged has no max_vio field: the
// summary shows it as missing (NaN), while a logged 0 is a perfect balance.
func TestMaxVioOfOldLines(t *testing.T) {
	for _, tc := range []struct {
		line string
		want float64
	}{
		{`{"layer":1,"load_max_over_mean":1.8,"max_vio":0.8}`, 0.8},
		{`{"layer":1,"load_max_over_mean":1,"max_vio":0}`, 0}, // balanced
		{`{"layer":1,"load_max_over_mean":2.1}`, math.NaN()},  // written before max_vio
	} {
		var l rundir.LayerStats
		if err := json.Unmarshal([]byte(tc.line), &l); err != nil {
			t.Fatal(err)
		}
		got := maxVioOf(l)
		if got != tc.want && !(math.IsNaN(got) && math.IsNaN(tc.want)) {
			t.Errorf("maxVioOf(%s) = %v, want %v", tc.line, got, tc.want)
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
