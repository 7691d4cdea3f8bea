//go:build !purego

package ops

import "golang.org/x/sys/cpu"

// vexpOK selects the AVX2 kernels of vexp_amd64.s.
var vexpOK = cpu.X86.HasAVX2

// vexp512 makes those kernels run sixteen lanes at a time (AVX-512 F and
// DQ), with the same bits (TestVexp512MatchesAVX2). A variable so tests can
// compare the two.
var vexp512 = vexpOK && cpu.X86.HasAVX512F && cpu.X86.HasAVX512DQ

// exp32x8 processes n ≥ 8 floats from src to dst (dst may be src),
// sigmoid32x8 n floats, a multiple of 8.
//
//go:noescape
func exp32x8(dst, src *float32, n int)

//go:noescape
func sigmoid32x8(dst, src *float32, n int)

// vexp64OK selects exp64x4, which gives math.Exp's bits only where
// math.Exp itself takes its fused multiply-add path.
var vexp64OK = cpu.X86.HasAVX2 && cpu.X86.HasFMA

// exp64x4 sets x[i] = math.Exp(x[i]) for n values (a multiple of 4) in
// [-700, 700].
//
//go:noescape
func exp64x4(x *float64, n int)

// siluGate32x8 sets s = sigmoid32(g) and h = (g·s)·u for n floats (a
// multiple of 8).
//
//go:noescape
func siluGate32x8(h, s, gate, up *float32, n int)

// siluGateRows32x8 is siluGate32x8 on rows rows of width w ≥ 8 of
// [g | u] rows (siluGateRows).
//
//go:noescape
func siluGateRows32x8(h, s, gu *float32, rows, w int)

// causalRows32x8 is softmaxRow32 and the clearing after it on the rows
// of a causal score block (causalSoftmax32), in one call.
//
//go:noescape
func causalRows32x8(p *float32, nan *bool, rows, stride, n, end int)

// softmaxRows32x8 is rowSoftmax32 on rows rows of e ≥ 8 floats from x
// into a separate y, in one call (softmaxRows).
//
//go:noescape
func softmaxRows32x8(y, x *float32, nan *bool, rows, e int)
