//go:build !purego

package ops

import "golang.org/x/sys/cpu"

// topK512 selects topK32x64 for float32 rows of at most 64 values (AVX-512
// F). A variable so tests can compare it with the scalar list.
var topK512 = cpu.X86.HasAVX512F

// topK32x64 writes into idx the k (1..16) largest of the n (1..64) values
// at row, in topKSmall's order, and reports true; for a row holding NaN or
// −Inf it writes nothing and reports false.
//
//go:noescape
func topK32x64(idx *int32, row *float32, n, k int) (ok bool)

// topK32x64x2 is topK32x64 on two rows of n values at once (their rounds
// interleaved): the same indices and the same refusals as two calls.
//
//go:noescape
func topK32x64x2(idxA *int32, rowA *float32, idxB *int32, rowB *float32, n, k int) (okA, okB bool)
