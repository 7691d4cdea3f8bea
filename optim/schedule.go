package optim

import (
	"errors"
	"fmt"
	"math"
)

// Schedule kinds.
const (
	KindStep     = "step"     // DESIGN.md §5: ×StepFactor at 80% and again at 90% of TotalTokens
	KindCosine   = "cosine"   // cosine from MaxLR to MinLRRatio·MaxLR at TotalTokens
	KindConstant = "constant" // MaxLR after warmup
)

// StepFactor is the step schedule's decay per boundary (DESIGN.md §5).
const StepFactor = 0.316

// Schedule is the learning rate as a pure function of training tokens seen,
// so resuming needs only the token count. Every kind starts with a linear
// warmup from 0 at 0 tokens to MaxLR at WarmupTokens.
type Schedule struct {
	Kind         string
	MaxLR        float64
	WarmupTokens int64
	TotalTokens  int64   // the step boundaries and the cosine end are fractions of this
	MinLRRatio   float64 // cosine only: the final LR as a fraction of MaxLR
}

// Validate reports every bad field by its YAML name.
func (s Schedule) Validate() error {
	var errs []error
	add := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("schedule.%s: %s", field, fmt.Sprintf(format, args...)))
	}
	switch s.Kind {
	case KindStep, KindCosine, KindConstant:
	default:
		add("kind", "unknown kind %q (want step, cosine or constant)", s.Kind)
	}
	if !(s.MaxLR > 0) || math.IsInf(s.MaxLR, 0) {
		add("max_lr", "must be positive and finite, got %g", s.MaxLR)
	}
	if s.WarmupTokens < 0 {
		add("warmup_tokens", "must be >= 0, got %d", s.WarmupTokens)
	}
	if s.Kind == KindStep || s.Kind == KindCosine {
		if s.TotalTokens <= 0 {
			add("total_tokens", "must be positive for %s, got %d", s.Kind, s.TotalTokens)
		} else if s.WarmupTokens >= s.TotalTokens {
			add("warmup_tokens", "%d must be below total_tokens %d", s.WarmupTokens, s.TotalTokens)
		}
	}
	if !(s.MinLRRatio >= 0 && s.MinLRRatio <= 1) {
		add("min_lr_ratio", "must be in [0, 1], got %g", s.MinLRRatio)
	}
	return errors.Join(errs...)
}

// StepBoundaries returns the token counts at which the step schedule
// decays: floor(0.8·TotalTokens) and floor(0.9·TotalTokens), computed
// exactly in integers.
func (s Schedule) StepBoundaries() (first, second int64) {
	t := s.TotalTokens
	frac := func(num int64) int64 { return t/10*num + t%10*num/10 }
	return frac(8), frac(9)
}

// LR returns the learning rate after tokens training tokens. It assumes a
// valid Schedule (see Validate); tokens below 0 count as 0.
func (s Schedule) LR(tokens int64) float64 {
	tokens = max(tokens, 0)
	lr := s.MaxLR
	if tokens < s.WarmupTokens {
		lr *= float64(tokens) / float64(s.WarmupTokens)
	}
	switch s.Kind {
	case KindStep:
		b1, b2 := s.StepBoundaries()
		if tokens >= b1 {
			lr *= StepFactor
		}
		if tokens >= b2 {
			lr *= StepFactor
		}
	case KindCosine:
		if tokens >= s.WarmupTokens {
			p := math.Min(1, float64(tokens-s.WarmupTokens)/float64(s.TotalTokens-s.WarmupTokens))
			minLR := s.MinLRRatio * s.MaxLR
			lr = minLR + (s.MaxLR-minLR)*0.5*(1+math.Cos(math.Pi*p))
		}
	}
	return lr
}
