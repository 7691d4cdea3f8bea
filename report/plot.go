package report

import (
	"errors"
	"fmt"
	"image/color"
	"io"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
	"gonum.org/v1/plot/vg/vgsvg"
)

// Line is one plotted line (a run's curve, or a trend).
type Line struct {
	Label  string
	X, Y   []float64
	Color  color.RGBA
	Dashed bool // dense runs are dashed, MoE runs solid
	Points bool // draw a marker at every point
}

// Marker is one labelled point of a scatter.
type Marker struct {
	Label string
	X, Y  float64
	Color color.RGBA
	MoE   bool // MoE runs are triangles, dense runs circles
}

// Panel is one set of axes.
type Panel struct {
	Title          string
	XLabel, YLabel string
	// LogX puts X on a log scale; only set when every X is positive.
	LogX    bool
	Lines   []Line
	Markers []Marker
}

// Figure is one output image: panels in a grid, a title, and a legend in a
// strip on the right (so it never hides data).
type Figure struct {
	Name   string // file base name
	Title  string
	Cols   int
	Panels []Panel
	Legend []LegendEntry
}

// LegendEntry is one legend line.
type LegendEntry struct {
	Label  string
	Color  color.RGBA
	Dashed bool
	Line   bool // a line sample
	Glyph  string
}

// palette is Tableau 10: distinct at a glance and in grey print.
var palette = []color.RGBA{
	{31, 119, 180, 255}, {255, 127, 14, 255}, {44, 160, 44, 255}, {214, 39, 40, 255}, {148, 103, 189, 255},
	{140, 86, 75, 255}, {227, 119, 194, 255}, {127, 127, 127, 255}, {188, 189, 34, 255}, {23, 190, 207, 255},
}

// RunColor is the color of run i in every figure.
func RunColor(i int) color.RGBA { return palette[i%len(palette)] }

// trendColor draws the dense trend line (black, so it is not mistaken for a run).
var trendColor = color.RGBA{0, 0, 0, 255}

func runLegend(runs []*Run) []LegendEntry {
	var l []LegendEntry
	for i, r := range runs {
		l = append(l, LegendEntry{Label: r.Name + " (" + Variant(r.Config.Model) + ")", Color: RunColor(i), Dashed: !r.IsMoE(), Line: true})
	}
	return l
}

func seriesXY(ps []Point, x func(Point) float64, y func(Point) float64) ([]float64, []float64) {
	xs, ys := make([]float64, len(ps)), make([]float64, len(ps))
	for i, p := range ps {
		xs[i], ys[i] = x(p), y(p)
	}
	return xs, ys
}

func tokensX(p Point) float64  { return float64(p.Tokens) }
func valueY(p Point) float64   { return p.Value }
func percentY(p Point) float64 { return 100 * p.Value }

// LossFigure is held-out loss against training tokens, a line per run.
func LossFigure(runs []*Run) Figure {
	p := Panel{XLabel: "Training tokens", YLabel: "Held-out loss (nats/token)"}
	for i, r := range runs {
		xs, ys := seriesXY(r.Series(HeldOut, "loss"), tokensX, valueY)
		p.Lines = append(p.Lines, Line{Label: r.Name, X: xs, Y: ys, Color: RunColor(i), Dashed: !r.IsMoE(), Points: true})
	}
	return Figure{Name: "loss_vs_tokens", Title: "Held-out loss during training", Cols: 1, Panels: []Panel{p}, Legend: runLegend(runs)}
}

// FLOPsFigure is held-out loss against training compute (tokens × FLOPs
// per token, DESIGN.md §7.3), a line per run.
func FLOPsFigure(runs []*Run) Figure {
	p := Panel{XLabel: "Training compute (FLOPs)", YLabel: "Held-out loss (nats/token)"}
	for i, r := range runs {
		fpt := r.FLOPsPerToken()
		xs, ys := seriesXY(r.Series(HeldOut, "loss"), func(p Point) float64 { return float64(p.Tokens) * fpt }, valueY)
		p.Lines = append(p.Lines, Line{Label: r.Name, X: xs, Y: ys, Color: RunColor(i), Dashed: !r.IsMoE(), Points: true})
	}
	p.LogX = wideRange(p)
	return Figure{Name: "loss_vs_flops", Title: "Held-out loss against training compute", Cols: 1, Panels: []Panel{p}, Legend: runLegend(runs)}
}

// TaskFigure is a grid of panels, one per task (every task any run has),
// each the task's score against training tokens with a line per run.
func TaskFigure(runs []*Run) Figure {
	tasks := AllTasks(runs)
	f := Figure{Name: "tasks_vs_tokens", Title: "Task scores during training", Cols: min(3, max(1, len(tasks))), Legend: runLegend(runs)}
	for _, task := range tasks {
		p := Panel{Title: task, XLabel: "Training tokens"}
		metrics := map[string]bool{}
		for i, r := range runs {
			metric := MainMetric(r, task)
			if metric == "" {
				continue
			}
			metrics[metric] = true
			xs, ys := seriesXY(r.Series(task, metric), tokensX, percentY)
			p.Lines = append(p.Lines, Line{Label: r.Name, X: xs, Y: ys, Color: RunColor(i), Dashed: !r.IsMoE(), Points: true})
		}
		pretty := map[string]string{"acc": "Accuracy", "exact_match": "Exact match"}
		var names []string
		for m := range metrics {
			if pretty[m] != "" {
				m = pretty[m]
			}
			names = append(names, m)
		}
		sort.Strings(names)
		p.YLabel = strings.Join(names, "/") + " (%)"
		f.Panels = append(f.Panels, p)
	}
	return f
}

// Trend is a least-squares line y = A + B·log10(x).
type Trend struct {
	A, B float64
	OK   bool // false with fewer than two distinct x
}

// At evaluates the trend.
func (t Trend) At(x float64) float64 { return t.A + t.B*math.Log10(x) }

// FitLogTrend fits y = A + B·log10(x) by least squares (x > 0).
func FitLogTrend(xs, ys []float64) Trend {
	n := float64(len(xs))
	var sx, sy, sxx, sxy float64
	for i := range xs {
		lx := math.Log10(xs[i])
		sx += lx
		sy += ys[i]
		sxx += lx * lx
		sxy += lx * ys[i]
	}
	den := n*sxx - sx*sx
	if len(xs) < 2 || math.Abs(den) < 1e-12*math.Max(1, n*sxx) {
		return Trend{}
	}
	b := (n*sxy - sx*sy) / den
	return Trend{A: (sy - b*sx) / n, B: b, OK: true}
}

// ScatterFigure is the average score (over the tasks all runs share)
// against activated parameters: a labelled point per run (circles dense,
// triangles MoE) and the least-squares trend through the dense runs (score
// linear in log parameters), drawn across the whole x range.
func ScatterFigure(runs []*Run) (Figure, Trend) {
	common := CommonTasks(runs)
	tbl := Compare(runs)
	p := Panel{XLabel: "Activated parameters", YLabel: fmt.Sprintf("Average score over %d tasks (%%)", len(common))}
	var dx, dy []float64
	lo, hi := math.Inf(1), math.Inf(-1)
	for i, r := range runs {
		c := tbl.Columns[i]
		if math.IsNaN(c.Average) {
			continue
		}
		m := Marker{Label: r.Name, X: float64(c.Activated), Y: 100 * c.Average, Color: RunColor(i), MoE: r.IsMoE()}
		p.Markers = append(p.Markers, m)
		lo, hi = math.Min(lo, m.X), math.Max(hi, m.X)
		if !m.MoE {
			dx, dy = append(dx, m.X), append(dy, m.Y)
		}
	}
	tr := FitLogTrend(dx, dy)
	legend := []LegendEntry{{Label: "Dense", Color: trendColor, Glyph: "circle"}, {Label: "MoE", Color: trendColor, Glyph: "triangle"}}
	if tr.OK {
		const n = 64
		l := Line{Label: "Dense trend", Color: trendColor, Dashed: true}
		for k := 0; k < n; k++ {
			x := lo * math.Pow(hi/lo, float64(k)/(n-1))
			l.X, l.Y = append(l.X, x), append(l.Y, tr.At(x))
		}
		p.Lines = append(p.Lines, l)
		legend = append(legend, LegendEntry{Label: fmt.Sprintf("Dense trend (%+.1f per 10×)", tr.B), Color: trendColor, Dashed: true, Line: true})
	}
	// Parameters compare by ratio, and the trend is linear in log x.
	p.LogX = len(p.Markers) > 0 && lo > 0
	return Figure{Name: "score_vs_params", Title: "Average task score against activated parameters", Cols: 1, Panels: []Panel{p}, Legend: legend}, tr
}

// wideRange reports whether a panel's x values are all positive and span a
// factor of ten or more: then a log axis shows them best.
func wideRange(p Panel) bool {
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, l := range p.Lines {
		for _, x := range l.X {
			lo, hi = math.Min(lo, x), math.Max(hi, x)
		}
	}
	for _, m := range p.Markers {
		lo, hi = math.Min(lo, m.X), math.Max(hi, m.X)
	}
	return lo > 0 && hi/lo >= 10
}

// Figures returns every figure of runs, in a fixed order.
func Figures(runs []*Run) []Figure {
	sc, _ := ScatterFigure(runs)
	return []Figure{LossFigure(runs), TaskFigure(runs), sc, FLOPsFigure(runs)}
}

// Panel and figure sizes: large enough to read at a glance.
const (
	panelW  = 5 * vg.Inch
	panelH  = 3.6 * vg.Inch
	gridW   = 3.4 * vg.Inch // a panel of the task grid
	gridH   = 2.7 * vg.Inch
	titleH  = 0.45 * vg.Inch
	pngDPI  = 144
	fontPts = 11
)

// Render draws f in format "png" or "svg".
func Render(f Figure, format string, w io.Writer) error {
	rows := (len(f.Panels) + f.Cols - 1) / f.Cols
	pw, ph := panelW, panelH
	if len(f.Panels) > 1 {
		pw, ph = gridW, gridH
	}
	plots := make([][]*plot.Plot, rows)
	for i := range plots {
		plots[i] = make([]*plot.Plot, f.Cols)
	}
	for i, p := range f.Panels {
		pl, err := buildPlot(p)
		if err != nil {
			return fmt.Errorf("plot %s: %w", f.Name, err)
		}
		plots[i/f.Cols][i%f.Cols] = pl
	}
	leg := plot.NewLegend()
	leg.TextStyle.Font.Size = fontPts
	leg.Top, leg.Left = true, true
	leg.ThumbnailWidth = 0.45 * vg.Inch
	leg.Padding = vg.Points(5)
	var legW vg.Length
	for _, e := range f.Legend {
		leg.Add(e.Label, legendThumb(e))
		legW = max(legW, leg.TextStyle.Width(e.Label))
	}
	if len(f.Legend) > 0 {
		legW += leg.ThumbnailWidth + 0.4*vg.Inch
	}
	width := vg.Length(f.Cols)*pw + legW
	height := vg.Length(rows)*ph + titleH
	var c vg.CanvasWriterTo
	switch format {
	case "png":
		c = vgimg.PngCanvas{Canvas: vgimg.NewWith(vgimg.UseWH(width, height), vgimg.UseDPI(pngDPI), vgimg.UseBackgroundColor(color.White))}
	case "svg":
		c = vgsvg.New(width, height)
	default:
		return fmt.Errorf("plot %s: unknown format %q", f.Name, format)
	}
	dc := draw.New(c)
	if f.Title != "" {
		title := plot.New().Title.TextStyle
		title.Font.Size = 14
		title.XAlign = draw.XCenter
		title.YAlign = draw.YTop
		dc.FillText(title, vg.Point{X: (width - legW) / 2, Y: height - 0.12*vg.Inch}, f.Title)
	}
	grid := draw.Crop(dc, 0, -legW, 0, -titleH)
	tiles := draw.Tiles{Rows: rows, Cols: f.Cols, PadX: 0.15 * vg.Inch, PadY: 0.15 * vg.Inch, PadLeft: 0.05 * vg.Inch, PadRight: 0.1 * vg.Inch, PadBottom: 0.05 * vg.Inch}
	cs := plot.Align(plots, tiles, grid)
	for i := range plots {
		for j, pl := range plots[i] {
			if pl != nil {
				pl.Draw(cs[i][j])
			}
		}
	}
	if len(f.Legend) > 0 {
		strip := draw.Crop(dc, width-legW+0.15*vg.Inch, 0, 0, -titleH-0.2*vg.Inch)
		leg.Draw(strip)
	}
	if _, err := c.WriteTo(w); err != nil {
		return fmt.Errorf("plot %s: %w", f.Name, err)
	}
	return nil
}

func legendThumb(e LegendEntry) plot.Thumbnailer {
	if e.Line {
		l := &plotter.Line{LineStyle: lineStyle(e.Color, e.Dashed)}
		return l
	}
	s := &plotter.Scatter{GlyphStyle: glyphStyle(e.Color, e.Glyph == "triangle")}
	return s
}

func lineStyle(c color.RGBA, dashed bool) draw.LineStyle {
	s := draw.LineStyle{Color: c, Width: vg.Points(2)}
	if dashed {
		s.Dashes = []vg.Length{vg.Points(6), vg.Points(3)}
	}
	return s
}

func glyphStyle(c color.RGBA, triangle bool) draw.GlyphStyle {
	if triangle {
		return draw.GlyphStyle{Color: c, Radius: vg.Points(5), Shape: draw.PyramidGlyph{}}
	}
	return draw.GlyphStyle{Color: c, Radius: vg.Points(4), Shape: draw.CircleGlyph{}}
}

func buildPlot(p Panel) (*plot.Plot, error) {
	pl := plot.New()
	pl.Title.Text = p.Title
	pl.Title.TextStyle.Font.Size = fontPts + 1
	pl.X.Label.Text, pl.Y.Label.Text = p.XLabel, p.YLabel
	for _, ax := range []*plot.Axis{&pl.X, &pl.Y} {
		ax.Label.TextStyle.Font.Size = fontPts
		ax.Tick.Label.Font.Size = fontPts - 1
	}
	pl.Add(plotter.NewGrid())
	pl.X.Tick.Marker, pl.Y.Tick.Marker = niceTicks{}, niceTicks{}
	if p.LogX {
		pl.X.Scale = plot.LogScale{}
		pl.X.Tick.Marker = logTicks{}
	}
	for _, l := range p.Lines {
		if len(l.X) == 0 {
			continue
		}
		xys := make(plotter.XYs, len(l.X))
		for i := range l.X {
			xys[i] = plotter.XY{X: l.X[i], Y: l.Y[i]}
		}
		line, err := plotter.NewLine(xys)
		if err != nil {
			return nil, err
		}
		line.LineStyle = lineStyle(l.Color, l.Dashed)
		pl.Add(line)
		if l.Points {
			sc, err := plotter.NewScatter(xys)
			if err != nil {
				return nil, err
			}
			sc.GlyphStyle = glyphStyle(l.Color, false)
			sc.GlyphStyle.Radius = vg.Points(2.5)
			pl.Add(sc)
		}
	}
	if len(p.Markers) > 0 {
		xys := make(plotter.XYs, len(p.Markers))
		labels := make([]string, len(p.Markers))
		for i, m := range p.Markers {
			xys[i] = plotter.XY{X: m.X, Y: m.Y}
			labels[i] = m.Label
			sc, err := plotter.NewScatter(plotter.XYs{xys[i]})
			if err != nil {
				return nil, err
			}
			sc.GlyphStyle = glyphStyle(m.Color, m.MoE)
			pl.Add(sc)
		}
		lab, err := plotter.NewLabels(plotter.XYLabels{XYs: xys, Labels: labels})
		if err != nil {
			return nil, err
		}
		for i := range lab.TextStyle {
			lab.TextStyle[i].Font.Size = fontPts - 1
		}
		lab.Offset = vg.Point{X: vg.Points(7), Y: vg.Points(3)}
		pl.Add(lab)
	}
	if pl.X.Min > pl.X.Max || pl.Y.Min > pl.Y.Max { // a panel without data
		pl.X.Min, pl.X.Max, pl.Y.Min, pl.Y.Max = 1, 10, 0, 1
	}
	// Leave a margin so that points on the edge and labels stay inside.
	if pl.X.Max > pl.X.Min && !p.LogX {
		pad := 0.04 * (pl.X.Max - pl.X.Min)
		pl.X.Min -= pad
		pl.X.Max += 3 * pad
	}
	if pl.Y.Max > pl.Y.Min {
		pad := 0.06 * (pl.Y.Max - pl.Y.Min)
		pl.Y.Min -= pad
		pl.Y.Max += pad
	}
	if p.LogX && pl.X.Max > 0 {
		pl.X.Max *= 1.6 // room for the point labels
		pl.X.Min /= 1.2
	}
	return pl, nil
}

// niceTicks puts four to eight labelled ticks at multiples of 1, 2 or 5 × 10^k,
// with SI labels (2M, 1.5T): more labels than gonum's default, so values
// can be read off the axis.
type niceTicks struct{}

func (niceTicks) Ticks(lo, hi float64) []plot.Tick {
	if !(hi > lo) || math.IsInf(hi-lo, 0) {
		return []plot.Tick{{Value: lo, Label: SI(lo)}}
	}
	raw := (hi - lo) / 8
	mag := math.Pow(10, math.Floor(math.Log10(raw)))
	step := mag
	for _, m := range []float64{1, 2, 5, 10} {
		if m*mag >= raw {
			step = m * mag
			break
		}
	}
	minor := step / 5
	if step/mag == 2 || step/mag == 20 {
		minor = step / 4
	}
	var ts []plot.Tick
	for k := math.Ceil(lo / minor); k*minor <= hi+1e-9*minor; k++ {
		v := k * minor
		if r := math.Round(v / step); math.Abs(v/step-r) < 1e-6 {
			v = r * step
			ts = append(ts, plot.Tick{Value: v, Label: SI(v)})
		} else {
			ts = append(ts, plot.Tick{Value: v})
		}
	}
	return ts
}

// logTicks labels 1, 2 and 5 × 10^k on a log axis spanning under three
// decades (only powers of ten above), with minor ticks at the other
// integer multiples.
type logTicks struct{}

func (logTicks) Ticks(lo, hi float64) []plot.Tick {
	label := map[int]bool{1: true, 2: true, 5: true}
	if hi/lo >= 1000 {
		label = map[int]bool{1: true}
	}
	var ts []plot.Tick
	for k := math.Floor(math.Log10(lo)); math.Pow(10, k) <= hi; k++ {
		for m := 1; m <= 9; m++ {
			v := float64(m) * math.Pow(10, k)
			if v < lo || v > hi {
				continue
			}
			t := plot.Tick{Value: v}
			if label[m] {
				t.Label = SI(v)
			}
			ts = append(ts, t)
		}
	}
	return ts
}

// WriteFigures renders every figure of runs into dir as NAME.png and
// NAME.svg and returns the paths written.
func WriteFigures(runs []*Run, dir string) ([]string, error) {
	if len(runs) == 0 {
		return nil, errors.New("report: no runs to plot")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create %s: %w", dir, err)
	}
	var paths []string
	for _, f := range Figures(runs) {
		if !f.hasData() {
			continue // e.g. no task has eval lines
		}
		for _, format := range []string{"png", "svg"} {
			path := filepath.Join(dir, f.Name+"."+format)
			if err := writeFigure(f, format, path); err != nil {
				return paths, err
			}
			paths = append(paths, path)
		}
	}
	return paths, nil
}

func (f Figure) hasData() bool {
	for _, p := range f.Panels {
		if len(p.Markers) > 0 {
			return true
		}
		for _, l := range p.Lines {
			if len(l.X) > 0 {
				return true
			}
		}
	}
	return false
}

func writeFigure(f Figure, format, path string) error {
	tmp := path + ".tmp"
	out, err := os.Create(tmp)
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	err = Render(f, format, out)
	if cerr := out.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("write %s: %w", path, cerr)
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
	}
	return err
}
