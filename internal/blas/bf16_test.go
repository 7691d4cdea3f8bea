package blas

import (
	"math"
	"testing"
	"time"
	"unsafe"

	"github.com/ebitengine/purego"
)

// BenchmarkOneDNNBF16 measures a lever moetrain does not use yet: oneDNN's
// dnnl_gemm_bf16bf16f32 (bfloat16 inputs, float32 accumulation and output)
// against its dnnl_sgemm at the science shapes, one call each on the
// calling goroutine, interleaved, each one's best time over the rounds.
// bf16_convert_us is the time this benchmark's scalar Go rounding of both
// operands to bfloat16 takes (round to nearest even): what a vector
// conversion would have to beat for the products' gain to reach the step.
// It skips where oneDNN or a bfloat16 kernel is missing. Run with e.g.
//
//	go test ./internal/blas -run '^$' -bench OneDNNBF16 -benchtime 300x
func BenchmarkOneDNNBF16(b *testing.B) {
	l := loadedOneDNN(b)
	var bf16 uintptr
	for _, p := range oneDNNPaths() {
		if h, err := purego.Dlopen(p, purego.RTLD_NOW|purego.RTLD_LOCAL); err == nil {
			if bf16, err = purego.Dlsym(h, "dnnl_gemm_bf16bf16f32"); err == nil {
				break
			}
		}
	}
	if bf16 == 0 {
		b.Skip("no dnnl_gemm_bf16bf16f32")
	}
	for _, s := range sciShapes {
		b.Run(s.name, func(b *testing.B) {
			ra, ca := stored(s.tA, s.m, s.k)
			rb, cb := stored(s.tB, s.k, s.n)
			a, bm, c := make([]float32, ra*ca), make([]float32, rb*cb), make([]float32, s.m*s.n)
			for i := range a {
				a[i] = float32(i%13)*0.01 - 0.06
			}
			for i := range bm {
				bm[i] = float32(i%7)*0.02 - 0.06
			}
			a16, b16 := make([]uint16, len(a)), make([]uint16, len(bm))
			call := func(fn uintptr, ap, bp unsafe.Pointer) {
				args := &dnnlArgs{fn: fn, transA: uintptr(fortranOp(s.tA)), transB: uintptr(fortranOp(s.tB)),
					m: int64(s.m), n: int64(s.n), k: int64(s.k), alpha: 1, beta: 0,
					a: uintptr(ap), lda: int64(ca), b: uintptr(bp), ldb: int64(cb), c: uintptr(unsafe.Pointer(&c[0])), ldc: int64(s.n)}
				if st := callTrampoline(args); st != 0 {
					b.Skipf("status %d: no bfloat16 kernel on this CPU", st)
				}
			}
			best := [3]time.Duration{time.Hour, time.Hour, time.Hour}
			timed := func(i int, fn func()) {
				t0 := time.Now()
				fn()
				best[i] = min(best[i], time.Since(t0))
			}
			for b.Loop() {
				timed(0, func() { call(l.sgemmFn, unsafe.Pointer(&a[0]), unsafe.Pointer(&bm[0])) })
				timed(1, func() { roundBF16(a16, a); roundBF16(b16, bm) })
				timed(2, func() { call(bf16, unsafe.Pointer(&a16[0]), unsafe.Pointer(&b16[0])) })
			}
			flop := 2 * float64(s.m*s.n*s.k) / 1e9
			b.ReportMetric(flop/best[0].Seconds(), "f32_GFLOP/s")
			b.ReportMetric(flop/best[2].Seconds(), "bf16_GFLOP/s")
			b.ReportMetric(best[1].Seconds()*1e6, "bf16_convert_us")
			b.ReportMetric(best[0].Seconds()*1e6, "f32_us")
		})
	}
}

// roundBF16 rounds src to bfloat16 (to nearest, ties to even; NaN is not
// expected here).
func roundBF16(dst []uint16, src []float32) {
	for i, v := range src {
		u := math.Float32bits(v)
		dst[i] = uint16((u + 0x7fff + (u>>16)&1) >> 16)
	}
}
