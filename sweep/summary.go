package sweep

import (
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"

	"github.com/moetrain/moetrain/internal/stats"
	"github.com/moetrain/moetrain/internal/units"
	"github.com/moetrain/moetrain/model"
	"github.com/moetrain/moetrain/report"
	"github.com/moetrain/moetrain/rundir"
)

// RunResult is one run's outcome, read from its run directory.
type RunResult struct {
	Name, Group string
	Seed        uint64
	Status      Status
	Tokens      int64   // training tokens of the newest held-out evaluation
	ValLoss     float64 // held-out loss (nats/token); NaN if never evaluated
	ValBPB      float64
	TrainLoss   float64
	Total       int64   // parameters, DESIGN.md §7.1
	Activated   int64   // activated parameters per token
	FLOPs       float64 // FLOPs per token, DESIGN.md §7.3
	Budget      int64   // train.tokens
	// Curve is the held-out loss at every evaluation, by training tokens.
	Curve map[int64]float64
	// Scores is each benchmark task's last score in its main metric
	// (report.MainMetrics: accuracy, else exact match), as a fraction.
	Scores map[string]float64
	// MoE health (NaN without MoE layers): MaxVio of the last train line
	// (mean over layers), the share of dead experts averaged over every
	// train line and layer (dead experts over training), and the mean step
	// time over the train lines (seconds).
	MaxVio, Dead, StepSeconds float64
}

// CurvePoint is a group's held-out loss at one evaluation point, over its
// finished seeds (interpolated where a seed evaluated at other counts).
type CurvePoint struct {
	Tokens    int64
	N         int
	Loss, Std float64
}

// GroupResult aggregates the finished runs of one group over seeds.
type GroupResult struct {
	Group            string
	N                int     // finished runs (seeds)
	Loss, Std, SE    float64 // held-out loss: mean, sample std, std/√N (NaN when N < 2)
	BPB, BPBStd      float64
	Total, Activated int64
	FLOPs            float64
	Budget           int64
	Curve            []CurvePoint // at the summary's evaluation points inside every finished seed's range
	// Means over the finished seeds of the runs' MoE health and step time.
	MaxVio, Dead, StepSeconds float64
	// Scores is each task's last score over the finished seeds that have
	// it: mean and sample std (fractions).
	Scores map[string][2]float64
	// Apart marks a group the sweep reports apart from the ranking
	// (Spec.Apart): its loss is not comparable with the others'.
	Apart bool
}

// Pair is the verdict on "Better has lower held-out loss than Worse".
type Pair struct {
	Better, Worse string
	Gap           float64 // mean(Worse) − mean(Better)
	SE            float64 // √(SE_a² + SE_b²); NaN with fewer than 2 seeds on a side
	Verdict       string  // "holds", "reversed" or "not resolved"
}

// Ordering is the verdict on one expected ordering.
type Ordering struct {
	Order []string
	Pairs []Pair
	Holds bool // every adjacent gap exceeds 2 standard errors in the expected direction
}

// Summary is a sweep's results.
type Summary struct {
	Name      string
	Notes     string
	Runs      []RunResult
	Groups    []GroupResult
	Orderings []Ordering
}

// Summarise reads every run's metrics. Runs that are not done are listed
// but left out of the group statistics.
func Summarise(spec *Spec, runs []Run) (Summary, error) {
	s := Summary{Name: spec.Name, Notes: strings.TrimSpace(spec.Notes)}
	for _, r := range runs {
		st, err := StatusOf(r)
		if err != nil {
			return s, err
		}
		c := model.Count(r.Config.Model)
		rr := RunResult{Name: r.Name, Group: r.Group, Seed: r.Seed, Status: st, ValLoss: math.NaN(), ValBPB: math.NaN(), TrainLoss: math.NaN(),
			Total: c.Total, Activated: c.Activated, FLOPs: model.FLOPsPerToken(r.Config.Model, r.Config.Train.SeqLen), Budget: r.Config.Train.Tokens}
		ms, err := rundir.ReadMetrics(filepath.Join(r.Dir, "metrics.jsonl"))
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return s, fmt.Errorf("run %s: %w", r.Name, err)
		}
		rr.MaxVio, rr.Dead, rr.StepSeconds = math.NaN(), math.NaN(), math.NaN()
		var dead, steps []float64
		stepTokens := float64(r.Config.Train.BatchSize * r.Config.Train.SeqLen)
		for _, m := range ms {
			switch {
			case m.Kind == "train":
				rr.TrainLoss = m.Loss
				if len(m.MoE) > 0 {
					var v, d []float64
					for _, l := range m.MoE {
						v, d = append(v, maxVioOf(l)), append(d, l.DeadShare)
					}
					rr.MaxVio, _ = stats.MeanStd(v)
					mean, _ := stats.MeanStd(d)
					dead = append(dead, mean)
				}
				if m.TokensPerS > 0 {
					steps = append(steps, stepTokens/m.TokensPerS)
				}
			case m.Kind == "eval" && report.IsBenchmark(m.Task) && m.Value != nil && mainMetric(m.Metric):
				if rr.Scores == nil {
					rr.Scores = map[string]float64{}
				}
				rr.Scores[m.Task] = *m.Value
			case m.Kind == "eval" && m.Task == "heldout" && m.Value != nil && m.Tokens >= rr.Tokens:
				rr.Tokens = m.Tokens
				if m.Metric == "loss" {
					rr.ValLoss = *m.Value
					if rr.Curve == nil {
						rr.Curve = map[int64]float64{}
					}
					rr.Curve[m.Tokens] = *m.Value
				} else if m.Metric == "bits_per_byte" {
					rr.ValBPB = *m.Value
				}
			}
		}
		if len(dead) > 0 {
			rr.Dead, _ = stats.MeanStd(dead)
		}
		if len(steps) > 0 {
			rr.StepSeconds, _ = stats.MeanStd(steps)
		}
		s.Runs = append(s.Runs, rr)
	}
	var order []string
	by := map[string][]RunResult{}
	for _, r := range s.Runs {
		if _, ok := by[r.Group]; !ok {
			order = append(order, r.Group)
		}
		by[r.Group] = append(by[r.Group], r)
	}
	groups := map[string]GroupResult{}
	var finished [][]RunResult // per group, the runs its statistics use
	for _, gname := range order {
		rs := by[gname]
		g := GroupResult{Group: gname, Total: rs[0].Total, Activated: rs[0].Activated, FLOPs: rs[0].FLOPs, Budget: rs[0].Budget}
		var loss, bpb, vio, dead, step []float64
		var done []RunResult
		for _, r := range rs {
			if r.Status == Done && !math.IsNaN(r.ValLoss) {
				loss = append(loss, r.ValLoss)
				bpb = append(bpb, r.ValBPB)
				vio, dead, step = append(vio, r.MaxVio), append(dead, r.Dead), append(step, r.StepSeconds)
				done = append(done, r)
			}
		}
		g.Scores = groupScores(done)
		g.MaxVio, _ = stats.MeanStd(vio)
		g.Dead, _ = stats.MeanStd(dead)
		g.StepSeconds, _ = stats.MeanStd(step)
		g.Apart = slices.Contains(spec.Apart, gname)
		finished = append(finished, done)
		g.N = len(loss)
		g.Loss, g.Std = stats.MeanStd(loss)
		g.BPB, g.BPBStd = stats.MeanStd(bpb)
		g.SE = g.Std / math.Sqrt(float64(g.N))
		s.Groups = append(s.Groups, g)
		groups[gname] = g
	}
	setCurves(s.Groups, finished)
	for _, a := range spec.Apart {
		if _, ok := groups[a]; !ok {
			return s, fmt.Errorf("apart: no group %q (groups: %s)", a, strings.Join(order, ", "))
		}
	}
	for _, exp := range spec.Expect {
		for _, gname := range exp {
			if slices.Contains(spec.Apart, gname) {
				return s, fmt.Errorf("expect: group %q is reported apart and takes part in no ordering", gname)
			}
		}
		o := Ordering{Order: exp, Holds: true}
		for i := 0; i+1 < len(exp); i++ {
			a, okA := groups[exp[i]]
			b, okB := groups[exp[i+1]]
			if !okA || !okB {
				return s, fmt.Errorf("expect: no group %q (groups: %s)", map[bool]string{true: exp[i+1], false: exp[i]}[okA], strings.Join(order, ", "))
			}
			p := ComparePair(a, b)
			if p.Verdict != "holds" {
				o.Holds = false
			}
			o.Pairs = append(o.Pairs, p)
		}
		s.Orderings = append(s.Orderings, o)
	}
	return s, nil
}

// setCurves gives every group its held-out curve at the same evaluation
// points (the table's columns): the union of the groups' own points
// (curvePoints), each group's seeds interpolated at them (groupCurve).
// groups[i]'s finished seeds are finished[i].
func setCurves(groups []GroupResult, finished [][]RunResult) {
	var at []int64
	for _, runs := range finished {
		at = append(at, curvePoints(runs)...)
	}
	slices.Sort(at)
	at = slices.Compact(at)
	for i := range groups {
		groups[i].Curve = groupCurve(finished[i], at)
	}
}

// curvePoints are the evaluation points of the seed that shares the most
// of them with the other seeds (ties to the first). A run resumed from a
// checkpoint between two evaluations evaluates at shifted token counts
// afterwards; the seeds that were not interrupted set the points.
func curvePoints(runs []RunResult) []int64 {
	best, bestShared := -1, -1
	for i, r := range runs {
		shared := 0
		for j, o := range runs {
			if j == i {
				continue
			}
			for tk := range r.Curve {
				if _, ok := o.Curve[tk]; ok {
					shared++
				}
			}
		}
		if len(r.Curve) > 0 && shared > bestShared {
			best, bestShared = i, shared
		}
	}
	if best < 0 {
		return nil
	}
	return slices.Sorted(maps.Keys(runs[best].Curve))
}

// groupCurve is the mean and sample std over the runs of their held-out
// loss at each point of at inside the range every run evaluated. A run
// without an evaluation at a point is interpolated there between its
// neighbouring evaluations (report.Interpolate, as the figures' seed bands
// are), so a resumed seed's shifted points do not drop the point.
func groupCurve(runs []RunResult, at []int64) []CurvePoint {
	if len(runs) == 0 {
		return nil
	}
	series := make([][]report.Point, len(runs))
	from, to := int64(math.MinInt64), int64(math.MaxInt64)
	for i, r := range runs {
		if len(r.Curve) == 0 {
			return nil
		}
		for _, tk := range slices.Sorted(maps.Keys(r.Curve)) {
			series[i] = append(series[i], report.Point{Tokens: tk, Value: r.Curve[tk]})
		}
		from, to = max(from, series[i][0].Tokens), min(to, series[i][len(series[i])-1].Tokens)
	}
	var out []CurvePoint
	for _, tk := range at {
		if tk < from || tk > to {
			continue
		}
		xs := make([]float64, len(series))
		for i, ps := range series {
			xs[i] = report.Interpolate(ps, tk)
		}
		m, sd := stats.MeanStd(xs)
		out = append(out, CurvePoint{Tokens: tk, N: len(xs), Loss: m, Std: sd})
	}
	return out
}

// ComparePair judges "a has lower loss than b": it holds when the gap
// exceeds two standard errors of the difference, is reversed when it is
// beyond two standard errors the other way, and is not resolved otherwise,
// including whenever a side has fewer than two seeds.
func ComparePair(a, b GroupResult) Pair {
	p := Pair{Better: a.Group, Worse: b.Group, Gap: b.Loss - a.Loss, SE: math.Hypot(a.SE, b.SE), Verdict: "not resolved"}
	if a.N < 2 || b.N < 2 || math.IsNaN(p.SE) {
		p.SE = math.NaN()
		return p
	}
	switch {
	case p.Gap > 2*p.SE:
		p.Verdict = "holds"
	case p.Gap < -2*p.SE:
		p.Verdict = "reversed"
	}
	return p
}

func f4(x float64) string {
	if math.IsNaN(x) {
		return "–"
	}
	return strconv.FormatFloat(x, 'f', 4, 64)
}

// WriteMarkdown writes the group table, the ordering verdicts and the
// per-run table.
func (s Summary) WriteMarkdown(w io.Writer) error {
	var b strings.Builder
	if s.Name != "" {
		fmt.Fprintf(&b, "## Sweep %s\n\n", s.Name)
	}
	if s.Notes != "" {
		fmt.Fprintf(&b, "%s\n\n", s.Notes)
	}
	b.WriteString("Held-out loss in nats per token (mean ± sample std over seeds; n = finished seeds). FLOPs per token by DESIGN.md §7.3.\n\n")
	b.WriteString("MaxVio: max expert load / mean − 1 on the last logged step (mean over MoE layers); dead: share of routed experts without a token, averaged over every logged step and layer; s/step: mean time per optimizer step.\n\n")
	header := "| group | n | held-out loss | bits/byte | total params | activated params | FLOPs/token | train tokens | tokens / activated param | MaxVio | dead | s/step |\n" +
		"|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n"
	row := func(g GroupResult) {
		fmt.Fprintf(&b, "| %s | %d | %s ± %s | %s ± %s | %s | %s | %s | %s | %.2f | %s | %s | %s |\n", g.Group, g.N, f4(g.Loss), f4(g.Std), f4(g.BPB), f4(g.BPBStd),
			units.Short(g.Total), units.Short(g.Activated), units.Short(int64(g.FLOPs)), units.Short(g.Budget), float64(g.Budget)/float64(g.Activated),
			f4(g.MaxVio), f4(g.Dead), f4(g.StepSeconds))
	}
	b.WriteString(header)
	apart := 0
	for _, g := range s.Groups {
		if g.Apart {
			apart++
			continue
		}
		row(g)
	}
	if apart > 0 {
		b.WriteString("\nReported apart from the ranking (not comparable with the groups above; see the notes):\n\n")
		b.WriteString(header)
		for _, g := range s.Groups {
			if g.Apart {
				row(g)
			}
		}
	}
	if len(s.Orderings) > 0 {
		b.WriteString("\nExpected orderings (lowest loss first). A gap is claimed only when it exceeds two standard errors of the difference of the means.\n\n")
		for _, o := range s.Orderings {
			verdict := "not resolved at this scale"
			if o.Holds {
				verdict = "holds"
			}
			fmt.Fprintf(&b, "- %s: **%s**\n", strings.Join(o.Order, " < "), verdict)
			for _, p := range o.Pairs {
				fmt.Fprintf(&b, "  - %s < %s: gap %s, 2·SE %s: %s\n", p.Better, p.Worse, f4(p.Gap), f4(2*p.SE), p.Verdict)
			}
		}
	}
	s.writeScoreTable(&b)
	s.writeCurveTable(&b)
	b.WriteString("\n| run | seed | status | tokens | held-out loss | bits/byte | last train loss |\n|---|---:|---|---:|---:|---:|---:|\n")
	for _, r := range s.Runs {
		fmt.Fprintf(&b, "| %s | %d | %s | %s | %s | %s | %s |\n", r.Name, r.Seed, r.Status, units.Short(r.Tokens), f4(r.ValLoss), f4(r.ValBPB), f4(r.TrainLoss))
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// writeCurveTable writes the groups' held-out loss at each evaluation point
// (a column per training-token count), when any group has more than one.
func (s Summary) writeCurveTable(b *strings.Builder) {
	var cols []int64
	for _, g := range s.Groups {
		for _, p := range g.Curve {
			if !slices.Contains(cols, p.Tokens) {
				cols = append(cols, p.Tokens)
			}
		}
	}
	if len(cols) < 2 {
		return
	}
	slices.Sort(cols)
	b.WriteString("\nHeld-out loss during training (mean ± std over the seeds; a seed that evaluated at other token counts, after a resume, is interpolated between its evaluations):\n\n| group |")
	for _, c := range cols {
		fmt.Fprintf(b, " %s tokens |", units.Short(c))
	}
	b.WriteString("\n|---|" + strings.Repeat("---:|", len(cols)) + "\n")
	for _, g := range s.Groups {
		fmt.Fprintf(b, "| %s |", g.Group)
		for _, c := range cols {
			i := slices.IndexFunc(g.Curve, func(p CurvePoint) bool { return p.Tokens == c })
			if i < 0 {
				b.WriteString(" – |")
				continue
			}
			fmt.Fprintf(b, " %s ± %s |", f4(g.Curve[i].Loss), f4(g.Curve[i].Std))
		}
		b.WriteString("\n")
	}
}

// WriteCSV writes one row per run with its group's statistics.
func (s Summary) WriteCSV(w io.Writer) error {
	cw := csv.NewWriter(w)
	cw.Write([]string{"run", "group", "seed", "status", "tokens", "val_loss", "val_bpb", "train_loss", "total_params", "activated_params", "flops_per_token", "group_n", "group_loss_mean", "group_loss_std"})
	gs := map[string]GroupResult{}
	for _, g := range s.Groups {
		gs[g.Group] = g
	}
	ff := func(x float64) string { return strconv.FormatFloat(x, 'g', 8, 64) }
	for _, r := range s.Runs {
		g := gs[r.Group]
		cw.Write([]string{r.Name, r.Group, strconv.FormatUint(r.Seed, 10), r.Status.String(), strconv.FormatInt(r.Tokens, 10),
			ff(r.ValLoss), ff(r.ValBPB), ff(r.TrainLoss), strconv.FormatInt(r.Total, 10), strconv.FormatInt(r.Activated, 10),
			ff(r.FLOPs), strconv.Itoa(g.N), ff(g.Loss), ff(g.Std)})
	}
	cw.Flush()
	return cw.Error()
}

// Plot draws each group's mean held-out loss with ±std error bars and every
// seed as a point, saved as path+".png" and path+".svg".
func (s Summary) Plot(path string) error {
	p := plot.New()
	p.Title.Text = s.title("Held-out loss by model")
	p.Y.Label.Text = "held-out loss (nats/token)"
	var names []string
	var means plotter.XYs
	var bars plotter.YErrors
	var seeds plotter.XYs
	for i, g := range s.Groups {
		names = append(names, g.Group)
		if g.N == 0 {
			continue
		}
		means = append(means, plotter.XY{X: float64(i), Y: g.Loss})
		e := g.Std
		if math.IsNaN(e) {
			e = 0
		}
		bars = append(bars, struct{ Low, High float64 }{e, e})
		for _, r := range s.Runs {
			if r.Group == g.Group && r.Status == Done && !math.IsNaN(r.ValLoss) {
				seeds = append(seeds, plotter.XY{X: float64(i) + 0.12, Y: r.ValLoss})
			}
		}
	}
	if len(means) == 0 {
		return errors.New("plot: no finished run")
	}
	sc, err := plotter.NewScatter(means)
	if err != nil {
		return err
	}
	sc.GlyphStyle.Radius = vg.Points(4)
	eb := &plotter.YErrorBars{XYs: means, YErrors: bars, LineStyle: plotter.DefaultLineStyle, CapWidth: vg.Points(6)}
	pts, err := plotter.NewScatter(seeds)
	if err != nil {
		return err
	}
	pts.GlyphStyle.Radius = vg.Points(2)
	pts.GlyphStyle.Color = plotter.DefaultGlyphStyle.Color
	p.Add(sc, eb, pts, plotter.NewGrid())
	p.Legend.Add("mean ± std", sc)
	p.Legend.Add("seeds", pts)
	p.Legend.Top = true
	// Headroom above the highest point keeps the legend (top right) off the data.
	if span := p.Y.Max - p.Y.Min; span > 0 {
		p.Y.Max += 0.25 * span
	}
	p.NominalX(names...)
	p.X.Tick.Label.Rotation = 0.5
	p.X.Tick.Label.XAlign = -0.8
	width := vg.Length(max(5, 1.2*float64(len(names)))) * vg.Inch
	for _, ext := range []string{".png", ".svg"} {
		if err := p.Save(width, 4*vg.Inch, path+ext); err != nil {
			return fmt.Errorf("save plot: %w", err)
		}
	}
	return nil
}

// Write writes summary.md, summary.csv and summary.png/.svg into dir.
func (s Summary) Write(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for _, f := range []struct {
		name  string
		write func(io.Writer) error
	}{{"summary.md", s.WriteMarkdown}, {"summary.csv", s.WriteCSV}} {
		fh, err := os.Create(filepath.Join(dir, f.name))
		if err != nil {
			return err
		}
		if err := f.write(fh); err != nil {
			fh.Close()
			return fmt.Errorf("write %s: %w", f.name, err)
		}
		if err := fh.Close(); err != nil {
			return err
		}
	}
	for _, g := range s.Groups {
		if g.N > 0 {
			if err := s.Plot(filepath.Join(dir, "summary")); err != nil {
				return err
			}
			return s.PlotCurves(filepath.Join(dir, "summary-curve"))
		}
	}
	return nil
}

// title is a plot title followed by the sweep's name, when it has one.
func (s Summary) title(what string) string {
	if s.Name == "" {
		return what
	}
	return what + " (" + s.Name + ")"
}

// PlotCurves draws each group's mean held-out loss against training tokens
// (one line per group, the seeds averaged), saved as path+".png" and
// path+".svg"; report's per-run figure has a line per seed instead.
func (s Summary) PlotCurves(path string) error {
	p := report.Panel{XLabel: "Training tokens", YLabel: "Held-out loss (nats/token), mean over seeds"}
	var legend []report.LegendEntry
	for i, g := range s.Groups {
		if len(g.Curve) == 0 {
			continue
		}
		l := report.Line{Label: g.Group, Color: report.RunColor(i), Points: true}
		for _, c := range g.Curve {
			l.X, l.Y = append(l.X, float64(c.Tokens)), append(l.Y, c.Loss)
		}
		p.Lines = append(p.Lines, l)
		legend = append(legend, report.LegendEntry{Label: fmt.Sprintf("%s (%d seeds)", g.Group, g.N), Color: l.Color, Line: true})
	}
	f := report.Figure{Name: filepath.Base(path), Title: s.title("Held-out loss during training"),
		Cols: 1, Panels: []report.Panel{p}, Legend: legend}
	for _, ext := range []string{"png", "svg"} {
		fh, err := os.Create(path + "." + ext)
		if err != nil {
			return err
		}
		if err := report.Render(f, ext, fh); err != nil {
			fh.Close()
			return fmt.Errorf("plot %s: %w", path+"."+ext, err)
		}
		if err := fh.Close(); err != nil {
			return err
		}
	}
	return nil
}

// maxVioOf is the layer's MaxVio, or NaN for a line written before MaxVio
// was logged (shown as –, not as a perfect balance).
func maxVioOf(l rundir.LayerStats) float64 {
	if l.MaxVio == nil {
		return math.NaN()
	}
	return *l.MaxVio
}

// mainMetric reports whether metric is one a task is scored by (a task
// logs only one of them: accuracy for multiple choice, exact match for
// generation).
func mainMetric(metric string) bool { return slices.Contains(report.MainMetrics, metric) }

// groupScores is each task's last score over the runs that have it.
func groupScores(rs []RunResult) map[string][2]float64 {
	by := map[string][]float64{}
	for _, r := range rs {
		for task, v := range r.Scores {
			by[task] = append(by[task], v)
		}
	}
	out := map[string][2]float64{}
	for task, vs := range by {
		m, sd := stats.MeanStd(vs)
		out[task] = [2]float64{m, sd}
	}
	return out
}

// writeScoreTable writes each group's task scores (last evaluation, in
// percent, mean ± std over seeds), when any run has a task.
func (s Summary) writeScoreTable(b *strings.Builder) {
	var tasks []string
	for _, g := range s.Groups {
		for task := range g.Scores {
			if !slices.Contains(tasks, task) {
				tasks = append(tasks, task)
			}
		}
	}
	if len(tasks) == 0 {
		return
	}
	slices.Sort(tasks)
	b.WriteString("\nTask scores at the last evaluation (accuracy, or exact match for generation tasks; percent, mean ± std over seeds):\n\n| group |")
	for _, t := range tasks {
		fmt.Fprintf(b, " %s |", t)
	}
	b.WriteString("\n|---|" + strings.Repeat("---:|", len(tasks)) + "\n")
	for _, g := range s.Groups {
		fmt.Fprintf(b, "| %s |", g.Group)
		for _, t := range tasks {
			v, ok := g.Scores[t]
			if !ok {
				b.WriteString(" – |")
				continue
			}
			sd := "–"
			if !math.IsNaN(v[1]) {
				sd = strconv.FormatFloat(100*v[1], 'f', 1, 64)
			}
			fmt.Fprintf(b, " %.1f ± %s |", 100*v[0], sd)
		}
		b.WriteString("\n")
	}
}
