package step

import (
	"fmt"
	"math"
	"time"

	"github.com/moetrain/moetrain/model"
	"github.com/moetrain/moetrain/optim"
)

// Reducer sums gradients and loss terms over the ranks that train one batch
// together.
type Reducer interface {
	// GradReady is called once Params[j]'s gradient holds this rank's whole
	// sum (during the last micro-batch's accumulation, before the later
	// parameters'), so its reduction can overlap with theirs.
	GradReady(j int)
	// Reduce completes every gradient reduction and sums sums over ranks.
	Reduce(sums []float64) error
	// Norm is the global norm of the reduced gradients of the whole model
	// (the same on every rank).
	Norm(params []optim.Param) float64
}

// Step is one model's training graph with its parameters and optimizer.
type Step struct {
	Graph  *model.Graph
	Params []optim.Param // the float parameters of the model, in layout order
	// Layout holds Params[j]'s index in the model layout (Graph.Grad's
	// argument).
	Layout []int
	Adam   *optim.AdamW
	// MicroBatches is the number of micro-batches in the whole batch over
	// all ranks: each weighs 1/MicroBatches in the mean.
	MicroBatches int
	Clip         float64 // optim.clip: the largest global norm (0: no clipping)
	Reducer      Reducer // nil: one process
	// aliased is set while Params' gradients are the graph's own buffers: a
	// step of one micro-batch in one process hands AdamW the graph's
	// gradients instead of copying them out (Params[j].Grad then aliases
	// the graph's buffer until the next Run, and New's buffers are
	// dropped); a step that accumulates allocates its own again.
	aliased bool
}

// New makes a Step over m's float parameters with fresh gradients and
// AdamW moments.
func New(m *model.Model, g *model.Graph, cfg optim.AdamWConfig, clip float64, microBatches int) (*Step, error) {
	s := &Step{Graph: g, MicroBatches: microBatches, Clip: clip}
	for i, p := range m.Layout {
		if !p.Trained() {
			continue
		}
		d := m.Values[i].Data().([]float32)
		s.Params = append(s.Params, optim.Param{Name: p.Name, Data: d, Grad: make([]float32, len(d)), Decay: p.Decay})
		s.Layout = append(s.Layout, i)
	}
	var err error
	s.Adam, err = optim.NewAdamW(cfg, s.Params)
	return s, err
}

// Result is what one step reports.
type Result struct {
	Loss    float64   // mean cross-entropy over the whole batch
	Balance []float64 // parallel to Graph.Balance, means over the whole batch
	Norm    float64   // global gradient norm before clipping (0 when the loss is not finite)
	Updated bool      // false: the loss or norm was not finite and the weights are unchanged
	Phases  Phases
}

// Phases is where a step's time went.
type Phases struct {
	Graph      time.Duration // forward and backward
	Accumulate time.Duration // gradients copied out of the graph and scaled
	Reduce     time.Duration // waiting for the reductions (0 in one process)
	Norm       time.Duration // the global norm (clipping)
	Update     time.Duration // AdamW with the clipping factor
}

// Run trains on micro, this rank's micro-batches (Graph.Run's tokens each),
// and steps AdamW at learning rate lr unless the loss or the gradient norm
// is not finite.
func (s *Step) Run(micro [][]int32, lr float64) (Result, error) {
	if len(micro) == 0 {
		return Result{}, fmt.Errorf("step: no micro-batch")
	}
	scale := float32(1) / float32(s.MicroBatches)
	n := float64(s.MicroBatches)
	sums := make([]float64, 1+len(s.Graph.Balance)) // loss, then balance losses
	var r Result
	// One micro-batch in one process: the graph's gradients are the step's
	// (scale 1, nothing to sum), so they are used in place, not copied.
	alias := len(micro) == 1 && s.MicroBatches == 1 && s.Reducer == nil
	if !alias && s.aliased {
		for j := range s.Params {
			s.Params[j].Grad = make([]float32, len(s.Params[j].Data))
		}
		s.aliased = false
	}
	for mb, tokens := range micro {
		t0 := time.Now()
		res, err := s.Graph.Run(tokens)
		if err != nil {
			return r, err
		}
		t1 := time.Now()
		sums[0] += res.Loss / n
		for i, b := range res.Balance {
			sums[1+i] += b / n
		}
		last := mb == len(micro)-1
		for j, p := range s.Params {
			gt, err := s.Graph.Grad(s.Layout[j])
			if err != nil {
				return r, err
			}
			if alias {
				s.Params[j].Grad, s.aliased = gt.Data().([]float32), true
				continue
			}
			accumulate(p.Grad, gt.Data().([]float32), scale, mb == 0)
			if last && s.Reducer != nil {
				s.Reducer.GradReady(j)
			}
		}
		r.Phases.Graph += t1.Sub(t0)
		r.Phases.Accumulate += time.Since(t1)
	}
	t0 := time.Now()
	if s.Reducer != nil {
		if err := s.Reducer.Reduce(sums); err != nil {
			return r, err
		}
	}
	r.Loss, r.Balance = sums[0], sums[1:]
	t1 := time.Now()
	r.Phases.Reduce = t1.Sub(t0)
	if !finite(r.Loss) {
		return r, nil
	}
	if s.Reducer != nil {
		r.Norm = s.Reducer.Norm(s.Params)
	} else {
		r.Norm = optim.GlobalNorm(s.Params)
	}
	t2 := time.Now()
	r.Phases.Norm = t2.Sub(t1)
	if !finite(r.Norm) {
		return r, nil
	}
	if err := s.Adam.StepScaled(s.Params, lr, optim.ClipScale(r.Norm, s.Clip)); err != nil {
		return r, err
	}
	r.Phases.Update = time.Since(t2)
	r.Updated = true
	return r, nil
}

// accumulate adds src·scale to dst, or sets dst to it for the first
// micro-batch. With one micro-batch in all (scale 1) it is an exact copy.
func accumulate(dst, src []float32, scale float32, first bool) {
	switch {
	case first && scale == 1:
		copy(dst, src)
	case first:
		for k, v := range src {
			dst[k] = v * scale
		}
	default:
		for k, v := range src {
			dst[k] += v * scale
		}
	}
}

func finite(x float64) bool { return !math.IsNaN(x) && !math.IsInf(x, 0) }
