package blas

import (
	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/gonum"
)

// Float is the element type of every kernel in moetrain.
type Float interface{ float32 | float64 }

// Sgemmer is a single-precision GEMM kernel (row-major, gonum's conventions).
type Sgemmer interface {
	Sgemm(tA, tB blas.Transpose, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int)
}

var (
	pureGo         = gonum.Implementation{}
	sgemm  Sgemmer = pureGo
	kernel         = "gonum (pure Go)"
)

// Kernel names the float32 GEMM kernel in use, e.g. "OpenBLAS 0.3.21 SkylakeX".
func Kernel() string { return kernel }

// SetSgemm installs k as the float32 kernel under the given name. It is not
// safe to call while products are running.
func SetSgemm(k Sgemmer, name string) { sgemm, kernel = k, name }

func tr(t bool) blas.Transpose {
	if t {
		return blas.Trans
	}
	return blas.NoTrans
}

// serialSgemmer is a kernel that can run a product as one call on the
// calling goroutine instead of splitting it over workers.
type serialSgemmer interface {
	SgemmSerial(tA, tB blas.Transpose, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int)
}

// Gemm computes C = alpha*op(A)*op(B) + beta*C for row-major matrices with
// leading dimensions lda, ldb, ldc.
func Gemm[F Float](transA, transB bool, m, n, k int, alpha F, a []F, lda int, b []F, ldb int, beta F, c []F, ldc int) {
	gemm(false, transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
}

// GemmSerial is Gemm run as one kernel call on the calling goroutine, never
// split over parallel.Workers: for callers that already run independent
// products on every core (the MoE experts), where a second split only adds
// goroutines and cuts each product into thinner, slower pieces. The result
// equals Gemm's up to the kernel's summation order.
func GemmSerial[F Float](transA, transB bool, m, n, k int, alpha F, a []F, lda int, b []F, ldb int, beta F, c []F, ldc int) {
	gemm(true, transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
}

func gemm[F Float](serial, transA, transB bool, m, n, k int, alpha F, a []F, lda int, b []F, ldb int, beta F, c []F, ldc int) {
	if m == 0 || n == 0 {
		return
	}
	switch c := any(c).(type) {
	case []float32:
		if s, ok := sgemm.(serialSgemmer); ok && serial {
			s.SgemmSerial(tr(transA), tr(transB), m, n, k, float32(alpha), any(a).([]float32), lda, any(b).([]float32), ldb, float32(beta), c, ldc)
			return
		}
		sgemm.Sgemm(tr(transA), tr(transB), m, n, k, float32(alpha), any(a).([]float32), lda, any(b).([]float32), ldb, float32(beta), c, ldc)
	case []float64:
		pureGo.Dgemm(tr(transA), tr(transB), m, n, k, float64(alpha), any(a).([]float64), lda, any(b).([]float64), ldb, float64(beta), c, ldc)
	}
}

// MatMul is Gemm with alpha 1, packed leading dimensions and beta 0 (accumulate false)
// or beta 1 (accumulate true): C (m×n) = op(A)·op(B) [+ C].
func MatMul[F Float](transA, transB bool, m, n, k int, a, b, c []F, accumulate bool) {
	matMul(false, transA, transB, m, n, k, a, b, c, accumulate)
}

// MatMulSerial is MatMul through GemmSerial.
func MatMulSerial[F Float](transA, transB bool, m, n, k int, a, b, c []F, accumulate bool) {
	matMul(true, transA, transB, m, n, k, a, b, c, accumulate)
}

func matMul[F Float](serial, transA, transB bool, m, n, k int, a, b, c []F, accumulate bool) {
	lda, ldb := k, n
	if transA {
		lda = m
	}
	if transB {
		ldb = k
	}
	var beta F
	if accumulate {
		beta = 1
	}
	gemm(serial, transA, transB, m, n, k, 1, a, lda, b, ldb, beta, c, n)
}
