package train

import (
	"bytes"
	"context"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/moetrain/moetrain/configs"
	"github.com/moetrain/moetrain/rundir"
)

// Every log interval writes a loss line with an ETA to train.log, with the
// progress bar on and off; without the bar, heartbeat lines with an ETA
// reach the screen between log lines.
func TestLogLinesWithAndWithoutBar(t *testing.T) {
	defer func(h time.Duration) { heartbeat = h }(heartbeat)
	heartbeat = 0 // a heartbeat line at every step
	lossLine := regexp.MustCompile(`tokens [0-9,]+/[0-9,]+  step \d+  loss \d+\.\d{4} .* ETA \S+`)
	for _, live := range []bool{true, false} {
		c := tinyConfig(configs.FFNDeepSeekMoE)
		c.Train.Tokens = 4 * 4 * 32
		dir := t.TempDir()
		var out bytes.Buffer
		if _, err := Run(context.Background(), Options{Config: c, RunDir: dir, Out: &out, Live: live}); err != nil {
			t.Fatalf("live=%v: %v\n%s", live, err, out.String())
		}
		log, err := os.ReadFile(filepath.Join(dir, "train.log"))
		if err != nil {
			t.Fatal(err)
		}
		if n := len(lossLine.FindAll(log, -1)); n != 4 {
			t.Errorf("live=%v: train.log has %d loss lines, want 4 (one per log interval):\n%s", live, n, log)
		}
		if n := len(lossLine.FindAll(out.Bytes(), -1)); n != 4 {
			t.Errorf("live=%v: the screen has %d loss lines, want 4:\n%s", live, n, out.String())
		}
		beats := strings.Count(out.String(), "progress: tokens ")
		if live && beats != 0 || !live && beats < 3 {
			t.Errorf("live=%v: %d heartbeat lines on the screen:\n%s", live, beats, out.String())
		}
		if !live && !regexp.MustCompile(`progress: tokens [0-9,]+/[0-9,]+ \(\d+%\)  loss .* ETA \S+`).Match(out.Bytes()) {
			t.Errorf("heartbeat lines lack progress or ETA:\n%s", out.String())
		}
	}
}

// Each train line carries every MoE layer's per-expert load, consistent
// with the line's own max/mean and dead-expert summaries.
func TestMetricsCarryExpertLoad(t *testing.T) {
	c := tinyConfig(configs.FFNGShard)
	c.Train.Tokens = 2 * 4 * 32
	dir := t.TempDir()
	run(t, c, dir)
	ms, err := rundir.ReadMetrics(filepath.Join(dir, "metrics.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	lines := 0
	for _, m := range ms {
		if m.Kind != "train" {
			continue
		}
		lines++
		if len(m.MoE) != c.Model.Layers {
			t.Fatalf("step %d: %d MoE layers logged, want %d", m.Step, len(m.MoE), c.Model.Layers)
		}
		for _, l := range m.MoE {
			if len(l.Load) != c.Model.RoutedExperts {
				t.Fatalf("step %d layer %d: load of %d experts, want %d", m.Step, l.Layer, len(l.Load), c.Model.RoutedExperts)
			}
			var sum, mx float64
			dead := 0
			for _, v := range l.Load {
				sum += v
				mx = math.Max(mx, v)
				if v == 0 {
					dead++
				}
			}
			e := float64(len(l.Load))
			if math.Abs(sum-1) > 1e-5*e || math.Abs(mx*e-l.LoadMaxOverMean) > 1e-4*e || float64(dead)/e != l.DeadShare {
				t.Errorf("step %d layer %d: load %v (sum %g, max×E %g) disagrees with max/mean %g, dead share %g",
					m.Step, l.Layer, l.Load, sum, mx*e, l.LoadMaxOverMean, l.DeadShare)
			}
		}
	}
	if lines != 2 {
		t.Errorf("%d train lines, want 2", lines)
	}
}

// A live run's metrics.jsonl may end in a line being written: readers skip
// it; a broken line anywhere else is an error.
func TestReadMetricsSkipsAPartialLastLine(t *testing.T) {
	path := filepath.Join(t.TempDir(), "metrics.jsonl")
	full := `{"kind":"train","tokens":128,"step":1,"loss":5}` + "\n"
	os.WriteFile(path, []byte(full+`{"kind":"train","tok`), 0o644)
	ms, err := rundir.ReadMetrics(path)
	if err != nil || len(ms) != 1 || ms[0].Loss != 5 {
		t.Errorf("partial last line: %v, %+v", err, ms)
	}
	os.WriteFile(path, []byte(`{"kind":"train","tok`+"\n"+full), 0o644)
	if _, err := rundir.ReadMetrics(path); err == nil {
		t.Error("a broken first line was accepted")
	}
}
