//go:build !purego

package ops

// Vector kernels of vec_amd64.s (AVX2, n or half a multiple of 8); used when
// vexpOK.

//go:noescape
func mul3x8(dst, a, b, c *float32, n int)

//go:noescape
func axpy32x8(y, x *float32, a float32, n int)

//go:noescape
func add32x8(y, x *float32, n int)

//go:noescape
func scale32x8(x *float32, a float32, n int)

//go:noescape
func swigluGrad32x8(dg, du, dh, gate, u, s *float32, n int)

//go:noescape
func rotate32x8(dst, src, cos, sin *float32, half int)

//go:noescape
func unrotate32x8(dst, src, cos, sin *float32, half int)

//go:noescape
func shift32x8(x *float32, c float32, n int)

//go:noescape
func dsoftmax32x8(dg, p *float32, c float32, n int)

//go:noescape
func rmsScale32x8(y, w, x *float32, r float32, n int)

//go:noescape
func rmsGrad32x8(dx, pw, w, dy, x *float32, r, c float32, n int)

//go:noescape
func sumRows32x8(y, o *float32, offs *int, gates *float32, k, n int)

//go:noescape
func colSums64x4(col *float64, x *float32, rows, e int)

//go:noescape
func max32x8(x *float32, n int) (m float32, nan bool)

// mul3Rows32x8 and swigluGradRows32x8 walk rows of [g | u] (vec_amd64.s;
// hiddenRows, swigluGradRows).
//
//go:noescape
func mul3Rows32x8(h, gu, s *float32, rows, w int)

//go:noescape
func swigluGradRows32x8(dgu, dh, gu, s *float32, rows, w int)

//go:noescape
func rowSquaresDot32x8(x, dy, w *float32, n int) (ss, dot float64)

//go:noescape
func rotateRows32x8(dst, src, cos, sin *float32, rows, dstStride, srcStride, half int)

//go:noescape
func unrotateRows32x8(dst, src, cos, sin *float32, rows, dstStride, srcStride, half int)

//go:noescape
func rowSum32x8(x *float32, n int) float64

//go:noescape
func rowDot32x8(a, b *float32, n int) float64

//go:noescape
func gateRows32x8(dgate *float64, slots *int32, gates *float64, h, dd *float32, rows, w int)

// transpose8x8Blocks is transposeRows for rows and cols multiples of 8,
// source row stride lds (transposeRows).
//
//go:noescape
func transpose8x8Blocks(dst *float32, ldd int, src *float32, lds int, rows, cols int)

// rmsForwardRows32x8 is rmsNormForward on rows rows of width d (a
// multiple of 8): rowSquares, rmsFromSquares and rmsScale per row.
//
//go:noescape
func rmsForwardRows32x8(y, w, x *float32, rows, d int, eps float64)

// rmsBackRows32x8 is rmsNormBackwardKernel's loop body on rows rows of
// width d (a multiple of 8), adding into the block's pw.
//
//go:noescape
func rmsBackRows32x8(dx, pw, w, dy, x *float32, rows, d int, eps float64)

// dsoftmaxRows32x8 is dsoftmax with rowDot on rows rows in place: a
// causal head's (headBackward32) or the router softmax's
// (softmaxBackwardRows).
//
//go:noescape
func dsoftmaxRows32x8(dp, p *float32, rows, stride, k int, causal bool)

// streamCopy32 copies n floats from src to dst, dst's whole cache lines
// with streaming stores (AVX-512 F), and fences them.
//
//go:noescape
func streamCopy32(dst, src *float32, n int)
