package sweep

import (
	"errors"
	"os"
	"path/filepath"
	"sort"

	"github.com/moetrain/moetrain/configs"
	"github.com/moetrain/moetrain/model"
	"github.com/moetrain/moetrain/rundir"
)

// Estimate is a run's expected training time: the FLOPs left to train
// divided by a measured rate.
type Estimate struct {
	TokensLeft int64
	FLOPs      float64 // TokensLeft × FLOPs per token (model.FLOPsPerToken)
	TokensPerS float64 // the measured rate
	// Measured says where the rate comes from: "this run's log" (a partial
	// run's recent train lines) or "a timed step" (measure).
	Measured string
	// EvalTokens is the held-out tokens still to score (eval.tokens at
	// every eval.every_tokens and at the end), counted at a forward pass's
	// cost (a third of a training step's) in Seconds.
	EvalTokens int64
	Seconds    float64
}

// Measure times training steps of a config and returns its tokens/s.
type Measure func(configs.Config) (float64, error)

// Estimates returns every run's estimate. Runs with train lines use the
// median tokens/s of their last five; the others call measure once per
// distinct model shape (the config without its seed and budget).
func Estimates(runs []Run, measure Measure) ([]Estimate, error) {
	cache := map[string]float64{}
	out := make([]Estimate, len(runs))
	for i, r := range runs {
		c := r.Config
		st, err := StatusOf(r)
		if err != nil {
			return nil, err
		}
		done, logged := progress(r.Dir)
		if st == Done {
			done = c.Train.Tokens
		}
		e := Estimate{TokensLeft: max(0, c.Train.Tokens-done)}
		e.FLOPs = float64(e.TokensLeft) * model.FLOPsPerToken(c.Model, c.Train.SeqLen)
		if e.TokensLeft == 0 {
			out[i] = e
			continue
		}
		if c.Eval.Tokens > 0 {
			evals := int64(1) // the final one
			if c.Eval.EveryTokens > 0 {
				evals += (c.Train.Tokens-1)/c.Eval.EveryTokens - done/c.Eval.EveryTokens
			}
			e.EvalTokens = evals * c.Eval.Tokens
		}
		if logged > 0 {
			e.TokensPerS, e.Measured = logged, "this run's log"
		} else {
			key := shapeKey(c)
			tps, ok := cache[key]
			if !ok {
				if tps, err = measure(c); err != nil {
					return nil, err
				}
				cache[key] = tps
			}
			e.TokensPerS, e.Measured = tps, "a timed step"
		}
		if e.TokensPerS > 0 {
			e.Seconds = (float64(e.TokensLeft) + float64(e.EvalTokens)/3) / e.TokensPerS
		}
		out[i] = e
	}
	return out, nil
}

// shapeKey identifies what sets a run's speed: its model and batch shape.
func shapeKey(c configs.Config) string {
	c.Model.InitSeed = 0
	k := configs.Config{Model: c.Model}
	k.Train.BatchSize, k.Train.MicroBatchSize, k.Train.SeqLen = c.Train.BatchSize, c.Train.MicroBatchSize, c.Train.SeqLen
	return k.YAML()
}

// progress reads a run's metrics: the tokens trained and the median
// tokens/s of its last five train lines (0 without any).
func progress(dir string) (int64, float64) {
	ms, err := rundir.ReadMetrics(filepath.Join(dir, "metrics.jsonl"))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return 0, 0
	}
	var tokens int64
	var rates []float64
	for _, m := range ms {
		tokens = max(tokens, m.Tokens)
		if m.Kind == "train" && m.TokensPerS > 0 {
			rates = append(rates, m.TokensPerS)
		}
	}
	if len(rates) == 0 {
		return tokens, 0
	}
	rates = rates[max(0, len(rates)-5):]
	sort.Float64s(rates)
	return tokens, rates[len(rates)/2]
}
