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
// every token count all its seeds have.
type Spread struct {
	Tokens       []int64
	Mean, Lo, Hi []float64
	Seeds        int
}

// spreadOf combines one series per seed.
func spreadOf(series [][]Point) Spread {
	s := Spread{Seeds: len(series)}
	count := map[int64]int{}
	vals := map[int64][]float64{}
	for _, ps := range series {
		for _, p := range ps {
			count[p.Tokens]++
			vals[p.Tokens] = append(vals[p.Tokens], p.Value)
		}
	}
	for tok, c := range count {
		if c == len(series) {
			s.Tokens = append(s.Tokens, tok)
		}
	}
	sort.Slice(s.Tokens, func(i, j int) bool { return s.Tokens[i] < s.Tokens[j] })
	for _, tok := range s.Tokens {
		lo, hi, sum := math.Inf(1), math.Inf(-1), 0.0
		for _, v := range vals[tok] {
			lo, hi, sum = math.Min(lo, v), math.Max(hi, v), sum+v
		}
		s.Mean, s.Lo, s.Hi = append(s.Mean, sum/float64(len(vals[tok]))), append(s.Lo, lo), append(s.Hi, hi)
	}
	return s
}

// seedsLabel is "" for one seed, else " (mean of n seeds)".
func seedsLabel(n int) string {
	if n < 2 {
		return ""
	}
	return " (mean of " + strconv.Itoa(n) + " seeds)"
}
