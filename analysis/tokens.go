package analysis

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"strconv"

	"github.com/moetrain/moetrain/configs"
	"github.com/moetrain/moetrain/data"
	"github.com/moetrain/moetrain/model"
	"github.com/moetrain/moetrain/rundir"
)

// TokenLayer is how much of one MoE layer's routing of held-out text the
// input token's id decides. Distributions are over (token, slot) pairs:
// each routed position contributes its K routed slots.
type TokenLayer struct {
	Layer   int
	Experts int   // routed experts N'
	K       int   // routed slots per token
	Tokens  int64 // routed positions
	// Entropy is H(expert), the entropy of the layer's load distribution
	// (nats); Effective = exp(Entropy) is the number of equally loaded
	// experts with the same entropy (N' for a perfectly balanced layer).
	Entropy, Effective float64
	// CondEntropy is H(expert | token id): each id's entropy over its
	// slots, weighted by its slots. It is 0 when every id always goes to
	// one expert (Hash) and at least ln K for any routing (a token's K
	// slots are distinct experts). Estimated from the sample, it is biased
	// low for ids seen a few times only.
	CondEntropy float64
	// Decided is (Entropy − CondEntropy) / (Entropy − ln K): the share of
	// the routing's spread beyond its floor that the token id accounts for
	// (mutual information over its maximum); 1 when the routing is a
	// function of the token id, 0 when it does not depend on it. NaN when
	// Entropy = ln K (all tokens on the same K experts).
	Decided float64
	// Purity is the share of routed slots that go to their token id's K
	// most frequent experts (slot-weighted over ids): 1 when each id always
	// gets the same K experts.
	Purity float64
	// MaxLoad is the busiest expert's slots over the mean per expert.
	MaxLoad float64
	// Gate is the mean over tokens of the sum of its routed gates, the
	// factor on the routed experts' output (1 for Hash and for renormalised
	// gates; the top-1 probability for Switch).
	Gate float64
	// IDs lists, per token id seen, its routing (ascending id).
	IDs []TokenRoute
}

// TokenRoute is one token id's routing in a layer.
type TokenRoute struct {
	ID        int
	Positions int64   // times the id was routed
	Top       int     // its most frequent expert (the smallest index on ties)
	Purity    float64 // share of its slots on its K most frequent experts
}

// TokensResult is the token-identity analysis of a model.
type TokensResult struct {
	Layers []TokenLayer
	Tokens int64   // held-out tokens scored
	Loss   float64 // their loss
}

// Tokens routes up to o.Tokens held-out tokens and measures, per MoE layer,
// how far the routing is a function of the input token's id: the entropy
// of the expert load, its conditional entropy given the token id, the
// token purity, the load balance and the mean gate. For Hash, which routes
// by a fixed table of token ids, the conditional entropy is 0 and the
// purity 1 by construction.
func Tokens(l *rundir.Loaded, o Options) (TokensResult, error) {
	c := l.State.Config
	if c.Model.FFN == configs.FFNDense {
		return TokensResult{}, fmt.Errorf("tokens: a dense model has no experts")
	}
	if c.Model.Router.ExpertChoice {
		return TokensResult{}, fmt.Errorf("tokens: expert-choice routing gives a token any number of experts; the analysis needs K per token")
	}
	o = o.withDefaults(c)
	v := c.Model.VocabSize
	var counts [][]int64 // per MoE layer entry: [id·E + expert] slots
	var gates []float64  // per entry: sum of all gates
	var meta []TokenLayer
	inspect := func(b data.Batch, g *model.Graph) {
		if counts == nil {
			counts, gates = make([][]int64, len(g.Routes)), make([]float64, len(g.Routes))
			for j, rec := range g.Routes {
				counts[j] = make([]int64, v*rec.E)
				meta = append(meta, TokenLayer{Layer: g.RouteOf[j], Experts: rec.E, K: rec.K})
			}
		}
		T := b.T
		for j, rec := range g.Routes {
			e, k := rec.E, rec.K
			for n := 0; n < rec.N; n++ {
				// Position n of the graph is row n/T, column n%T of the batch.
				id := int(b.Tokens[(n/T)*(T+1)+n%T])
				for s := n * k; s < (n+1)*k; s++ {
					counts[j][id*e+int(rec.Experts[s])]++
					gates[j] += rec.Gates[s]
				}
			}
			meta[j].Tokens += int64(rec.N)
		}
	}
	p, err := heldOut(l.Model, c, o, model.GraphOptions{KeepGates: true}, "", inspect)
	if err != nil {
		return TokensResult{}, fmt.Errorf("tokens: %w", err)
	}
	res := TokensResult{Tokens: p.Tokens, Loss: p.Loss}
	for j, tl := range meta {
		tokenLayerStats(&tl, counts[j], v)
		tl.Gate = gates[j] / float64(tl.Tokens)
		res.Layers = append(res.Layers, tl)
	}
	return res, nil
}

// tokenLayerStats fills tl's distribution measures from counts[id·E+e],
// the slots of token id on expert e (tl.Experts, tl.K set).
func tokenLayerStats(tl *TokenLayer, counts []int64, vocab int) {
	e, k := tl.Experts, tl.K
	load := make([]float64, e)
	var total, cond, pure float64
	row := make([]int64, e)
	for id := 0; id < vocab; id++ {
		copy(row, counts[id*e:(id+1)*e])
		var n int64
		for x, c := range row {
			n += c
			load[x] += float64(c)
		}
		if n == 0 {
			continue
		}
		total += float64(n)
		cond += float64(n) * entropy(row)
		top := slices.Index(row, slices.Max(row))
		slices.SortFunc(row, func(a, b int64) int { return cmp.Compare(b, a) })
		var topk int64
		for _, c := range row[:min(k, e)] {
			topk += c
		}
		pure += float64(topk)
		tl.IDs = append(tl.IDs, TokenRoute{ID: id, Positions: n / int64(k), Top: top, Purity: float64(topk) / float64(n)})
	}
	if total == 0 {
		tl.Entropy, tl.Effective, tl.CondEntropy, tl.Decided, tl.Purity, tl.MaxLoad = math.NaN(), math.NaN(), math.NaN(), math.NaN(), math.NaN(), math.NaN()
		return
	}
	tl.Entropy = entropyOf(load)
	tl.Effective = math.Exp(tl.Entropy)
	tl.CondEntropy = cond / total
	tl.Decided = math.NaN()
	if floor := math.Log(float64(k)); tl.Entropy-floor > 1e-12 {
		tl.Decided = (tl.Entropy - tl.CondEntropy) / (tl.Entropy - floor)
	}
	tl.Purity = pure / total
	tl.MaxLoad = slices.Max(load) / (total / float64(e))
}

// entropy is the entropy (nats) of the distribution counts are proportional to.
func entropy(counts []int64) float64 {
	f := make([]float64, len(counts))
	for i, c := range counts {
		f[i] = float64(c)
	}
	return entropyOf(f)
}

func entropyOf(w []float64) float64 {
	var s float64
	for _, x := range w {
		s += x
	}
	var h float64
	for _, x := range w {
		if x > 0 {
			h -= x / s * math.Log(x/s)
		}
	}
	return h
}

// Tables renders the token-identity analysis: one row per MoE layer, and
// one row per layer and token id (its most frequent expert and purity).
func (r TokensResult) Tables() (Table, Table) {
	t := Table{Title: "How much of the routing the token id decides (held-out text)",
		Columns: []string{"layer", "routed experts", "active", "H(expert) (nats)", "effective experts exp H", "H(expert given token id) (nats)", "share decided by token id", "token purity", "max load / mean", "mean gate per token"}}
	t.Notes = fmt.Sprintf("%d held-out tokens, loss %.4f. Distributions are over (token, slot) pairs. "+
		"H(expert given token id) is at least ln K for any routing and 0 (K = 1) when each token id always takes the same expert; "+
		"share decided by token id = (H − H(expert given token id)) / (H − ln K); "+
		"token purity = share of slots on their token id's K most frequent experts; "+
		"mean gate = the sum of a token's routed gates, the factor on the routed output.", r.Tokens, r.Loss)
	m := Table{Title: "Per token id", Columns: []string{"layer", "token id", "positions", "most frequent expert", "purity"}}
	for _, tl := range r.Layers {
		t.Rows = append(t.Rows, []string{strconv.Itoa(tl.Layer), strconv.Itoa(tl.Experts), strconv.Itoa(tl.K), ff(tl.Entropy), ff(tl.Effective),
			ff(tl.CondEntropy), ff(tl.Decided), ff(tl.Purity), ff(tl.MaxLoad), ff(tl.Gate)})
		for _, id := range tl.IDs {
			m.Rows = append(m.Rows, []string{strconv.Itoa(tl.Layer), strconv.Itoa(id.ID), strconv.FormatInt(id.Positions, 10), strconv.Itoa(id.Top), ff(id.Purity)})
		}
	}
	return t, m
}
