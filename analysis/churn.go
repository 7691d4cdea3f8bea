package analysis

import (
	"fmt"
	"math"
	"strconv"

	"github.com/moetrain/moetrain/configs"
	"github.com/moetrain/moetrain/data"
	"github.com/moetrain/moetrain/model"
	"github.com/moetrain/moetrain/rundir"
)

// ChurnPoint is one checkpoint's routing of the held-out tokens compared
// with the checkpoint before it and with the last one.
type ChurnPoint struct {
	Tokens int64 // training tokens of the checkpoint
	// Previous[j] is the share of MoE layer j's routed slots whose expert
	// is not among the token's experts at the previous checkpoint (NaN for
	// the first); Final[j] the same against the last checkpoint (0 for the
	// last). For top-1 routing, the share of tokens that changed expert.
	Previous, Final []float64
	Loss            float64 // the checkpoint's held-out loss on the tokens
}

// ChurnResult is the churn analysis of one run.
type ChurnResult struct {
	Layers  []int // layer index of each MoE layer entry
	K       int   // routed slots per token
	Experts int   // routed experts N'; a routing redrawn at random moves 1 − K/N' of the slots
	Tokens  int64 // held-out tokens routed by every checkpoint
	Points  []ChurnPoint
}

// Churn routes the same up to o.Tokens held-out tokens through each of n
// models, load(0) .. load(n−1) (a run's checkpoints, oldest first), and
// measures how the routing moves in training: per MoE layer, the share of
// (token, slot) pairs whose expert is not one of that token's experts at
// the previous checkpoint, and at the last one. StableMoE (Dai et al. 2022)
// calls this routing fluctuation: a token whose expert changes has trained
// an expert that no longer serves it. Hash layers, routed by a fixed table,
// never change. One model is held at a time (the last is loaded first), and
// three routings of the held-out tokens: the last, the previous and the
// current checkpoint's.
func Churn(n int, load func(i int) (*rundir.Loaded, error), o Options) (ChurnResult, error) {
	if n < 2 {
		return ChurnResult{}, fmt.Errorf("churn: needs at least 2 checkpoints of one run, got %d (keep more with checkpoint.keep_every_tokens)", n)
	}
	var res ChurnResult
	var c configs.Config
	same := func(m configs.Model) configs.Model { m.ExpertParallel = 0; return m } // a launch property, not the model's
	// route loads model i and routes the held-out tokens through it: per
	// MoE layer entry, the experts of every routed slot in token order.
	route := func(i int) ([][]int32, ChurnPoint, error) {
		l, err := load(i)
		if err != nil {
			return nil, ChurnPoint{}, err
		}
		if i == n-1 {
			c = l.State.Config
			if c.Model.FFN == configs.FFNDense {
				return nil, ChurnPoint{}, fmt.Errorf("churn: a dense model has no experts")
			}
			if c.Model.Router.ExpertChoice {
				return nil, ChurnPoint{}, fmt.Errorf("churn: expert-choice routing gives a token any number of experts; the analysis needs K per token")
			}
			o = o.withDefaults(c)
		} else if same(l.State.Config.Model) != same(c.Model) {
			return nil, ChurnPoint{}, fmt.Errorf("churn: checkpoint at %d tokens has another model than the last one", l.State.Tokens)
		}
		var per [][]int32
		inspect := func(_ data.Batch, g *model.Graph) {
			if per == nil {
				per = make([][]int32, len(g.Routes))
				res.Layers = append(res.Layers[:0], g.RouteOf...)
			}
			for j, rec := range g.Routes {
				res.K, res.Experts = rec.K, rec.E
				per[j] = append(per[j], rec.Experts[:rec.N*rec.K]...)
			}
		}
		p, err := heldOut(l.Model, l.State.Config, o, model.GraphOptions{}, "", inspect)
		if err != nil {
			return nil, ChurnPoint{}, fmt.Errorf("churn: checkpoint at %d tokens: %w", l.State.Tokens, err)
		}
		res.Tokens = p.Tokens
		return per, ChurnPoint{Tokens: l.State.Tokens, Loss: p.Loss}, nil
	}
	last, lastPoint, err := route(n - 1)
	if err != nil {
		return res, err
	}
	var prev [][]int32
	for i := 0; i < n; i++ {
		cur, pt := last, lastPoint
		if i < n-1 {
			if cur, pt, err = route(i); err != nil {
				return res, err
			}
		}
		for j := range res.Layers {
			p := math.NaN()
			if prev != nil {
				p = moved(prev[j], cur[j], res.K)
			}
			pt.Previous = append(pt.Previous, p)
			pt.Final = append(pt.Final, moved(last[j], cur[j], res.K))
		}
		res.Points = append(res.Points, pt)
		prev = cur
	}
	return res, nil
}

// moved is the share of the slots of b (K per token) whose expert is not
// among the same token's K experts in a.
func moved(a, b []int32, k int) float64 {
	if len(a) != len(b) || len(b) == 0 {
		return math.NaN()
	}
	var n int
	for t := 0; t < len(b); t += k {
		for _, e := range b[t : t+k] {
			found := false
			for _, f := range a[t : t+k] {
				if e == f {
					found = true
					break
				}
			}
			if !found {
				n++
			}
		}
	}
	return float64(n) / float64(len(b))
}

// Table renders the churn analysis: one row per checkpoint and MoE layer.
func (r ChurnResult) Table() Table {
	t := Table{Title: "Routing churn between checkpoints (held-out text)",
		Columns: []string{"training tokens", "layer", "slots moved since previous checkpoint", "slots differing from last checkpoint", "held-out loss"}}
	t.Notes = fmt.Sprintf("%d held-out tokens routed by each of %d checkpoints, K = %d of N' = %d. A slot has moved when its expert is not among "+
		"the same token's K experts at the other checkpoint; for top-1 routing, the share of tokens whose expert changed. "+
		"A routing redrawn at random would move 1 − K/N' = %.4f of the slots.", r.Tokens, len(r.Points), r.K, r.Experts, 1-float64(r.K)/float64(max(r.Experts, 1)))
	for _, p := range r.Points {
		for j, l := range r.Layers {
			t.Rows = append(t.Rows, []string{strconv.FormatInt(p.Tokens, 10), strconv.Itoa(l), ff(p.Previous[j]), ff(p.Final[j]), ff(p.Loss)})
		}
	}
	return t
}
