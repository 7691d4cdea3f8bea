package ops

import (
	"unsafe"

	"github.com/moetrain/moetrain/internal/parallel"
)

// Elementwise kernels of the FFN, expert and attention loops. For float32
// with vexpOK the bulk runs in vec_amd64.s, eight lanes at a time, with the
// same float32 operations in the same order as the scalar loops below (no
// fused multiply-add), so both give identical bits; the tails and float64
// run the scalar loops.

// one32 is the constant 1 for vec_amd64.s.
var one32 float32 = 1

// vecLen is how many leading elements of n the vector kernels take.
func vecLen(n int) int {
	if !vexpOK {
		return 0
	}
	return n &^ 7
}

// vecTail returns where a vector kernel may take over the scalar tail of
// an elementwise pass over n elements whose outputs share no memory with
// its inputs (disjoint): by recomputing the last eight elements, the ones
// it already wrote get the same values again. Rows of 86 (the science
// models' expert width) then run 80 + 8 lanes instead of 80 + 6 scalar
// calls, which for the sigmoids cost as much as the vector part. n itself
// (no tail pass) when there is no tail or n < 8.
func vecTail(n int, disjoint bool) int {
	if !vexpOK || !disjoint || n < 8 || n&7 == 0 {
		return n
	}
	return n - 8
}

// disjoint reports whether dst shares no element with any of srcs.
func disjoint(dst []float32, srcs ...[]float32) bool {
	if len(dst) == 0 {
		return true
	}
	lo := uintptr(unsafe.Pointer(&dst[0]))
	hi := lo + uintptr(len(dst))*4
	for _, s := range srcs {
		if len(s) == 0 {
			continue
		}
		slo := uintptr(unsafe.Pointer(&s[0]))
		if slo < hi && lo < slo+uintptr(len(s))*4 {
			return false
		}
	}
	return true
}

// mul3 sets dst = a·b·c (silu(g)⊙u as g·sigmoid(g)·u).
func mul3[F Float](dst, a, b, c []F) {
	n := len(dst)
	a, b, c = a[:n], b[:n], c[:n]
	i := 0
	if d, ok := any(dst).([]float32); ok {
		a, b, c := any(a).([]float32), any(b).([]float32), any(c).([]float32)
		if i = vecLen(n); i > 0 {
			mul3x8(&d[0], &a[0], &b[0], &c[0], i)
			if t := vecTail(n, disjoint(d, a, b, c)); t < n {
				mul3x8(&d[t], &a[t], &b[t], &c[t], 8)
				i = n
			}
		}
	}
	for ; i < n; i++ {
		dst[i] = a[i] * b[i] * c[i]
	}
}

// axpy sets y += a·x.
func axpy[F Float](y []F, a F, x []F) {
	n := len(y)
	x = x[:n]
	i := 0
	if d, ok := any(y).([]float32); ok {
		if i = vecLen(n); i > 0 {
			axpy32x8(&d[0], &any(x).([]float32)[0], float32(a), i)
		}
	}
	for ; i < n; i++ {
		y[i] += a * x[i]
	}
}

// addTo sets y += x.
func addTo[F Float](y, x []F) {
	n := len(y)
	x = x[:n]
	i := 0
	if d, ok := any(y).([]float32); ok {
		if i = vecLen(n); i > 0 {
			add32x8(&d[0], &any(x).([]float32)[0], i)
		}
	}
	for ; i < n; i++ {
		y[i] += x[i]
	}
}

// scaleBy sets x *= a.
func scaleBy[F Float](x []F, a F) {
	if d, ok := any(x).([]float32); ok {
		scale32(d, float32(a))
		return
	}
	for i := range x {
		x[i] *= a
	}
}

// scale32 is scaleBy for a float32 row, eight lanes at a time.
func scale32(x []float32, a float32) {
	i := vecLen(len(x))
	if i > 0 {
		scale32x8(&x[0], a, i)
	}
	for ; i < len(x); i++ {
		x[i] *= a
	}
}

// swigluGrad turns dh, the gradient of h = silu(g)⊙u, into those of the
// gate and up pre-activations, with s = sigmoid(g):
//
//	dg = dh·u·s·(1 + g·(1−s))  (silu'(g) = s·(1 + g·(1−s))),  du = dh·g·s
//
// dg may be g and du may be u (in place).
func swigluGrad[F Float](dg, du, dh, g, u, s []F) {
	n := len(dh)
	dg, du, g, u, s = dg[:n], du[:n], g[:n], u[:n], s[:n]
	i := 0
	if d, ok := any(dg).([]float32); ok {
		du, dh, g, u, s := any(du).([]float32), any(dh).([]float32), any(g).([]float32), any(u).([]float32), any(s).([]float32)
		if i = vecLen(n); i > 0 {
			swigluGrad32x8(&d[0], &du[0], &dh[0], &g[0], &u[0], &s[0], i)
			if t := vecTail(n, disjoint(d, du, dh, g, u, s) && disjoint(du, dh, g, u, s)); t < n {
				swigluGrad32x8(&d[t], &du[t], &dh[t], &g[t], &u[t], &s[t], 8)
				i = n
			}
		}
	}
	for ; i < n; i++ {
		a, sv, h := g[i], s[i], dh[i]
		dg[i], du[i] = h*u[i]*sv*(1+a*(1-sv)), h*a*sv
	}
}

// hiddenRows sets h_i = (g_i·s_i)·u_i, silu(g)⊙u from its sigmoid, for
// rows rows of width w: h and s are [rows, w], gu [rows, 2w] of [g | u]
// rows. It is mul3 row by row, in one kernel call for float32 rows of
// eight or more (mul3Rows32x8, the same bits). h must not overlap gu or s.
func hiddenRows[F Float](h, gu, s []F, rows, w int) {
	if rows <= 0 {
		return
	}
	if h32, ok := any(h).([]float32); ok && vexpOK && w >= 8 {
		gu32, s32 := any(gu).([]float32), any(s).([]float32)
		_, _, _ = h32[rows*w-1], gu32[2*rows*w-1], s32[rows*w-1] // the kernel reads and writes these whole
		mul3Rows32x8(&h32[0], &gu32[0], &s32[0], rows, w)
		return
	}
	for i := 0; i < rows; i++ {
		mul3(h[i*w:(i+1)*w], gu[2*i*w:(2*i+1)*w], s[i*w:(i+1)*w], gu[(2*i+1)*w:(2*i+2)*w])
	}
}

// swigluGradRows sets each row of dgu ([rows, 2w]) to [dg_i | du_i], the
// gradients of the gate and up pre-activations from dh_i ([rows, w]), the
// [g_i | u_i] rows of gu and the sigmoids s_i: swigluGrad row by row, in
// one kernel call for float32 rows of eight or more (swigluGradRows32x8,
// the same bits). dgu must not overlap the inputs.
func swigluGradRows[F Float](dgu, dh, gu, s []F, rows, w int) {
	if rows <= 0 {
		return
	}
	if d32, ok := any(dgu).([]float32); ok && vexpOK && w >= 8 {
		dh32, gu32, s32 := any(dh).([]float32), any(gu).([]float32), any(s).([]float32)
		_, _, _, _ = d32[2*rows*w-1], dh32[rows*w-1], gu32[2*rows*w-1], s32[rows*w-1] // read and written whole
		swigluGradRows32x8(&d32[0], &dh32[0], &gu32[0], &s32[0], rows, w)
		return
	}
	for i := 0; i < rows; i++ {
		swigluGrad(dgu[2*i*w:(2*i+1)*w], dgu[(2*i+1)*w:(2*i+2)*w], dh[i*w:(i+1)*w], gu[2*i*w:(2*i+1)*w], gu[(2*i+1)*w:(2*i+2)*w], s[i*w:(i+1)*w])
	}
}

// shift sets x −= c.
func shift[F Float](x []F, c F) {
	n := len(x)
	i := 0
	if d, ok := any(x).([]float32); ok {
		if i = vecLen(n); i > 0 {
			shift32x8(&d[0], float32(c), i)
		}
	}
	for ; i < n; i++ {
		x[i] -= c
	}
}

// dsoftmax sets dg = p·(dg − c): the softmax backward of a row with
// c = Σ p·dg.
func dsoftmax[F Float](dg, p []F, c F) {
	n := len(dg)
	p = p[:n]
	i := 0
	if d, ok := any(dg).([]float32); ok {
		if i = vecLen(n); i > 0 {
			dsoftmax32x8(&d[0], &any(p).([]float32)[0], float32(c), i)
		}
	}
	for ; i < n; i++ {
		dg[i] = p[i] * (dg[i] - c)
	}
}

// rmsScale sets y = w·(x·r).
func rmsScale[F Float](y, w, x []F, r F) {
	n := len(y)
	w, x = w[:n], x[:n]
	i := 0
	if d, ok := any(y).([]float32); ok {
		if i = vecLen(n); i > 0 {
			rmsScale32x8(&d[0], &any(w).([]float32)[0], &any(x).([]float32)[0], float32(r), i)
		}
	}
	for ; i < n; i++ {
		y[i] = w[i] * (x[i] * r)
	}
}

// rmsGrad sets dx = r·w·dy − x·c and adds dy·x·r to pw (RMSNorm's backward
// for one row).
func rmsGrad[F Float](dx, pw, w, dy, x []F, r, c F) {
	n := len(dx)
	pw, w, dy, x = pw[:n], w[:n], dy[:n], x[:n]
	i := 0
	if d, ok := any(dx).([]float32); ok {
		if i = vecLen(n); i > 0 {
			rmsGrad32x8(&d[0], &any(pw).([]float32)[0], &any(w).([]float32)[0], &any(dy).([]float32)[0], &any(x).([]float32)[0], float32(r), float32(c), i)
		}
	}
	for ; i < n; i++ {
		dx[i] = r*w[i]*dy[i] - x[i]*c
		pw[i] += dy[i] * x[i] * r
	}
}

// sumRows sets y += gates[j]·o[offs[j]:offs[j]+len(y)] for j = 0, 1, … in
// turn: the same operations as one axpy per j, in one pass over y instead
// of len(offs) (an MoE token's k expert outputs, 7 at the science size).
func sumRows[F Float](y, o []F, offs []int, gates []F) {
	n, k := len(y), len(offs)
	if k == 0 {
		return
	}
	gates = gates[:k]
	i := 0
	if d, ok := any(y).([]float32); ok {
		if i = vecLen(n); i > 0 {
			for _, off := range offs {
				_ = o[off+n-1] // bounds: each row lies within o
			}
			sumRows32x8(&d[0], &any(o).([]float32)[0], &offs[0], &any(gates).([]float32)[0], k, i)
		}
	}
	for ; i < n; i++ {
		for j, off := range offs {
			y[i] += gates[j] * o[off+i]
		}
	}
}

// transposeInto writes the transpose of src ([rows, cols], row-major) into
// dst with row stride ldd: dst[c·ldd + r] = src[r·cols + c]. Groups of
// eight source rows go to the workers (transposeGrain elements at least
// per chunk): a forward pass transposes every weight it multiplies by, and
// an evaluation SwiGLU's three transposes took 126-200 µs of its ~3 ms on
// one core, 86-113 µs on two (docs/BENCHMARKS.md, round 12).
func transposeInto[F Float](dst []F, ldd int, src []F, rows, cols int) {
	parallel.For((rows+7)/8, max(1, transposeGrain/(8*cols)), func(lo, hi int) {
		transposeRows(dst, ldd, src, 8*lo, min(rows, 8*hi), cols)
	})
}

// transposeGrain is the fewest elements worth a chunk of transposeInto on
// another worker: about 3 µs of copying, the cost of handing a chunk over.
const transposeGrain = 8 << 10

// transposeRows is transposeInto for source rows r0..r1−1. float32 blocks
// of 8×8 go through transpose8x8Blocks (a register transpose: the scalar
// loop below ran at ~1 ns a float, 2% of a science forward pass, round
// 16); with at least eight rows and columns, so do the last rows and
// columns, as the eight ending at r1 and at cols (the blocks overlap the
// ones before, writing the same values again): an expert of width 86
// otherwise left six rows or columns of each weight to the loop. The
// rest, and float64, take the loop.
func transposeRows[F Float](dst []F, ldd int, src []F, r0, r1, cols int) {
	rb, cb := (r1-r0)&^7, cols&^7 // rows r0..r0+rb−1, columns 0..cb−1 go to the kernel
	if d, ok := any(dst).([]float32); ok && vexpOK && rb > 0 && cb > 0 {
		s := any(src).([]float32)
		_ = s[(r1-1)*cols+cols-1] // bounds: the last float read
		_ = d[(cols-1)*ldd+r1-1]  // and the last written
		transpose8x8Blocks(&d[r0], ldd, &s[r0*cols], cols, rb, cb)
		if cb < cols { // the last eight columns of rows r0..r0+rb−1
			transpose8x8Blocks(&d[(cols-8)*ldd+r0], ldd, &s[r0*cols+cols-8], cols, rb, 8)
		}
		if r0+rb < r1 { // the last eight rows, every column
			transpose8x8Blocks(&d[r1-8], ldd, &s[(r1-8)*cols], cols, 8, cb)
			if cb < cols {
				transpose8x8Blocks(&d[(cols-8)*ldd+r1-8], ldd, &s[(r1-8)*cols+cols-8], cols, 8, 8)
			}
		}
		return
	}
	transposeBlock(dst, ldd, src, r0, r1, 0, cols, cols)
}

// transposeBlock transposes source rows r0..r1−1, columns c0..c1−1 (row
// stride cols), four rows at a time, so each visit to a destination row
// writes four adjacent elements instead of one (twice as fast as one row
// at a time).
func transposeBlock[F Float](dst []F, ldd int, src []F, r0, r1, c0, c1, cols int) {
	r := r0
	for ; r+4 <= r1; r += 4 {
		s := src[r*cols : (r+4)*cols]
		s0, s1, s2, s3 := s[:cols], s[cols:2*cols], s[2*cols:3*cols], s[3*cols:4*cols]
		for c := c0; c < c1; c++ {
			d := dst[c*ldd+r : c*ldd+r+4]
			d[0], d[1], d[2], d[3] = s0[c], s1[c], s2[c], s3[c]
		}
	}
	for ; r < r1; r++ {
		for c := c0; c < c1; c++ {
			dst[c*ldd+r] = src[r*cols+c]
		}
	}
}

// Row sums in float64 (rowSum, rowDot, rowSquares, rowSquaresDot): with
// vector kernels the terms of the first len(x) &^ 7 elements go to eight
// lanes by index mod 8, reduced as (c0 + c2) + (c1 + c3) with c_l = lane l
// + lane l+4, and the rest follow one at a time (laneSum in vec_test.go
// writes the order out); without them, one at a time throughout. A chain
// of scalar float64 additions took as long as the exponentials of a
// softmax row, and RMSNorm's forward and backward ran 1.8× slower with
// them (docs/BENCHMARKS.md, round 15).

// colSums adds each column of x ([rows, e]) to col ([e]) in float64, row
// by row: col[j] += float64(x[r·e+j]) for r = 0, 1, … in turn. float32
// rows take colSums64x4 (the same bits): the balance loss's per-expert
// sums over 2048 router rows of 63 took 0.13 ms of CPU a layer in the
// loop, a scalar add, its load and its store per element
// (docs/BENCHMARKS.md, round 20).
func colSums[F Float](col []float64, x []F, rows, e int) {
	col, x = col[:e], x[:rows*e]
	if x32, ok := any(x).([]float32); ok && vexpOK && rows > 0 && e > 0 {
		colSums64x4(&col[0], &x32[0], rows, e)
		return
	}
	for r := range rows {
		for j, v := range x[r*e : (r+1)*e] {
			col[j] += float64(v)
		}
	}
}

// rowSum returns Σ x_j.
func rowSum(x []float32) float64 {
	var sum float64
	i := 0
	if i = vecLen(len(x)); i > 0 {
		sum = rowSum32x8(&x[0], i)
	}
	for _, v := range x[i:] {
		sum += float64(v)
	}
	return sum
}

// rowDot returns Σ a_j·b_j (len(b) ≥ len(a)), each product exact in
// float64.
func rowDot[F Float](a, b []F) float64 {
	n := len(a)
	b = b[:n]
	var sum float64
	i := 0
	if a32, ok := any(a).([]float32); ok {
		if i = vecLen(n); i > 0 {
			sum = rowDot32x8(&a32[0], &any(b).([]float32)[0], i)
		}
	}
	for j := i; j < n; j++ {
		sum += float64(a[j]) * float64(b[j])
	}
	return sum
}

// rowSquares returns Σ x_j². Every RMSNorm pass takes a row's sum from
// here or rowSquaresDot, so forward and backward agree bit for bit.
func rowSquares[F Float](x []F) float64 { return rowDot(x, x) }

// rowSquaresDot returns rowSquares(x) and Σ w_j·g_j·x_j in one pass, for
// RMSNorm's backward.
func rowSquaresDot[F Float](x, g, w []F) (ss, dot float64) {
	n := len(x)
	g, w = g[:n], w[:n]
	i := 0
	if d, ok := any(x).([]float32); ok {
		if i = vecLen(n); i > 0 {
			ss, dot = rowSquaresDot32x8(&d[0], &any(g).([]float32)[0], &any(w).([]float32)[0], i)
		}
	}
	for j := i; j < n; j++ {
		v := float64(x[j])
		ss += v * v
		dot += float64(w[j]) * float64(g[j]) * v
	}
	return ss, dot
}
