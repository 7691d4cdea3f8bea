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

// EstimateMemory estimates float32 training memory for micro-batches of
// batch sequences of seq tokens: weights, their gradients (the graph's plus
// the trainer's accumulator), AdamW's two moments, and the activations a
// step keeps alive until its backward pass ends.
//
// Activations count, per token and layer, every value the graph holds
// (norm outputs, q/k/v, attention output, projections, residual sums, the
// FFN's output and what its op caches for backward: SwiGLU's gate and up
// projections, the gate's sigmoid and the hidden product, each routed slot's gathered input and hidden activations,
// router logits and probabilities) plus one gradient of each, and per
// sequence the attention probabilities (H·T² per layer). It is an upper
// bound of the live set, not a simulation of the allocator.
func EstimateMemory(m configs.Model, batch, seq int) Memory {
	const f32 = 4
	c := Count(m)
	d, tokens := int64(m.Hidden), int64(batch)*int64(seq)
	var perToken int64 = 2 * d // embedding output, final norm
	for l := 0; l < m.Layers; l++ {
		perToken += 9 * d // norms, q, k, v, attention out, o-proj, two residual sums
		if !m.IsMoELayer(l) {
			perToken += d + 4*int64(m.DenseWidth) // output; gate, up, sigmoid(gate), hidden
			continue
		}
		e, k, w := int64(m.RoutedExperts), int64(m.ActiveRouted), int64(m.ExpertWidth)
		perToken += 2*e + d + k*(2*d+3*w)
		if m.SharedExperts > 0 {
			perToken += 2*d + 4*int64(m.SharedExperts)*w
		}
	}
	perToken *= 2 // each value's gradient
	attn := int64(m.Layers) * int64(m.Heads) * int64(seq) * int64(seq) * int64(batch) * 2
	head := int64(256) * int64(m.VocabSize) * 2 // one chunk of logits and their gradient
	act := (perToken*tokens + attn + head) * f32
	mem := Memory{
		Weights:     c.Total * f32,
		Gradients:   2 * c.Total * f32,
		Optimizer:   2 * c.Total * f32,
		Activations: act,
	}
	mem.Total = mem.Weights + mem.Gradients + mem.Optimizer + mem.Activations
	return mem
}
