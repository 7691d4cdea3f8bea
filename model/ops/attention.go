package ops

import (
	"fmt"
	"math"
	"slices"
	"sync"

	"github.com/chewxy/hm"
	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"

	"github.com/moetrain/moetrain/internal/blas"
	"github.com/moetrain/moetrain/internal/parallel"
)

// Shape legend: B batch, T sequence length, H heads, dh head width, W = H·dh.
// q, k, v and the output are [B·T, W]: row b·T+t, head h in columns
// h·dh..(h+1)·dh. A packed input is [B·T, 3W], each row [q | k | v].

// Attention returns causal multi-head attention with RoPE (DESIGN.md §1):
// per sequence b and head h, q' = RoPE(q), k' = RoPE(k) at positions
// t = 0..T−1, P = softmax(q'k'ᵀ/sqrt(dh)) with position t seeing 0..t, and
// output P·v, laid out [B·T, W] like the inputs. q, k and v are the outputs
// of separate projections; dh = W/heads must be even.
func Attention(q, k, v *G.Node, batch, seq, heads int, theta float64) (*G.Node, error) {
	return attention(G.Nodes{q, k, v}, batch, seq, heads, theta)
}

// AttentionPacked is Attention with q, k and v side by side in one
// [B·T, 3W] input, as LinearStacked makes them; its gradient comes back in
// the same layout, so the projection's backward takes it as it is.
func AttentionPacked(qkv *G.Node, batch, seq, heads int, theta float64) (*G.Node, error) {
	return attention(G.Nodes{qkv}, batch, seq, heads, theta)
}

func attention(in G.Nodes, batch, seq, heads int, theta float64) (*G.Node, error) {
	if batch < 1 || seq < 1 || heads < 1 {
		return nil, fmt.Errorf("attention: batch %d, seq %d, heads %d: want all ≥ 1", batch, seq, heads)
	}
	if !(theta > 0) || math.IsInf(theta, 1) {
		return nil, fmt.Errorf("attention: rope theta %g: want a finite value > 0", theta)
	}
	qs, packed := in[0].Shape(), len(in) == 1
	w := 0
	if qs.Dims() == 2 {
		w = qs[1]
	}
	if packed {
		if w%3 != 0 {
			return nil, fmt.Errorf("attention: packed input %v: want [B·T, 3W]", qs)
		}
		w /= 3
	}
	if w == 0 || w%heads != 0 {
		return nil, fmt.Errorf("attention: input %v: want [B·T, W] (or [B·T, 3W] packed) with heads %d dividing W", qs, heads)
	}
	op := newAttentionOp(batch, seq, heads, w/heads, theta)
	if packed {
		op.packOp()
	}
	shapes := make([]G.DimSizer, len(in))
	for i, n := range in {
		shapes[i] = n.Shape()
	}
	if _, err := op.InferShape(shapes...); err != nil {
		return nil, err
	}
	return G.ApplyOp(op, in...)
}

// attnDims are the sizes every attention kernel needs.
type attnDims struct {
	b, t, h, dh int
	scale       float64 // 1/sqrt(dh)
	// packed: q, k, v are one [B·T, 3W] input (and dq, dk, dv one
	// gradient of that layout) instead of three [B·T, W] ones.
	packed bool
}

func (d attnDims) w() int { return d.h * d.dh }

// ld is the row stride of q, k, v and of dq, dk, dv: W, or 3W packed.
func (d attnDims) ld() int {
	if d.packed {
		return 3 * d.w()
	}
	return d.w()
}

// at is where head h of sequence b starts in a matrix of row stride ld.
func (d attnDims) at(b, h, ld int) int { return b*d.t*ld + h*d.dh }

// qkvOf returns the q, k and v of the op's inputs x (three tensors, or
// one packed: then views of it at columns 0, W and 2W).
func qkvOf[F Float](x []*tensor.Dense, d attnDims) (q, k, v []F) {
	if d.packed {
		p := slice[F](x[0])
		return p, p[d.w():], p[2*d.w():]
	}
	return slice[F](x[0]), slice[F](x[1]), slice[F](x[2])
}

type attentionOp struct {
	base
	attnDims
	theta float64
	rope  *ropeTable // shared with the backward op
	probs *probCache // filled by Do, read by the backward op
	// differentiated is set when SymDiff built a backward for this op. An
	// op without one (an evaluation graph) keeps no P: each head's
	// probabilities stay in a worker's T×T scratch, which stays in cache,
	// instead of being written out to B·H·T² floats that nothing reads.
	differentiated bool
}

func newAttentionOp(batch, seq, heads, dh int, theta float64) *attentionOp {
	return &attentionOp{
		base:     base{name: "Attention", arity: 3, key: fmt.Sprintf("B=%d,T=%d,H=%d,dh=%d,theta=%g", batch, seq, heads, dh, theta)},
		attnDims: attnDims{b: batch, t: seq, h: heads, dh: dh, scale: 1 / math.Sqrt(float64(dh))},
		theta:    theta,
		rope:     newRopeTable(seq, dh, theta),
		probs:    &probCache{},
	}
}

// packOp turns op into the packed form: one [B·T, 3W] input.
func (op *attentionOp) packOp() {
	op.packed, op.arity, op.key = true, 1, op.key+",packed"
}

func (op *attentionOp) Type() hm.Type { return fnType(slices.Repeat([]int{2}, op.arity+1)...) }

// checkShapes validates the inputs (q, k, v, or the packed one) against
// the op's sizes.
func (d attnDims) checkShapes(name string, s []tensor.Shape) error {
	if d.dh%2 != 0 || d.dh < 2 {
		return fmt.Errorf("%s: head width %d must be even", name, d.dh)
	}
	names := []string{"q", "k", "v"}
	if d.packed {
		names = []string{"qkv"}
	}
	if len(s) < len(names) {
		return fmt.Errorf("%s: %d inputs, want %d", name, len(s), len(names))
	}
	want := tensor.Shape{d.b * d.t, d.ld()}
	for i, n := range names {
		if !s[i].Eq(want) {
			return fmt.Errorf("%s: %s %v: want %v (B=%d, T=%d, H=%d, dh=%d)", name, n, s[i], want, d.b, d.t, d.h, d.dh)
		}
	}
	return nil
}

func (op *attentionOp) InferShape(ds ...G.DimSizer) (tensor.Shape, error) {
	s, err := shapesOf(ds)
	if err != nil {
		return nil, err
	}
	if len(s) != op.arity {
		return nil, fmt.Errorf("attention: %d inputs, want %d", len(s), op.arity)
	}
	if err := op.checkShapes("attention", s); err != nil {
		return nil, err
	}
	return tensor.Shape{op.b * op.t, op.w()}, nil
}

// attentionInputs converts the values and checks their shapes and dtypes.
func (d attnDims) attentionInputs(name string, vs []G.Value) ([]*tensor.Dense, error) {
	in, err := inputs(name, vs)
	if err != nil {
		return nil, err
	}
	shapes := make([]tensor.Shape, len(in))
	for i, t := range in {
		shapes[i] = t.Shape()
		if t.Dtype() != in[0].Dtype() {
			return nil, fmt.Errorf("%s: input dtypes %v and %v differ", name, in[0].Dtype(), t.Dtype())
		}
	}
	if err := d.checkShapes(name, shapes); err != nil {
		return nil, err
	}
	return in, nil
}

func (op *attentionOp) Do(vs ...G.Value) (G.Value, error) {
	if profiling.Load() {
		defer record(op.name, startClock())
	}
	in, err := op.attentionInputs("attention", vs)
	if err != nil {
		return nil, err
	}
	dt := in[0].Dtype()
	y := op.outputOver(dt, op.b*op.t, op.w())
	c := op.probs
	if !op.differentiated {
		c = nil
	}
	switch dt {
	case tensor.Float32:
		q, k, v := qkvOf[float32](in, op.attnDims)
		forwardCached(c, slice[float32](y), q, k, v, op.attnDims, op.rope)
	case tensor.Float64:
		q, k, v := qkvOf[float64](in, op.attnDims)
		forwardCached(c, slice[float64](y), q, k, v, op.attnDims, op.rope)
	default:
		return nil, fmt.Errorf("attention: dtype %v", dt)
	}
	return y, nil
}

func (op *attentionOp) DiffWRT(int) []bool { return slices.Repeat([]bool{true}, op.arity) }

// SymDiff: the backward needs P. The forward keeps it in op.probs (B·H·T²
// elements, 8 MB at B=8, T=256, H=4 in float32, reused every step) and the
// backward uses it only when it was filled by the last forward over the very
// same q and k backing arrays and not used since; otherwise it recomputes P
// from q and k (flash-style), which gives bit-identical values. Caching saves
// one T×T×dh product and the softmax's exp per head: 10-20% of the CPU time
// of forward plus backward at B=8, T=256, H=4, dh=64 (measured on a loaded
// machine). The recompute path keeps the backward correct on its own and is
// what shapes above maxCachedProbs use.
func (op *attentionOp) SymDiff(in G.Nodes, out, grad *G.Node) (G.Nodes, error) {
	op.differentiated = true
	bwd := &attentionBackward{base: base{name: "AttentionBackward", arity: op.arity + 1, key: op.key}, attnDims: op.attnDims, rope: op.rope, probs: op.probs}
	return packedGrads(bwd, append(slices.Clone(in), grad), in, op.DiffWRT(0))
}

// attentionBackward packs [dq | dk | dv] (each B·T·W) from (q, k, v, dy),
// or, packed, the gradient of qkv ([B·T, 3W], rows [dq | dk | dv]) from
// (qkv, dy).
type attentionBackward struct {
	base
	attnDims
	rope  *ropeTable
	probs *probCache // may be nil: always recompute
}

func (op *attentionBackward) Type() hm.Type {
	return fnType(append(slices.Repeat([]int{2}, op.arity), 1)...)
}

func (op *attentionBackward) InferShape(ds ...G.DimSizer) (tensor.Shape, error) {
	s, err := shapesOf(ds)
	if err != nil {
		return nil, err
	}
	if err := op.checkShapes("attention backward", s); err != nil {
		return nil, err
	}
	return tensor.Shape{3 * op.b * op.t * op.w()}, nil
}

func (op *attentionBackward) Do(vs ...G.Value) (G.Value, error) {
	if profiling.Load() {
		defer record(op.name, startClock())
	}
	in, err := op.attentionInputs("attention backward", vs)
	if err != nil {
		return nil, err
	}
	dy := in[len(in)-1]
	if want := (tensor.Shape{op.b * op.t, op.w()}); !dy.Shape().Eq(want) {
		return nil, fmt.Errorf("attention backward: dy %v, want %v", dy.Shape(), want)
	}
	n := op.b * op.t * op.w()
	p := op.outputOver(in[0].Dtype(), 3*n)
	switch in[0].Dtype() {
	case tensor.Float32:
		q, k, v := qkvOf[float32](in, op.attnDims)
		dq, dk, dv := gradsOf(slice[float32](p), op.attnDims)
		backwardCached(op.probs, dq, dk, dv, q, k, v, slice[float32](dy), op.attnDims, op.rope)
	case tensor.Float64:
		q, k, v := qkvOf[float64](in, op.attnDims)
		dq, dk, dv := gradsOf(slice[float64](p), op.attnDims)
		backwardCached(op.probs, dq, dk, dv, q, k, v, slice[float64](dy), op.attnDims, op.rope)
	default:
		return nil, fmt.Errorf("attention backward: dtype %v", in[0].Dtype())
	}
	return p, nil
}

// gradsOf returns dq, dk and dv in the packed output p: three [B·T, W]
// blocks, or, packed, columns 0, W and 2W of one [B·T, 3W] matrix.
func gradsOf[F Float](p []F, d attnDims) (dq, dk, dv []F) {
	if d.packed {
		return p, p[d.w():], p[2*d.w():]
	}
	n := d.b * d.t * d.w()
	return p[:n], p[n : 2*n], p[2*n:]
}

// probCache holds what the last forward leaves for the backward: the
// rotated q' and k' ([B·T, W] each) and the probabilities ([B·H, T, T],
// only the causal blocks valid; nil above maxCachedProbs), with which q
// and k they came from.
type probCache struct {
	mu     sync.Mutex
	p      any // []float32 or []float64, or nil
	qr, kr any // likewise
	q, k   any // &q[0], &k[0] of the forward's inputs
	filled bool
}

// maxCachedProbs caps P's cache at 2²⁵ elements (128 MB in float32, e.g.
// B=16, H=8, T=512); larger shapes (long paper-size sequences) recompute P
// rather than hold B·H·T² per layer. The rotated q' and k' are always kept:
// they are the size of q and k. A variable, so that a test can send small
// shapes down that path.
var maxCachedProbs = 1 << 25

// forwardCached runs the forward, keeping q', k' and (when not too large)
// P in c for the backward; with c nil (no backward) it keeps nothing.
func forwardCached[F Float](c *probCache, y, q, k, v []F, d attnDims, rope *ropeTable) {
	n := d.b * d.t * d.w()
	if c == nil {
		qr, kr := getScratch[F](n), getScratch[F](n)
		attentionForward(y, q, k, v, qr, kr, d, rope, nil)
		putScratch(qr)
		putScratch(kr)
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.filled = false
	var p []F
	if np := d.b * d.h * d.t * d.t; np <= maxCachedProbs {
		p = buffer[F](c.p, np)
		c.p = p
	} else {
		c.p = nil // no slice at all, not a nil one: P is not kept
	}
	qr, kr := buffer[F](c.qr, n), buffer[F](c.kr, n)
	attentionForward(y, q, k, v, qr, kr, d, rope, p)
	c.qr, c.kr = qr, kr
	c.q, c.k, c.filled = &q[0], &k[0], true
}

// backwardCached runs the backward with the forward's q', k' and P when
// the last forward ran on these q and k and no backward has used them
// since; otherwise it rotates q and k again and recomputes P (flash-style,
// the same bits). Using the cache once guards against a backward run after
// the inputs were rewritten in place without a forward.
func backwardCached[F Float](c *probCache, dq, dk, dv, q, k, v, dy []F, d attnDims, rope *ropeTable) {
	if c != nil {
		c.mu.Lock()
		defer c.mu.Unlock()
		qr, ok := c.qr.([]F)
		if ok && c.filled && c.q == any(&q[0]) && c.k == any(&k[0]) {
			c.filled = false
			p, _ := c.p.([]F)
			attentionBackwardKernel(dq, dk, dv, q, k, v, dy, qr, c.kr.([]F), true, d, rope, p)
			return
		}
	}
	n := d.b * d.t * d.w()
	qr, kr := getScratch[F](n), getScratch[F](n)
	attentionBackwardKernel(dq, dk, dv, q, k, v, dy, qr, kr, false, d, rope, nil)
	putScratch(qr)
	putScratch(kr)
}

// ---------------------------------------------------------------------------
// Kernels. Every (b, h) pair is independent: parallel.For hands contiguous
// ranges of pairs to the workers, each with its own scratch, and every pair
// writes only its own columns of its own rows, so results do not depend on
// goroutine timing. A pair's rows stay where they are in the [B·T, W]
// matrices (y, q', k', dy) and in q, k, v, dq, dk, dv (row stride ld): the
// products read and write them with those leading dimensions, so no head
// is copied out or back. (Dropping the copies, and the backward's second
// rotation of q and k, made the op about a tenth faster at dh = 32:
// docs/BENCHMARKS.md, round 15.) Within a pair the T rows are processed in
// blocks of attnBlock query rows against only the keys 0..end of the
// block, which skips most of the masked upper triangle while keeping every
// product a GEMM. Where fusedAttention holds (float32 on AVX-512), the
// products are attn_amd64.s's causal 8-row tiles over the whole head
// instead, which skip nearly all of it; the blocks then only bound each
// softmax row's room.

const attnBlock = 64

// headScratch is one worker's T×T probabilities (and their gradient),
// from the activations pool (release returns them): every float a kernel
// reads is written first, so pooled memory needs no clearing.
type headScratch[F Float] struct {
	p, dp []F // [T, T]; only the causal blocks are valid
	pOwn  []F // p's own buffer when P is not cached
	tr    []F // [dh, T]: for fusedAttention, the head's k' transposed (forward), then v (backward)
}

func newHeadScratch[F Float](d attnDims, backward, ownP bool) *headScratch[F] {
	tt := d.t * d.t
	s := &headScratch[F]{}
	if ownP {
		s.pOwn = getScratch[F](tt)
	}
	if fusedAttention[F](d) {
		s.tr = getScratch[F](d.dh * d.t)
	}
	if backward {
		s.dp = getScratch[F](tt)
	}
	return s
}

// release returns s's buffers to the pool.
func (s *headScratch[F]) release() {
	for _, b := range [][]F{s.pOwn, s.tr, s.dp} {
		if b != nil {
			putScratch(b)
		}
	}
}

// rotateHead writes head h of sequence b of x (q or k, row stride ld),
// each row rotated by its position, into dst ([B·T, W]).
func rotateHead[F Float](dst, x []F, b, h int, d attnDims, rope *ropeTable) {
	rotateRows(dst[d.at(b, h, d.w()):], d.w(), x[d.at(b, h, d.ld()):], d.ld(), d, rope, false)
}

// unrotateHead applies the RoPE backward to head h of sequence b of x (dq
// or dk, row stride ld) in place.
func unrotateHead[F Float](x []F, b, h int, d attnDims, rope *ropeTable) {
	x = x[d.at(b, h, d.ld()):]
	rotateRows(x, d.ld(), x, d.ld(), d, rope, true)
}

// rotateRows applies rotate (or unrotate) to the T rows of one head, from
// x (row stride xld) to dst (row stride dld), each starting at the head's
// first element. float32 heads go to one kernel call for all rows
// (rotateRows32x8) instead of one call per row of dh floats
// (docs/BENCHMARKS.md, round 15).
func rotateRows[F Float](dst []F, dld int, x []F, xld int, d attnDims, rope *ropeTable, back bool) {
	half := rope.half
	cos, sin := ropeAll[F](rope)
	if d32, ok := any(dst).([]float32); ok && vexpOK && half%8 == 0 && half > 0 {
		x32, c32, s32 := any(x).([]float32), any(cos).([]float32), any(sin).([]float32)
		_, _, _, _ = d32[(d.t-1)*dld+d.dh-1], x32[(d.t-1)*xld+d.dh-1], c32[d.t*half-1], s32[d.t*half-1]
		if back {
			unrotateRows32x8(&d32[0], &x32[0], &c32[0], &s32[0], d.t, dld, xld, half)
		} else {
			rotateRows32x8(&d32[0], &x32[0], &c32[0], &s32[0], d.t, dld, xld, half)
		}
		return
	}
	for t := 0; t < d.t; t++ {
		c, s := cos[t*half:(t+1)*half], sin[t*half:(t+1)*half]
		dr, xr := dst[t*dld:t*dld+d.dh], x[t*xld:t*xld+d.dh]
		if back {
			unrotate(dr, xr, c, s)
		} else {
			rotate(dr, xr, c, s)
		}
	}
}

// clearHead zeroes head h of sequence b of x (dk or dv, row stride ld).
func clearHead[F Float](x []F, b, h int, d attnDims) {
	for t, off := 0, d.at(b, h, d.ld()); t < d.t; t, off = t+1, off+d.ld() {
		clear(x[off : off+d.dh])
	}
}

// blocks calls fn for each block [r0, r1) of query rows.
func blocks(t int, fn func(r0, r1 int)) {
	for r0 := 0; r0 < t; r0 += attnBlock {
		fn(r0, min(t, r0+attnBlock))
	}
}

// BitsKernel names what decides a float32 step's bits on this machine:
// the BLAS kernel (blasKernel, blas.Info.Kernel) and, where the CPU has
// AVX-512, the causal attention tiles (fusedAttention) and, for a model
// with routed experts, the row tiles of their products (rowsProducts,
// under float32 products only: bf16 is train.products' bfloat16 setting,
// which keeps the experts on the library's path, rowTiles), whose sums
// run in another order than the library's. Runs record it, and a run
// resumed where it differs warns that it continues, but not bit for bit.
func BitsKernel(blasKernel string, routed, bf16 bool) string {
	s := blasKernel
	if vexp512 {
		s += "; attention: AVX-512 tiles"
	}
	if routed && rowsProducts && !bf16 {
		s += "; expert rows: AVX-512 tiles"
	}
	return s
}

// fusedAttention reports whether a head's forward products (the scores
// and P·V) run on attn_amd64.s's causal kernels instead of per-block
// GEMMs: float32 on AVX-512, with dh and T multiples of 16 (so every
// block's rows end on a kernel chunk). The GEMMs compute whole blocks,
// the diagonal ones half masked: at T = 128 in blocks of 64, 12,288
// scores a head where the causal triangle has 8,256; the kernels compute
// 8-row tiles up to the diagonal, 9,216 (docs/BENCHMARKS.md, round 16).
func fusedAttention[F Float](d attnDims) bool {
	var z F
	_, f32 := any(z).(float32)
	return f32 && vexp512 && d.dh%16 == 0 && d.t%16 == 0
}

// probabilities fills s.p with the causal softmax of q'k'ᵀ·scale, for qr
// and kr one head's q' and k' (row stride W). Row i of block [r0, r1) is
// valid in columns 0..r1−1 (zero beyond i).
func probabilities[F Float](s *headScratch[F], qr, kr []F, d attnDims) {
	T, dh, W := d.t, d.dh, d.w()
	if s.tr != nil {
		q32, k32, kt, p := any(qr).([]float32), any(kr).([]float32), any(s.tr).([]float32), any(s.p).([]float32)
		_, _, _ = q32[(T-1)*W+dh-1], k32[(T-1)*W+dh-1], p[T*T-1] // bounds of what the kernels read and write
		transpose8x8Blocks(&kt[0], T, &k32[0], W, T, dh)
		causalScores32(&p[0], T, &q32[0], W, &kt[0], T, T, 0, dh, float32(d.scale))
		causalSoftmax32(p, T)
		return
	}
	blocks(T, func(r0, r1 int) {
		blas.Gemm(false, true, r1-r0, r1, dh, F(d.scale), qr[r0*W:], W, kr, W, 0, s.p[r0*T:], T)
	})
	if p, ok := any(s.p).([]float32); ok {
		causalSoftmax32(p, T)
		return
	}
	for i := 0; i < T; i++ {
		softmaxRow(s.p[i*T:i*T+i+1], s.p[i*T:i*T+i+1])
		clear(s.p[i*T+i+1 : i*T+min(T, (i/attnBlock+1)*attnBlock)])
	}
}

// causalSoftmax32 applies softmaxRow32 to row i's first i+1 scores of
// p [T, T] for every i, clearing the rest of the row up to its block's
// end, which serves as the row's room first. Rows of eight or more with
// room to whole vectors go to causalRows32x8, one call per block in
// softmaxRow32's order (the same bits): with softmaxRow32's wrappers, six
// calls a row, and then one call per block for the exponentials, the
// softmax was still ~30% of the attention forward (docs/BENCHMARKS.md,
// rounds 15 and 16). Other rows, and rows with a NaN, take softmaxRow32.
func causalSoftmax32(p []float32, T int) {
	var nan [attnBlock]bool
	for r0 := 0; r0 < T; r0 += attnBlock {
		r1 := min(T, r0+attnBlock) // the block's rows, and where their room ends
		// Rows [lo, hi) have i+1 ≥ 8 and (i+1+7)&^7 ≤ r1.
		lo, hi := r0, r0
		if vexpOK {
			lo, hi = max(r0, 7), r1&^7
			if hi > lo {
				causalRows32x8(&p[lo*T], &nan[0], hi-lo, T, lo+1, r1)
			}
		}
		for i := r0; i < r1; i++ {
			if i >= lo && i < hi && !nan[i-lo] {
				continue
			}
			row, n := p[i*T:i*T+r1], i+1
			softmaxRow32(row[:n], row)
			clear(row[n:])
		}
	}
}

// normalizeRow divides the exponentials x by their float64 sum (rowSum):
// softmaxRow32's last step.
func normalizeRow(x []float32) { scale32(x, float32(1/rowSum(x))) }

// softmaxRow replaces x with softmax(x), subtracting the row max first and
// summing in float64, so scores of any size stay finite. float32 rows use
// exp32, eight lanes at a time (exp32s; math.Exp made the softmax ~45% of
// this op's float32 forward and backward, scalar exp32 halved that).
// room is x extended by elements the caller discards (x itself for none):
// the elementwise passes may run over it to a multiple of eight lanes
// instead of ending in scalar exp32 calls; x's values do not change.
func softmaxRow[F Float](x, room []F) {
	switch r := any(x).(type) {
	case []float32:
		softmaxRow32(r, any(room).([]float32))
	case []float64:
		softmaxRow64(r)
	}
}

func softmaxRow64(x []float64) {
	m := x[0]
	for _, v := range x[1:] {
		m = max(m, v)
	}
	var sum float64
	for j, v := range x {
		e := math.Exp(v - m)
		x[j] = e
		sum += e
	}
	inv := 1 / sum
	for j := range x {
		x[j] *= inv
	}
}

func softmaxRow32(x, room []float32) {
	expShifted32(x, room)
	normalizeRow(x)
}

// expShifted32 sets x = exp32(x − max x), running over room (see
// softmaxRow) to whole vectors when it can.
func expShifted32(x, room []float32) {
	m := maxForShift(x)
	if w := (len(x) + 7) &^ 7; vexpOK && w <= len(room) {
		shift(room[:w], m)
		exp32s(room[:w], room[:w])
	} else {
		shift(x, m)
		exp32s(x, x)
	}
}

// exp32 is e^x for x ≤ 0 (softmax after subtracting the max; larger x is
// clamped at 88) within ~2 ulp of float32: Cephes expf's range reduction
// x = n·ln2 + r, |r| ≤ ln2/2, and its degree-7 polynomial for e^r. Results
// below the smallest normal float32 flush to 0.
func exp32(x float32) float32 {
	const (
		log2e = 1.44269504088896341
		ln2Hi = 0.693359375
		ln2Lo = -2.12194440e-4
	)
	if x < -87.33654 {
		return 0
	}
	if x > 88 {
		x = 88
	}
	y := x * log2e
	var ni int32 // round to nearest; int32() truncates towards zero
	if y < 0 {
		ni = int32(y - 0.5)
	} else {
		ni = int32(y + 0.5)
	}
	n := float32(ni)
	r := x - n*ln2Hi - n*ln2Lo
	p := float32(1.9875691500e-4)
	p = p*r + 1.3981999507e-3
	p = p*r + 8.3334519073e-3
	p = p*r + 4.1665795894e-2
	p = p*r + 1.6666665459e-1
	p = p*r + 5.0000001201e-1
	p = p*r*r + r + 1
	return p * math.Float32frombits(uint32(ni+127)<<23)
}

// attentionForward writes the output to y and each head's q' and k' to qr
// and kr ([B·T, W]). When probs is not nil it receives each head's P
// ([B·H, T, T]); otherwise a scratch buffer is used.
func attentionForward[F Float](y, q, k, v, qr, kr []F, d attnDims, rope *ropeTable, probs []F) {
	T, dh, W, ld := d.t, d.dh, d.w(), d.ld()
	parallel.For(d.b*d.h, 1, func(lo, hi int) {
		s := newHeadScratch[F](d, false, probs == nil)
		defer s.release()
		for bh := lo; bh < hi; bh++ {
			b, h := bh/d.h, bh%d.h
			o, oi := d.at(b, h, W), d.at(b, h, ld) // in y, qr, kr; in q, k, v
			s.p = s.pOwn
			if probs != nil {
				s.p = probs[bh*T*T : (bh+1)*T*T]
			}
			rotateHead(qr, q, b, h, d, rope)
			rotateHead(kr, k, b, h, d, rope)
			probabilities(s, qr[o:], kr[o:], d)
			if s.tr != nil {
				y32, p, v32 := any(y[o:]).([]float32), any(s.p).([]float32), any(v[oi:]).([]float32)
				_, _ = y32[(T-1)*W+dh-1], v32[(T-1)*ld+dh-1]
				causalPV32(&y32[0], W, &p[0], T, &v32[0], ld, T, 0, dh, 1)
				continue
			}
			blocks(T, func(r0, r1 int) {
				blas.Gemm(false, false, r1-r0, dh, r1, 1, s.p[r0*T:], T, v[oi:], ld, 0, y[o+r0*W:], W)
			})
		}
	})
}

// attentionBackwardKernel: with O = P·V, P = softmax(S), S = q'k'ᵀ·scale,
// dV = Pᵀ·dO, dP = dO·Vᵀ, dS_ij = P_ij (dP_ij − Σ_l P_il dP_il),
// dq' = scale·dS·k', dk' = scale·dSᵀ·q', and dq, dk are dq', dk' rotated
// back. Sums over query blocks are added in block order. qr and kr hold
// q' and k' when rotated is set, else they are filled here; probs is the
// forward's P ([B·H, T, T]) or nil to recompute it.
func attentionBackwardKernel[F Float](dq, dk, dv, q, k, v, dy, qr, kr []F, rotated bool, d attnDims, rope *ropeTable, probs []F) {
	T, dh, W, ld := d.t, d.dh, d.w(), d.ld()
	sc := F(d.scale)
	parallel.For(d.b*d.h, 1, func(lo, hi int) {
		s := newHeadScratch[F](d, true, probs == nil)
		defer s.release()
		for bh := lo; bh < hi; bh++ {
			b, h := bh/d.h, bh%d.h
			o, oi := d.at(b, h, W), d.at(b, h, ld) // in qr, kr, dy; in v, dq, dk, dv
			if !rotated {
				rotateHead(qr, q, b, h, d, rope)
				rotateHead(kr, k, b, h, d, rope)
			}
			if probs != nil {
				s.p = probs[bh*T*T : (bh+1)*T*T]
			} else {
				s.p = s.pOwn
				probabilities(s, qr[o:], kr[o:], d)
			}
			if s.tr != nil {
				f32 := func(x []F) []float32 { return any(x).([]float32) }
				headBackward32(any(s).(*headScratch[float32]), f32(dq[oi:]), f32(dk[oi:]), f32(dv[oi:]), f32(qr[o:]), f32(kr[o:]), f32(v[oi:]), f32(dy[o:]), d, float32(sc))
				unrotateHead(dq, b, h, d, rope)
				unrotateHead(dk, b, h, d, rope)
				continue
			}
			clearHead(dv, b, h, d)
			clearHead(dk, b, h, d)
			blocks(T, func(r0, r1 int) {
				m := r1 - r0
				dO := dy[o+r0*W:]
				blas.Gemm(true, false, r1, dh, m, 1, s.p[r0*T:], T, dO, W, 1, dv[oi:], ld)
				blas.Gemm(false, true, m, r1, dh, 1, dO, W, v[oi:], ld, 0, s.dp[r0*T:], T)
				for i := r0; i < r1; i++ {
					dot := rowDot(s.p[i*T:i*T+i+1], s.dp[i*T:])
					dsoftmax(s.dp[i*T:i*T+i+1], s.p[i*T:i*T+i+1], F(dot))
					clear(s.dp[i*T+i+1 : i*T+r1])
				}
				blas.Gemm(false, false, m, dh, r1, sc, s.dp[r0*T:], T, kr[o:], W, 0, dq[oi+r0*ld:], ld)
				blas.Gemm(true, false, r1, dh, m, sc, s.dp[r0*T:], T, qr[o+r0*W:], W, 1, dk[oi:], ld)
			})
			unrotateHead(dq, b, h, d, rope)
			unrotateHead(dk, b, h, d, rope)
		}
	})
}

// headBackward32 is attentionBackwardKernel's head on the fused kernels
// (fusedAttention), over the whole head at once rather than in blocks:
// dP = dO·Vᵀ in causal tiles (causalScores32 against v transposed, in
// s.tr: P is already formed), dS row by row as the blocked path forms it
// (dsoftmax with rowDot, then zeros up to the row's tile end, all rows in
// one call: dsoftmaxRows32x8), dq' = scale·dS·k' (causalPV32), and
// dk' = scale·dSᵀ·q', dV = Pᵀ·dO (causalPTB32), written rather than
// summed over blocks, so dk and dv need no clearing first. Each slice
// starts at the head's first element (dq, dk, dv, v with row stride ld;
// q', k', dy with W). Kernels read P and dS up to each row's 8-row tile
// end past its diagonal, which the softmax and dsoftmaxRows32x8 leave
// zero.
func headBackward32(s *headScratch[float32], dq, dk, dv, qr, kr, v, dy []float32, d attnDims, sc float32) {
	T, dh, W, ld := d.t, d.dh, d.w(), d.ld()
	p, dp, vt := s.p, s.dp, s.tr
	last, lastIn := (T-1)*ld+dh-1, (T-1)*W+dh-1
	_, _, _, _, _, _, _, _, _ = dq[last], dk[last], dv[last], v[last], qr[lastIn], kr[lastIn], dy[lastIn], dp[T*T-1], p[T*T-1]
	transpose8x8Blocks(&vt[0], T, &v[0], ld, T, dh)
	causalScores32(&dp[0], T, &dy[0], W, &vt[0], T, T, 0, dh, 1)
	dsoftmaxRows32x8(&dp[0], &p[0], T, T, 1, true)
	causalPV32(&dq[0], ld, &dp[0], T, &kr[0], W, T, 0, dh, sc)
	causalPTB32(&dk[0], ld, &dp[0], T, &qr[0], W, T, dh, sc)
	causalPTB32(&dv[0], ld, &p[0], T, &dy[0], W, T, dh, 1)
}

// AttendOne computes one decoding step of causal attention for incremental
// generation with a KV cache: q is the current token's [heads·dh] query,
// already rotated with ApplyRoPE at its position; kCache and vCache hold the
// n cached tokens' rotated keys and values, laid out [n, heads·dh], the last
// of which is the current token. out ([heads·dh]) receives softmax(q·kᵀ/sqrt(dh))·v
// per head, equal (up to summation order) to the Attention op's row for that
// position. It panics if the slices are shorter than these sizes or n < 1.
func AttendOne[F Float](out, q, kCache, vCache []F, n, heads, dh int) {
	w := heads * dh
	if n < 1 || len(out) < w || len(q) < w || len(kCache) < n*w || len(vCache) < n*w {
		panic(fmt.Sprintf("ops: AttendOne: n %d, heads %d, dh %d, len(out) %d, len(q) %d, len(kCache) %d, len(vCache) %d",
			n, heads, dh, len(out), len(q), len(kCache), len(vCache)))
	}
	scale := 1 / math.Sqrt(float64(dh))
	p := make([]float64, n)
	acc := make([]float64, dh)
	for h := range heads {
		qh := q[h*dh : (h+1)*dh]
		m := math.Inf(-1)
		for j := range n {
			kj := kCache[j*w+h*dh : j*w+(h+1)*dh]
			var dot float64
			for i, x := range qh {
				dot += float64(x) * float64(kj[i])
			}
			p[j] = dot * scale
			m = max(m, p[j])
		}
		var sum float64
		for j := range p {
			p[j] = math.Exp(p[j] - m)
			sum += p[j]
		}
		clear(acc)
		for j, pj := range p {
			vj := vCache[j*w+h*dh : j*w+(h+1)*dh]
			for i, x := range vj {
				acc[i] += pj * float64(x)
			}
		}
		for i, a := range acc {
			out[h*dh+i] = F(a / sum)
		}
	}
}
