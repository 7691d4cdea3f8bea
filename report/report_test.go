package report

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/moetrain/moetrain/configs"
	"github.com/moetrain/moetrain/internal/tol"
	"github.com/moetrain/moetrain/model"
	"github.com/moetrain/moetrain/rundir"
)

// fakeRun describes a run directory the test writes by hand.
type fakeRun struct {
	name  string
	model func(*configs.Model)
	// evals: tokens → task → metric → value.
	evals []fakeEval
	train []int64 // tokens of train lines
}

type fakeEval struct {
	tokens       int64
	task, metric string
	value        float64
}

// trainLoss is the fixture's k-th training loss: falling, with noise.
func trainLoss(k int) float64 { return 5 - 0.1*float64(k) + 0.05*float64(k%2) }

func denseModel(hidden int) func(*configs.Model) {
	return func(m *configs.Model) {
		m.Hidden, m.DenseWidth, m.VocabSize = hidden, hidden*8/3, 512
	}
}

func moeModel(ffn string, shared, routed, active int) func(*configs.Model) {
	return func(m *configs.Model) {
		m.Hidden, m.DenseWidth, m.VocabSize = 64, 172, 512
		m.FFN, m.SharedExperts, m.RoutedExperts, m.ActiveRouted, m.ExpertWidth = ffn, shared, routed, active, 43
	}
}

// curve makes eval lines for a run: held-out loss falling and task scores
// rising with tokens, offset by q so that runs differ.
func curve(q float64, steps int, tasks map[string]string) []fakeEval {
	var out []fakeEval
	for s := 1; s <= steps; s++ {
		tok := int64(s) * 4096
		out = append(out, fakeEval{tok, HeldOut, "loss", 5 - q - 0.3*float64(s)})
		out = append(out, fakeEval{tok, HeldOut, "bits_per_byte", 1.5 - 0.01*float64(s)})
		out = append(out, fakeEval{tok, HeldOut + "/prose", "loss", 4.5 - 0.2*float64(s)})
		for task, metric := range tasks {
			out = append(out, fakeEval{tok, task, metric, math.Min(1, 0.25+0.05*q+0.02*float64(s)+0.001*float64(len(task)))})
			if metric == "acc" {
				out = append(out, fakeEval{tok, task, "acc_norm", 0.9}) // not the main metric
				out = append(out, fakeEval{tok, task, "chance", 0.25})
			}
		}
	}
	return out
}

var threeTasks = map[string]string{"next_verse": "acc", "last_word": "acc", "trivia": "exact_match"}

func writeRun(t *testing.T, root string, r fakeRun) string {
	t.Helper()
	dir := filepath.Join(root, r.name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	cfg := configs.Default()
	r.model(&cfg.Model)
	cfg.Train.SeqLen = 128
	if err := cfg.Validate(); err != nil {
		t.Fatalf("fixture config %s: %v", r.name, err)
	}
	if err := os.WriteFile(filepath.Join(dir, "config.yaml"), []byte(cfg.YAML()), 0o644); err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	for k, tok := range r.train {
		raw, _ := json.Marshal(rundir.Metrics{Kind: "train", Tokens: tok, Loss: trainLoss(k), LR: 1e-3})
		b.Write(append(raw, '\n'))
	}
	for _, e := range r.evals {
		v := e.value
		raw, _ := json.Marshal(rundir.Metrics{Kind: "eval", Tokens: e.tokens, Task: e.task, Metric: e.metric, Value: &v})
		b.Write(append(raw, '\n'))
	}
	if err := os.WriteFile(filepath.Join(dir, "metrics.jsonl"), b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// fixtureRuns writes two dense runs, a DeepSeekMoE and a GShard run.
func fixtureRuns(t *testing.T) ([]string, []fakeRun) {
	root := t.TempDir()
	runs := []fakeRun{
		{name: "dense-s", model: denseModel(64), evals: curve(0, 3, threeTasks), train: []int64{4096, 8192, 12288}},
		{name: "dense-l", model: denseModel(128), evals: curve(1, 3, threeTasks), train: []int64{4096, 8192, 12288, 16384}},
		{name: "moe", model: moeModel(configs.FFNDeepSeekMoE, 1, 15, 3), evals: curve(2, 4, threeTasks)},
		// GShard lacks "trivia": it is shown, but not averaged.
		{name: "gshard", model: moeModel(configs.FFNGShard, 0, 8, 2), evals: curve(1.5, 2, map[string]string{"next_verse": "acc", "last_word": "acc"})},
	}
	var dirs []string
	for _, r := range runs {
		dirs = append(dirs, writeRun(t, root, r))
	}
	return dirs, runs
}

// lastOf is the test's own reading of a fake run's last value.
func lastOf(r fakeRun, task, metric string) (float64, bool) {
	v, ok := math.NaN(), false
	for _, e := range r.evals {
		if e.task == task && e.metric == metric {
			v, ok = e.value, true
		}
	}
	return v, ok
}

func TestVariant(t *testing.T) {
	tests := []struct {
		m    configs.Model
		want string
	}{
		{configs.Model{FFN: configs.FFNDense}, "Dense"},
		{configs.Model{FFN: configs.FFNDeepSeekMoE, SharedExperts: 1, ActiveRouted: 7, RoutedExperts: 63}, "DeepSeekMoE 1+7/63"},
		{configs.Model{FFN: configs.FFNDeepSeekMoE, ActiveRouted: 8, RoutedExperts: 64}, "DeepSeekMoE 8/64"},
		{configs.Model{FFN: configs.FFNGShard, ActiveRouted: 2, RoutedExperts: 16}, "GShard 2/16"},
		{configs.Model{FFN: configs.FFNSwitch, ActiveRouted: 1, RoutedExperts: 16}, "Switch 1/16"},
		{configs.Model{FFN: configs.FFNHash, ActiveRouted: 1, RoutedExperts: 16}, "Hash 1/16"},
	}
	for _, tc := range tests {
		if got := Variant(tc.m); got != tc.want {
			t.Errorf("got %q, want %q", got, tc.want)
		}
	}
}

func TestCompareTableEqualsMetrics(t *testing.T) {
	dirs, fakes := fixtureRuns(t)
	runs, err := LoadRuns(dirs)
	if err != nil {
		t.Fatal(err)
	}
	tbl := Compare(runs)
	wantTasks := []string{"last_word", "next_verse", "trivia"}
	if fmt.Sprint(tbl.Tasks) != fmt.Sprint(wantTasks) {
		t.Errorf("tasks %v, want %v", tbl.Tasks, wantTasks)
	}
	if fmt.Sprint(tbl.Common) != "[last_word next_verse]" {
		t.Errorf("common tasks %v, want [last_word next_verse]", tbl.Common)
	}
	for i, c := range tbl.Columns {
		f := fakes[i]
		cfg := runs[i].Config
		counts := model.Count(cfg.Model)
		if c.Name != f.name || c.Total != counts.Total || c.Activated != counts.Activated {
			t.Errorf("%s: name %q total %d activated %d, want %d %d", f.name, c.Name, c.Total, c.Activated, counts.Total, counts.Activated)
		}
		if want := model.FLOPsPerToken(cfg.Model, 128) * 2048; !near(c.FLOPsPer2K, want, 0, 1e-12) {
			t.Errorf("%s: FLOPs per 2K %g, want %g", f.name, c.FLOPsPer2K, want)
		}
		var maxTok int64
		for _, e := range f.evals {
			maxTok = max(maxTok, e.tokens)
		}
		for _, tok := range f.train {
			maxTok = max(maxTok, tok)
		}
		if c.Tokens != maxTok {
			t.Errorf("%s: tokens %d, want %d", f.name, c.Tokens, maxTok)
		}
		if want, _ := lastOf(f, HeldOut, "loss"); c.Loss != want {
			t.Errorf("%s: loss %v, want %v", f.name, c.Loss, want)
		}
		var sum float64
		for _, task := range wantTasks {
			metric := threeTasks[task]
			want, ok := lastOf(f, task, metric)
			got, has := c.Scores[task]
			if ok != has || (ok && (got != want || c.Metric[task] != metric)) {
				t.Errorf("%s %s: score %v (%v, %s), want %v (%v, %s)", f.name, task, got, has, c.Metric[task], want, ok, metric)
			}
			if task != "trivia" {
				sum += want
			}
		}
		if !near(c.Average, sum/2, 1e-15, 0) {
			t.Errorf("%s: average %v, want %v", f.name, c.Average, sum/2)
		}
	}
	if tbl.Columns[0].Variant != "Dense" || tbl.Columns[2].Variant != "DeepSeekMoE 1+3/15" || tbl.Columns[3].Variant != "GShard 2/8" {
		t.Errorf("variants %q %q %q", tbl.Columns[0].Variant, tbl.Columns[2].Variant, tbl.Columns[3].Variant)
	}

	// CSV: exact values, parsed back.
	var b bytes.Buffer
	if err := tbl.CSV(&b); err != nil {
		t.Fatal(err)
	}
	recs, err := csv.NewReader(&b).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(recs[0], ","); got != "metric,dense-s,dense-l,moe,gshard" {
		t.Errorf("CSV header %q", got)
	}
	rows := map[string][]string{}
	for _, r := range recs[1:] {
		rows[r[0]] = r[1:]
	}
	for i, c := range tbl.Columns {
		f := fakes[i]
		checkFloat := func(key string, want float64, ok bool) {
			t.Helper()
			cell := rows[key][i]
			if !ok {
				if cell != "" {
					t.Errorf("CSV %s %s: %q, want empty", f.name, key, cell)
				}
				return
			}
			got, err := strconv.ParseFloat(cell, 64)
			if err != nil || got != want {
				t.Errorf("CSV %s %s: %q, want %v", f.name, key, cell, want)
			}
		}
		loss, _ := lastOf(f, HeldOut, "loss")
		checkFloat("heldout_loss", loss, true)
		checkFloat("total_params", float64(c.Total), true)
		checkFloat("activated_params", float64(c.Activated), true)
		checkFloat("tokens", float64(c.Tokens), true)
		checkFloat("flops_per_2k_tokens", c.FLOPsPer2K, true)
		for task, metric := range threeTasks {
			v, ok := lastOf(f, task, metric)
			checkFloat(task+"."+metric, v, ok)
		}
		checkFloat("average", c.Average, true)
		if rows["variant"][i] != c.Variant {
			t.Errorf("CSV variant %q, want %q", rows["variant"][i], c.Variant)
		}
	}

	// Markdown: one column per run; scores in percent to one decimal.
	b.Reset()
	if err := tbl.Markdown(&b); err != nil {
		t.Fatal(err)
	}
	md := map[string][]string{}
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	if lines[0] != "| Metric | dense-s | dense-l | moe | gshard |" || lines[1] != "|---|---|---|---|---|" {
		t.Errorf("markdown head:\n%s\n%s", lines[0], lines[1])
	}
	for _, l := range lines[2:] {
		cells := strings.Split(strings.Trim(l, "|"), "|")
		for k := range cells {
			cells[k] = strings.TrimSpace(cells[k])
		}
		if len(cells) != 5 {
			t.Fatalf("markdown row %q has %d cells", l, len(cells))
		}
		md[cells[0]] = cells[1:]
	}
	for i := range tbl.Columns {
		f := fakes[i]
		v, _ := lastOf(f, "next_verse", "acc")
		if got := md["next_verse (acc, %)"][i]; got != strconv.FormatFloat(100*v, 'f', 1, 64) {
			t.Errorf("markdown %s next_verse %q, want %.1f", f.name, got, 100*v)
		}
		loss, _ := lastOf(f, HeldOut, "loss")
		if got := md["Held-out loss (nats/token)"][i]; got != strconv.FormatFloat(loss, 'f', 3, 64) {
			t.Errorf("markdown %s loss %q, want %.3f", f.name, got, loss)
		}
	}
	if got := md["trivia (exact_match, %)"][3]; got != "–" {
		t.Errorf("markdown: gshard's missing trivia shows %q, want –", got)
	}
	if _, ok := md["Average score (2 common tasks, %)"]; !ok {
		t.Errorf("markdown has no average row: %v", lines)
	}
}

func TestLoadRunErrors(t *testing.T) {
	root := t.TempDir()
	noEval := writeRun(t, root, fakeRun{name: "noeval", model: denseModel(64), train: []int64{1, 2}})
	bad := writeRun(t, root, fakeRun{name: "bad", model: denseModel(64), evals: curve(0, 1, threeTasks)})
	os.WriteFile(filepath.Join(bad, "metrics.jsonl"), []byte("{\"kind\":\"eval\"}\n{not json\n"), 0o644)
	noMetrics := filepath.Join(root, "nometrics")
	os.MkdirAll(noMetrics, 0o755)
	cfg := configs.Default()
	os.WriteFile(filepath.Join(noMetrics, "config.yaml"), []byte(cfg.YAML()), 0o644)
	badCfg := filepath.Join(root, "badcfg")
	os.MkdirAll(badCfg, 0o755)
	os.WriteFile(filepath.Join(badCfg, "config.yaml"), []byte("model: {hidden: -1}\n"), 0o644)
	file := filepath.Join(root, "file")
	os.WriteFile(file, nil, 0o644)
	tests := []struct {
		dir  string
		is   error // nil: any error naming the run
		want string
	}{
		{filepath.Join(root, "missing"), ErrNotRun, "does not exist"},
		{file, ErrNotRun, "is a file"},
		{root, ErrNotRun, "no config.yaml"},
		{noMetrics, ErrNotRun, "no metrics.jsonl"},
		{noEval, ErrNoEval, "none of kind"},
		{bad, nil, "metrics.jsonl:2"},
		{badCfg, nil, "hidden"},
	}
	for _, tc := range tests {
		_, err := LoadRun(tc.dir)
		if err == nil {
			t.Errorf("%s: no error", tc.dir)
			continue
		}
		if tc.is != nil && !errors.Is(err, tc.is) {
			t.Errorf("%s: got %v, want %v", tc.dir, err, tc.is)
		}
		if !strings.Contains(err.Error(), tc.dir) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %q does not name the run and say %q", tc.dir, err, tc.want)
		}
	}
	// LoadRuns reports every bad directory at once.
	_, err := LoadRuns([]string{noEval, filepath.Join(root, "missing")})
	if err == nil || !strings.Contains(err.Error(), "noeval") || !strings.Contains(err.Error(), "missing") {
		t.Errorf("LoadRuns: %v", err)
	}
	if _, err := LoadRuns(nil); err == nil {
		t.Error("LoadRuns(nil): no error")
	}
}

func TestSeriesLastLineWins(t *testing.T) {
	// A resumed run may hold two lines at one token count: the later wins.
	root := t.TempDir()
	dir := writeRun(t, root, fakeRun{name: "r", model: denseModel(64), evals: []fakeEval{
		{200, HeldOut, "loss", 3}, {100, HeldOut, "loss", 4}, {200, HeldOut, "loss", 2.5},
	}})
	r, err := LoadRun(dir)
	if err != nil {
		t.Fatal(err)
	}
	got := r.Series(HeldOut, "loss")
	if fmt.Sprint(got) != "[{100 4} {200 2.5}]" {
		t.Errorf("series %v, want [{100 4} {200 2.5}]", got)
	}
}

func TestFitLogTrend(t *testing.T) {
	xs := []float64{1e6, 1e7, 1e8}
	ys := []float64{10, 13, 16}
	tr := FitLogTrend(xs, ys)
	if !tr.OK || !near(tr.B, 3, 1e-12, 0) || !near(tr.At(1e9), 19, 1e-9, 0) {
		t.Errorf("trend %+v", tr)
	}
	if FitLogTrend([]float64{1e6}, []float64{1}).OK || FitLogTrend([]float64{1e6, 1e6}, []float64{1, 2}).OK {
		t.Error("a trend through fewer than two distinct x")
	}
}

func TestSI(t *testing.T) {
	for _, tc := range []struct {
		x    float64
		want string
	}{{0, "0"}, {12, "12"}, {999, "999"}, {1000, "1K"}, {1500, "1.5K"}, {22_400_000, "22.4M"}, {1.05e12, "1.05T"}, {123_456, "123K"}, {-2e6, "-2M"}} {
		if got := SI(tc.x); got != tc.want {
			t.Errorf("SI(%g) = %q, want %q", tc.x, got, tc.want)
		}
	}
}

// svgPaths returns the SVG path elements stroked in color c: their number
// of points (M and L commands) and whether they have arcs (glyphs).
func svgStrokes(svg string, c string) (lines []int) {
	re := regexp.MustCompile(`<path d="([^"]*)"[^>]*style="([^"]*)"`)
	for _, m := range re.FindAllStringSubmatch(svg, -1) {
		if !strings.Contains(m[2], "stroke:"+c) || strings.Contains(m[1], "A") {
			continue
		}
		lines = append(lines, strings.Count(m[1], "M")+strings.Count(m[1], "L"))
	}
	return lines
}

// svgFills counts the filled (unstroked) paths in color c: plot markers.
func svgFills(svg string, c string) int {
	return strings.Count(svg, `style="fill:`+c+`" />`)
}

func hex(c [4]uint8) string { return fmt.Sprintf("#%02X%02X%02X", c[0], c[1], c[2]) }

func TestPlotsEqualMetrics(t *testing.T) {
	dirs, fakes := fixtureRuns(t)
	runs, err := LoadRuns(dirs)
	if err != nil {
		t.Fatal(err)
	}
	// The series each figure draws are the metrics: per run (each its own
	// group here), the smoothed training loss, the raw one pale, and the
	// held-out points.
	loss := LossFigure(runs)
	flops := FLOPsFigure(runs)
	find := func(p Panel, label, kind string) *Line {
		for i := range p.Lines {
			if p.Lines[i].Label == label && p.Lines[i].Kind == kind {
				return &p.Lines[i]
			}
		}
		return nil
	}
	for i, f := range fakes {
		fpt := model.FLOPsPerToken(runs[i].Config.Model, 128)
		var xs, ys, fx []float64
		for _, e := range f.evals {
			if e.task == HeldOut && e.metric == "loss" {
				xs, ys = append(xs, float64(e.tokens)), append(ys, e.value)
				fx = append(fx, float64(e.tokens)*fpt)
			}
		}
		l := find(loss.Panels[0], f.name, "heldout")
		if l == nil || fmt.Sprint(l.X, l.Y) != fmt.Sprint(xs, ys) || !l.NoLine || l.Color != RunColor(i) {
			t.Errorf("held-out points of %s: %+v, want %v %v", f.name, l, xs, ys)
		}
		if fl := find(flops.Panels[0], f.name, "heldout"); fl == nil || fmt.Sprint(fl.X, fl.Y) != fmt.Sprint(fx, ys) {
			t.Errorf("FLOPs held-out points of %s: %+v, want %v %v", f.name, fl, fx, ys)
		}
		var tx, ty []float64
		for k, tok := range f.train {
			tx, ty = append(tx, float64(tok)), append(ty, trainLoss(k))
		}
		raw, sm := find(loss.Panels[0], f.name, "train-raw"), find(loss.Panels[0], f.name, "train")
		if len(tx) == 0 {
			if raw != nil || sm != nil {
				t.Errorf("%s has no train lines but training curves %+v %+v", f.name, raw, sm)
			}
			continue
		}
		if raw == nil || !raw.Faint || fmt.Sprint(raw.X, raw.Y) != fmt.Sprint(tx, ty) {
			t.Errorf("raw training loss of %s: %+v, want %v %v", f.name, raw, tx, ty)
		}
		// The smoothed curve: the test's own bias-corrected EMA.
		w := 1 - 2/(math.Max(2, float64(len(ty))/20)+1)
		var acc, norm float64
		for k := range ty {
			acc, norm = w*acc+(1-w)*ty[k], w*norm+(1-w)
			if sm == nil || sm.X[k] != tx[k] || !near(sm.Y[k], acc/norm, 1e-12, 0) || sm.Dashed != strings.HasPrefix(f.name, "dense") {
				t.Errorf("smoothed training loss of %s: %+v, want point %d at %v", f.name, sm, k, acc/norm)
				break
			}
		}
		if fs := find(flops.Panels[0], f.name, "train"); fs == nil || fs.X[0] != tx[0]*fpt {
			t.Errorf("FLOPs training curve of %s: %+v", f.name, fs)
		}
	}
	if !flops.Panels[0].SciX || !strings.Contains(flops.Panels[0].XLabel, "floating-point operations") {
		t.Errorf("FLOPs axis %q is not spelled out", flops.Panels[0].XLabel)
	}
	tasks := TaskFigure(runs)
	if len(tasks.Panels) != 3 || tasks.Cols != 3 {
		t.Fatalf("task figure: %d panels, %d columns; want 3, 3", len(tasks.Panels), tasks.Cols)
	}
	for _, p := range tasks.Panels {
		k := 0
		for i, f := range fakes {
			var xs, ys []float64
			for _, e := range f.evals {
				if e.task == p.Title && e.metric == threeTasks[p.Title] {
					xs, ys = append(xs, float64(e.tokens)), append(ys, 100*e.value)
				}
			}
			if len(xs) == 0 {
				continue
			}
			l := p.Lines[k]
			k++
			if l.Color != RunColor(i) || len(l.X) != len(xs) {
				t.Fatalf("%s line of %s: %d points in color %v, want %d in %v", p.Title, f.name, len(l.X), l.Color, len(xs), RunColor(i))
			}
			for j := range xs {
				if l.X[j] != xs[j] || !near(l.Y[j], ys[j], 1e-12, 0) {
					t.Errorf("%s line of %s point %d: (%v, %v), want (%v, %v)", p.Title, f.name, j, l.X[j], l.Y[j], xs[j], ys[j])
				}
			}
		}
		if k != len(p.Lines) {
			t.Errorf("%s: %d lines, want %d", p.Title, len(p.Lines), k)
		}
	}
	sc, tr := ScatterFigure(runs)
	tbl := Compare(runs)
	ms := sc.Panels[0].Markers
	if len(ms) != 4 {
		t.Fatalf("%d scatter points, want 4", len(ms))
	}
	var dx, dy []float64
	for i, m := range ms {
		c := tbl.Columns[i]
		if m.X != float64(c.Activated) || !near(m.Y, 100*c.Average, 1e-12, 0) || m.MoE != (i >= 2) || m.Label != fakes[i].name {
			t.Errorf("scatter point %d: %+v, want (%d, %v) MoE %v", i, m, c.Activated, 100*c.Average, i >= 2)
		}
		if !m.MoE {
			dx, dy = append(dx, m.X), append(dy, m.Y)
		}
	}
	// The loss panel: each run's last held-out loss at its activated size.
	if len(sc.Panels) != 2 {
		t.Fatalf("%d scatter panels, want score and loss", len(sc.Panels))
	}
	for i, m := range sc.Panels[1].Markers {
		c := tbl.Columns[i]
		if m.X != float64(c.Activated) || m.Y != c.Loss || m.YErr != 0 {
			t.Errorf("loss point %d: %+v, want (%d, %v) without a bar", i, m, c.Activated, c.Loss)
		}
	}
	// Two dense points: the trend passes through both.
	if !tr.OK || !near(tr.At(dx[0]), dy[0], 1e-9, 0) || !near(tr.At(dx[1]), dy[1], 1e-9, 0) {
		t.Errorf("trend %+v misses the dense points %v %v", tr, dx, dy)
	}

	// The files: PNG decodes to an image; SVG holds one line per run with
	// as many vertices as eval points, plus its legend sample.
	out := t.TempDir()
	paths, err := WriteFigures(runs, out)
	if err != nil {
		t.Fatal(err)
	}
	if len(paths) != 8 {
		t.Fatalf("wrote %v, want 4 figures × png, svg", paths)
	}
	for _, p := range paths {
		raw, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		switch filepath.Ext(p) {
		case ".png":
			img, err := png.Decode(bytes.NewReader(raw))
			if err != nil || img.Bounds().Dx() < 600 {
				t.Errorf("%s: %v, bounds %v", p, err, img.Bounds())
			}
		case ".svg":
			if !bytes.HasPrefix(bytes.TrimSpace(raw), []byte("<?xml")) || !bytes.Contains(raw, []byte("</svg>")) {
				t.Errorf("%s is not an SVG document", p)
			}
		}
	}
	svg := func(name string) string {
		raw, err := os.ReadFile(filepath.Join(out, name+".svg"))
		if err != nil {
			t.Fatal(err)
		}
		return string(raw)
	}
	for i, f := range fakes {
		c := RunColor(i)
		col := hex([4]uint8{c.R, c.G, c.B, c.A})
		// The smoothed training curve (when the run has one) and its legend
		// sample; a marker at every held-out point.
		want := []int{2}
		if sm := find(loss.Panels[0], f.name, "train"); sm != nil {
			want = []int{len(sm.X), 2}
		}
		for _, name := range []string{"loss_vs_tokens", "loss_vs_flops"} {
			if got := fmt.Sprint(svgStrokes(svg(name), col)); got != fmt.Sprint(want) {
				t.Errorf("%s.svg: %s's strokes have %s vertices, want %v (its training curve, its legend sample)", name, f.name, got, want)
			}
		}
		n := len(find(loss.Panels[0], f.name, "heldout").X)
		if got := svgFills(svg("loss_vs_tokens"), col); got != n {
			t.Errorf("loss_vs_tokens.svg: %d markers in %s's color, want %d", got, f.name, n)
		}
		// The scatter: one marker per run in each panel (score, loss).
		if got := svgFills(svg("score_vs_params"), col); got != 2 {
			t.Errorf("score_vs_params.svg: %d markers in %s's color, want 2", got, f.name)
		}
		// In the task grid: one line per panel the run has, plus the legend.
		want = nil
		for _, p := range tasks.Panels {
			for _, l := range p.Lines {
				if l.Color == c {
					want = append(want, len(l.X))
				}
			}
		}
		want = append(want, 2)
		if got := svgStrokes(svg("tasks_vs_tokens"), col); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("tasks_vs_tokens.svg: %s's strokes have %v vertices, want %v", f.name, got, want)
		}
	}
	// The scatter: four labels, four run glyphs, the trend line.
	s := svg("score_vs_params")
	for _, f := range fakes {
		if !strings.Contains(s, ">"+f.name+"</text>") {
			t.Errorf("score_vs_params.svg has no label %q", f.name)
		}
	}
	if got := svgStrokes(s, "#000000"); !containsInt(got, 64) {
		t.Errorf("score_vs_params.svg: black strokes %v, want the 64-point trend among them", got)
	}
}

func containsInt(xs []int, x int) bool {
	for _, v := range xs {
		if v == x {
			return true
		}
	}
	return false
}

// near compares floats through the repository's one tolerance helper.
func near(got, want, abs, rel float64) bool { return tol.Tol{Abs: abs, Rel: rel}.Close(got, want) }

// KeepTasks leaves only the named tasks (and the held-out loss): the table's
// tasks, common tasks and average follow; a task no run has is an error
// naming it, and leaves the runs as they were.
func TestKeepTasks(t *testing.T) {
	dirs, fakes := fixtureRuns(t)
	runs, err := LoadRuns(dirs)
	if err != nil {
		t.Fatal(err)
	}
	if err := KeepTasks(runs, []string{"last_word", "nope"}); !errors.Is(err, ErrUnknownTask) || !strings.Contains(err.Error(), "nope") || strings.Contains(err.Error(), "last_word:") {
		t.Fatalf("unknown task: %v, want ErrUnknownTask naming nope", err)
	}
	if got := Compare(runs).Common; fmt.Sprint(got) != "[last_word next_verse]" {
		t.Fatalf("after a refused KeepTasks the common tasks are %v", got)
	}
	if err := KeepTasks(runs, []string{"last_word"}); err != nil {
		t.Fatal(err)
	}
	tbl := Compare(runs)
	if fmt.Sprint(tbl.Tasks) != "[last_word]" || fmt.Sprint(tbl.Common) != "[last_word]" {
		t.Fatalf("tasks %v common %v, want only last_word", tbl.Tasks, tbl.Common)
	}
	for i, c := range tbl.Columns {
		want, _ := lastOf(fakes[i], "last_word", "acc")
		loss, _ := lastOf(fakes[i], HeldOut, "loss")
		if c.Average != want || c.Loss != loss {
			t.Errorf("%s: average %v loss %v, want last_word's %v and the held-out loss %v", c.Name, c.Average, c.Loss, want, loss)
		}
	}
}
