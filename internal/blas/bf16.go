package blas

import (
	"errors"
	"fmt"
	"math"
	"unsafe"
)

// bfloat16 products (SetBF16Products): oneDNN's dnnl_gemm_bf16bf16f32
// multiplies operands rounded to bfloat16 and accumulates and writes
// float32. Where the CPU has a bfloat16 kernel (avx512_core_bf16 and later)
// that product runs 1.5-2.2× as fast as dnnl_sgemm at the science shapes
// (BenchmarkOneDNNBF16), a training step 1.08-1.19× (science models) to
// 1.22-1.43× (the d=256 bench models; BenchmarkProductsRatio;
// docs/BENCHMARKS.md, round 10). Each operand keeps 8 significant bits
// instead of 24, so the mode is off unless a config asks for it
// (train.products: bf16): the agreement with the float32 PyTorch reference
// holds for float32 products only. It is deterministic: the same inputs
// give the same bits.

// ErrNoBF16 is returned by SetBF16Products where bfloat16 products cannot
// run.
var ErrNoBF16 = errors.New("bfloat16 products need oneDNN and a CPU with a bfloat16 GEMM kernel (AVX512_BF16 or AMX)")

// SetBF16Products turns bfloat16 products on or off for every float32
// product of the kernel in use (float64 products are never rounded). On
// needs the oneDNN kernel, its dnnl_gemm_bf16bf16f32, the call trampoline
// and a probe product that the library accepts on this CPU; otherwise it
// returns an error wrapping ErrNoBF16 and leaves the mode off. Load turns
// the mode off. It is not safe to call while products are running.
func SetBF16Products(on bool) error {
	l, ok := sgemm.(*oneDNN)
	if !on {
		if ok {
			l.bf16 = false
		}
		return nil
	}
	switch {
	case !ok:
		return fmt.Errorf("%w; the kernel in use is %s", ErrNoBF16, kernel)
	case l.bf16Fn == 0:
		return fmt.Errorf("%w; this oneDNN has no dnnl_gemm_bf16bf16f32", ErrNoBF16)
	case !trampolineSgemm:
		return fmt.Errorf("%w; this platform cannot call it", ErrNoBF16)
	}
	// A 16×16×16 product of ones: status 0 and the value 16 mean the
	// library has a kernel for this CPU (it refuses otherwise).
	const s = 16
	a16 := make([]uint16, s*s)
	for i := range a16 {
		a16[i] = 0x3f80 // 1.0
	}
	c := make([]float32, s*s)
	args := &dnnlArgs{fn: l.bf16Fn, transA: 'N', transB: 'N', m: s, n: s, k: s, alpha: 1,
		a: uintptr(unsafe.Pointer(&a16[0])), lda: s, b: uintptr(unsafe.Pointer(&a16[0])), ldb: s, c: uintptr(unsafe.Pointer(&c[0])), ldc: s}
	if st := callTrampoline(args); st != 0 || c[0] != s || c[s*s-1] != s {
		return fmt.Errorf("%w; oneDNN (%s) has none for this CPU (status %d)", ErrNoBF16, kernel, st)
	}
	l.bf16 = true
	return nil
}

// BF16Products reports whether float32 products run in bfloat16.
func BF16Products() bool {
	l, ok := sgemm.(*oneDNN)
	return ok && l.bf16
}

// runBF16 is oneDNN.run in bfloat16: both operands, as stored (rows of
// op(A) or op(B) read through their leading dimension), are rounded into
// the call's own compact buffers, then one dnnl_gemm_bf16bf16f32 call.
func (l *oneDNN) runBF16(ca *callArgs, transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	ra, cola := stored(transA, m, k)
	rb, colb := stored(transB, k, n)
	ca.a16 = roundMatrix(ca.a16, a, ra, cola, lda)
	ca.b16 = roundMatrix(ca.b16, b, rb, colb, ldb)
	args := &ca.dnnl
	*args = dnnlArgs{fn: l.bf16Fn, transA: uintptr(fortranOp(transA)), transB: uintptr(fortranOp(transB)),
		m: int64(m), n: int64(n), k: int64(k), alpha: alpha, beta: beta,
		a: uintptr(unsafe.Pointer(&ca.a16[0])), lda: int64(cola), b: uintptr(unsafe.Pointer(&ca.b16[0])), ldb: int64(colb),
		c: uintptr(unsafe.Pointer(&c[0])), ldc: int64(ldc)}
	if st := callTrampoline(args); st != 0 {
		panic(fmt.Sprintf("blas: dnnl_gemm_bf16bf16f32(%c, %c, %d, %d, %d, ldc %d) returned status %d",
			fortranOp(transA), fortranOp(transB), m, n, k, ldc, st))
	}
}

// roundMatrix rounds the rows×cols matrix x (leading dimension ld) to
// bfloat16 into buf (grown as needed), rows packed (leading dimension cols).
func roundMatrix(buf []uint16, x []float32, rows, cols, ld int) []uint16 {
	if cap(buf) < rows*cols {
		buf = make([]uint16, rows*cols)
	}
	buf = buf[:rows*cols]
	if ld == cols {
		roundBF16(buf, x[:rows*cols])
		return buf
	}
	for r := 0; r < rows; r++ {
		roundBF16(buf[r*cols:(r+1)*cols], x[r*ld:r*ld+cols])
	}
	return buf
}

// roundBF16 sets dst[i] to src[i] rounded to bfloat16: to nearest, ties to
// even, overflowing to ±Inf; a NaN stays a NaN (its upper bits, quiet).
// Sixteen lanes at a time where roundBF16x16 runs, the same bits.
func roundBF16(dst []uint16, src []float32) {
	dst = dst[:len(src)]
	i := 0
	if roundBF16Vector {
		if i = len(src) &^ 15; i > 0 {
			roundBF16x16(&dst[0], &src[0], i)
		}
	}
	for ; i < len(src); i++ {
		u := math.Float32bits(src[i])
		if v := src[i]; v != v {
			dst[i] = uint16(u>>16) | 0x40
			continue
		}
		dst[i] = uint16((u + 0x7fff + (u>>16)&1) >> 16)
	}
}
