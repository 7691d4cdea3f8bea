//go:build !purego

package ops

import "golang.org/x/sys/cpu"

// vexpOK selects the AVX2 kernels of vexp_amd64.s.
var vexpOK = cpu.X86.HasAVX2

// exp32x8 and sigmoid32x8 process n floats (a multiple of 8) from src to dst.
//
//go:noescape
func exp32x8(dst, src *float32, n int)

//go:noescape
func sigmoid32x8(dst, src *float32, n int)
