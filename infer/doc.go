// Package infer runs a trained model token by token with a key/value cache:
// incremental decoding for generation and log-likelihood scoring, in plain
// Go over the model's own weight slices (no graph). Each new token costs one
// pass through the layers against the cached keys and values, instead of a
// pass over the whole prefix.
//
// The math is the training graph's (model.Build): the same RMSNorm, RoPE
// (ops.ApplyRoPE), causal attention (ops.AttendOne), SwiGLU, routing
// (ops.Route) and head (ops.LogitsRows, ops.TokenLogProbs), so its logits
// equal the graph's up to float32 summation order.
package infer
