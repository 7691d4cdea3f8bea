//go:build !amd64 || purego

package optim

// adamVecOK is false: adamUpdate runs adamUpdateScalar.
const adamVecOK = false

func adam32x8(k *adamConsts, keep float32, w, grad, m, v *float32, n int) {
	panic("optim: no vector AdamW on this platform")
}

func sumSquares64x8(t *[8]float64, g *float32, runs int) {
	panic("optim: no vector kernels on this platform")
}
