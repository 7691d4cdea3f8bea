package blas

import (
	"runtime"

	"gonum.org/v1/gonum/blas"

	"github.com/moetrain/moetrain/internal/parallel"
)

// products is the Go side of a loaded library, shared by every library
// kernel: how one product is cut over parallel.Workers goroutines and how
// many library calls may run at once. The library itself is one function,
// run, that computes a whole (part of a) product in one call.
type products struct {
	run   libraryCall
	split int // parts a large product is cut into (1: none)
	// gate bounds concurrent library calls to the cores we mean to use: a
	// call takes one of its split argument blocks and puts it back after,
	// so arguments handed to C by reference need no allocation per call.
	gate           chan *callArgs
	minSplitFlops  int // a part must be at least this much work
	splitAlignment int // part boundaries fall on multiples of this (kernel tile)
	rowBias        int // split rows while m*rowBias >= n, else columns (1: the larger side)
}

// libraryCall computes C = alpha*op(A)*op(B) + beta*C (row-major, sizes
// already checked) in one call into the library; args is scratch for
// arguments passed by reference.
type libraryCall func(args *callArgs, transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int)

// callArgs is one gate slot's argument block, for whichever library.
type callArgs struct {
	fortran fortranArgs // OpenBLAS's sgemm_: its by-reference arguments...
	call13  cCall13     // ...and the call
	dnnl    dnnlArgs    // oneDNN's dnnl_sgemm through dnnlTrampoline
	// a16 and b16 hold the operands rounded to bfloat16 (oneDNN.runBF16),
	// reused by every call through this slot.
	a16, b16 []uint16
}

// newProducts returns products over run with no split; setSplit sets one.
func newProducts(run libraryCall) products {
	p := products{run: run, minSplitFlops: 1 << 22, splitAlignment: 16, rowBias: 1}
	p.setSplit(1)
	return p
}

// setSplit sets how many parts a large product is cut into, which is also
// how many library calls may run at once (0 or 1: no split, one call at a
// time).
func (l *products) setSplit(split int) {
	split = max(split, 1)
	l.split = split
	l.gate = make(chan *callArgs, split)
	for range split {
		l.gate <- new(callArgs)
	}
}

// Sgemm computes C = alpha*op(A)*op(B) + beta*C (row-major). Products of at
// least 2·minSplitFlops are cut into up to l.split parts along the rows of
// C, or along its columns when C has more columns than rows, at fixed,
// tile-aligned boundaries. Splitting the longer side means each part
// re-packs the smaller operand (a row split re-reads all of op(B), a column
// split all of op(A)), which measured fastest (docs/BENCHMARKS.md);
// every element of C is computed by exactly one call whose shape depends
// only on (m, n, k) and l.split, so results never depend on goroutine
// timing.
func (l *products) Sgemm(tA, tB blas.Transpose, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	transA, transB := isTrans(tA), isTrans(tB)
	if sgemmTrivial(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc) {
		return
	}
	parts := 1
	if l.split > 1 {
		parts = min(l.split, 2*m*n*k/l.minSplitFlops)
	}
	al := l.splitAlignment
	switch {
	case parts >= 2 && m >= 2*al*parts && (m*l.rowBias >= n || n < 2*al*parts):
		size := alignedPart(m, parts, al)
		parallel.For(parts, 1, func(lo, hi int) {
			for p := lo; p < hi; p++ {
				r0, r1 := p*size, min((p+1)*size, m)
				if r0 >= r1 {
					continue
				}
				aOff := r0 * lda // rows of op(A) are rows of A...
				if transA {
					aOff = r0 // ...or columns of A
				}
				l.call(transA, transB, r1-r0, n, k, alpha, a[aOff:], lda, b, ldb, beta, c[r0*ldc:], ldc)
			}
		})
	case parts >= 2 && n >= 2*al*parts:
		size := alignedPart(n, parts, al)
		parallel.For(parts, 1, func(lo, hi int) {
			for p := lo; p < hi; p++ {
				c0, c1 := p*size, min((p+1)*size, n)
				if c0 >= c1 {
					continue
				}
				bOff := c0 // columns of op(B) are columns of B...
				if transB {
					bOff = c0 * ldb // ...or rows of B
				}
				l.call(transA, transB, m, c1-c0, k, alpha, a, lda, b[bOff:], ldb, beta, c[c0:], ldc)
			}
		})
	default:
		l.call(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
	}
}

// SgemmSerial is Sgemm as a single library call on the calling goroutine
// (see GemmSerial).
func (l *products) SgemmSerial(tA, tB blas.Transpose, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	transA, transB := isTrans(tA), isTrans(tB)
	if sgemmTrivial(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc) {
		return
	}
	l.call(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
}

// alignedPart is the size of each of parts chunks of n, rounded up to a
// multiple of al so the kernel's tiles are not cut.
func alignedPart(n, parts, al int) int {
	size := (n + parts - 1) / parts
	return (size + al - 1) / al * al
}

// call runs one product through the library, holding a gate slot. Sizes
// were checked by checkSgemm, so the pointers handed to C cover every
// element the library touches.
func (l *products) call(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	args := <-l.gate
	l.run(args, transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
	l.gate <- args
	runtime.KeepAlive(a)
	runtime.KeepAlive(b)
	runtime.KeepAlive(c)
}
