package ops

import (
	"fmt"
	"math"
	"slices"

	"github.com/chewxy/hm"
	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"

	"github.com/moetrain/moetrain/internal/blas"
	"github.com/moetrain/moetrain/internal/parallel"
)

// SwiGLU returns the fused SwiGLU feed-forward network (DESIGN.md §1)
//
//	y = (silu(x·wgᵀ) ⊙ (x·wuᵀ))·wdᵀ
//
// for x [N, d], wg and wu [f, d], wd [d, f] (PyTorch layout, no biases); y is
// [N, d]. It is the dense FFN, every routed expert and the shared experts.
//
// The gate and up projections run as one product: wg and wu are copied
// into one [2f, d] matrix W = [wg; wu] (2·f·d floats, small next to the
// products), so x·Wᵀ gives each row's gate and up pre-activations side by
// side, [N, 2f]. The backward then forms dx = [dg | du]·W with one product
// over k = 2f and [dwg; dwu] = [dg | du]ᵀ·x with one more, written straight
// into the packed gradient where dwg and dwu are adjacent: 5 GEMM calls per
// forward+backward instead of 8 (the science models' d = 128 products are
// small enough that fewer, larger calls pay).
//
// Caching: the forward pass keeps [g | u] ([N, 2f]), h = silu(g)⊙u and
// s = sigmoid(g) ([N, f] each) and W in the op, together with the backing
// arrays of x, wg and wu it read. The backward pass uses them only when it
// is handed those same backing arrays (the TapeMachine runs forward then
// backward on the same values within a step); otherwise it recomputes
// them. The backward overwrites the cached buffers with its own
// intermediates (dh, dg, du) and marks the cache spent, and the next
// forward reuses them, so a step allocates no [N, f] scratch at all. An op
// no backward was built for (an evaluation graph) keeps nothing and, for
// FFNs small enough, runs in row blocks that stay in cache (swigluEval).
func SwiGLU(x, wg, wu, wd *G.Node) (*G.Node, error) {
	return G.ApplyOp(&swigluOp{base: base{name: "SwiGLU", arity: 4}, cache: &swigluCache{}}, x, wg, wu, wd)
}

type swigluOp struct {
	base
	cache *swigluCache
	// differentiated is set when SymDiff built a backward for this op. An
	// op without one (an evaluation graph) runs swigluEval, which keeps
	// nothing for a backward.
	differentiated bool
}

// swigluCache carries the forward hidden matrices to the backward pass.
// x, wg, wu, g, u, h and s hold []float32 or []float64. valid is true between
// a forward and the backward that consumes it. hits counts backward passes
// that used the cache (tests check that the graph route really hits it).
type swigluCache struct {
	valid     bool
	x, wg, wu any
	gu        any // [N, 2f]: row i is [g_i | u_i]
	h         any // [N, f]
	s         any // sigmoid(g): the backward reuses it instead of recomputing the exponentials
	hits      int
}

func (op *swigluOp) Type() hm.Type { return fnType(2, 2, 2, 2, 2) }

func (op *swigluOp) InferShape(ds ...G.DimSizer) (tensor.Shape, error) {
	s, err := shapesOf(ds)
	if err != nil {
		return nil, err
	}
	if err := swigluShapes(s); err != nil {
		return nil, err
	}
	return s[0].Clone(), nil
}

func swigluShapes(s []tensor.Shape) error {
	for _, sh := range s[:4] {
		if sh.Dims() != 2 {
			return fmt.Errorf("SwiGLU: x %v, wg %v, wu %v, wd %v: want matrices", s[0], s[1], s[2], s[3])
		}
	}
	d, f := s[0][1], s[1][0]
	if s[1][1] != d || s[2][0] != f || s[2][1] != d || s[3][0] != d || s[3][1] != f {
		return fmt.Errorf("SwiGLU: x %v, wg %v, wu %v, wd %v: want [N, d], [f, d], [f, d], [d, f]", s[0], s[1], s[2], s[3])
	}
	return nil
}

func denseShapes(ts []*tensor.Dense) []tensor.Shape {
	s := make([]tensor.Shape, len(ts))
	for i, t := range ts {
		s[i] = t.Shape()
	}
	return s
}

func (op *swigluOp) Do(vs ...G.Value) (G.Value, error) {
	if profiling.Load() {
		defer record(op.name, startClock())
	}
	in, err := floatInputs(op.name, vs)
	if err != nil {
		return nil, err
	}
	if err := swigluShapes(denseShapes(in)); err != nil {
		return nil, err
	}
	x := in[0]
	n, d, f := x.Shape()[0], x.Shape()[1], in[1].Shape()[0]
	y := op.outputOver(x.Dtype(), n, d)
	blocks := !op.differentiated && swigluBlocked(x.Dtype(), d, f)
	switch x.Dtype() {
	case tensor.Float32:
		swigluOpForward(op.cache, blocks, slice[float32](y), in, n, d, f)
	case tensor.Float64:
		swigluOpForward(op.cache, blocks, slice[float64](y), in, n, d, f)
	}
	return y, nil
}

// swigluOpForward runs the op's forward on its inputs (x, wg, wu, wd): in
// blocks that keep nothing (swigluEval) or, for a backward to come or an
// FFN too large for blocks, keeping the hidden matrices in c.
func swigluOpForward[F Float](c *swigluCache, blocks bool, y []F, in []*tensor.Dense, n, d, f int) {
	x, wg, wu, wd := slice[F](in[0]), slice[F](in[1]), slice[F](in[2]), slice[F](in[3])
	if blocks {
		swigluEval(y, x, wg, wu, wd, n, d, f)
		return
	}
	swigluForward(c, y, x, wg, wu, wd, n, d, f)
}

func (op *swigluOp) DiffWRT(int) []bool { return []bool{true, true, true, true} }

func (op *swigluOp) SymDiff(in G.Nodes, _, grad *G.Node) (G.Nodes, error) {
	op.differentiated = true
	bwd := &swigluBackward{base: base{name: "SwiGLUBackward", arity: 5}, cache: op.cache}
	return packedGrads(bwd, G.Nodes{in[0], in[1], in[2], in[3], grad}, in, []bool{true, true, true, true})
}

// swigluBackward packs [dx (N·d) | dwg (f·d) | dwu (f·d) | dwd (d·f)] from
// (x, wg, wu, wd, dy).
type swigluBackward struct {
	base
	cache *swigluCache
}

func (op *swigluBackward) Type() hm.Type { return fnType(2, 2, 2, 2, 2, 1) }

func (op *swigluBackward) InferShape(ds ...G.DimSizer) (tensor.Shape, error) {
	s, err := shapesOf(ds)
	if err != nil {
		return nil, err
	}
	return tensor.Shape{packedSize(s[:4], []bool{true, true, true, true})}, nil
}

func (op *swigluBackward) Do(vs ...G.Value) (G.Value, error) {
	if profiling.Load() {
		defer record(op.name, startClock())
	}
	in, err := floatInputs(op.name, vs)
	if err != nil {
		return nil, err
	}
	if err := swigluShapes(denseShapes(in)); err != nil {
		return nil, err
	}
	x := in[0]
	n, d, f := x.Shape()[0], x.Shape()[1], in[1].Shape()[0]
	p := op.outputOver(x.Dtype(), n*d+3*f*d)
	switch x.Dtype() {
	case tensor.Float32:
		swigluOpBackward(op.cache, slice[float32](p), in, n, d, f)
	case tensor.Float64:
		swigluOpBackward(op.cache, slice[float64](p), in, n, d, f)
	}
	return p, nil
}

// swigluOpBackward runs swigluBackwardKernel on (x, wg, wu, wd, dy) in
// and packs [dx | dwg | dwu | dwd] into packed.
func swigluOpBackward[F Float](c *swigluCache, packed []F, in []*tensor.Dense, n, d, f int) {
	swigluBackwardKernel(c, packed[:n*d], packed[n*d:n*d+2*f*d], packed[n*d+2*f*d:],
		slice[F](in[0]), slice[F](in[1]), slice[F](in[2]), slice[F](in[3]), slice[F](in[4]), n, d, f)
}

// sameBacking reports whether a and b are the same slice of the same array.
func sameBacking[F Float](a, b []F) bool {
	return len(a) == len(b) && (len(a) == 0 || &a[0] == &b[0])
}

// buffer returns old as []F when it has length size, else a new slice.
func buffer[F Float](old any, size int) []F {
	if b, ok := old.([]F); ok && len(b) == size {
		return b
	}
	return make([]F, size)
}

// swigluForward computes y and leaves [g | u], h and s in the cache
// for the backward.
func swigluForward[F Float](c *swigluCache, y, x, wg, wu, wd []F, n, d, f int) {
	gu, h, s := buffer[F](c.gu, 2*n*f), buffer[F](c.h, n*f), buffer[F](c.s, n*f)
	swigluHidden(gu, h, s, x, wg, wu, n, d, f)
	mulTransposed(y, h, wd, n, d, f)
	*c = swigluCache{valid: true, x: x, wg: wg, wu: wu, gu: gu, h: h, s: s, hits: c.hits}
}

// swigluEvalRows is how many rows swigluEval takes per visit. Small
// blocks keep a visit's [g | u] (32 × 2f) and h next to the weights in a
// core's L2; at the science shape (d = 128, f = 344) 32 rows made the
// forward op about 10% faster than 128 rows or the unblocked path, whose
// products write [N, 2f] out to memory and read it back
// (docs/BENCHMARKS.md, round 11).
const swigluEvalRows = 32

// evalBlockWeightBytes bounds the weights an evaluation pass reads whole
// for every block of rows (swigluEval's wg, wu and wd; ceRows's LM head):
// they must stay in L2 from one block to the next (1 MiB per core on the
// machines measured). Larger ones, such as the d = 256, f = 1024 bench
// FFN's 3 MiB and its 8 MiB head, were slower in blocks and take the
// unblocked paths.
const evalBlockWeightBytes = 640 << 10

// swigluBlocked reports whether an evaluation pass of an [f, d] SwiGLU of
// dtype dt runs in blocks (swigluEval).
func swigluBlocked(dt tensor.Dtype, d, f int) bool {
	return 3*f*d*int(dt.Size()) <= evalBlockWeightBytes
}

// swigluEval computes y for an op whose forward no backward reads (an
// evaluation graph). Rows go in blocks of swigluEvalRows, handed to the
// workers from a shared queue; each visit forms the block's [g | u] in one
// serial product against [wg; wu], applies the activation and runs the down
// product while the block is still in cache, so no [N, 2f] or [N, f]
// matrix is written to memory. The sigmoids, which only a backward needs,
// go to one row of scratch. One parallel region instead of three (two
// split products and the activation) also leaves fewer points where a core
// waits for the other. Both products read their weights untransposed,
// from copies made once per call (stackedTransposed, as mulTransposed).
func swigluEval[F Float](y, x, wg, wu, wd []F, n, d, f int) {
	wt := poolGet[F](&stacks, 3*f*d)
	defer poolPut(&stacks, wt)
	wgu, wdt := stackedTransposed(wt[:2*f*d], wg, wu, f, d), wt[2*f*d:]
	transposeInto(wdt, d, wd, d, f)
	rows := swigluEvalRows
	mm := blockMatMul[F](rows, d, f)
	parallel.Drain((n+rows-1)/rows, func(take func() (int, bool)) {
		buf := poolGet[F](&stacks, rows*3*f+f) // [gu | h | one row of s]
		defer poolPut(&stacks, buf)
		gu, h, s := buf[:2*rows*f], buf[2*rows*f:3*rows*f], buf[3*rows*f:]
		for b, ok := take(); ok; b, ok = take() {
			lo, hi := b*rows, min(n, (b+1)*rows)
			m := hi - lo
			mm(m, 2*f, d, x[lo*d:hi*d], wgu, gu[:2*m*f])
			for i := 0; i < m; i++ {
				siluGate(h[i*f:(i+1)*f], s, gu[2*i*f:(2*i+1)*f], gu[(2*i+1)*f:(2*i+2)*f])
			}
			mm(m, d, f, h[:m*f], wdt, y[lo*d:hi*d])
		}
	})
}

// blockMatMul returns a product C = A·B of packed operands for blocks of
// at most rows rows, k one of ks: on the row tiles (blas.RowsMatMul, rows
// at fixed offsets) where the experts take them (rowTiles), else the
// library's serial GEMM. The evaluation passes' row blocks use it
// (swigluEval, ceRows): with a block's operands in cache the tiles ran
// 116 GFLOP/s at the science FFN's two shapes (32 × 128 → 688 and
// 32 × 344 → 128) where oneDNN ran 91-94 (docs/BENCHMARKS.md, round 18).
func blockMatMul[F Float](rows int, ks ...int) func(m, n, k int, a, b, c []F) {
	var z F
	if _, f32 := any(z).(float32); f32 && rowTiles() {
		// Row i of A at i·k: a table per k, shared by the workers (read
		// only).
		offs := make([][]int, len(ks))
		for j, k := range ks {
			offs[j] = make([]int, rows)
			for i := range rows {
				offs[j][i] = i * k
			}
		}
		return func(m, n, k int, a, b, c []F) {
			blas.RowsMatMul(m, n, k, any(a).([]float32), offs[slices.Index(ks, k)], any(b).([]float32), any(c).([]float32))
		}
	}
	return func(m, n, k int, a, b, c []F) { blas.MatMulSerial(false, false, m, n, k, a, b, c, false) }
}

// stackedTransposed writes [wgᵀ | wuᵀ] ([d, 2f]) into wt and returns it:
// the forward's gate and up product x·[wg; wu]ᵀ with its right operand
// untransposed, which oneDNN ran faster than the same product reading
// [wg; wu] transposed (see mulTransposed).
func stackedTransposed[F Float](wt, wg, wu []F, f, d int) []F {
	transposeInto(wt, 2*f, wg, f, d)
	transposeInto(wt[f:], 2*f, wu, f, d)
	return wt
}

// swigluHidden computes [g | u] = x·[wg; wu]ᵀ ([n, 2f]), s = sigmoid(g)
// and h = silu(g)⊙u ([n, f]).
func swigluHidden[F Float](gu, h, s, x, wg, wu []F, n, d, f int) {
	wt := poolGet[F](&stacks, 2*f*d)
	blas.MatMul(false, false, n, 2*f, d, x, stackedTransposed(wt, wg, wu, f, d), gu, false)
	poolPut(&stacks, wt)
	parallel.For(n, denseRowsGrain(2*f), func(lo, hi int) {
		siluGateRows(h[lo*f:hi*f], s[lo*f:hi*f], gu[2*lo*f:2*hi*f], hi-lo, f)
	})
}

// siluGate32 and siluGate64 set s = sigmoid(g) and h = silu(g)⊙u. The
// float32 sigmoids are exp32's, eight lanes at a time, in one pass with
// the product (siluGate32x8): the same bits as sigmoid32s then mul3 (with
// math.Exp the activation took longer than the three GEMMs). h and s must
// not overlap g or u.
func siluGate32(h, s, g, u []float32) {
	n := len(g)
	h, s, u = h[:n], s[:n], u[:n]
	i := 0
	if i = vecLen(n); i > 0 {
		siluGate32x8(&h[0], &s[0], &g[0], &u[0], i)
		if t := vecTail(n, disjoint(h, s, g, u) && disjoint(s, g, u)); t < n {
			siluGate32x8(&h[t], &s[t], &g[t], &u[t], 8)
			i = n
		}
	}
	for ; i < n; i++ {
		si := sigmoid32(g[i])
		s[i], h[i] = si, g[i]*si*u[i]
	}
}

// siluGateRows is siluGate on rows rows of width w: row i's h and s are
// h[i·w:(i+1)·w] and s[i·w:(i+1)·w], its g and u gu[2i·w:(2i+1)·w] and
// gu[(2i+1)·w:(2i+2)·w] (the [g | u] rows of a gate and up product).
// float32 rows of eight or more go to one kernel call for all rows
// (siluGateRows32x8, the same bits as row by row): an expert's rows of 86
// spent about a third of their activation time in the two calls per row.
// h and s must not overlap gu or each other.
func siluGateRows[F Float](h, s, gu []F, rows, w int) {
	if rows <= 0 {
		return
	}
	if h32, ok := any(h).([]float32); ok && vexpOK && w >= 8 {
		s32, gu32 := any(s).([]float32), any(gu).([]float32)
		_, _, _ = h32[rows*w-1], s32[rows*w-1], gu32[2*rows*w-1] // the kernel reads and writes these whole
		siluGateRows32x8(&h32[0], &s32[0], &gu32[0], rows, w)
		return
	}
	for i := 0; i < rows; i++ {
		siluGate(h[i*w:(i+1)*w], s[i*w:(i+1)*w], gu[2*i*w:(2*i+1)*w], gu[(2*i+1)*w:(2*i+2)*w])
	}
}

func siluGate64(h, s, g, u []float64) {
	for i, a := range g {
		si := safeSigmoid(a)
		s[i], h[i] = si, a*si*u[i]
	}
}

// swigluBackwardKernel, with s = sigmoid(g), silu(g) = g·s and
// silu'(g) = s·(1 + g·(1−s)):
//
//	dwd = dyᵀ·h, dh = dy·wd, dg = dh⊙u⊙silu'(g), du = dh⊙silu(g),
//	dx = [dg | du]·[wg; wu], [dwg; dwu] = [dg | du]ᵀ·x.
//
// into dx ([n, d]), dwgu ([dwg; dwu], [2f, d]) and dwd ([d, f]). Every
// reduction is one GEMM, so the result does not depend on the worker count.
func swigluBackwardKernel[F Float](c *swigluCache, dx, dwgu, dwd, x, wg, wu, wd, dy []F, n, d, f int) {
	var gu, h, s []F
	if cgu, ok := c.gu.([]F); ok && c.valid && len(cgu) == 2*n*f &&
		sameBacking(c.x.([]F), x) && sameBacking(c.wg.([]F), wg) && sameBacking(c.wu.([]F), wu) {
		gu, h, s = cgu, c.h.([]F), c.s.([]F)
		c.hits++
	} else {
		gu, h, s = make([]F, 2*n*f), make([]F, n*f), make([]F, n*f)
		swigluHidden(gu, h, s, x, wg, wu, n, d, f)
	}
	// The buffers are overwritten below: no later backward may trust them.
	c.valid, c.x, c.wg, c.wu = false, nil, nil, nil

	blas.MatMul(true, false, d, f, n, dy, h, dwd, false)
	dh := h // h is dead once dwd is formed
	blas.MatMul(false, false, n, f, d, dy, wd, dh, false)
	parallel.For(n, denseRowsGrain(2*f), func(lo, hi int) {
		for i := lo; i < hi; i++ {
			g, u := gu[2*i*f:(2*i+1)*f], gu[(2*i+1)*f:(2*i+2)*f]
			siluGateBackward(g, u, dh[i*f:(i+1)*f], s[i*f:(i+1)*f])
		}
	})
	dgu := gu                           // now [dg | du] per row
	w := stackedExpert(wg, wu, 0, f, d) // [wg; wu]: dx = [dg | du]·[wg; wu]
	blas.MatMul(false, false, n, d, 2*f, dgu, w, dx, false)
	poolPut(&stacks, w)
	blas.MatMul(true, false, 2*f, d, n, dgu, x, dwgu, false)
}

// safeSigmoid is 1/(1+e^−a) evaluated so that the exponent is never positive:
// no overflow and no Inf/Inf for large |a|.
func safeSigmoid(a float64) float64 {
	if a >= 0 {
		return 1 / (1 + math.Exp(-a))
	}
	e := math.Exp(a)
	return e / (1 + e)
}

// siluGateBackward overwrites g with dg = dh⊙u⊙silu'(g) and u with
// du = dh⊙silu(g), given sg = sigmoid(g) from the forward.
func siluGateBackward[F Float](g, u, dh, sg []F) { swigluGrad(g, u, dh, g, u, sg) }

// sigmoid32 is safeSigmoid in float32 with exp32 (accurate to a few ulp);
// its exponent −|a| is never positive, which is exp32's domain.
//
// The numerator (1 for a ≥ 0, e for a < 0) is picked with a mask from a's
// sign bit, not a branch: the signs of the pre-activations are random, so a
// branch is mispredicted half the time. The arithmetic is the same as the
// branching form's (−0 takes e/(1+e) with e = 1: 0.5 either way).
func sigmoid32(a float32) float32 {
	bits := math.Float32bits(a)
	e := exp32(math.Float32frombits(bits | 0x80000000)) // −|a|
	neg := uint32(int32(bits) >> 31)                    // all ones when a's sign bit is set
	num := math.Float32frombits(0x3f800000&^neg | math.Float32bits(e)&neg)
	return num / (1 + e)
}
