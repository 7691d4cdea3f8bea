package optim

import (
	"errors"
	"fmt"
)

// Param is one named parameter tensor, flattened. Data and Grad have the
// same length. Decay is false for parameters that get no weight decay
// (RMSNorm weights); DESIGN.md §5 decays every matrix, including the embedding,
// the routers and lm_head. A Frozen parameter is not trained: AdamW leaves
// its values and moments as they are and GlobalNorm leaves out its gradient,
// as PyTorch does for a tensor with requires_grad off; it may change from
// step to step (a router frozen part-way through training).
type Param struct {
	Name       string
	Data, Grad []float32
	Decay      bool
	Frozen     bool
}

// NamedSlice is one named float32 slice of optimizer state.
type NamedSlice struct {
	Name string
	Data []float32
}

// checkParams reports empty or duplicate names and Data/Grad length
// mismatches.
func checkParams(params []Param) error {
	var errs []error
	seen := make(map[string]bool, len(params))
	for i, p := range params {
		if p.Name == "" {
			errs = append(errs, fmt.Errorf("param %d: empty name", i))
		}
		if seen[p.Name] {
			errs = append(errs, fmt.Errorf("param %q: duplicate name", p.Name))
		}
		seen[p.Name] = true
		if len(p.Data) != len(p.Grad) {
			errs = append(errs, fmt.Errorf("param %q: %d values but %d gradients", p.Name, len(p.Data), len(p.Grad)))
		}
	}
	return errors.Join(errs...)
}
