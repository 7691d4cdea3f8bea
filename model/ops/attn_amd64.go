//go:build !purego

package ops

// Causal attention products of attn_amd64.s (AVX-512; used when vexp512).

// causalScores32 sets the causal part of one head's scaled scores
// q'k'ᵀ·scale for rows i0..i0+rows−1 (attention.go, fusedAttention).
//
//go:noescape
func causalScores32(s *float32, lds int, q *float32, ldq int, kt *float32, ldk int, rows, i0, dh int, scale float32)

// causalPV32 sets one head's output rows i0..i0+rows−1 to scale·P·V
// over their causal keys (attention.go, fusedAttention).
//
//go:noescape
func causalPV32(o *float32, ldo int, p *float32, ldp int, v *float32, ldv int, rows, i0, dh int, scale float32)

// causalPTB32 sets o = scale·Pᵀ·B for one head's causal P (the
// backward's dV and dk', attention.go).
//
//go:noescape
func causalPTB32(o *float32, ldo int, p *float32, ldp int, b *float32, ldb int, t, dh int, scale float32)
