package analysis

import (
	"fmt"
	"math"
	"sort"
	"strconv"

	"github.com/moetrain/moetrain/data"
	"github.com/moetrain/moetrain/evaluate"
	"github.com/moetrain/moetrain/model"
	"github.com/moetrain/moetrain/rundir"
)

// Point is one evaluation of a sweep over an eval-time setting.
type Point struct {
	Setting  int     // experts disabled (redundancy) or activated (topk)
	Ratio    float64 // Setting / N' (redundancy only)
	Loss     float64 // held-out loss, nats/token
	Increase float64 // Loss − the trained model's loss
}

// Curve is the result of the redundancy or the top-k analysis.
type Curve struct {
	What           string // "redundancy" or "topk"
	Routed, Active int    // N' and K' as trained
	Tokens         int64  // held-out tokens per point
	Points         []Point
}

// Redundancy evaluates the model with each token's r most probable routed
// experts disabled, for r = 0 .. round(ρ·N') with ρ up to 4/16 (DESIGN.md §4.1,
// the paper's Fig. 4): the next K' experts are used instead with their raw
// probabilities as gates. A model whose routed experts were redundant would
// barely notice; the paper finds DeepSeekMoE hurt more than GShard.
func Redundancy(l *rundir.Loaded, o Options) (Curve, error) {
	c := l.State.Config
	if err := needRouter(c.Model, "redundancy"); err != nil {
		return Curve{}, err
	}
	o = o.withDefaults(c)
	n, k := c.Model.RoutedExperts, c.Model.ActiveRouted
	rmax := min(int(math.Round(4.0/16.0*float64(n))), n-k)
	cv := Curve{What: "redundancy", Routed: n, Active: k}
	for r := 0; r <= rmax; r++ {
		p, err := heldOut(l.Model, c, o, model.GraphOptions{DisableTop: r}, "", nil)
		if err != nil {
			return cv, fmt.Errorf("redundancy with %d disabled: %w", r, err)
		}
		cv.Tokens = p.Tokens
		cv.Points = append(cv.Points, Point{Setting: r, Ratio: float64(r) / float64(n), Loss: p.Loss, Increase: p.Loss - first(cv.Points, p.Loss)})
	}
	return cv, nil
}

// TopK evaluates the model with k = 1 .. K' activated routed experts
// (GraphOptions.ActiveRouted; the paper's Fig. 5): how much of the trained
// model's quality fewer activated experts keep.
func TopK(l *rundir.Loaded, o Options) (Curve, error) {
	c := l.State.Config
	if err := needRouter(c.Model, "topk"); err != nil {
		return Curve{}, err
	}
	o = o.withDefaults(c)
	n, k := c.Model.RoutedExperts, c.Model.ActiveRouted
	cv := Curve{What: "topk", Routed: n, Active: k}
	var trained float64
	for a := k; a >= 1; a-- { // the trained setting first: the reference
		p, err := heldOut(l.Model, c, o, model.GraphOptions{ActiveRouted: a}, "", nil)
		if err != nil {
			return cv, fmt.Errorf("topk with %d active: %w", a, err)
		}
		if a == k {
			trained = p.Loss
		}
		cv.Tokens = p.Tokens
		cv.Points = append(cv.Points, Point{Setting: a, Loss: p.Loss, Increase: p.Loss - trained})
	}
	sort.Slice(cv.Points, func(i, j int) bool { return cv.Points[i].Setting < cv.Points[j].Setting })
	return cv, nil
}

func first(ps []Point, dflt float64) float64 {
	if len(ps) == 0 {
		return dflt
	}
	return ps[0].Loss
}

// Table renders a curve.
func (cv Curve) Table() Table {
	t := Table{Title: map[string]string{
		"redundancy": "Held-out loss with each token's top routed experts disabled",
		"topk":       "Held-out loss with fewer activated routed experts",
	}[cv.What]}
	t.Notes = fmt.Sprintf("Trained with %d of %d routed experts active; %d held-out tokens per row.", cv.Active, cv.Routed, cv.Tokens)
	if cv.What == "redundancy" {
		t.Columns = []string{"disabled", "ratio of N'", "held-out loss", "increase"}
	} else {
		t.Columns = []string{"activated routed", "held-out loss", "increase"}
	}
	for _, p := range cv.Points {
		row := []string{strconv.Itoa(p.Setting)}
		if cv.What == "redundancy" {
			row = append(row, strconv.FormatFloat(p.Ratio, 'f', 4, 64))
		}
		row = append(row, strconv.FormatFloat(p.Loss, 'f', 4, 64), strconv.FormatFloat(p.Increase, 'f', 4, 64))
		t.Rows = append(t.Rows, row)
	}
	return t
}

// DomainLoad is one MoE layer's routing of one domain's held-out text.
type DomainLoad struct {
	Domain  string
	Tokens  int64
	Load    []int64 // (token, slot) count per routed expert
	Entropy float64 // mean router entropy per token, nats (NaN: hash layer)
}

// LayerLoad is one MoE layer's load analysis across domains.
type LayerLoad struct {
	Layer   int
	Experts int
	Domains []DomainLoad
	// JSD is the Jensen-Shannon divergence (bits, in [0, 1]) between the
	// first two domains' load distributions (0: identical routing).
	JSD float64
	// TopShare[e] is the share of expert e's load that comes from the
	// domain contributing most of it, after scaling each domain to the same
	// number of tokens (1/#domains: no preference; 1: one domain only).
	// NaN for an expert no token reached.
	TopShare []float64
	// MeanTopShare averages TopShare weighted by each expert's load.
	MeanTopShare float64
	// Specialised counts experts with TopShare ≥ 0.9.
	Specialised int
}

// LoadResult is the load analysis of a model.
type LoadResult struct {
	Layers        []LayerLoad
	TokensPerPass int64
	DomainLoss    map[string]float64
}

// Load routes each domain's held-out text separately (StreamConfig.Weights
// with one domain) and reports, per MoE layer, every expert's load and the
// router entropy per domain, the Jensen-Shannon divergence between the
// domains' load distributions and how specialised each expert is to one
// domain.
func Load(l *rundir.Loaded, o Options) (LoadResult, error) {
	c := l.State.Config
	if c.Model.FFN == "dense" {
		return LoadResult{}, fmt.Errorf("load: a dense model has no experts")
	}
	o = o.withDefaults(c)
	man, err := data.LoadManifest(o.Data)
	if err != nil {
		return LoadResult{}, err
	}
	var doms []string
	for _, d := range man.Domains {
		if man.ShardsOf(data.Validation, d) != nil {
			doms = append(doms, d)
		}
	}
	if len(doms) == 0 {
		return LoadResult{}, fmt.Errorf("load: %s has no validation text", o.Data)
	}
	res := LoadResult{DomainLoss: map[string]float64{}}
	var passes []evaluate.Pass
	for _, d := range doms {
		p, err := heldOut(l.Model, c, o, model.GraphOptions{}, d, nil)
		if err != nil {
			return res, fmt.Errorf("load of domain %s: %w", d, err)
		}
		passes = append(passes, p)
		res.DomainLoss[d] = p.Loss
		res.TokensPerPass = p.Tokens
	}
	for j, route := range passes[0].Routes {
		ll := LayerLoad{Layer: route.Layer, Experts: len(route.Load)}
		for i, p := range passes {
			r := p.Routes[j]
			h := math.NaN()
			if r.Router {
				h = r.Entropy / float64(p.Tokens)
			}
			ll.Domains = append(ll.Domains, DomainLoad{Domain: doms[i], Tokens: p.Tokens, Load: r.Load, Entropy: h})
		}
		dists := make([][]float64, len(passes))
		for i, d := range ll.Domains {
			dists[i] = normalise(d.Load)
		}
		if len(dists) >= 2 {
			ll.JSD = JSD(dists[0], dists[1])
		}
		ll.TopShare, ll.MeanTopShare, ll.Specialised = topShares(ll.Domains)
		res.Layers = append(res.Layers, ll)
	}
	return res, nil
}

func normalise(load []int64) []float64 {
	var s float64
	for _, l := range load {
		s += float64(l)
	}
	out := make([]float64, len(load))
	for i, l := range load {
		if s > 0 {
			out[i] = float64(l) / s
		}
	}
	return out
}

// JSD returns the Jensen-Shannon divergence of two distributions in bits.
func JSD(p, q []float64) float64 {
	kl := func(a, m []float64) float64 {
		var s float64
		for i := range a {
			if a[i] > 0 {
				s += a[i] * math.Log2(a[i]/m[i])
			}
		}
		return s
	}
	m := make([]float64, len(p))
	for i := range p {
		m[i] = (p[i] + q[i]) / 2
	}
	return kl(p, m)/2 + kl(q, m)/2
}

// topShares scales each domain's loads to per-token rates (so a domain with
// more tokens does not look preferred) and returns each expert's share from
// its top domain, the load-weighted mean and the count ≥ 0.9.
func topShares(ds []DomainLoad) ([]float64, float64, int) {
	e := len(ds[0].Load)
	shares := make([]float64, e)
	var wsum, wtot float64
	spec := 0
	for x := 0; x < e; x++ {
		var total, top float64
		for _, d := range ds {
			r := float64(d.Load[x]) / float64(max(d.Tokens, 1))
			total += r
			top = math.Max(top, r)
		}
		if total == 0 {
			shares[x] = math.NaN()
			continue
		}
		shares[x] = top / total
		wsum += shares[x] * total
		wtot += total
		if shares[x] >= 0.9 {
			spec++
		}
	}
	if wtot == 0 {
		return shares, math.NaN(), 0
	}
	return shares, wsum / wtot, spec
}

// Tables renders the load analysis: one row per layer and domain, and one
// row per layer and expert.
func (r LoadResult) Tables() (Table, Table) {
	t := Table{Title: "Expert load and router entropy by domain (held-out text)",
		Columns: []string{"layer", "domain", "tokens", "held-out loss", "router entropy (nats)", "entropy / ln N'", "max load / mean", "unused experts", "JSD between domains (bits)", "mean top-domain share", "experts ≥ 90% one domain"}}
	t.Notes = "Loads count (token, slot) assignments. The top-domain share of an expert is the fraction of its per-token load rate that comes from its busiest domain (1/#domains = no preference, 1 = one domain only); the mean weights experts by load."
	e := Table{Title: "Per-expert load", Columns: []string{"layer", "expert"}}
	for _, ll := range r.Layers {
		for _, d := range ll.Domains {
			var mx, sum int64
			unused := 0
			for _, l := range d.Load {
				sum += l
				mx = max(mx, l)
				if l == 0 {
					unused++
				}
			}
			ratio := math.NaN()
			if sum > 0 {
				ratio = float64(mx) / (float64(sum) / float64(len(d.Load)))
			}
			t.Rows = append(t.Rows, []string{strconv.Itoa(ll.Layer), d.Domain, strconv.FormatInt(d.Tokens, 10), ff(r.DomainLoss[d.Domain]),
				ff(d.Entropy), ff(d.Entropy / math.Log(float64(ll.Experts))), ff(ratio), strconv.Itoa(unused), ff(ll.JSD), ff(ll.MeanTopShare), strconv.Itoa(ll.Specialised)})
		}
	}
	if len(r.Layers) > 0 {
		for _, d := range r.Layers[0].Domains {
			e.Columns = append(e.Columns, d.Domain+" load")
		}
		e.Columns = append(e.Columns, "top-domain share")
	}
	for _, ll := range r.Layers {
		for x := 0; x < ll.Experts; x++ {
			row := []string{strconv.Itoa(ll.Layer), strconv.Itoa(x)}
			for _, d := range ll.Domains {
				row = append(row, strconv.FormatInt(d.Load[x], 10))
			}
			e.Rows = append(e.Rows, append(row, ff(ll.TopShare[x])))
		}
	}
	return t, e
}

func ff(x float64) string {
	if math.IsNaN(x) {
		return "–"
	}
	return strconv.FormatFloat(x, 'f', 4, 64)
}
