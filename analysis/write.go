package analysis

import (
	"fmt"
	"image/color"
	"io"
	"math"
	"os"
	"path/filepath"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
	"gonum.org/v1/plot/vg/vgsvg"
)

// palette colours the series of a figure (domains, layers), in order.
var palette = []color.Color{color.RGBA{0x1f, 0x77, 0xb4, 0xff}, color.RGBA{0xd6, 0x27, 0x28, 0xff}, color.RGBA{0x2c, 0xa0, 0x2c, 0xff}, color.RGBA{0x94, 0x67, 0xbd, 0xff}}

// Written lists the files an analysis wrote.
type Written []string

// WriteCurve writes DIR/analysis-<what>.md, .csv, .png and .svg.
func WriteCurve(cv Curve, dir, label string) (Written, error) {
	t := cv.Table()
	title := t.Title
	if label != "" {
		t.Title += " — " + label
		title += "\n" + label // a second line: one line is wider than the plot
	}
	out, err := writeTables(dir, "analysis-"+cv.What, t)
	if err != nil {
		return out, err
	}
	p := plot.New()
	p.Title.Text = title
	p.Y.Label.Text = "held-out loss (nats/token)"
	xy := make(plotter.XYs, len(cv.Points))
	for i, pt := range cv.Points {
		xy[i] = plotter.XY{X: float64(pt.Setting), Y: pt.Loss}
		if cv.What == "redundancy" {
			xy[i].X = pt.Ratio
		}
	}
	if cv.What == "redundancy" {
		p.X.Label.Text = "ratio of disabled top routed experts (of N')"
	} else {
		p.X.Label.Text = "activated routed experts"
	}
	line, pts, err := plotter.NewLinePoints(xy)
	if err != nil {
		return out, err
	}
	p.Add(line, pts, plotter.NewGrid())
	files, err := savePlot(dir, "analysis-"+cv.What, 6*vg.Inch, 4*vg.Inch, [][]*plot.Plot{{p}})
	return append(out, files...), err
}

// WriteLoad writes DIR/analysis-load.md and .csv (per layer and domain),
// analysis-load-experts.csv (per expert) and analysis-load.png/.svg (one
// panel per MoE layer: each expert's share of the layer's load per domain).
func WriteLoad(r LoadResult, dir, label string) (Written, error) {
	t, e := r.Tables()
	if label != "" {
		t.Title += " — " + label
	}
	out, err := writeTables(dir, "analysis-load", t, e)
	if err != nil {
		return out, err
	}
	f, err := writeCSV(dir, "analysis-load-experts", e)
	if err != nil {
		return out, err
	}
	out = append(out, f)
	var row []*plot.Plot
	var grid [][]*plot.Plot
	const cols = 2
	for _, ll := range r.Layers {
		p := plot.New()
		p.Title.Text = fmt.Sprintf("layer %d (JSD %.3f bits, top-domain share %.2f)", ll.Layer, ll.JSD, ll.MeanTopShare)
		p.X.Label.Text = "routed expert"
		p.Y.Label.Text = "share of the layer's load"
		p.Add(plotter.NewGrid())
		// Experts are categories: a bar per domain beside each other per
		// expert, not lines joining unrelated experts.
		n := len(ll.Domains)
		w := vg.Points(math.Max(1, math.Min(8, 300/float64(max(1, n*len(ll.Domains[0].Load))))))
		top := 0.0
		for i, d := range ll.Domains {
			shares := normalise(d.Load)
			bars, err := plotter.NewBarChart(plotter.Values(shares), w)
			if err != nil {
				return out, err
			}
			bars.Color = palette[i%len(palette)]
			bars.LineStyle.Width = 0
			bars.Offset = w * vg.Length(float64(i)-float64(n-1)/2)
			p.Add(bars)
			p.Legend.Add(d.Domain, bars)
			for _, v := range shares {
				top = math.Max(top, v)
			}
		}
		// Headroom above the tallest bar for the legend, so it covers no bar.
		p.Y.Min, p.Y.Max = 0, top*(1.15+0.1*float64(n))
		p.Legend.Top = true
		row = append(row, p)
		if len(row) == cols {
			grid, row = append(grid, row), nil
		}
	}
	if len(row) > 0 {
		for len(row) < cols {
			row = append(row, nil)
		}
		grid = append(grid, row)
	}
	if len(grid) == 0 {
		return out, nil
	}
	files, err := savePlot(dir, "analysis-load", vg.Length(cols)*5*vg.Inch, vg.Length(len(grid))*3.5*vg.Inch, grid)
	return append(out, files...), err
}

// WriteTokens writes DIR/analysis-tokens.md and .csv (per MoE layer) and
// analysis-tokens-ids.csv (per layer and token id: its most frequent
// expert and purity, e.g. to compare two models' token maps).
func WriteTokens(r TokensResult, dir, label string) (Written, error) {
	t, ids := r.Tables()
	if label != "" {
		t.Title += " — " + label
	}
	out, err := writeTables(dir, "analysis-tokens", t)
	if err != nil {
		return out, err
	}
	f, err := writeCSV(dir, "analysis-tokens-ids", ids)
	if err != nil {
		return out, err
	}
	return append(out, f), nil
}

// writeCSV writes DIR/NAME.csv and returns its path.
func writeCSV(dir, name string, t Table) (string, error) {
	path := filepath.Join(dir, name+".csv")
	f, err := os.Create(path)
	if err != nil {
		return path, err
	}
	if err := t.CSV(f); err != nil {
		f.Close()
		return path, fmt.Errorf("write %s: %w", path, err)
	}
	return path, f.Close()
}

func writeTables(dir, name string, ts ...Table) (Written, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create %s: %w", dir, err)
	}
	var out Written
	write := func(path string, fn func(io.Writer) error) error {
		f, err := os.Create(path)
		if err != nil {
			return err
		}
		if err := fn(f); err != nil {
			f.Close()
			return fmt.Errorf("write %s: %w", path, err)
		}
		out = append(out, path)
		return f.Close()
	}
	err := write(filepath.Join(dir, name+".md"), func(w io.Writer) error {
		for i, t := range ts {
			if i > 0 {
				io.WriteString(w, "\n")
			}
			if err := t.Markdown(w); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return out, err
	}
	return out, write(filepath.Join(dir, name+".csv"), ts[0].CSV)
}

// savePlot draws a grid of plots (nil cells stay empty) as PNG and SVG.
func savePlot(dir, name string, w, h vg.Length, grid [][]*plot.Plot) (Written, error) {
	var out Written
	tiles := draw.Tiles{Rows: len(grid), Cols: len(grid[0]), PadX: vg.Millimeter * 4, PadY: vg.Millimeter * 4,
		PadTop: vg.Millimeter * 2, PadBottom: vg.Millimeter * 2, PadLeft: vg.Millimeter * 2, PadRight: vg.Millimeter * 2}
	render := func(c draw.Canvas) {
		cells := plot.Align(grid, tiles, c)
		for i := range grid {
			for j, p := range grid[i] {
				if p != nil {
					p.Draw(cells[i][j])
				}
			}
		}
	}
	png := vgimg.New(w, h)
	render(draw.New(png))
	svg := vgsvg.New(w, h)
	render(draw.New(svg))
	for _, f := range []struct {
		ext string
		to  io.WriterTo
	}{{".png", vgimg.PngCanvas{Canvas: png}}, {".svg", svg}} {
		path := filepath.Join(dir, name+f.ext)
		fh, err := os.Create(path)
		if err != nil {
			return out, err
		}
		if _, err := f.to.WriteTo(fh); err != nil {
			fh.Close()
			return out, fmt.Errorf("write %s: %w", path, err)
		}
		if err := fh.Close(); err != nil {
			return out, err
		}
		out = append(out, path)
	}
	return out, nil
}

// WriteChurn writes DIR/analysis-churn.md and .csv, and analysis-churn.png
// and .svg: per MoE layer, the share of slots moved since the previous
// checkpoint against training tokens, with the level of a routing redrawn
// at random (1 − K/N') as a dashed line.
func WriteChurn(r ChurnResult, dir, label string) (Written, error) {
	t := r.Table()
	title := "Routing churn between checkpoints"
	if label != "" {
		t.Title += " — " + label
		title += "\n" + label
	}
	out, err := writeTables(dir, "analysis-churn", t)
	if err != nil {
		return out, err
	}
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = "training tokens"
	p.Y.Label.Text = "slots moved since the previous checkpoint"
	p.Y.Min, p.Y.Max = 0, 1
	p.Legend.Left = true // churn falls over training: the lower left is free
	for j, layer := range r.Layers {
		var xy plotter.XYs
		for _, pt := range r.Points {
			if !math.IsNaN(pt.Previous[j]) {
				xy = append(xy, plotter.XY{X: float64(pt.Tokens), Y: pt.Previous[j]})
			}
		}
		if len(xy) == 0 {
			continue
		}
		line, pts, err := plotter.NewLinePoints(xy)
		if err != nil {
			return out, err
		}
		line.Color, pts.Color = palette[j%len(palette)], palette[j%len(palette)]
		p.Add(line, pts)
		p.Legend.Add(fmt.Sprintf("layer %d", layer), line)
	}
	if r.Experts > 0 && len(r.Points) > 1 {
		random := 1 - float64(r.K)/float64(r.Experts)
		ref, err := plotter.NewLine(plotter.XYs{{X: float64(r.Points[0].Tokens), Y: random}, {X: float64(r.Points[len(r.Points)-1].Tokens), Y: random}})
		if err != nil {
			return out, err
		}
		ref.Dashes = []vg.Length{vg.Points(4), vg.Points(3)}
		ref.Color = color.Gray{Y: 0x80}
		p.Add(ref)
		p.Legend.Add("random routing", ref)
	}
	p.Add(plotter.NewGrid())
	files, err := savePlot(dir, "analysis-churn", 6*vg.Inch, 4*vg.Inch, [][]*plot.Plot{{p}})
	return append(out, files...), err
}
