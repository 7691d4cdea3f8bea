package blas

import (
	"fmt"
	"sync"
	"unsafe"
)

// RowsOK reports whether RowsMatMul runs here (float32 on AVX-512 F and
// VL); elsewhere callers gather the rows and call MatMul.
func RowsOK() bool { return rowTiles }

// RowsMatMul sets C (m×n, packed) to A'·B, where row i of A' is
// a[offs[i]:offs[i]+k] and B is k×n (packed): a product whose left rows
// lie anywhere in a, such as an expert's token rows in a layer's input,
// read where they are instead of gathered into a copy first. It runs on
// the calling goroutine (as MatMulSerial), in register tiles of eight rows
// by 32, 16 and a masked last chunk of columns, at most 8 of them on
// eight-lane registers (on Zen 4 a sixteen-lane FMA costs two eight-lane
// ones, so 86 columns cost 88 lanes, not 96); a last tile of fewer than
// eight rows repeats its last row and is written through scratch. Every
// element is one running FMA sum over p = 0..k−1 in order, so the result
// depends on nothing but the operands. It panics where !RowsOK() and on
// operands too short for the shapes.
func RowsMatMul(m, n, k int, a []float32, offs []int, b, c []float32) {
	if !rowTiles {
		panic("blas: RowsMatMul without AVX-512")
	}
	if len(offs) < m || len(b) < k*n || len(c) < m*n || k < 1 {
		panic(fmt.Sprintf("blas: RowsMatMul(%d, %d, %d) with %d offsets, len(b) %d, len(c) %d", m, n, k, len(offs), len(b), len(c)))
	}
	if m == 0 || n == 0 {
		return
	}
	checkRows("RowsMatMul", offs[:m], k, len(a))
	full := m &^ 7
	for i := 0; i < full; i += 8 {
		rowsTiles(c[i*n:], n, a, offs[i:i+8], b, k)
	}
	lastRows(full, m, n, k, a, offs, b, func(i int, row []float32) { copy(c[i*n:(i+1)*n], row) })
}

// checkRows panics unless every row offs names, k floats from its
// offset, lies within the la floats of the left operand.
func checkRows(name string, offs []int, k, la int) {
	for _, o := range offs {
		if o < 0 || o+k > la {
			panic(fmt.Sprintf("blas: %s row at %d of %d floats, k %d", name, o, la, k))
		}
	}
}

// lastRows computes rows full..m−1 (fewer than eight) of RowsMatMul's
// product as one tile into pooled scratch, its last row repeated, and
// hands each to put.
func lastRows(full, m, n, k int, a []float32, offs []int, b []float32, put func(i int, row []float32)) {
	if full == m {
		return
	}
	var last [8]int
	for i := range last {
		last[i] = offs[min(full+i, m-1)]
	}
	p := tileScratch.Get().(*[]float32)
	if cap(*p) < 8*n {
		*p = make([]float32, 8*n)
	}
	scratch := (*p)[:8*n]
	rowsTiles(scratch, n, a, last[:], b, k)
	for i := full; i < m; i++ {
		put(i, scratch[(i-full)*n:(i-full+1)*n])
	}
	tileScratch.Put(p)
}

// RowsMatMulScattered is RowsMatMul with row i of C at c[coffs[i]:]
// instead of packed, written with streaming stores, which bypass the
// caches and read no line before writing it: for an output read back only
// after much other traffic, whose rows a later pass wants in another
// order than the product makes them (an MoE layer's expert outputs, made
// expert by expert and summed token by token). n must be a multiple of 32, c's rows 64-byte aligned
// (Aligned64). The product's values are RowsMatMul's. It panics where
// !RowsOK() and on misfit operands.
func RowsMatMulScattered(m, n, k int, a []float32, offs []int, b, c []float32, coffs []int) {
	if !rowTiles {
		panic("blas: RowsMatMulScattered without AVX-512")
	}
	if n%32 != 0 || len(offs) < m || len(coffs) < m || len(b) < k*n || k < 1 {
		panic(fmt.Sprintf("blas: RowsMatMulScattered(%d, %d, %d) with %d and %d offsets, len(b) %d", m, n, k, len(offs), len(coffs), len(b)))
	}
	if m == 0 || n == 0 {
		return
	}
	checkRows("RowsMatMulScattered", offs[:m], k, len(a))
	for _, co := range coffs[:m] {
		if co < 0 || co+n > len(c) || !Aligned64(c[co:]) {
			panic(fmt.Sprintf("blas: RowsMatMulScattered output row at %d of %d floats, n %d, not 64-byte aligned or outside c", co, len(c), n))
		}
	}
	full := m &^ 7
	for i := 0; i < full; i += 8 {
		for j := 0; j < n; j += 32 {
			rowsTile32NT(&c[j], &coffs[i], &a[0], &offs[i], &b[j], n, k)
		}
	}
	storeFence()
	lastRows(full, m, n, k, a, offs, b, func(i int, row []float32) { copy(c[coffs[i]:coffs[i]+n], row) })
}

// Aligned64 reports whether x's first element lies on a 64-byte boundary
// (a cache line): so do rows of x a multiple of 16 floats on.
func Aligned64(x []float32) bool {
	return len(x) > 0 && uintptr(unsafe.Pointer(&x[0]))%64 == 0
}

// tileScratch holds the eight-row C of a last partial tile.
var tileScratch = sync.Pool{New: func() any { return new([]float32) }}

// rowsTiles sets eight packed rows of C (n columns) over all n columns.
func rowsTiles(c []float32, n int, a []float32, offs []int, b []float32, k int) {
	j := 0
	for ; j+32 <= n; j += 32 {
		rowsTile32(&c[j], n, &a[0], &offs[0], &b[j], n, k)
	}
	if j+16 <= n {
		rowsTile16(&c[j], n, &a[0], &offs[0], &b[j], n, k, 0xffff)
		j += 16
	}
	switch r := n - j; {
	case r > 8:
		rowsTile16(&c[j], n, &a[0], &offs[0], &b[j], n, k, uint16(1)<<r-1)
	case r > 0:
		rowsTile8(&c[j], n, &a[0], &offs[0], &b[j], n, k, uint16(1)<<r-1)
	}
}

// OuterSum sets C (m×n, packed) to Σ_p A_p ⊗ B_p over p < len(aoffs),
// with A_p = a[aoffs[p]:aoffs[p]+m] and B_p = b[boffs[p]:boffs[p]+n]:
// the product AᵀB of two matrices whose rows lie anywhere, such as a
// weight gradient summed over an expert's slots with their token rows
// read where they are. It runs as RowsMatMul does (AVX-512 tiles of
// eight rows of C, the sum over p in order); a last partial tile of rows
// is computed as the eight rows ending at m, the rows it shares with the
// tile before getting the same values again. m must be at least 8; it
// panics where !RowsOK() and on operands too short for the shapes.
func OuterSum(m, n int, a []float32, aoffs []int, b []float32, boffs []int, c []float32) {
	if !rowTiles {
		panic("blas: OuterSum without AVX-512")
	}
	k := len(aoffs)
	if m < 8 || n < 1 || len(boffs) != k || len(c) < m*n {
		panic(fmt.Sprintf("blas: OuterSum(%d, %d) with %d and %d offsets, len(c) %d", m, n, k, len(boffs), len(c)))
	}
	for p := range k {
		if aoffs[p] < 0 || aoffs[p]+m > len(a) || boffs[p] < 0 || boffs[p]+n > len(b) {
			panic(fmt.Sprintf("blas: OuterSum term %d at %d of %d and %d of %d floats", p, aoffs[p], len(a), boffs[p], len(b)))
		}
	}
	var ao, bo *int
	if k > 0 {
		ao, bo = &aoffs[0], &boffs[0]
	}
	for i0 := 0; i0 < m; i0 += 8 {
		i := min(i0, m-8)
		ci, ai := c[i*n:], &a[i]
		j := 0
		for ; j+32 <= n; j += 32 {
			tnTile32(&ci[j], n, ai, ao, &b[j], bo, k)
		}
		if r := n - j; r > 16 && r <= 24 {
			// One tile for the last 17-24 columns: A_p's eight terms are
			// loaded once for both parts (dWd at 86 columns: 91 → 105
			// GFLOP/s, BenchmarkRowTiles). RowsMatMul's rows gained
			// nothing so and keep two tiles.
			tnTile24(&ci[j], n, ai, ao, &b[j], bo, k, uint16(1)<<(r-16)-1)
			continue
		}
		if j+16 <= n {
			tnTile16(&ci[j], n, ai, ao, &b[j], bo, k, 0xffff)
			j += 16
		}
		switch r := n - j; {
		case r > 8:
			tnTile16(&ci[j], n, ai, ao, &b[j], bo, k, uint16(1)<<r-1)
		case r > 0:
			tnTile8(&ci[j], n, ai, ao, &b[j], bo, k, uint16(1)<<r-1)
		}
	}
}
