package report

import (
	"sort"
	"strings"
)

// DynamicsFigure is what a run's train lines say besides the loss: the
// learning rate, the gradient norm (before clipping), the throughput and
// the balance losses (the mean over layers of each kind), a panel each,
// against training tokens.
func DynamicsFigure(r *Run) Figure {
	c := RunColor(0)
	var lr, gn, tps Line
	for _, l := range []*Line{&lr, &gn, &tps} {
		l.Color, l.Label = c, r.Name
	}
	lr.Kind, gn.Kind, tps.Kind = "lr", "grad_norm", "tokens_per_s"
	kinds := map[string]*Line{}
	for _, m := range r.Metrics {
		if m.Kind != "train" {
			continue
		}
		x := float64(m.Tokens)
		lr.X, lr.Y = append(lr.X, x), append(lr.Y, m.LR)
		gn.X, gn.Y = append(gn.X, x), append(gn.Y, m.GradNorm)
		if m.TokensPerS > 0 {
			tps.X, tps.Y = append(tps.X, x), append(tps.Y, m.TokensPerS)
		}
		sum, n := map[string]float64{}, map[string]int{}
		for k, v := range m.Balance {
			kind := k[strings.LastIndex(k, ".")+1:]
			sum[kind] += v
			n[kind]++
		}
		for kind, s := range sum {
			l := kinds[kind]
			if l == nil {
				l = &Line{Label: kind + " balance loss", Kind: "balance." + kind}
				kinds[kind] = l
			}
			l.X, l.Y = append(l.X, x), append(l.Y, s/float64(n[kind]))
		}
	}
	panel := func(title, ylabel string, l Line) Panel {
		return Panel{Title: title, XLabel: "Training tokens", YLabel: ylabel, Lines: []Line{l}}
	}
	f := Figure{Name: "dynamics_" + fileSafe(r.Name), Title: "Training dynamics: " + r.Name, Cols: 2, Panels: []Panel{
		panel("Learning rate", "learning rate", lr),
		panel("Gradient norm (before clipping)", "global L2 norm", gn),
		panel("Throughput", "tokens per second", tps),
	}}
	names := make([]string, 0, len(kinds))
	for k := range kinds {
		names = append(names, k)
	}
	sort.Strings(names)
	bal := Panel{Title: "Balance losses (mean over layers)", XLabel: "Training tokens", YLabel: "loss"}
	for i, k := range names {
		l := *kinds[k]
		l.Color = RunColor(i + 1)
		bal.Lines = append(bal.Lines, l)
		f.Legend = append(f.Legend, LegendEntry{Label: l.Label, Color: l.Color, Line: true})
	}
	f.Panels = append(f.Panels, bal)
	return f
}
