// Package model builds every moetrain architecture (dense, DeepSeekMoE,
// GShard, Switch, Hash) as a gorgonia graph from one configs.Model section.
//
// A Model owns the weights: one tensor per entry of Layout(cfg), named by the
// public DeepSeek Hugging Face keys and stored in their [out, in] layout
// (routed experts stacked [E, out, in], shared experts merged). Graphs built
// from a Model for a fixed micro-batch geometry share those tensors, so a
// training graph and an evaluation graph of another batch size see the same
// weights without copies.
//
// # The decoder (DESIGN.md §1)
//
//	h = Embed(ids)                                    [N, D], N = B·T
//	for each layer:
//	    h = h + Wo·Attention(RoPE(Wq·norm(h)), RoPE(Wk·norm(h)), Wv·norm(h))
//	                                                  (q, k, v: one stacked product)
//	    h = h + FFN(norm(h))                          dense SwiGLU or MoE
//	loss = CE(lm_head·norm(h), targets)               fused, never all N×V logits at once
//
// An MoE FFN is router → softmax → top-k → one GEMM per expert over the tokens
// routed to it (model/ops.MoE), plus the shared experts as one merged SwiGLU.
// Balance losses (DESIGN.md §3) are separate scalar nodes, so they can be logged
// apart from the language-model loss; a zero coefficient builds no node.
//
// Shape legend: B sequences, T positions, N = B·T tokens, D hidden, V vocab,
// E routed experts, K active routed experts, W expert width.
//
// Parameter accounting (Layout, Count, FLOPsPerToken, CountActivations,
// EstimateMemory) needs no allocation and serves `moetrain params`, the
// planner package, bench MFU and compare tables.
package model
