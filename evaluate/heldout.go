package evaluate

import (
	"errors"
	"fmt"
	"io"
	"math"

	"github.com/moetrain/moetrain/data"
	"github.com/moetrain/moetrain/model"
)

// Result is a held-out evaluation.
type Result struct {
	Loss   float64 `json:"loss"`          // mean cross-entropy per token (nats)
	BPB    float64 `json:"bits_per_byte"` // loss·tokens / (bytes·ln 2), tokenizer-independent
	Tokens int64   `json:"tokens"`        // predicted tokens scored
	Bytes  int64   `json:"bytes"`         // their bytes (end-of-document tokens count 0)
	// Domains holds the same scores for each domain's validation text alone.
	Domains map[string]Result `json:"domains,omitempty"`
}

// BitsPerByte converts a total loss in nats over text of the given bytes.
func BitsPerByte(nats float64, bytes int64) float64 {
	if bytes <= 0 {
		return 0
	}
	return nats / (float64(bytes) * math.Ln2)
}

// Scorer runs one model's forward-only graphs, built with fixed
// GraphOptions, over validation windows. It keeps a graph per batch size
// (the last batch of a split may be short), so repeated scoring during
// training builds them once.
type Scorer struct {
	m      *model.Model
	seq    int
	opt    model.GraphOptions
	graphs map[int]*model.Graph
	// Inspect, when not nil, is called after every graph run of Score with
	// the batch and the graph that scored it (its routing records, router
	// probabilities), for measurements per token rather than totals.
	Inspect func(b data.Batch, g *model.Graph)
}

// NewScorer returns a Scorer of m over windows of seq predicted tokens with
// graphs built with opt (its Batch and Seq are set here).
func NewScorer(m *model.Model, seq int, opt model.GraphOptions) *Scorer {
	return &Scorer{m: m, seq: seq, opt: opt, graphs: map[int]*model.Graph{}}
}

// Close releases the graphs.
func (s *Scorer) Close() {
	for _, g := range s.graphs {
		g.Close()
	}
	s.graphs = map[int]*model.Graph{}
}

// Windows selects what Score reads: the validation split of a prepared
// dataset, streamed once in a fixed order, so every call with the same
// Windows scores the same tokens.
type Windows struct {
	Dir       string
	Weights   map[string]float64 // nil: every domain as mixed for training; {d: 1}: domain d alone
	Batch     int                // sequences per graph run
	MaxTokens int64              // stop after at least this many predicted tokens (0: the whole split)
}

// Pass is what one Score measured.
type Pass struct {
	Loss   float64 // mean cross-entropy per predicted token (nats)
	Nats   float64 // their sum
	Tokens int64   // predicted tokens scored
	Bytes  int64   // their text bytes (when Score was given a byte count)
	// Routes holds, with Score's routes, one entry per MoE layer.
	Routes []RouteTotals
}

// RouteTotals sums one MoE layer's routing over a Pass.
type RouteTotals struct {
	Layer   int
	Load    []int64 // (token, slot) pairs per routed expert
	Entropy float64 // the router's entropy summed over tokens (nats; divide by Tokens)
	Router  bool    // false: a hash layer (no router, no entropy)
}

// Score runs the model over w. bytes, when not nil, counts the text bytes
// of a row's predicted tokens; routes asks for the routing totals.
func (s *Scorer) Score(w Windows, bytes func(targets []int32) int64, routes bool) (Pass, error) {
	var p Pass
	T := s.seq
	st, err := data.Open(data.StreamConfig{Dir: w.Dir, Split: data.Validation, SeqLen: T, Weights: w.Weights,
		Batch: w.Batch, Epochs: 1, Vocab: s.m.Cfg.VocabSize}, data.Cursor{})
	if err != nil {
		return p, err
	}
	defer st.Close()
	for w.MaxTokens == 0 || p.Tokens < w.MaxTokens {
		b, err := st.Next()
		if err != nil && !errors.Is(err, io.EOF) {
			return p, err
		}
		if b.B == 0 {
			break
		}
		g, gerr := s.graph(b.B)
		if gerr != nil {
			return p, gerr
		}
		r, rerr := g.Run(b.Tokens)
		if rerr != nil {
			return p, rerr
		}
		n := int64(b.B * b.T)
		p.Nats += r.Loss * float64(n)
		p.Tokens += n
		if bytes != nil {
			for row := 0; row < b.B; row++ {
				p.Bytes += bytes(b.Tokens[row*(T+1)+1 : (row+1)*(T+1)])
			}
		}
		if routes {
			p.addRoutes(g)
		}
		if s.Inspect != nil {
			s.Inspect(b, g)
		}
		if errors.Is(err, io.EOF) {
			break
		}
	}
	if p.Tokens == 0 {
		return p, fmt.Errorf("the validation split of %s has no window of %d tokens", w.Dir, T+1)
	}
	p.Loss = p.Nats / float64(p.Tokens)
	return p, nil
}

func (p *Pass) addRoutes(g *model.Graph) {
	if p.Routes == nil {
		p.Routes = make([]RouteTotals, len(g.Routes))
		for j := range p.Routes {
			p.Routes[j].Layer = g.RouteOf[j]
		}
	}
	for j, rec := range g.Routes {
		rt := &p.Routes[j]
		if rt.Load == nil {
			rt.Load = make([]int64, rec.E)
		}
		for e, l := range rec.Load {
			rt.Load[e] += int64(l)
		}
		if h, ok := g.RouterEntropy(j); ok {
			rt.Entropy += h
			rt.Router = true
		}
	}
}

func (s *Scorer) graph(b int) (*model.Graph, error) {
	if g, ok := s.graphs[b]; ok {
		return g, nil
	}
	opt := s.opt
	opt.Batch, opt.Seq = b, s.seq
	g, err := s.m.Build(opt)
	if err != nil {
		return nil, err
	}
	s.graphs[b] = g
	return g, nil
}
