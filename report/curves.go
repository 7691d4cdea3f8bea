package report

import (
	"math"
	"regexp"
	"sort"
	"strconv"
)

// Group is the runs of one configuration that differ only in
// model.init_seed (the seeds of a sweep group): figures draw a group as one
// curve, the mean over its seeds with a min–max band.
type Group struct {
	Name  string
	Runs  []*Run
	Index int // the group's color index (RunColor)
}

var seedSuffix = regexp.MustCompile(`[_-]seed-?\d+$`)

// Groups returns the seed groups of runs, in the order of their first run.
// A group is named by its runs' common name without a "_seed-N" suffix.
func Groups(runs []*Run) []Group {
	var out []Group
	at := map[string]int{}
	for _, r := range runs {
		c := r.Config
		c.Model.InitSeed = 0
		key := c.YAML()
		i, ok := at[key]
		if !ok {
			i = len(out)
			at[key] = i
			out = append(out, Group{Index: i})
		}
		out[i].Runs = append(out[i].Runs, r)
	}
	for i := range out {
		g := &out[i]
		g.Name = g.Runs[0].Name
		if len(g.Runs) > 1 {
			base := seedSuffix.ReplaceAllString(g.Runs[0].Name, "")
			same := true
			for _, r := range g.Runs {
				same = same && seedSuffix.ReplaceAllString(r.Name, "") == base
			}
			if !same {
				base = g.Runs[0].Name + " …"
			}
			g.Name = base
		}
	}
	return out
}

// IsMoE reports whether the group's model has MoE layers.
func (g Group) IsMoE() bool { return g.Runs[0].IsMoE() }

// TrainSeries returns the run's training loss per log interval (the mean
// over the interval's steps), in token order.
func (r *Run) TrainSeries() []Point {
	at := map[int64]float64{}
	for _, m := range r.Metrics {
		if m.Kind == "train" && m.Loss != 0 {
			at[m.Tokens] = m.Loss
		}
	}
	return sortedPoints(at)
}

func sortedPoints(at map[int64]float64) []Point {
	out := make([]Point, 0, len(at))
	for tok, v := range at {
		out = append(out, Point{tok, v})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Tokens < out[j].Tokens })
	return out
}

// Smooth is an exponential moving average of ps with bias correction (the
// first points are not pulled towards zero). Its span grows with the curve,
// a twentieth of its points (at least 2), so a long run is smoothed as much
// as a short one at the same resolution.
func Smooth(ps []Point) []Point {
	span := max(2, float64(len(ps))/20)
	w := 1 - 2/(span+1) // weight of the past
	out := make([]Point, len(ps))
	var acc, norm float64
	for i, p := range ps {
		acc = w*acc + (1-w)*p.Value
		norm = w*norm + (1 - w)
		out[i] = Point{p.Tokens, acc / norm}
	}
	return out
}

// Spread is a group's curve over seeds: the mean and the min and max at
// the first seed's token counts inside the range every seed covers.
type Spread struct {
	Tokens       []int64
	Mean, Lo, Hi []float64
	Seeds        int
}

// spreadOf combines one series per seed. Seeds need not log at the same
// token counts (a run resumed from a checkpoint between two log points logs
// at shifted counts afterwards), so each other seed is interpolated linearly
// at the first seed's counts; where counts coincide that is its own value.
func spreadOf(series [][]Point) Spread {
	s := Spread{Seeds: len(series)}
	if len(series) == 0 || len(series[0]) == 0 {
		return s
	}
	from, to := int64(math.MinInt64), int64(math.MaxInt64)
	for _, ps := range series {
		if len(ps) == 0 {
			return s
		}
		from, to = max(from, ps[0].Tokens), min(to, ps[len(ps)-1].Tokens)
	}
	for _, p := range series[0] {
		if p.Tokens < from || p.Tokens > to {
			continue
		}
		lo, hi, sum := math.Inf(1), math.Inf(-1), 0.0
		for _, ps := range series {
			v := Interpolate(ps, p.Tokens)
			lo, hi, sum = math.Min(lo, v), math.Max(hi, v), sum+v
		}
		s.Tokens = append(s.Tokens, p.Tokens)
		s.Mean, s.Lo, s.Hi = append(s.Mean, sum/float64(len(series))), append(s.Lo, lo), append(s.Hi, hi)
	}
	return s
}

// Interpolate is ps's value at tok, linear between its neighbours (ps
// sorted by tokens, tok inside its range): how runs that evaluated or
// logged at different token counts are compared at the same count.
func Interpolate(ps []Point, tok int64) float64 {
	k := sort.Search(len(ps), func(i int) bool { return ps[i].Tokens >= tok })
	if k == len(ps) {
		return ps[len(ps)-1].Value
	}
	if ps[k].Tokens == tok || k == 0 {
		return ps[k].Value
	}
	a, b := ps[k-1], ps[k]
	f := float64(tok-a.Tokens) / float64(b.Tokens-a.Tokens)
	return a.Value + f*(b.Value-a.Value)
}

// seedsLabel is "" for one seed, else " (mean of n seeds)".
func seedsLabel(n int) string {
	if n < 2 {
		return ""
	}
	return " (mean of " + strconv.Itoa(n) + " seeds)"
}
