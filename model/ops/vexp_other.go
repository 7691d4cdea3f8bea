//go:build !amd64 || purego

package ops

// vexpOK is false: exp32s and sigmoid32s run the scalar functions.
const vexpOK = false

// vexp512 is false as well (tests flip it where the kernels exist).
var vexp512 = false

func exp32x8(dst, src *float32, n int)     { panic("ops: no vector exp on this platform") }
func sigmoid32x8(dst, src *float32, n int) { panic("ops: no vector sigmoid on this platform") }
func siluGateRows32x8(h, s, gu *float32, rows, w int) {
	panic("ops: no vector kernels on this platform")
}

func mul3x8(dst, a, b, c *float32, n int)      { panic("ops: no vector kernels on this platform") }
func axpy32x8(y, x *float32, a float32, n int) { panic("ops: no vector kernels on this platform") }
func add32x8(y, x *float32, n int)             { panic("ops: no vector kernels on this platform") }
func scale32x8(x *float32, a float32, n int)   { panic("ops: no vector kernels on this platform") }
func swigluGrad32x8(dg, du, dh, gate, u, s *float32, n int) {
	panic("ops: no vector kernels on this platform")
}
func rotate32x8(dst, src, cos, sin *float32, half int) {
	panic("ops: no vector kernels on this platform")
}
func unrotate32x8(dst, src, cos, sin *float32, half int) {
	panic("ops: no vector kernels on this platform")
}

func shift32x8(x *float32, c float32, n int)        { panic("ops: no vector kernels on this platform") }
func dsoftmax32x8(dg, p *float32, c float32, n int) { panic("ops: no vector kernels on this platform") }
func rmsScale32x8(y, w, x *float32, r float32, n int) {
	panic("ops: no vector kernels on this platform")
}
func rmsGrad32x8(dx, pw, w, dy, x *float32, r, c float32, n int) {
	panic("ops: no vector kernels on this platform")
}

// vexp64OK is false: expRow runs math.Exp.
const vexp64OK = false

func exp64x4(x *float64, n int) { panic("ops: no vector exp on this platform") }

func siluGate32x8(h, s, g, u *float32, n int) { panic("ops: no vector kernels on this platform") }

func sumRows32x8(y, o *float32, offs *int, gates *float32, k, n int) {
	panic("ops: no vector kernels on this platform")
}

func colSums64x4(col *float64, x *float32, rows, e int) {
	panic("ops: no vector kernels on this platform")
}

func max32x8(x *float32, n int) (float32, bool) { panic("ops: no vector kernels on this platform") }

// topK512 is false: TopK runs the scalar list.
var topK512 = false

func topK32x64(idx *int32, row *float32, n, k int) bool {
	panic("ops: no vector top-k on this platform")
}

func topK32x64x2(idxA *int32, rowA *float32, idxB *int32, rowB *float32, n, k int) (bool, bool) {
	panic("ops: no vector top-k on this platform")
}

func mul3Rows32x8(h, gu, s *float32, rows, w int) { panic("ops: no vector kernels on this platform") }
func swigluGradRows32x8(dgu, dh, gu, s *float32, rows, w int) {
	panic("ops: no vector kernels on this platform")
}

func rowSquaresDot32x8(x, dy, w *float32, n int) (ss, dot float64) {
	panic("ops: no vector kernels on this platform")
}
func rotateRows32x8(dst, src, cos, sin *float32, rows, dstStride, srcStride, half int) {
	panic("ops: no vector kernels on this platform")
}
func unrotateRows32x8(dst, src, cos, sin *float32, rows, dstStride, srcStride, half int) {
	panic("ops: no vector kernels on this platform")
}
func rowSum32x8(x *float32, n int) float64    { panic("ops: no vector kernels on this platform") }
func rowDot32x8(a, b *float32, n int) float64 { panic("ops: no vector kernels on this platform") }
func gateRows32x8(dgate *float64, slots *int32, gates *float64, h, dd *float32, rows, w int) {
	panic("ops: no vector kernels on this platform")
}
func causalRows32x8(p *float32, nan *bool, rows, stride, n, end int) {
	panic("ops: no vector kernels on this platform")
}
func transpose8x8Blocks(dst *float32, ldd int, src *float32, lds int, rows, cols int) {
	panic("ops: no vector kernels on this platform")
}
func causalScores32(s *float32, lds int, q *float32, ldq int, kt *float32, ldk int, rows, i0, dh int, scale float32) {
	panic("ops: no vector kernels on this platform")
}
func causalPV32(o *float32, ldo int, p *float32, ldp int, v *float32, ldv int, rows, i0, dh int, scale float32) {
	panic("ops: no vector kernels on this platform")
}
func causalPTB32(o *float32, ldo int, p *float32, ldp int, b *float32, ldb int, t, dh int, scale float32) {
	panic("ops: no vector kernels on this platform")
}
func rmsForwardRows32x8(y, w, x *float32, rows, d int, eps float64) {
	panic("ops: no vector kernels on this platform")
}
func rmsBackRows32x8(dx, pw, w, dy, x *float32, rows, d int, eps float64) {
	panic("ops: no vector kernels on this platform")
}
func dsoftmaxRows32x8(dp, p *float32, rows, stride, k int, causal bool) {
	panic("ops: no vector kernels on this platform")
}
func softmaxRows32x8(y, x *float32, nan *bool, rows, e int) {
	panic("ops: no vector kernels on this platform")
}

func streamCopy32(dst, src *float32, n int) { panic("ops: no vector kernels on this platform") }
