package report

import (
	"cmp"
	"errors"
	"fmt"
	"image/color"
	"io"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
	"gonum.org/v1/plot/vg/vgsvg"

	"github.com/moetrain/moetrain/internal/atomicfile"
	"github.com/moetrain/moetrain/internal/stats"
)

// Line is one plotted line (a run's curve, or a trend).
type Line struct {
	Label  string
	X, Y   []float64
	Color  color.RGBA
	Dashed bool // dense runs are dashed, MoE runs solid
	Points bool // draw a marker at every point
	NoLine bool // only the markers (held-out points)
	Faint  bool // thin and pale: the raw curve under a smoothed one
	// Kind says what the line is ("train", "train-raw", "heldout", "score",
	// "trend"), for readers of the figure's data (tests, the live page).
	Kind string
}

// Band is a shaded area between two curves (min and max over seeds).
type Band struct {
	X, Lo, Hi []float64
	Color     color.RGBA
}

// Marker is one labelled point of a scatter.
type Marker struct {
	Label string
	X, Y  float64
	YErr  float64 // half-length of a vertical bar (the std over seeds); 0: none
	Color color.RGBA
	MoE   bool // MoE runs are triangles, dense runs circles
}

// Panel is one set of axes.
type Panel struct {
	Title          string
	XLabel, YLabel string
	// LogX puts X on a log scale; only set when every X is positive.
	LogX bool
	// SciX labels X ticks as m×10ⁿ (FLOPs), where an SI letter could be
	// misread.
	SciX    bool
	Lines   []Line
	Bands   []Band
	Markers []Marker
	// Chance, when positive, is drawn as a dotted horizontal line: the
	// score of a uniform guess.
	Chance float64
	// Heat, when set, fills the panel with a heatmap (expert load).
	Heat *Heat
}

// Figure is one output image: panels in a grid, a title, and a legend in a
// strip below the panels (so it never hides data and leaves them the width).
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
	Dotted bool
	Line   bool // a line sample
	Faint  bool
	Box    bool // a filled square (a band, a heatmap colour)
	Glyph  string
}

// palette is Tableau 10: distinct at a glance and in grey print.
var palette = []color.RGBA{
	{31, 119, 180, 255}, {255, 127, 14, 255}, {44, 160, 44, 255}, {214, 39, 40, 255}, {148, 103, 189, 255},
	{140, 86, 75, 255}, {227, 119, 194, 255}, {127, 127, 127, 255}, {188, 189, 34, 255}, {23, 190, 207, 255},
}

// RunColor is the color of run (or group) i in every figure.
func RunColor(i int) color.RGBA { return palette[i%len(palette)] }

// trendColor draws the dense trend line (black, so it is not mistaken for a run).
var trendColor = color.RGBA{0, 0, 0, 255}

// keyColor draws legend entries that explain a style, not a run.
var keyColor = color.RGBA{90, 90, 90, 255}

// chanceColor is the chance line's.
var chanceColor = color.RGBA{110, 110, 110, 255}

func groupLegend(gs []Group) []LegendEntry {
	var l []LegendEntry
	for _, g := range gs {
		l = append(l, LegendEntry{Label: g.Name + " (" + Variant(g.Runs[0].Config.Model) + ")" + seedsLabel(len(g.Runs)),
			Color: RunColor(g.Index), Dashed: !g.IsMoE(), Line: true})
	}
	return l
}

func tokensOf(ts []int64, scale float64) []float64 {
	out := make([]float64, len(ts))
	for i, t := range ts {
		out[i] = float64(t) * scale
	}
	return out
}

// lossPanel draws, per group, the training loss (smoothed; the raw curve
// faint for one seed, a min–max band for several) and the held-out loss as
// points, against tokens × xscale(group).
func lossPanel(gs []Group, xscale func(Group) float64) (Panel, []LegendEntry) {
	p := Panel{YLabel: "Loss (nats/token)"}
	var raw, band, heldout, trained bool
	for _, g := range gs {
		c, dashed, k := RunColor(g.Index), !g.IsMoE(), xscale(g)
		var tr, ho [][]Point
		for _, r := range g.Runs {
			if ps := r.TrainSeries(); len(ps) > 0 {
				tr = append(tr, Smooth(ps))
				if len(g.Runs) == 1 {
					xs, ys := seriesXY(ps, scaled(k), valueY)
					p.Lines = append(p.Lines, Line{Label: g.Name, X: xs, Y: ys, Color: c, Dashed: dashed, Faint: true, Kind: "train-raw"})
					raw = true
				}
			}
			if ps := r.Series(HeldOut, "loss"); len(ps) > 0 {
				ho = append(ho, ps)
			}
		}
		if len(tr) > 0 {
			s := spreadOf(tr)
			if len(tr) > 1 {
				p.Bands = append(p.Bands, Band{X: tokensOf(s.Tokens, k), Lo: s.Lo, Hi: s.Hi, Color: c})
				band = true
			}
			p.Lines = append(p.Lines, Line{Label: g.Name, X: tokensOf(s.Tokens, k), Y: s.Mean, Color: c, Dashed: dashed, Kind: "train"})
			trained = true
		}
		if len(ho) > 0 {
			s := spreadOf(ho)
			p.Lines = append(p.Lines, Line{Label: g.Name, X: tokensOf(s.Tokens, k), Y: s.Mean, Color: c, Points: true, NoLine: true, Kind: "heldout"})
			heldout = true
		}
	}
	var key []LegendEntry
	if trained {
		key = append(key, LegendEntry{Label: "training loss, smoothed (line)", Color: keyColor, Line: true})
	}
	if raw {
		key = append(key, LegendEntry{Label: "training loss, raw (pale)", Color: keyColor, Line: true, Faint: true})
	}
	if band {
		key = append(key, LegendEntry{Label: "min–max over seeds (band)", Color: fade(keyColor, 0.25), Box: true})
	}
	if heldout {
		key = append(key, LegendEntry{Label: "held-out loss: first eval.tokens of the validation split (points)", Color: keyColor, Glyph: "circle"})
	}
	return p, key
}

func seriesXY(ps []Point, x func(Point) float64, y func(Point) float64) ([]float64, []float64) {
	xs, ys := make([]float64, len(ps)), make([]float64, len(ps))
	for i, p := range ps {
		xs[i], ys[i] = x(p), y(p)
	}
	return xs, ys
}

func valueY(p Point) float64 { return p.Value }

func scaled(k float64) func(Point) float64 {
	return func(p Point) float64 { return float64(p.Tokens) * k }
}

// LossFigure is training and held-out loss against training tokens.
func LossFigure(runs []*Run) Figure {
	gs := Groups(runs)
	p, key := lossPanel(gs, func(Group) float64 { return 1 })
	p.XLabel = "Training tokens"
	return Figure{Name: "loss_vs_tokens", Title: "Training and held-out loss", Cols: 1, Panels: []Panel{p}, Legend: append(groupLegend(gs), key...)}
}

// FLOPsFigure is training and held-out loss against training compute
// (tokens × FLOPs per token, model.FLOPsPerToken).
func FLOPsFigure(runs []*Run) Figure {
	gs := Groups(runs)
	p, key := lossPanel(gs, func(g Group) float64 { return g.Runs[0].FLOPsPerToken() })
	p.XLabel = "Training compute (floating-point operations)"
	p.SciX = true
	p.LogX = wideRange(p)
	return Figure{Name: "loss_vs_flops", Title: "Training and held-out loss against training compute", Cols: 1, Panels: []Panel{p}, Legend: append(groupLegend(gs), key...)}
}

// Chance returns the task's chance score (a uniform guess) as logged with
// its evaluations, and false when the run has none (generation tasks, or
// runs from before chance was logged).
func (r *Run) Chance(task string) (float64, bool) {
	v, ok := r.Last(task, "chance")
	return v, ok && v > 0
}

// TaskFigure is a grid of panels, one per task (every task any run has),
// each the task's score against training tokens with a line per group
// (the mean over seeds, a min–max band for several) and the chance line.
func TaskFigure(runs []*Run) Figure {
	tasks := AllTasks(runs)
	gs := Groups(runs)
	f := Figure{Name: "tasks_vs_tokens", Title: "Task scores during training", Cols: min(3, max(1, len(tasks))), Legend: groupLegend(gs)}
	var chance, band bool
	for _, task := range tasks {
		p := Panel{Title: task, XLabel: "Training tokens"}
		metrics := map[string]bool{}
		for _, g := range gs {
			var series [][]Point
			for _, r := range g.Runs {
				metric := MainMetric(r, task)
				if metric == "" {
					continue
				}
				metrics[metric] = true
				series = append(series, r.Series(task, metric))
				if c, ok := r.Chance(task); ok {
					p.Chance = 100 * c
				}
			}
			if len(series) == 0 {
				continue
			}
			s := spreadOf(series)
			pct := func(v []float64) []float64 {
				out := make([]float64, len(v))
				for i, x := range v {
					out[i] = 100 * x
				}
				return out
			}
			if len(series) > 1 {
				p.Bands = append(p.Bands, Band{X: tokensOf(s.Tokens, 1), Lo: pct(s.Lo), Hi: pct(s.Hi), Color: RunColor(g.Index)})
				band = true
			}
			p.Lines = append(p.Lines, Line{Label: g.Name, X: tokensOf(s.Tokens, 1), Y: pct(s.Mean), Color: RunColor(g.Index), Dashed: !g.IsMoE(), Points: true, Kind: "score"})
		}
		chance = chance || p.Chance > 0
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
	if band {
		f.Legend = append(f.Legend, LegendEntry{Label: "min–max over seeds (band)", Color: fade(keyColor, 0.25), Box: true})
	}
	if chance {
		f.Legend = append(f.Legend, LegendEntry{Label: "chance: a uniform guess (dotted)", Color: chanceColor, Dotted: true, Line: true})
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

// ScatterFigure is the seed scatter: two panels against activated
// parameters, the average score over the tasks all runs share and the
// held-out loss. A point per seed group (Groups): the mean over its seeds
// with a ±1 standard deviation bar when it has several, circles dense,
// triangles MoE, and in each panel the least-squares trend through the dense
// groups (linear in log parameters), drawn across the whole x range. It
// returns the score panel's trend.
func ScatterFigure(runs []*Run) (Figure, Trend) {
	common := CommonTasks(runs)
	tbl := Compare(runs)
	col := map[*Run]Column{}
	for i, r := range runs {
		col[r] = tbl.Columns[i]
	}
	gs := Groups(runs)
	score := Panel{XLabel: "Activated parameters", YLabel: fmt.Sprintf("Average score over %d tasks (%%)", len(common))}
	if len(common) == 1 {
		score.YLabel = fmt.Sprintf("Score on %s (%%)", common[0])
	}
	tr := scatterPanel(&score, gs, col, func(c Column) float64 { return 100 * c.Average })
	loss := Panel{XLabel: "Activated parameters", YLabel: "Held-out loss (nats/token)"}
	lt := scatterPanel(&loss, gs, col, func(c Column) float64 { return c.Loss })
	score.Title, loss.Title = "Average task score", "Held-out loss"
	if tr.OK {
		score.Title += fmt.Sprintf(" (dense trend %+.1f per 10×)", tr.B)
	}
	if lt.OK {
		loss.Title += fmt.Sprintf(" (dense trend %+.3f per 10×)", lt.B)
	}
	var legend []LegendEntry
	var dense, moe bool
	for _, p := range []Panel{score, loss} {
		for _, m := range p.Markers {
			dense, moe = dense || !m.MoE, moe || m.MoE
		}
	}
	if dense {
		legend = append(legend, LegendEntry{Label: "Dense", Color: trendColor, Glyph: "circle"})
	}
	if moe {
		legend = append(legend, LegendEntry{Label: "MoE", Color: trendColor, Glyph: "triangle"})
	}
	if tr.OK || lt.OK {
		legend = append(legend, LegendEntry{Label: "Dense trend (least squares in log parameters)", Color: trendColor, Dashed: true, Line: true})
	}
	for _, g := range gs {
		if len(g.Runs) > 1 {
			legend = append(legend, LegendEntry{Label: "bars: ±1 std over seeds", Color: trendColor, Line: true})
			break
		}
	}
	var panels []Panel
	for _, p := range []Panel{score, loss} {
		if len(p.Markers) > 0 {
			panels = append(panels, p)
		}
	}
	if len(panels) == 0 {
		panels = []Panel{score}
	}
	return Figure{Name: "score_vs_params", Title: "Task score and held-out loss against activated parameters", Cols: len(panels), Panels: panels, Legend: legend}, tr
}

// scatterPanel adds a marker per group with a finite value (the mean over
// its seeds, the sample std as its bar) and the dense groups' trend, and
// returns the trend.
func scatterPanel(p *Panel, gs []Group, col map[*Run]Column, value func(Column) float64) Trend {
	var dx, dy []float64
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, g := range gs {
		var vs []float64
		for _, r := range g.Runs {
			if v := value(col[r]); !math.IsNaN(v) {
				vs = append(vs, v)
			}
		}
		if len(vs) == 0 {
			continue
		}
		mean, std := stats.MeanStd(vs)
		if math.IsNaN(std) {
			std = 0 // one seed: a point without an error bar
		}
		label := g.Name
		if len(vs) > 1 {
			label = fmt.Sprintf("%s (%d)", g.Name, len(vs))
		}
		m := Marker{Label: label, X: float64(col[g.Runs[0]].Activated), Y: mean, YErr: std, Color: RunColor(g.Index), MoE: g.IsMoE()}
		p.Markers = append(p.Markers, m)
		lo, hi = math.Min(lo, m.X), math.Max(hi, m.X)
		if !m.MoE {
			dx, dy = append(dx, m.X), append(dy, m.Y)
		}
	}
	tr := FitLogTrend(dx, dy)
	if tr.OK {
		const n = 64
		l := Line{Label: "Dense trend", Color: trendColor, Dashed: true, Kind: "trend"}
		for k := 0; k < n; k++ {
			x := lo * math.Pow(hi/lo, float64(k)/(n-1))
			l.X, l.Y = append(l.X, x), append(l.Y, tr.At(x))
		}
		p.Lines = append(p.Lines, l)
	}
	// Parameters compare by ratio, and the trend is linear in log x; a
	// narrow range (one run, or runs of one size) reads better linear.
	p.LogX = len(p.Markers) > 0 && lo > 0 && hi/lo >= 3
	return tr
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
	panelW  = 5.5 * vg.Inch
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
		pl, err := buildPlot(p, len(f.Panels) > 1)
		if err != nil {
			return fmt.Errorf("plot %s: %w", f.Name, err)
		}
		plots[i/f.Cols][i%f.Cols] = pl
	}
	width := vg.Length(f.Cols) * pw
	legs, legH := legendColumns(f.Legend, width)
	height := vg.Length(rows)*ph + titleH + legH
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
		dc.FillText(title, vg.Point{X: width / 2, Y: height - 0.12*vg.Inch}, f.Title)
	}
	grid := draw.Crop(dc, 0, 0, legH, -titleH)
	tiles := draw.Tiles{Rows: rows, Cols: f.Cols, PadX: 0.15 * vg.Inch, PadY: 0.15 * vg.Inch, PadLeft: 0.05 * vg.Inch, PadRight: 0.1 * vg.Inch, PadBottom: 0.05 * vg.Inch}
	cs := plot.Align(plots, tiles, grid)
	for i := range plots {
		for j, pl := range plots[i] {
			if pl != nil {
				pl.Draw(cs[i][j])
			}
		}
	}
	x := vg.Length(0)
	for _, l := range legs {
		strip := draw.Crop(dc, x+0.1*vg.Inch, 0, 0, legH-height)
		l.leg.Draw(strip)
		x += l.width
	}
	if _, err := c.WriteTo(w); err != nil {
		return fmt.Errorf("plot %s: %w", f.Name, err)
	}
	return nil
}

type legendColumn struct {
	leg   *plot.Legend
	width vg.Length
}

// legendColumns lays the legend out below the panels in as many columns
// as fit the width, and returns them with the strip's height.
func legendColumns(entries []LegendEntry, width vg.Length) ([]legendColumn, vg.Length) {
	if len(entries) == 0 {
		return nil, 0
	}
	newLeg := func() *plot.Legend {
		l := new(plot.Legend)
		*l = plot.NewLegend()
		l.TextStyle.Font.Size = fontPts - 1
		l.Top, l.Left = true, true
		l.ThumbnailWidth = 0.4 * vg.Inch
		l.Padding = vg.Points(4)
		return l
	}
	probe := newLeg()
	var colW vg.Length
	for _, e := range entries {
		colW = max(colW, probe.TextStyle.Width(e.Label))
	}
	colW += probe.ThumbnailWidth + 0.35*vg.Inch
	ncols := max(1, min(len(entries), int((width-0.2*vg.Inch)/colW)))
	perCol := (len(entries) + ncols - 1) / ncols
	var cols []legendColumn
	for i := 0; i < len(entries); i += perCol {
		l := newLeg()
		for _, e := range entries[i:min(i+perCol, len(entries))] {
			l.Add(e.Label, legendThumb(e))
		}
		cols = append(cols, legendColumn{leg: l, width: colW})
	}
	lineH := probe.TextStyle.Height("Xg") + probe.Padding
	return cols, vg.Length(perCol)*lineH + 0.25*vg.Inch
}

func legendThumb(e LegendEntry) plot.Thumbnailer {
	switch {
	case e.Box:
		return boxThumb{e.Color}
	case e.Line:
		st := lineStyle(e.Color, e.Dashed)
		if e.Dotted {
			st = dottedStyle(e.Color)
		}
		if e.Faint {
			st = faintStyle(e.Color)
		}
		return &plotter.Line{LineStyle: st}
	}
	return &plotter.Scatter{GlyphStyle: glyphStyle(e.Color, e.Glyph == "triangle")}
}

// boxThumb is a filled square legend sample.
type boxThumb struct{ c color.Color }

func (b boxThumb) Thumbnail(c *draw.Canvas) {
	h := c.Max.Y - c.Min.Y
	y := c.Min.Y
	c.FillPolygon(b.c, []vg.Point{{X: c.Min.X, Y: y}, {X: c.Min.X + h*1.6, Y: y}, {X: c.Min.X + h*1.6, Y: y + h}, {X: c.Min.X, Y: y + h}})
}

func lineStyle(c color.RGBA, dashed bool) draw.LineStyle {
	s := draw.LineStyle{Color: c, Width: vg.Points(2)}
	if dashed {
		s.Dashes = []vg.Length{vg.Points(6), vg.Points(3)}
	}
	return s
}

func faintStyle(c color.RGBA) draw.LineStyle {
	return draw.LineStyle{Color: fade(c, 0.3), Width: vg.Points(1)}
}

func dottedStyle(c color.RGBA) draw.LineStyle {
	return draw.LineStyle{Color: c, Width: vg.Points(1.5), Dashes: []vg.Length{vg.Points(1.5), vg.Points(3)}}
}

// fade mixes c with white: a pale, opaque version of it (SVG and PNG
// viewers agree on opaque colors).
func fade(c color.RGBA, keep float64) color.RGBA {
	mix := func(v uint8) uint8 { return uint8(math.Round(float64(v)*keep + 255*(1-keep))) }
	return color.RGBA{mix(c.R), mix(c.G), mix(c.B), 255}
}

func glyphStyle(c color.RGBA, triangle bool) draw.GlyphStyle {
	if triangle {
		return draw.GlyphStyle{Color: c, Radius: vg.Points(5), Shape: draw.PyramidGlyph{}}
	}
	return draw.GlyphStyle{Color: c, Radius: vg.Points(4), Shape: draw.CircleGlyph{}}
}

func xys(x, y []float64) plotter.XYs {
	out := make(plotter.XYs, len(x))
	for i := range x {
		out[i] = plotter.XY{X: x[i], Y: y[i]}
	}
	return out
}

// buildPlot makes one panel's plot; a narrow one (a panel of a grid) gets
// fewer labelled x ticks, so that they do not run into each other.
func buildPlot(p Panel, narrow bool) (*plot.Plot, error) {
	pl := plot.New()
	pl.Title.Text = p.Title
	pl.Title.TextStyle.Font.Size = fontPts + 1
	pl.X.Label.Text, pl.Y.Label.Text = p.XLabel, p.YLabel
	for _, ax := range []*plot.Axis{&pl.X, &pl.Y} {
		ax.Label.TextStyle.Font.Size = fontPts
		ax.Tick.Label.Font.Size = fontPts - 1
	}
	xt := niceTicks{sci: p.SciX}
	if narrow {
		xt.labels = 5
	}
	pl.X.Tick.Marker, pl.Y.Tick.Marker = xt, niceTicks{}
	if p.LogX {
		pl.X.Scale = plot.LogScale{}
		pl.X.Tick.Marker = logTicks{sci: p.SciX}
	}
	if p.Heat != nil {
		if err := addHeat(pl, p.Heat); err != nil {
			return nil, err
		}
		return pl, nil
	}
	pl.Add(plotter.NewGrid())
	for _, b := range p.Bands {
		if len(b.X) < 2 {
			continue
		}
		pts := xys(b.X, b.Hi)
		for i := len(b.X) - 1; i >= 0; i-- {
			pts = append(pts, plotter.XY{X: b.X[i], Y: b.Lo[i]})
		}
		poly, err := plotter.NewPolygon(pts)
		if err != nil {
			return nil, err
		}
		poly.Color = fade(b.Color, 0.25)
		poly.LineStyle.Width = 0
		pl.Add(poly)
	}
	// Faint lines first, so the smoothed ones are drawn over them.
	for _, faint := range []bool{true, false} {
		for _, l := range p.Lines {
			if len(l.X) == 0 || l.Faint != faint {
				continue
			}
			pts := xys(l.X, l.Y)
			if !l.NoLine {
				line, err := plotter.NewLine(pts)
				if err != nil {
					return nil, err
				}
				line.LineStyle = lineStyle(l.Color, l.Dashed)
				if l.Faint {
					line.LineStyle = faintStyle(l.Color)
				}
				pl.Add(line)
			}
			if l.Points || l.NoLine {
				sc, err := plotter.NewScatter(pts)
				if err != nil {
					return nil, err
				}
				sc.GlyphStyle = glyphStyle(l.Color, false)
				sc.GlyphStyle.Radius = vg.Points(2.5)
				if l.NoLine {
					sc.GlyphStyle.Radius = vg.Points(3.5)
				}
				pl.Add(sc)
			}
		}
	}
	if len(p.Markers) > 0 {
		pts := make(plotter.XYs, len(p.Markers))
		labels := make([]string, len(p.Markers))
		for i, m := range p.Markers {
			pts[i] = plotter.XY{X: m.X, Y: m.Y}
			labels[i] = m.Label
			sc, err := plotter.NewScatter(plotter.XYs{pts[i]})
			if err != nil {
				return nil, err
			}
			sc.GlyphStyle = glyphStyle(m.Color, m.MoE)
			pl.Add(sc)
			if m.YErr > 0 {
				bar, err := plotter.NewYErrorBars(errorPoints{plotter.XYs{pts[i]}, plotter.YErrors{{Low: m.YErr, High: m.YErr}}})
				if err != nil {
					return nil, err
				}
				bar.LineStyle = lineStyle(m.Color, false)
				pl.Add(bar)
			}
		}
		lab, err := plotter.NewLabels(plotter.XYLabels{XYs: pts, Labels: labels})
		if err != nil {
			return nil, err
		}
		for i := range lab.TextStyle {
			lab.TextStyle[i].Font.Size = fontPts - 1
		}
		lab.Offset = vg.Point{X: vg.Points(7), Y: vg.Points(3)}
		pl.Add(lab)
	}
	if p.Chance > 0 {
		pl.Y.Min = math.Min(pl.Y.Min, p.Chance)
		pl.Y.Max = math.Max(pl.Y.Max, p.Chance)
	}
	if pl.X.Min > pl.X.Max || pl.Y.Min > pl.Y.Max { // a panel without data
		pl.X.Min, pl.X.Max, pl.Y.Min, pl.Y.Max = 1, 10, 0, 1
	}
	// One point (one run, one evaluation): widen the axes around it so
	// that they have ticks to read it by.
	widen := func(a *plot.Axis) {
		if a.Min == a.Max {
			d := math.Max(math.Abs(a.Min)*0.5, 1)
			a.Min, a.Max = a.Min-d, a.Max+d
			if a.Min < 0 && a.Max-d >= 0 {
				a.Min = 0
			}
		}
	}
	if !p.LogX {
		widen(&pl.X)
	}
	widen(&pl.Y)
	// Leave a margin so that points on the edge and labels stay inside.
	if pl.X.Max > pl.X.Min && !p.LogX {
		pad := 0.04 * (pl.X.Max - pl.X.Min)
		pl.X.Min -= pad
		pl.X.Max += pad
		if len(p.Markers) > 0 {
			pl.X.Max += 0.15 * (pl.X.Max - pl.X.Min) // room for the point labels
		}
	}
	if pl.Y.Max > pl.Y.Min {
		pad := 0.06 * (pl.Y.Max - pl.Y.Min)
		pl.Y.Min -= pad
		pl.Y.Max += pad
	}
	if p.LogX && pl.X.Max > 0 {
		if len(p.Markers) > 0 {
			pl.X.Max *= 1.6 // room for the point labels
		}
		pl.X.Min /= 1.2
	}
	if p.Chance > 0 {
		ch := plotter.NewFunction(func(float64) float64 { return p.Chance })
		ch.LineStyle = dottedStyle(chanceColor)
		pl.Add(ch)
	}
	return pl, nil
}

// errorPoints are points with vertical error bars (plotter.YErrorBars).
type errorPoints struct {
	plotter.XYs
	plotter.YErrors
}

// niceTicks puts four to eight labelled ticks at multiples of 1, 2 or 5 × 10^k,
// with SI labels (2M, 1.5T): more labels than gonum's default, so values
// can be read off the axis.
type niceTicks struct {
	sci    bool // m×10ⁿ labels instead of SI letters
	labels int  // the most labelled ticks wanted (0: 8)
}

func (n niceTicks) label(v float64) string {
	if n.sci {
		return Sci(v)
	}
	return SI(v)
}

// labelStep labels v on an axis of ticks step apart: SI above one, else
// as many decimals as the step needs (0.0015, not SI's rounded 0).
func (n niceTicks) labelStep(v, step float64) string {
	if n.sci || step >= 1 || v == 0 {
		return n.label(v)
	}
	dec := int(math.Ceil(-math.Log10(step) - 1e-9))
	return strconv.FormatFloat(v, 'f', dec, 64)
}

func (n niceTicks) Ticks(lo, hi float64) []plot.Tick {
	if !(hi > lo) || math.IsInf(hi-lo, 0) {
		return []plot.Tick{{Value: lo, Label: n.label(lo)}}
	}
	raw := (hi - lo) / float64(cmp.Or(n.labels, 8))
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
			ts = append(ts, plot.Tick{Value: v, Label: n.labelStep(v, step)})
		} else {
			ts = append(ts, plot.Tick{Value: v})
		}
	}
	return ts
}

// logTicks labels 1, 2 and 5 × 10^k on a log axis spanning under three
// decades (only powers of ten above), with minor ticks at the other
// integer multiples.
type logTicks struct {
	sci bool // m×10ⁿ labels instead of SI letters
}

func (lt logTicks) Ticks(lo, hi float64) []plot.Tick {
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
				t.Label = niceTicks{sci: lt.sci}.label(v)
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
	figs := Figures(runs)
	for _, r := range runs {
		if f, ok := LoadFigure(r); ok {
			figs = append(figs, f)
		}
	}
	for _, f := range figs {
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
		if len(p.Markers) > 0 || p.Heat != nil {
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
	return atomicfile.Write(path, 0o644, func(w io.Writer) error { return Render(f, format, w) })
}
