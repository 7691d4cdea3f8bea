package optim

import (
	"errors"
	"fmt"
	"math"

	"github.com/moetrain/moetrain/internal/parallel"
)

// AdamWConfig holds AdamW's hyper-parameters (DESIGN.md §5: β1 0.9, β2 0.95,
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
// The arithmetic is float32 per element with the step's constants formed in
// float64, and weights and moments are float32, like PyTorch's fp32 AdamW;
// State captures everything.
type AdamW struct {
	cfg   AdamWConfig
	names []string
	decay []bool
	m, v  [][]float32 // nil until first needed (alloc), or adopted (AdoptState)
	sizes []int       // values per parameter
	step  int64
	spans []span // blocks of the update loop (see blocks)
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
// Step; their slices may change between steps. The moments are allocated
// when first needed, so that a resumed run can hand over the moments it
// read instead (AdoptState) without both copies ever being held.
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
		o.sizes = append(o.sizes, len(p.Data))
	}
	o.m, o.v = make([][]float32, len(params)), make([][]float32, len(params))
	return o, nil
}

// alloc gives every moment not yet allocated or adopted its zeros.
func (o *AdamW) alloc() {
	for i, n := range o.sizes {
		if o.m[i] == nil {
			o.m[i] = make([]float32, n)
		}
		if o.v[i] == nil {
			o.v[i] = make([]float32, n)
		}
	}
}

// Config returns the hyper-parameters.
func (o *AdamW) Config() AdamWConfig { return o.cfg }

// Steps returns the number of updates applied (restored by SetState).
func (o *AdamW) Steps() int64 { return o.step }

// Step applies one AdamW update with learning rate lr to every parameter
// that is not Frozen.
// It returns an error, and changes nothing, when params do not match the
// ones given to NewAdamW or lr is negative or not finite.
func (o *AdamW) Step(params []Param, lr float64) error { return o.StepScaled(params, lr, 1) }

// StepScaled is Step on every gradient multiplied by gradScale (float32
// rounding, as if the gradients had been scaled in place first, which it
// equals bit for bit): global-norm clipping folded into the update, so the
// gradients are read once instead of being rewritten by a separate pass
// (see ClipScale). The gradients themselves are left unchanged.
func (o *AdamW) StepScaled(params []Param, lr float64, gradScale float32) error {
	if !(lr >= 0) || math.IsInf(lr, 0) {
		return fmt.Errorf("adamw step: learning rate %g: must be >= 0 and finite", lr)
	}
	if !(gradScale >= 0) || math.IsInf(float64(gradScale), 0) {
		return fmt.Errorf("adamw step: gradient scale %g: must be >= 0 and finite", gradScale)
	}
	if err := o.match(params); err != nil {
		return fmt.Errorf("adamw step: %w", err)
	}
	o.alloc()
	o.step++
	b1, b2 := o.cfg.Beta1, o.cfg.Beta2
	t := float64(o.step)
	// The per-step constants are formed in float64 and rounded once; the
	// per-element arithmetic is float32, like PyTorch's fp32 AdamW.
	k := adamConsts{
		b1: float32(b1), c1: float32(1 - b1), b2: float32(b2), c2: float32(1 - b2),
		stepSize: float32(lr / (1 - math.Pow(b1, t))),
		sqrtBc2:  float32(math.Sqrt(1 - math.Pow(b2, t))),
		eps:      float32(o.cfg.Eps),
		scale:    gradScale,
	}
	decayKeep := float32(1 - lr*o.cfg.WeightDecay)
	// One parallel loop over fixed blocks of every parameter: no barrier per
	// tensor, and each element's arithmetic is independent of the split.
	blocks := o.blocks(params)
	parallel.For(len(blocks), 1, func(lo, hi int) {
		for _, b := range blocks[lo:hi] {
			p := params[b.p]
			if p.Frozen {
				continue
			}
			keep := float32(1)
			if o.decay[b.p] {
				keep = decayKeep
			}
			adamUpdate(&k, keep, p.Data[b.lo:b.hi], p.Grad[b.lo:b.hi], o.m[b.p][b.lo:b.hi], o.v[b.p][b.lo:b.hi])
		}
	})
	return nil
}

// adamConsts are one step's float32 constants.
type adamConsts struct {
	b1, c1, b2, c2 float32 // β1, 1−β1, β2, 1−β2
	stepSize       float32 // lr / (1 − β1ᵗ)
	sqrtBc2        float32 // √(1 − β2ᵗ)
	eps            float32
	scale          float32 // gradient scale (clipping)
}

// adamUpdate applies the update to one block, in PyTorch's order of
// operations: w·keep, m and v by their moving averages, then
// w −= stepSize · m / (√v / √bc2 + ε).
// The bulk runs in adam_amd64.s where the CPU has AVX2 (the same float32
// operations in the same order, so the same bits: √ of a float32 taken in
// float64 and rounded once is the correctly rounded float32 √), the tail
// and other CPUs in adamUpdateScalar.
func adamUpdate(k *adamConsts, keep float32, w, g, m, v []float32) {
	g, m, v = g[:len(w)], m[:len(w)], v[:len(w)]
	n := 0
	if adamVecOK {
		if n = len(w) &^ 7; n > 0 {
			adam32x8(k, keep, &w[0], &g[0], &m[0], &v[0], n)
		}
	}
	adamUpdateScalar(k, keep, w[n:], g[n:], m[n:], v[n:])
}

func adamUpdateScalar(k *adamConsts, keep float32, w, g, m, v []float32) {
	g, m, v = g[:len(w)], m[:len(w)], v[:len(w)]
	for j, wj := range w {
		gj := g[j] * k.scale
		mj := k.b1*m[j] + k.c1*gj
		vj := k.b2*v[j] + k.c2*gj*gj
		d := float32(math.Sqrt(float64(vj)))/k.sqrtBc2 + k.eps
		w[j] = wj*keep - k.stepSize*mj/d
		m[j], v[j] = mj, vj
	}
}

// updateBlock is the fixed unit of AdamW's parallel loop (elements).
const updateBlock = 1 << 15

type span struct{ p, lo, hi int }

// blocks cuts every parameter into spans of at most updateBlock elements
// (cached: the parameter sizes never change).
func (o *AdamW) blocks(params []Param) []span {
	if o.spans != nil {
		return o.spans
	}
	for i, p := range params {
		for lo := 0; lo < len(p.Data); lo += updateBlock {
			o.spans = append(o.spans, span{i, lo, min(lo+updateBlock, len(p.Data))})
		}
	}
	return o.spans
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
		case len(p.Data) != o.sizes[i] || len(p.Grad) != o.sizes[i]:
			return fmt.Errorf("param %q: %d values and %d gradients, optimizer has %d", p.Name, len(p.Data), len(p.Grad), o.sizes[i])
		case p.Decay != o.decay[i]:
			return fmt.Errorf("param %q: decay %v, optimizer has %v", p.Name, p.Decay, o.decay[i])
		}
	}
	return nil
}

// Moments is State without the copies: the slices are the optimizer's own
// moments, to read (a checkpoint being written, a hash) or fill in place
// (a broadcast, then SetState with them for the step count), not to keep
// past the next Step. It saves a second copy of every moment.
func (o *AdamW) Moments() State {
	o.alloc()
	s := State{Step: o.step, Slices: make([]NamedSlice, 0, 2*len(o.names))}
	for i, n := range o.names {
		s.Slices = append(s.Slices, NamedSlice{Name: n + expAvgSuffix, Data: o.m[i]}, NamedSlice{Name: n + expAvgSqSuffix, Data: o.v[i]})
	}
	return s
}

// State returns a copy of the optimizer state: the step count and, for each
// parameter in order, its first and second moments.
func (o *AdamW) State() State {
	o.alloc()
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
func (o *AdamW) SetState(s State) error { return o.setState(s, false) }

// AdoptState is SetState taking the slices themselves as the moments
// wherever the optimizer has not allocated its own yet (a new optimizer
// before its first Step, Moments or State): a resumed run's moments are
// then held once, not twice. The caller must not use the slices afterwards.
func (o *AdamW) AdoptState(s State) error { return o.setState(s, true) }

func (o *AdamW) setState(s State, adopt bool) error {
	if s.Step < 0 {
		return fmt.Errorf("adamw state: step %d: must be >= 0", s.Step)
	}
	type slot struct {
		moments [][]float32
		i       int
	}
	want := make(map[string]slot, 2*len(o.names))
	for i, n := range o.names {
		want[n+expAvgSuffix] = slot{o.m, i}
		want[n+expAvgSqSuffix] = slot{o.v, i}
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
		case len(ns.Data) != o.sizes[dst.i]:
			errs = append(errs, fmt.Errorf("%s: %d values, want %d", ns.Name, len(ns.Data), o.sizes[dst.i]))
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
		dst := want[ns.Name]
		switch {
		case adopt && dst.moments[dst.i] == nil:
			dst.moments[dst.i] = ns.Data
		case dst.moments[dst.i] == nil:
			dst.moments[dst.i] = append([]float32(nil), ns.Data...)
		default:
			copy(dst.moments[dst.i], ns.Data)
		}
	}
	o.step = s.Step
	return nil
}
