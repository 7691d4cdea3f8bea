package analysis

import (
	"fmt"

	"github.com/moetrain/moetrain/configs"
	"github.com/moetrain/moetrain/data"
	"github.com/moetrain/moetrain/evaluate"
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

// heldOut scores up to o.Tokens of the validation split of o.Data (one
// domain when domain is not empty) with graphs built with gopt, with the
// routing totals (package evaluate, as training and moetrain eval score).
// inspect, when not nil, sees every batch and the graph that scored it.
func heldOut(m *model.Model, c configs.Config, o Options, gopt model.GraphOptions, domain string, inspect func(data.Batch, *model.Graph)) (evaluate.Pass, error) {
	w := evaluate.Windows{Dir: o.Data, Batch: o.Batch, MaxTokens: o.Tokens}
	if domain != "" {
		w.Weights = map[string]float64{domain: 1}
	}
	s := evaluate.NewScorer(m, c.Train.SeqLen, gopt)
	s.Inspect = inspect
	defer s.Close()
	p, err := s.Score(w, nil, true)
	if err != nil && domain != "" {
		err = fmt.Errorf("domain %s: %w", domain, err)
	}
	return p, err
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
