// Package ops holds moetrain's custom gorgonia operations: the hot paths of
// a decoder step, each a forward op with a hand-written backward.
//
//	RMSNorm   y = w ⊙ x / rms(x)                         x [N, D], w [D]
//	Linear    y = x·wᵀ                                   w [out, in] (PyTorch layout)
//	          (LinearStacked: x·[w1; w2; …]ᵀ, outputs side by side: the q, k, v projections)
//	SwiGLU    y = (silu(x·wgᵀ) ⊙ x·wuᵀ)·wdᵀ               dense FFN and merged shared experts
//	Attention causal multi-head attention with RoPE       q, k, v [B·T, H·dh], or packed [B·T, 3·H·dh]
//	Softmax   row softmax, max-subtracted                 router probabilities
//	MoE       top-k routed experts, one GEMM per expert   u [N, D], probs [N, E], experts [E, W, D]
//	HashMoE   fixed token-id → expert table, gate 1
//	ExpertBalance, DeviceBalance                          DESIGN.md §3.1–3.3 balance losses
//	LMHeadCrossEntropy  fused LM head + mean CE, chunked over rows (never N×V logits at once)
//	Embed, Add
//
// # Conventions
//
// Every op works in float32 (training) and float64 (finite-difference
// checks in internal/gradcheck); kernels are generic over Float. Matrices are
// row-major, and every matrix product goes through internal/blas, except
// attention's causal products where the CPU has AVX-512: attn_amd64.s's
// 8-row tiles stop at the diagonal, where GEMMs of whole blocks computed the
// masked half of each diagonal block (fusedAttention). A gorgonia
// op has one output, so a backward pass that yields several input gradients
// returns them packed in one flat tensor, which zero-copy gradView nodes
// slice apart (packedGrads in op.go).
//
// Dense forward products x·wᵀ (Linear, SwiGLU) multiply by a transposed
// copy of w made per call (mulTransposed, stackedTransposed): oneDNN runs a
// product whose right operand it reads untransposed 4-15% faster at the
// science shapes (BenchmarkRightOperandLayout in internal/blas measures it
// per machine). Expert products do not: a copy per expert visit, of
// weights the optimizer left in L3, cost more than the products gained.
//
// Ops never modify their inputs, but for an Add that AddInPlace marked:
// it writes the sum over an input that only it reads (a residual branch,
// written just before and still in cache). Some keep what their forward
// computed (SwiGLU's projections, attention probabilities, MoE's gathered
// rows) in a cache owned by the op, keyed by the addresses of the input
// arrays: the backward uses it only when handed the same arrays, and
// recomputes otherwise, so a cache can make a step faster but never wrong.
//
// Graphs of these ops run on Engine (give it to the tape machine): gorgonia's
// default tensor engine with an Add that splits over the workers, for the
// sums gorgonia forms of a node's gradients.
//
// # Determinism
//
// Row loops run on internal/parallel; every reduction (weight gradients,
// scatter-adds, balance-loss sums) is done in a fixed order over fixed-size
// blocks, so results are bit-identical for any worker count given the same
// BLAS kernel and the paths that take AVX-512 tiles instead (BitsKernel
// names them; runs record it).
//
// # Shape legend
//
// B sequences, T positions, N = B·T tokens, D hidden, H heads, dh head dim,
// V vocab, E routed experts, K active experts, W expert width.
package ops
