package blas

import "golang.org/x/sys/cpu"

// roundBF16Vector selects roundBF16x16 (AVX-512 F); every CPU with a
// bfloat16 GEMM kernel has it.
var roundBF16Vector = cpu.X86.HasAVX512F

// roundBF16x16 is roundBF16 on sixteen lanes, for n a multiple of 16.
//
//go:noescape
func roundBF16x16(dst *uint16, src *float32, n int)
