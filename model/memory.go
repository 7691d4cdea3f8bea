package model

import "github.com/moetrain/moetrain/configs"

// Memory is an analytic estimate of training memory in bytes.
type Memory struct {
	Weights     int64 `json:"weights_bytes"`
	Gradients   int64 `json:"gradients_bytes"`
	Optimizer   int64 `json:"optimizer_bytes"`
	Activations int64 `json:"activations_bytes"`
	Total       int64 `json:"total_bytes"`
}

// Activations counts the values (not bytes) a training step keeps alive
// until its backward pass ends, split by how they scale, so that callers
// (this package's EstimateMemory, the planner) can price them at any
// precision and with recomputation.
//
// Per token and layer it counts every value the graph holds (norm outputs,
// q/k/v, attention output, projections, residual sums, the FFN's output and
// what its op caches for backward: SwiGLU's gate and up projections, the
// gate's sigmoid and the hidden product, each routed slot's output row and
// hidden activations, router logits and probabilities) plus one gradient
// of each. It is an upper bound of the live set, not a simulation of the
// allocator.
type Activations struct {
	// Layer[l] is layer l's values per token (saved tensors and their
	// gradients), without the attention scores.
	Layer []int64
	// Outside is the values per token outside the decoder layers
	// (embedding output, final norm) and their gradients.
	Outside int64
	// Scores is one layer's attention probabilities and their gradient per
	// sequence: 2·H·T².
	Scores int64
	// LayerInput is the values per token of one layer's input (the hidden
	// size), what full recomputation keeps per layer.
	LayerInput int64
	// Head is the loss's logits chunk and its gradient: 256 rows of V.
	Head int64
}

// CountActivations counts the activation values of model m at sequence
// length seq.
func CountActivations(m configs.Model, seq int) Activations {
	d := int64(m.Hidden)
	a := Activations{
		Layer:      make([]int64, m.Layers),
		Outside:    2 * 2 * d, // embedding output, final norm; and gradients
		Scores:     2 * int64(m.Heads) * int64(seq) * int64(seq),
		LayerInput: d,
		Head:       2 * 256 * int64(m.VocabSize),
	}
	for l := range a.Layer {
		n := 9 * d // norms, q, k, v, attention out, o-proj, two residual sums
		if !m.IsMoELayer(l) {
			n += d + 4*int64(m.DenseWidth) // output; gate, up, sigmoid(gate), hidden
		} else {
			e, k, w := int64(m.RoutedExperts), int64(m.ActiveRouted), int64(m.ExpertWidth)
			n += 2*e + d + k*(d+3*w) // router logits and probs, output; per slot its output row and gate, up, sigmoid
			if m.SharedExperts > 0 {
				n += 2*d + 4*int64(m.SharedExperts)*w
			}
		}
		a.Layer[l] = 2 * n // each value's gradient
	}
	return a
}

// PerToken is the values per token of all layers and outside them.
func (a Activations) PerToken() int64 {
	n := a.Outside
	for _, v := range a.Layer {
		n += v
	}
	return n
}

// Stored is every activation value of a micro-batch of batch sequences of
// seq tokens when nothing is recomputed and the attention scores are
// materialised (as moetrain's graph does).
func (a Activations) Stored(batch, seq int) int64 {
	tokens := int64(batch) * int64(seq)
	return a.PerToken()*tokens + a.Scores*int64(batch)*int64(len(a.Layer)) + a.Head
}

// EstimateMemory estimates float32 training memory as moetrain trains, for
// micro-batches of batch sequences of seq tokens: weights, their gradients
// (the graph's plus the trainer's accumulator), AdamW's two moments, and
// every activation value (CountActivations) at 4 bytes.
func EstimateMemory(m configs.Model, batch, seq int) Memory {
	const f32 = 4
	c := Count(m)
	mem := Memory{
		Weights:     c.Total * f32,
		Gradients:   2 * c.Total * f32,
		Optimizer:   2 * c.Total * f32,
		Activations: CountActivations(m, seq).Stored(batch, seq) * f32,
	}
	mem.Total = mem.Weights + mem.Gradients + mem.Optimizer + mem.Activations
	return mem
}
