package report

import (
	"fmt"
	"image/color"
	"math"
	"sort"
	"strconv"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/palette/moreland"
	"gonum.org/v1/plot/plotter"
)

// Sci formats x as m×10ⁿ (4×10¹², 1.5×10¹⁵): unambiguous where an SI
// letter (T for 10¹²) could be read as something else. Numbers under a
// thousand print as they are.
func Sci(x float64) string {
	if x == 0 || math.IsNaN(x) || math.IsInf(x, 0) || math.Abs(x) < 1000 {
		return strconv.FormatFloat(x, 'g', 3, 64)
	}
	e := int(math.Floor(math.Log10(math.Abs(x))))
	m := x / math.Pow(10, float64(e))
	if math.Abs(m) >= 9.995 { // rounding carried into the next power
		m /= 10
		e++
	}
	sup := strings.NewReplacer("0", "⁰", "1", "¹", "2", "²", "3", "³", "4", "⁴", "5", "⁵", "6", "⁶", "7", "⁷", "8", "⁸", "9", "⁹", "-", "⁻")
	ms := strconv.FormatFloat(m, 'f', 2, 64)
	ms = strings.TrimRight(strings.TrimRight(ms, "0"), ".")
	return ms + "×10" + sup.Replace(strconv.Itoa(e))
}

// Heat is an expert-load heatmap: one column per logged step, one row per
// routed expert.
type Heat struct {
	Tokens []int64
	// Load[c][e] is expert e's share of the layer's load at Tokens[c],
	// times the number of experts: 1 is an even share, 0 a dead expert.
	Load [][]float64
}

// heatRange is the colour scale of load over the mean, in powers of two:
// 1/8 (or dead) is the darkest blue, an even share white, 8× the darkest red.
const heatRange = 3

// LoadSeries returns, per MoE layer (sorted), the run's logged per-expert
// load over training (metrics.jsonl train lines that carry it).
func (r *Run) LoadSeries() (layers []int, heats []Heat) {
	at := map[int]*Heat{}
	for _, m := range r.Metrics {
		if m.Kind != "train" {
			continue
		}
		for _, l := range m.MoE {
			if len(l.Load) == 0 {
				continue
			}
			h := at[l.Layer]
			if h == nil {
				h = &Heat{}
				at[l.Layer] = h
				layers = append(layers, l.Layer)
			}
			row := make([]float64, len(l.Load))
			for e, v := range l.Load {
				row[e] = v * float64(len(l.Load))
			}
			h.Tokens, h.Load = append(h.Tokens, m.Tokens), append(h.Load, row)
		}
	}
	sort.Ints(layers)
	for _, l := range layers {
		heats = append(heats, *at[l])
	}
	return layers, heats
}

// LoadFigure is a run's per-layer heatmap of expert load over training
// (expert × training tokens, a panel per MoE layer), and false when the
// run logged no per-expert load.
func LoadFigure(r *Run) (Figure, bool) {
	layers, heats := r.LoadSeries()
	if len(layers) == 0 || len(heats[0].Tokens) < 2 {
		return Figure{}, false
	}
	f := Figure{Name: "expert_load_" + fileSafe(r.Name), Title: "Expert load during training: " + r.Name + " (" + Variant(r.Config.Model) + ")",
		Cols: int(math.Ceil(math.Sqrt(float64(len(layers)))))}
	for i, l := range layers {
		h := heats[i]
		f.Panels = append(f.Panels, Panel{Title: fmt.Sprintf("layer %d", l), XLabel: "Training tokens", YLabel: "Routed expert", Heat: &h})
	}
	pal := heatPalette()
	for _, k := range []struct {
		v     float64
		label string
	}{{-heatRange, "dead, or ≤ ⅛ of an even share"}, {-1, "½ of an even share"}, {0, "an even share (1/experts)"}, {1, "2× an even share"}, {heatRange, "≥ 8× an even share"}} {
		c, _ := pal.At(k.v)
		f.Legend = append(f.Legend, LegendEntry{Label: k.label, Color: rgba(c), Box: true})
	}
	return f, true
}

func heatPalette() interface {
	At(float64) (color.Color, error)
} {
	p := moreland.SmoothBlueRed()
	p.SetMin(-heatRange)
	p.SetMax(heatRange)
	return p
}

func rgba(c color.Color) color.RGBA {
	r, g, b, _ := c.RGBA()
	return color.RGBA{uint8(r >> 8), uint8(g >> 8), uint8(b >> 8), 255}
}

func fileSafe(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '/' || r == '\\' || r == ' ' || r == ':' {
			return '_'
		}
		return r
	}, s)
}

// heatGrid is a Heat as a gonum grid of log2(load over an even share),
// clipped to ±heatRange.
type heatGrid struct{ h *Heat }

func (g heatGrid) Dims() (c, r int) { return len(g.h.Tokens), len(g.h.Load[0]) }
func (g heatGrid) X(c int) float64  { return float64(g.h.Tokens[c]) }
func (g heatGrid) Y(r int) float64  { return float64(r) }
func (g heatGrid) Z(c, r int) float64 {
	v := g.h.Load[c][r]
	if v <= 0 {
		return -heatRange
	}
	return math.Max(-heatRange, math.Min(heatRange, math.Log2(v)))
}

func addHeat(pl *plot.Plot, h *Heat) error {
	if len(h.Tokens) < 2 || len(h.Load[0]) == 0 {
		return fmt.Errorf("expert load heatmap needs two logged steps or more")
	}
	p := moreland.SmoothBlueRed()
	p.SetMin(-heatRange)
	p.SetMax(heatRange)
	hm := plotter.NewHeatMap(heatGrid{h}, p.Palette(64))
	hm.Min, hm.Max = -heatRange, heatRange
	pl.Add(hm)
	// Expert indices are integers: label a few of them.
	_, e := heatGrid{h}.Dims()
	pl.Y.Tick.Marker = niceTicks{}
	if e <= 16 {
		pl.Y.Tick.Marker = plot.ConstantTicks(intTicks(e))
	}
	return nil
}

func intTicks(n int) []plot.Tick {
	step := 1
	if n > 8 {
		step = 2
	}
	var ts []plot.Tick
	for i := 0; i < n; i++ {
		t := plot.Tick{Value: float64(i)}
		if i%step == 0 {
			t.Label = strconv.Itoa(i)
		}
		ts = append(ts, t)
	}
	return ts
}
