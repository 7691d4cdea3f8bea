//go:build !amd64

package blas

const roundBF16Vector = false

func roundBF16x16(dst *uint16, src *float32, n int) { panic("blas: no vector bfloat16 rounding here") }
