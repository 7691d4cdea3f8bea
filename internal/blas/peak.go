package blas

import "time"

// PeakGFLOPS measures the float32 GEMM peak of the active kernel as DESIGN.md
// §7.3 defines it for MFU: the best of 5 square 2048³ products (2·2048³
// FLOPs each) on non-zero pseudo-random inputs. Zero inputs would flatter
// gonum, which skips zero entries of A. It takes ~0.5 s with OpenBLAS
// SkylakeX on 2 cores and several seconds with pure Go, and allocates three
// 16 MiB matrices.
func PeakGFLOPS() float64 {
	const n = 2048
	a, b := lcg(1, n*n), lcg(2, n*n)
	c := make([]float32, n*n)
	best := time.Duration(1<<63 - 1)
	for range 5 {
		t0 := time.Now()
		MatMul(false, false, n, n, n, a, b, c, false)
		if d := time.Since(t0); d < best {
			best = d
		}
	}
	return 2 * n * n * n / best.Seconds() / 1e9
}
