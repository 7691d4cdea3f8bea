package report

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/moetrain/moetrain/configs"
	"github.com/moetrain/moetrain/rundir"
)

// Task panels of multiple-choice tasks carry the logged chance score and
// draw it; a generation task has none.
func TestChanceLines(t *testing.T) {
	dirs, _ := fixtureRuns(t)
	runs, err := LoadRuns(dirs)
	if err != nil {
		t.Fatal(err)
	}
	f := TaskFigure(runs)
	for _, p := range f.Panels {
		want := 25.0
		if threeTasks[p.Title] != "acc" {
			want = 0
		}
		if p.Chance != want {
			t.Errorf("%s: chance %v, want %v", p.Title, p.Chance, want)
		}
	}
	var buf bytes.Buffer
	if err := Render(f, "svg", &buf); err != nil {
		t.Fatal(err)
	}
	// Two dotted chance lines and the legend's sample.
	if got := len(svgStrokes(buf.String(), hex([4]uint8{chanceColor.R, chanceColor.G, chanceColor.B, 255}))); got != 3 {
		t.Errorf("%d chance strokes in the task figure, want 3", got)
	}
}

// writeSeedRun writes a run of the fixture's DeepSeekMoE with init seed
// seed, training losses offset by off and per-expert load lines.
func writeSeedRun(t *testing.T, root, name string, seed uint64, off float64) string {
	t.Helper()
	dir := filepath.Join(root, name)
	os.MkdirAll(dir, 0o755)
	cfg := configs.Default()
	moeModel(configs.FFNDeepSeekMoE, 1, 7, 2)(&cfg.Model)
	cfg.Model.Layers = 2
	cfg.Model.InitSeed = seed
	cfg.Train.SeqLen = 128
	if err := os.WriteFile(filepath.Join(dir, "config.yaml"), []byte(cfg.YAML()), 0o644); err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	for k := 1; k <= 6; k++ {
		tok := int64(k) * 1024
		m := rundir.Metrics{Kind: "train", Tokens: tok, Loss: 6 - 0.2*float64(k) + off, LR: 1e-3}
		for layer := 0; layer < 2; layer++ {
			load := make([]float64, 7)
			load[k%7] = 0.5 // one hot expert, one dead (layer 1: expert 6 never used)
			for e := range load {
				if e != k%7 && !(layer == 1 && e == 6) {
					load[e] += 0.5 / float64(6-layer)
				}
			}
			m.MoE = append(m.MoE, rundir.LayerStats{Layer: layer, Load: load})
		}
		raw, _ := json.Marshal(m)
		b.Write(append(raw, '\n'))
		if k%2 == 0 {
			v := 5.5 - 0.1*float64(k) + off
			raw, _ = json.Marshal(rundir.Metrics{Kind: "eval", Tokens: tok, Task: HeldOut, Metric: "loss", Value: &v})
			b.Write(append(raw, '\n'))
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "metrics.jsonl"), b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// seedRuns loads a run of writeSeedRun per offset, seeds 1, 2, ...
func seedRuns(t *testing.T, offs []float64) []*Run {
	t.Helper()
	root := t.TempDir()
	var dirs []string
	for i, off := range offs {
		dirs = append(dirs, writeSeedRun(t, root, fmt.Sprintf("moe_seed-%d", i+1), uint64(i+1), off))
	}
	runs, err := LoadRuns(dirs)
	if err != nil {
		t.Fatal(err)
	}
	return runs
}

// Runs that differ only in model.init_seed are one group: one curve, the
// mean over seeds, with a min–max band.
func TestSeedsAreOneCurveWithABand(t *testing.T) {
	offs := []float64{0, 0.3, -0.1}
	runs := seedRuns(t, offs)
	gs := Groups(runs)
	if len(gs) != 1 || gs[0].Name != "moe" || len(gs[0].Runs) != 3 {
		t.Fatalf("groups %+v, want one group \"moe\" of 3 runs", gs)
	}
	p := LossFigure(runs).Panels[0]
	var ho, tr *Line
	for i := range p.Lines {
		switch p.Lines[i].Kind {
		case "heldout":
			ho = &p.Lines[i]
		case "train":
			tr = &p.Lines[i]
		case "train-raw":
			t.Errorf("a group of seeds draws no raw curve")
		}
	}
	if ho == nil || tr == nil || len(p.Bands) != 1 {
		t.Fatalf("lines %+v bands %d: want one training curve, one held-out series, one band", p.Lines, len(p.Bands))
	}
	// Held-out: the mean of the three offsets is 0.2/3.
	for k, x := range ho.X {
		want := 5.5 - 0.1*x/1024 + (offs[0]+offs[1]+offs[2])/3
		if !near(ho.Y[k], want, 1e-12, 0) {
			t.Errorf("held-out mean at %v: %v, want %v", x, ho.Y[k], want)
		}
	}
	// The band spans the smoothed curves of the lowest and highest seed.
	b := p.Bands[0]
	lo, hi := Smooth(runs[2].TrainSeries()), Smooth(runs[1].TrainSeries())
	for k := range b.X {
		if !near(b.Lo[k], lo[k].Value, 1e-12, 0) || !near(b.Hi[k], hi[k].Value, 1e-12, 0) || !(b.Lo[k] < tr.Y[k] && tr.Y[k] < b.Hi[k]) {
			t.Errorf("band at %v: [%v, %v] around %v, want [%v, %v]", b.X[k], b.Lo[k], b.Hi[k], tr.Y[k], lo[k].Value, hi[k].Value)
		}
	}
}

// In the seed scatter a group of seeds is one point: the mean of its runs'
// last held-out losses, with their sample standard deviation as its bar.
func TestScatterPointPerSeedGroup(t *testing.T) {
	offs := []float64{0, 0.3, -0.1}
	runs := seedRuns(t, offs)
	f, _ := ScatterFigure(runs)
	if len(f.Panels) != 1 { // the runs have no task scores: only the loss panel
		t.Fatalf("%d panels, want the loss panel only", len(f.Panels))
	}
	ms := f.Panels[0].Markers
	if len(ms) != 1 {
		t.Fatalf("%d points, want one for the group", len(ms))
	}
	// Last held-out loss at k = 6: 4.9 + off; mean 4.9 + 0.2/3,
	// deviations from the mean of the offsets -0.2/3, 0.7/3, -0.5/3.
	mean := 4.9 + 0.2/3
	std := math.Sqrt((0.04 + 0.49 + 0.25) / 9 / 2)
	if m := ms[0]; !near(m.Y, mean, 1e-12, 0) || !near(m.YErr, std, 1e-12, 0) || m.Label != "moe (3)" || !m.MoE {
		t.Errorf("point %+v, want y %v ± %v labelled \"moe (3)\"", m, mean, std)
	}
	pl, err := buildPlot(f.Panels[0], false)
	if err != nil {
		t.Fatal(err)
	}
	if pl.Y.Min > mean-std || pl.Y.Max < mean+std {
		t.Errorf("y axis [%v, %v] cuts the bar [%v, %v]", pl.Y.Min, pl.Y.Max, mean-std, mean+std)
	}
}

// The expert-load heatmap holds every logged load (over an even share),
// per layer, and is written with the other figures.
func TestLoadHeatmap(t *testing.T) {
	dir := writeSeedRun(t, t.TempDir(), "moe", 1, 0)
	runs, err := LoadRuns([]string{dir})
	if err != nil {
		t.Fatal(err)
	}
	f, ok := LoadFigure(runs[0])
	if !ok || len(f.Panels) != 2 {
		t.Fatalf("load figure %v with %d panels, want 2", ok, len(f.Panels))
	}
	for layer, p := range f.Panels {
		h := p.Heat
		if h == nil || len(h.Tokens) != 6 {
			t.Fatalf("layer %d: heat %+v", layer, h)
		}
		k := 0
		for _, m := range runs[0].Metrics {
			if m.Kind != "train" {
				continue
			}
			for e, v := range m.MoE[layer].Load {
				if h.Tokens[k] != m.Tokens || !near(h.Load[k][e], 7*v, 1e-12, 0) {
					t.Fatalf("layer %d at %d tokens expert %d: %v, want %v", layer, m.Tokens, e, h.Load[k][e], 7*v)
				}
			}
			k++
		}
		// A dead expert maps to the bottom of the colour scale.
		if z := (heatGrid{h}).Z(0, 6); layer == 1 && z != -heatRange {
			t.Errorf("dead expert at %v on the colour scale, want %v", z, -heatRange)
		}
	}
	paths, err := WriteFigures(runs, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(fmt.Sprint(paths), "expert_load_moe.png") {
		t.Errorf("wrote %v, want expert_load_moe.png among them", paths)
	}
}

// With one run the scatter has a linear axis with several labelled ticks
// and a legend entry only for the glyph it draws.
func TestScatterOfOneRun(t *testing.T) {
	dirs, _ := fixtureRuns(t)
	runs, err := LoadRuns(dirs[2:3])
	if err != nil {
		t.Fatal(err)
	}
	f, _ := ScatterFigure(runs)
	if len(f.Legend) != 1 || f.Legend[0].Label != "MoE" {
		t.Errorf("legend %+v, want only MoE", f.Legend)
	}
	p := f.Panels[0]
	if p.LogX {
		t.Error("one run on a log axis")
	}
	pl, err := buildPlot(p, false)
	if err != nil {
		t.Fatal(err)
	}
	for _, ax := range []struct {
		name        string
		min, max, v float64
	}{{"x", pl.X.Min, pl.X.Max, p.Markers[0].X}, {"y", pl.Y.Min, pl.Y.Max, p.Markers[0].Y}} {
		labelled := 0
		for _, tk := range (niceTicks{}).Ticks(ax.min, ax.max) {
			if tk.Label != "" {
				labelled++
			}
		}
		if labelled < 3 || !(ax.min < ax.v && ax.v < ax.max) {
			t.Errorf("%s axis [%v, %v] around %v has %d labelled ticks, want 3 or more", ax.name, ax.min, ax.max, ax.v, labelled)
		}
	}
}

func TestSci(t *testing.T) {
	for x, want := range map[float64]string{4e12: "4×10¹²", 1.5e15: "1.5×10¹⁵", 9.999e12: "1×10¹³", 250: "250", 0: "0"} {
		if got := Sci(x); got != want {
			t.Errorf("Sci(%g) = %q, want %q", x, got, want)
		}
	}
}
