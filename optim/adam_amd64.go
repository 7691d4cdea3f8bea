//go:build !purego

package optim

import "golang.org/x/sys/cpu"

// adamVecOK selects adam_amd64.s.
var adamVecOK = cpu.X86.HasAVX2

// adam32x8 is adamUpdateScalar on n elements (a multiple of 8), eight at a
// time. k's eight float32 fields are read in declaration order.
//
//go:noescape
func adam32x8(k *adamConsts, keep float32, w, grad, m, v *float32, n int)

// sumSquares64x8 runs sumSquares' loop over runs runs of 64 floats of g,
// adding into t.
//
//go:noescape
func sumSquares64x8(t *[8]float64, grad *float32, runs int)
