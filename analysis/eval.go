package analysis

import (
	"errors"
	"fmt"
	"io"
	"math"

	"github.com/moetrain/moetrain/configs"
	"github.com/moetrain/moetrain/data"
	"github.com/moetrain/moetrain/model"
)

// Options configure every analysis.
type Options struct {
	// Data is the dataset directory; empty means the run's data.path.
	Data string
	// Tokens caps the held-out tokens scored per evaluation (per domain for
	// the load analysis); 0 means 65536. Every evaluation of one analysis
	// scores the same windows in the same order.
	Tokens int64
	// Batch is the sequences per graph run; 0 means the run's micro-batch.
	Batch int
}

func (o Options) withDefaults(c configs.Config) Options {
	if o.Data == "" {
		o.Data = c.Data.Path
	}
	if o.Tokens <= 0 {
		o.Tokens = 1 << 16
	}
	if o.Batch <= 0 {
		o.Batch = c.Train.MicroBatch()
	}
	return o
}

// pass is what one held-out evaluation measured.
type pass struct {
	Loss   float64 // mean cross-entropy per token
	Tokens int64
	// Per MoE layer (entries of Graph.Routes): (token, slot) counts per
	// routed expert, and the summed router entropy over tokens (nats; 0
	// for hash layers).
	Load    [][]int64
	Entropy []float64
	Router  []bool // false: a hash layer (no router probabilities)
	Layers  []int  // layer index of each entry
}

// evaluate scores the validation split of o.Data (one domain when domain
// is not empty) with graphs built with gopt (Batch and Seq are set here).
func evaluate(m *model.Model, c configs.Config, o Options, gopt model.GraphOptions, domain string) (pass, error) {
	var p pass
	T := c.Train.SeqLen
	sc := data.StreamConfig{Dir: o.Data, Split: data.Validation, SeqLen: T, Batch: o.Batch, Epochs: 1, Vocab: c.Model.VocabSize}
	if domain != "" {
		sc.Weights = map[string]float64{domain: 1}
	}
	s, err := data.Open(sc, data.Cursor{})
	if err != nil {
		return p, err
	}
	defer s.Close()
	graphs := map[int]*model.Graph{}
	defer func() {
		for _, g := range graphs {
			g.Close()
		}
	}()
	var nats float64
	for p.Tokens < o.Tokens {
		b, err := s.Next()
		if err != nil && !errors.Is(err, io.EOF) {
			return p, err
		}
		if b.B == 0 {
			break
		}
		g, ok := graphs[b.B]
		if !ok {
			opt := gopt
			opt.Batch, opt.Seq = b.B, T
			if g, err = m.Build(opt); err != nil {
				return p, err
			}
			graphs[b.B] = g
		}
		r, rerr := g.Run(b.Tokens)
		if rerr != nil {
			return p, rerr
		}
		n := int64(b.B * b.T)
		nats += r.Loss * float64(n)
		p.Tokens += n
		if p.Load == nil {
			p.Load = make([][]int64, len(g.Routes))
			p.Entropy = make([]float64, len(g.Routes))
			p.Router = make([]bool, len(g.Routes))
			p.Layers = append([]int(nil), g.RouteOf...)
		}
		for j, rec := range g.Routes {
			if p.Load[j] == nil {
				p.Load[j] = make([]int64, rec.E)
			}
			for e, l := range rec.Load {
				p.Load[j][e] += int64(l)
			}
			if probs := g.RouterProbs(j); probs != nil {
				p.Entropy[j] += rowEntropySum(probs.Data())
				p.Router[j] = true
			}
		}
		if errors.Is(err, io.EOF) {
			break
		}
	}
	if p.Tokens == 0 {
		return p, fmt.Errorf("the validation split of %s has no window of %d tokens (domain %q)", o.Data, T+1, domain)
	}
	p.Loss = nats / float64(p.Tokens)
	return p, nil
}

// rowEntropySum returns Σ_rows −Σ_j p log p of a [N, E] probability matrix
// (float32 or float64 backing); the caller divides by N.
func rowEntropySum(d any) float64 {
	var total float64
	switch x := d.(type) {
	case []float32:
		for _, v := range x {
			if v > 0 {
				total -= float64(v) * math.Log(float64(v))
			}
		}
	case []float64:
		for _, v := range x {
			if v > 0 {
				total -= v * math.Log(v)
			}
		}
	}
	return total
}

// needRouter reports an error for models without learned routers.
func needRouter(c configs.Model, what string) error {
	switch c.FFN {
	case configs.FFNDense:
		return fmt.Errorf("%s: a dense model has no experts", what)
	case configs.FFNHash:
		return fmt.Errorf("%s: hash layers route by token id and have no router probabilities to rank", what)
	}
	return nil
}
