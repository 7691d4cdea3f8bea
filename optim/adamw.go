package optim

import (
	"errors"
	"fmt"
	"math"

	"github.com/moetrain/moetrain/internal/parallel"
)

// AdamWConfig holds AdamW's hyper-parameters (SPEC §5: β1 0.9, β2 0.95,
// ε 1e-8, weight decay 0.1).
type AdamWConfig struct {
	Beta1, Beta2 float64
	Eps          float64
	WeightDecay  float64 // decoupled: w ← w·(1 − lr·wd) on parameters with Decay set
}

// Validate reports every out-of-range field.
func (c AdamWConfig) Validate() error {
	var errs []error
	if !(c.Beta1 >= 0 && c.Beta1 < 1) {
		errs = append(errs, fmt.Errorf("beta1: must be in [0, 1), got %g", c.Beta1))
	}
	if !(c.Beta2 >= 0 && c.Beta2 < 1) {
		errs = append(errs, fmt.Errorf("beta2: must be in [0, 1), got %g", c.Beta2))
	}
	if !(c.Eps > 0) || math.IsInf(c.Eps, 0) {
		errs = append(errs, fmt.Errorf("eps: must be positive and finite, got %g", c.Eps))
	}
	if !(c.WeightDecay >= 0) || math.IsInf(c.WeightDecay, 0) {
		errs = append(errs, fmt.Errorf("weight_decay: must be >= 0 and finite, got %g", c.WeightDecay))
	}
	return errors.Join(errs...)
}

// AdamW is PyTorch's torch.optim.AdamW (amsgrad off, maximize off): for
// each element, at step t (counted from 1),
//
//	w ← w·(1 − lr·wd)                 (only where Param.Decay)
//	m ← β1·m + (1−β1)·g
//	v ← β2·v + (1−β2)·g²
//	w ← w − lr/(1−β1ᵗ) · m / (√v/√(1−β2ᵗ) + ε)
//
// The arithmetic is float64 per element; weights and moments are stored as
// float32 (like PyTorch's fp32 state), so State captures everything.
type AdamW struct {
	cfg   AdamWConfig
	names []string
	decay []bool
	m, v  [][]float32
	step  int64
}

// State is AdamW's complete resumable state.
type State struct {
	Step   int64        // updates applied so far; bias correction uses it
	Slices []NamedSlice // "<param>.exp_avg" then "<param>.exp_avg_sq" for each parameter, in order
}

// Moment slice names (PyTorch's state keys).
const (
	expAvgSuffix   = ".exp_avg"
	expAvgSqSuffix = ".exp_avg_sq"
)

// NewAdamW returns an optimizer for params with zero moments. The same
// parameters (names, lengths, Decay flags, order) must be passed to every
// Step; their slices may change between steps.
func NewAdamW(cfg AdamWConfig, params []Param) (*AdamW, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("adamw config: %w", err)
	}
	if err := checkParams(params); err != nil {
		return nil, fmt.Errorf("adamw params: %w", err)
	}
	o := &AdamW{cfg: cfg}
	for _, p := range params {
		o.names = append(o.names, p.Name)
		o.decay = append(o.decay, p.Decay)
		o.m = append(o.m, make([]float32, len(p.Data)))
		o.v = append(o.v, make([]float32, len(p.Data)))
	}
	return o, nil
}

// Config returns the hyper-parameters.
func (o *AdamW) Config() AdamWConfig { return o.cfg }

// Steps returns the number of updates applied (restored by SetState).
func (o *AdamW) Steps() int64 { return o.step }

// Step applies one AdamW update with learning rate lr to every parameter.
// It returns an error, and changes nothing, when params do not match the
// ones given to NewAdamW or lr is negative or not finite.
func (o *AdamW) Step(params []Param, lr float64) error {
	if !(lr >= 0) || math.IsInf(lr, 0) {
		return fmt.Errorf("adamw step: learning rate %g: must be >= 0 and finite", lr)
	}
	if err := o.match(params); err != nil {
		return fmt.Errorf("adamw step: %w", err)
	}
	o.step++
	b1, b2 := o.cfg.Beta1, o.cfg.Beta2
	t := float64(o.step)
	stepSize := lr / (1 - math.Pow(b1, t))
	sqrtBc2 := math.Sqrt(1 - math.Pow(b2, t))
	eps := o.cfg.Eps
	for i, p := range params {
		keep := 1.0
		if o.decay[i] {
			keep = 1 - lr*o.cfg.WeightDecay
		}
		w, g, m, v := p.Data, p.Grad, o.m[i], o.v[i]
		parallel.For(len(w), 1<<14, func(lo, hi int) {
			for j := lo; j < hi; j++ {
				gj := float64(g[j])
				mj := b1*float64(m[j]) + (1-b1)*gj
				vj := b2*float64(v[j]) + (1-b2)*gj*gj
				wj := float64(w[j]) * keep
				wj -= stepSize * mj / (math.Sqrt(vj)/sqrtBc2 + eps)
				m[j], v[j], w[j] = float32(mj), float32(vj), float32(wj)
			}
		})
	}
	return nil
}

// match checks params against the ones the optimizer was built for.
func (o *AdamW) match(params []Param) error {
	if len(params) != len(o.names) {
		return fmt.Errorf("got %d params, optimizer has %d", len(params), len(o.names))
	}
	for i, p := range params {
		switch {
		case p.Name != o.names[i]:
			return fmt.Errorf("param %d is %q, optimizer has %q", i, p.Name, o.names[i])
		case len(p.Data) != len(o.m[i]) || len(p.Grad) != len(o.m[i]):
			return fmt.Errorf("param %q: %d values and %d gradients, optimizer has %d", p.Name, len(p.Data), len(p.Grad), len(o.m[i]))
		case p.Decay != o.decay[i]:
			return fmt.Errorf("param %q: decay %v, optimizer has %v", p.Name, p.Decay, o.decay[i])
		}
	}
	return nil
}

// State returns a copy of the optimizer state: the step count and, for each
// parameter in order, its first and second moments.
func (o *AdamW) State() State {
	s := State{Step: o.step, Slices: make([]NamedSlice, 0, 2*len(o.names))}
	for i, n := range o.names {
		s.Slices = append(s.Slices,
			NamedSlice{Name: n + expAvgSuffix, Data: append([]float32(nil), o.m[i]...)},
			NamedSlice{Name: n + expAvgSqSuffix, Data: append([]float32(nil), o.v[i]...)})
	}
	return s
}

// SetState restores a State saved by State, copying the slices. Every
// moment slice must be present exactly once with its parameter's length;
// order does not matter. On error the optimizer is unchanged.
func (o *AdamW) SetState(s State) error {
	if s.Step < 0 {
		return fmt.Errorf("adamw state: step %d: must be >= 0", s.Step)
	}
	want := make(map[string][]float32, 2*len(o.names))
	for i, n := range o.names {
		want[n+expAvgSuffix] = o.m[i]
		want[n+expAvgSqSuffix] = o.v[i]
	}
	var errs []error
	seen := make(map[string]bool, len(s.Slices))
	for _, ns := range s.Slices {
		dst, ok := want[ns.Name]
		switch {
		case !ok:
			errs = append(errs, fmt.Errorf("%s: no such optimizer slice", ns.Name))
		case seen[ns.Name]:
			errs = append(errs, fmt.Errorf("%s: given twice", ns.Name))
		case len(ns.Data) != len(dst):
			errs = append(errs, fmt.Errorf("%s: %d values, want %d", ns.Name, len(ns.Data), len(dst)))
		}
		seen[ns.Name] = true
	}
	for _, n := range o.names {
		for _, name := range []string{n + expAvgSuffix, n + expAvgSqSuffix} {
			if !seen[name] {
				errs = append(errs, fmt.Errorf("%s: missing", name))
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("adamw state: %w", err)
	}
	for _, ns := range s.Slices {
		copy(want[ns.Name], ns.Data)
	}
	o.step = s.Step
	return nil
}
