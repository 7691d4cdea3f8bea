package ops

import (
	"fmt"
	"slices"
	"sync"

	"github.com/chewxy/hm"
	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"

	"github.com/moetrain/moetrain/internal/blas"
	"github.com/moetrain/moetrain/internal/parallel"
)

// MoE is the routed part of an MoE layer (DESIGN.md §2.1-§2.3):
//
//	y_t = Σ_{j<k} g_{t,j} · SwiGLU_{e_{t,j}}(u_t),  SwiGLU_e(x) = Wd_e (silu(Wg_e x) ⊙ (Wu_e x))
//
// for u [N, D], router probabilities probs [N, E], wg and wu [E, W, D] (each
// expert's gate and up projections in PyTorch's [out, in] layout, stacked)
// and wd [E, D, W]. The experts e_{t,·} are TopK(probs_t, k); the gates are
// the raw probabilities, or renormalised to sum 1 over the k choices when
// renorm is set and k > 1 (see Route). Switch is k=1, renorm=false;
// DeepSeekMoE any k, renorm=false; GShard k=2, renorm=true.
//
// Compute follows the activated experts: each expert's tokens are gathered
// into a contiguous block and go through three GEMMs, so the cost is that of
// N·k token-expert pairs. Results do not depend on the worker count.
//
// The gradient reaches u, probs (only at each token's chosen experts; the
// selection itself has none) and the three weight tensors.
func MoE(u, probs, wg, wu, wd *G.Node, k int, renorm bool) (*G.Node, error) {
	return MoEWithRecord(u, probs, wg, wu, wd, k, renorm, nil)
}

// MoEWithRecord is MoE that also writes each forward pass's routing into rec
// (nil for none).
func MoEWithRecord(u, probs, wg, wu, wd *G.Node, k int, renorm bool, rec *RouteRecord) (*G.Node, error) {
	return MoEGated(u, probs, wg, wu, wd, nil, Gating{K: k, Renorm: renorm}, rec)
}

// MoEGated is MoEWithRecord with the whole Gating (renormalisation, gate
// scale) and, when bias is not nil, a per-expert selection bias [E] added to
// the scores for the top-k choice only (RouteGated). The bias is read, never
// differentiated: auxiliary-loss-free balancing moves it outside the graph.
// probs may be any non-negative scores (softmax or sigmoid).
func MoEGated(u, probs, wg, wu, wd, bias *G.Node, g Gating, rec *RouteRecord) (*G.Node, error) {
	return MoEGatedShared(u, probs, wg, wu, wd, bias, nil, nil, nil, g, rec)
}

// MoEGatedShared is MoEGated plus a DeepSeekMoE layer's shared experts,
// merged into one SwiGLU (sg and su [Fs, D], sd [D, Fs]; all nil for
// none), in the same op: each token's row starts from the shared experts'
// output (SwiGLU's kernels) and adds its routed experts' gated outputs in
// the pass that sums them anyway, and in the backward the shared experts'
// dx is where each token's du starts. As a SwiGLU op beside it, the
// shared output crossed memory once more and u's gradient took one more
// addition over [N, D] a layer (about 0.3 ms of a science step's
// additions; docs/BENCHMARKS.md, round 19).
func MoEGatedShared(u, probs, wg, wu, wd, bias, sg, su, sd *G.Node, g Gating, rec *RouteRecord) (*G.Node, error) {
	if g.K < 1 {
		return nil, fmt.Errorf("MoE: k = %d, want >= 1", g.K)
	}
	if (sg == nil) != (su == nil) || (sg == nil) != (sd == nil) {
		return nil, fmt.Errorf("MoE: shared experts need gate, up and down weights, or none")
	}
	op := &moeOp{
		base:   base{name: "MoE", arity: 5, key: g.key()},
		k:      g.K,
		gating: g,
		rec:    rec,
		cache:  &expertCache{},
	}
	in := G.Nodes{u, probs, wg, wu, wd}
	if bias != nil {
		op.arity, op.bias, op.key = op.arity+1, true, op.key+",bias"
		in = append(in, bias)
	}
	if sg != nil {
		op.arity, op.shared, op.key = op.arity+3, &swigluCache{}, op.key+",shared"
		in = append(in, sg, su, sd)
	}
	return G.ApplyOp(op, in...)
}

type moeOp struct {
	base
	k      int
	gating Gating
	bias   bool // a sixth input: the selection bias [E]
	// shared, when not nil, marks three last inputs, the shared experts'
	// gate, up and down weights (MoEGatedShared), and carries their
	// forward's hidden matrices to the backward.
	shared *swigluCache
	rec    *RouteRecord
	share  *SharedTopK // see ShareTopK; nil: select alone
	// differentiated is set when SymDiff built a backward for this op. An
	// op without one (an evaluation graph) keeps no activations for it.
	differentiated bool
	// cache carries the routing and the expert activations from a forward
	// pass to the backward pass of the same run (see expertCache).
	cache *expertCache
}

func (op *moeOp) Type() hm.Type {
	dims := []int{2, 2, 3, 3, 3}
	if op.bias {
		dims = append(dims, 1)
	}
	if op.shared != nil {
		dims = append(dims, 2, 2, 2)
	}
	return fnType(append(dims, 2)...)
}

func (op *moeOp) InferShape(ds ...G.DimSizer) (tensor.Shape, error) {
	s, err := shapesOf(ds)
	if err != nil {
		return nil, err
	}
	if err := checkExpertShapes("MoE", s[0], s[2], s[3], s[4]); err != nil {
		return nil, err
	}
	u, p, e := s[0], s[1], s[2][0]
	if p.Dims() != 2 || p[0] != u[0] || p[1] != e {
		return nil, fmt.Errorf("MoE: probs %v with u %v and %d experts: want [N, E] = [%d, %d]", p, u, e, u[0], e)
	}
	if op.k > e {
		return nil, fmt.Errorf("MoE: k = %d > %d experts", op.k, e)
	}
	if op.bias && (s[5].Dims() != 1 || s[5][0] != e) {
		return nil, fmt.Errorf("MoE: bias %v with %d experts: want [%d]", s[5], e, e)
	}
	if op.shared != nil {
		if err := swigluShapes(append([]tensor.Shape{u}, s[len(s)-3:]...)); err != nil {
			return nil, fmt.Errorf("MoE shared experts: %w", err)
		}
	}
	return u.Clone(), nil
}

// sharedInputs returns (x, wg, wu, wd) of the shared experts' SwiGLU from
// an MoE op's inputs (u first, the shared weights last).
func sharedInputs(in []*tensor.Dense) []*tensor.Dense {
	return []*tensor.Dense{in[0], in[len(in)-3], in[len(in)-2], in[len(in)-1]}
}

// sharedForward sets y to the shared experts' output when op has them
// (the rows the routed experts' sum starts from) and reports whether it
// did: in blocks that keep nothing in an evaluation graph, as the SwiGLU
// op does.
func sharedForward[F Float](op *moeOp, y []F, in []*tensor.Dense, n, d int, pt *phaseTimer) bool {
	if op.shared == nil {
		return false
	}
	sh := sharedInputs(in)
	f := sh[1].Shape()[0]
	swigluOpForward(op.shared, !op.differentiated && swigluBlocked(in[0].Dtype(), d, f), y, sh, n, d, f)
	pt.mark("shared experts")
	return true
}

// biasOf returns the selection bias input (the sixth) as []F, or nil.
func biasOf[F Float](in []*tensor.Dense, has bool) []F {
	if !has {
		return nil
	}
	return slice[F](in[5])
}

// checkExpertShapes validates u [N, D], wg and wu [E, W, D], wd [E, D, W].
func checkExpertShapes(name string, u, wg, wu, wd tensor.Shape) error {
	if u.Dims() != 2 || wg.Dims() != 3 || wu.Dims() != 3 || wd.Dims() != 3 {
		return fmt.Errorf("%s: u %v, wg %v, wu %v, wd %v: want [N, D], [E, W, D], [E, W, D], [E, D, W]", name, u, wg, wu, wd)
	}
	e, w, d := wg[0], wg[1], wg[2]
	if d != u[1] || !wu.Eq(wg) || wd[0] != e || wd[1] != d || wd[2] != w || e < 1 {
		return fmt.Errorf("%s: u %v, wg %v, wu %v, wd %v: want [N, D], [E, W, D], [E, W, D], [E, D, W]", name, u, wg, wu, wd)
	}
	return nil
}

func (op *moeOp) Do(vs ...G.Value) (G.Value, error) {
	if profiling.Load() {
		defer record(op.name, startClock())
	}
	in, err := inputs(op.name, vs)
	if err != nil {
		return nil, err
	}
	u, probs := in[0], in[1]
	n, d := u.Shape()[0], u.Shape()[1]
	e, w := in[2].Shape()[0], in[2].Shape()[1]
	y := op.outputOver(u.Dtype(), n, d) // expertsForward writes every row
	if err := sameDtype(op.name, in); err != nil {
		return nil, err
	}
	var r Routing
	pt := startPhases(op.name)
	switch u.Dtype() {
	case tensor.Float32:
		r = routeShared(op.share, slice[float32](probs), biasOf[float32](in, op.bias), n, e, op.gating)
		pt.mark("routing")
		start := sharedForward(op, slice[float32](y), in, n, d, pt)
		expertsForward(op.cache, op.differentiated, in[:5], r, slice[float32](y), start, d, w, pt)
	case tensor.Float64:
		r = routeShared(op.share, slice[float64](probs), biasOf[float64](in, op.bias), n, e, op.gating)
		pt.mark("routing")
		start := sharedForward(op, slice[float64](y), in, n, d, pt)
		expertsForward(op.cache, op.differentiated, in[:5], r, slice[float64](y), start, d, w, pt)
	default:
		return nil, fmt.Errorf("MoE: dtype %v", u.Dtype())
	}
	op.rec.store(&r)
	if !op.differentiated {
		r.release() // the cache kept none of it (an evaluation graph)
	}
	return y, nil
}

func (op *moeOp) DiffWRT(int) []bool { return moeDiff(op.bias, op.shared != nil) }

// moeDiff is which inputs of an MoE op take gradients: all but the bias.
func moeDiff(bias, shared bool) []bool {
	diff := []bool{true, true, true, true, true}
	if bias {
		diff = append(diff, false)
	}
	if shared {
		diff = append(diff, true, true, true)
	}
	return diff
}

func (op *moeOp) SymDiff(in G.Nodes, out, grad *G.Node) (G.Nodes, error) {
	op.differentiated = true
	bwd := &moeBackward{base: base{name: "MoEBackward", arity: 6, key: op.key}, k: op.k, gating: op.gating, cache: op.cache, shared: op.shared}
	children := G.Nodes{in[0], in[1], in[2], in[3], in[4], grad}
	if op.bias {
		bwd.arity, bwd.bias = bwd.arity+1, true
		children = append(children, in[5])
	}
	if op.shared != nil {
		bwd.arity = bwd.arity + 3
		children = append(children, in[len(in)-3:]...)
	}
	return packedGrads(bwd, children, in, moeDiff(op.bias, op.shared != nil))
}

// moeBackward packs [du (N·D) | dprobs (N·E) | dwg | dwu | dwd[ | dsg |
// dsu | dsd]] from (u, probs, wg, wu, wd, dy[, bias][, sg, su, sd]).
type moeBackward struct {
	base
	k      int
	gating Gating
	bias   bool
	cache  *expertCache
	shared *swigluCache // the forward's, when the op has shared experts
}

func (op *moeBackward) Type() hm.Type {
	dims := []int{2, 2, 3, 3, 3, 2}
	if op.bias {
		dims = append(dims, 1)
	}
	if op.shared != nil {
		dims = append(dims, 2, 2, 2)
	}
	return fnType(append(dims, 1)...)
}

func (op *moeBackward) InferShape(ds ...G.DimSizer) (tensor.Shape, error) {
	s, err := shapesOf(ds)
	if err != nil {
		return nil, err
	}
	n := packedSize(s[:5], []bool{true, true, true, true, true})
	if op.shared != nil {
		n += packedSize(s[len(s)-3:], []bool{true, true, true})
	}
	return tensor.Shape{n}, nil
}

func (op *moeBackward) Do(vs ...G.Value) (G.Value, error) {
	if profiling.Load() {
		defer record(op.name, startClock())
	}
	in, err := inputs(op.name, vs)
	if err != nil {
		return nil, err
	}
	if err := sameDtype(op.name, in); err != nil {
		return nil, err
	}
	u, probs, dy := in[0], in[1], in[5]
	n, d := u.Shape()[0], u.Shape()[1]
	e, w := in[2].Shape()[0], in[2].Shape()[1]
	sizes := []int{n * d, n * e, e * w * d, e * w * d, e * d * w}
	if op.shared != nil {
		f := in[len(in)-3].Shape()[0]
		sizes = append(sizes, 2*f*d, d*f) // [dsg; dsu] as one piece (SwiGLU's layout), dsd
	}
	// Not zeroed here: moeBackwardTyped zeroes what its kernels do not
	// overwrite (du and dprobs, which they add to or write sparsely, and the
	// weight gradients of experts without tokens), instead of clearing the
	// three [E, ·, ·] weight gradients that are then written over.
	total := 0
	for _, size := range sizes {
		total += size
	}
	p := op.outputOver(u.Dtype(), total)
	pt := startPhases(op.name)
	switch u.Dtype() {
	case tensor.Float32:
		moeBackwardTyped(op, in, backwardBias[float32](in, op.bias), slice[float32](probs), slice[float32](dy), split(slice[float32](p), sizes), n, e, d, w, pt)
	case tensor.Float64:
		moeBackwardTyped(op, in, backwardBias[float64](in, op.bias), slice[float64](probs), slice[float64](dy), split(slice[float64](p), sizes), n, e, d, w, pt)
	default:
		return nil, fmt.Errorf("MoEBackward: dtype %v", u.Dtype())
	}
	return p, nil
}

// moeBackwardTyped fills the gradients g (sizes as moeBackward packs
// them) from the backward op's inputs in, marking its parts on pt.
func moeBackwardTyped[F Float](op *moeBackward, in []*tensor.Dense, bias, probs, dy []F, g [][]F, n, e, d, w int, pt *phaseTimer) {
	if op.shared != nil {
		// du starts as the shared experts' dx; expertsBackward adds the
		// routed experts' to it.
		sh := in[len(in)-3:]
		f := sh[0].Shape()[0]
		swigluBackwardKernel(op.shared, g[0], g[5], g[6], slice[F](in[0]), slice[F](sh[0]), slice[F](sh[1]), slice[F](sh[2]), dy, n, d, f)
		pt.mark("shared experts")
	}
	in = in[:5]
	r, act := op.cache.load(in)
	if act == nil {
		// No forward pass of these inputs to reuse: route and recompute.
		r = RouteGated(probs, bias, n, e, op.gating)
		act = expertsActivations[F](nil, r, slice[F](in[0]), slice[F](in[2]), slice[F](in[3]), d, w)
	}
	a, ok := act.(*expertAct[F])
	if !ok {
		panic(fmt.Sprintf("ops: MoE cache holds %T", act))
	}
	clear(g[1]) // g[0], du, expertsBackward writes whole
	clearIdleExperts(g[2], g[3], g[4], r, w, d)
	// Pooled, not made: a fresh [N·K] buffer a layer cost page faults
	// every step. Zeroed, since dropped slots get no dgate from experts.
	dgate := poolGet[float64](&activations, n*r.K)
	defer poolPut(&activations, dgate)
	clear(dgate)
	expertsBackward(g[0], op.shared != nil, dgate, g[2], g[3], g[4], a, r, slice[F](in[0]), dy, slice[F](in[2]), slice[F](in[3]), slice[F](in[4]), d, w, pt)
	gateBackward(g[1], dgate, probs, r, op.gating)
	pt.mark("gate gradients")
}

// clearIdleExperts zeroes the weight gradients of the experts r sends no
// token to: expertsBackward writes those of every other expert whole, so a
// backward's packed output needs no clearing beyond this.
func clearIdleExperts[F Float](dwg, dwu, dwd []F, r Routing, w, d int) {
	for x := 0; x < r.E; x++ {
		if r.Load(x) == 0 {
			clear(dwg[x*w*d : (x+1)*w*d])
			clear(dwu[x*w*d : (x+1)*w*d])
			clear(dwd[x*d*w : (x+1)*d*w])
		}
	}
}

// backwardBias returns the bias input of an MoE backward op (its seventh,
// after dy), or nil.
func backwardBias[F Float](in []*tensor.Dense, has bool) []F {
	if !has {
		return nil
	}
	return slice[F](in[6])
}

// gateBackward turns the gradients of the gates (dgate, per slot) into the
// gradient of the probabilities. Without renormalisation g = c·p at the
// chosen experts (c the gate scale). With it g_j = c·p_j/Z, Z = Σ_i p_i + ε
// over the chosen set, so ∂L/∂p_j = c·(a_j/Z − Σ_i a_i p_i / Z²). Unchosen
// experts get zero; so does the selection bias, which only picks.
func gateBackward[F Float](dprobs []F, dgate []float64, probs []F, r Routing, gating Gating) {
	k, e := r.K, r.E
	renorm, c := gating.renorm(), gating.scale()
	if c != 1 {
		for i := range dgate {
			dgate[i] *= c
		}
	}
	parallel.For(r.N, 256, func(lo, hi int) {
		for t := lo; t < hi; t++ {
			idx, a := r.Experts[t*k:(t+1)*k], dgate[t*k:(t+1)*k]
			row, dp := probs[t*e:(t+1)*e], dprobs[t*e:(t+1)*e]
			if !renorm {
				for j, x := range idx {
					dp[x] = F(a[j])
				}
				continue
			}
			var z, c float64
			for _, x := range idx {
				z += float64(row[x])
			}
			z += renormEps
			for j, x := range idx {
				c += a[j] * float64(row[x])
			}
			c /= z * z
			for j, x := range idx {
				dp[x] = F(a[j]/z - c)
			}
		}
	})
}

// split cuts p into consecutive pieces of the given sizes.
func split[F Float](p []F, sizes []int) [][]F {
	out := make([][]F, len(sizes))
	off := 0
	for i, s := range sizes {
		out[i] = p[off : off+s : off+s]
		off += s
	}
	return out
}

func sameDtype(name string, in []*tensor.Dense) error {
	dt := in[0].Dtype()
	for _, t := range in[1:] {
		if t.Dtype() != dt && t.Dtype() != tensor.Int {
			return fmt.Errorf("%s: mixed dtypes %v and %v", name, dt, t.Dtype())
		}
	}
	return nil
}

// ---------------------------------------------------------------------------
// Expert kernels shared by MoE and HashMoE.

// expertAct holds what the backward pass needs from the forward pass, in the
// expert-major slot order of a Routing (S = N·K rows). The gate and up
// projections of an expert run as one product against its stacked
// [Wg_e; Wu_e] (as SwiGLU does), so each slot's two pre-activations sit
// side by side, and the backward forms dx with one product over k = 2W:
// 6 GEMM calls per expert per forward+backward instead of 9, which pays
// for the many small products of fine-grained experts. The inputs are not
// kept per slot: on the row tiles (expertTiles) the products read an
// expert's rows of u where they lie, in the forward and the backward;
// elsewhere the backward gathers them again, from the [N, D] input (in
// cache) into a buffer of the expert's own size, rather than holding and
// reading back an [S, D] copy, K times the input, from memory.
type expertAct[F Float] struct {
	gu []F // [S, 2W]: row p is [Wg·x_p | Wu·x_p], gate and up pre-activations
	sg []F // [S, W] sigmoid of the gate pre-activations
}

// stackedExpert copies expert e's [W, D] gate and up matrices into one
// [2W, D] buffer from the stacks pool (poolPut it there after use). The copy
// (2·W·D floats) is made per pass rather than kept, so the stacked weights
// never add to the memory a layer holds between steps.
func stackedExpert[F Float](wg, wu []F, e, w, d int) []F {
	st := poolGet[F](&stacks, 2*w*d)
	copy(st[:w*d], wg[e*w*d:(e+1)*w*d])
	copy(st[w*d:], wu[e*w*d:(e+1)*w*d])
	return st
}

// hidden writes h = silu(g)⊙up for slots lo..hi−1 into h ([hi−lo, W]).
func (a *expertAct[F]) hidden(h []F, lo, hi, w int) {
	hiddenRows(h, a.gu[2*lo*w:2*hi*w], a.sg[lo*w:hi*w], hi-lo, w)
}

// grow sizes a's buffers for s slots.
func (a *expertAct[F]) grow(s, w int) {
	a.gu, a.sg = grow(a.gu, 2*s*w), grow(a.sg, s*w)
}

// gatherRows copies the inputs of slots lo..hi−1 (rows of u, token-major)
// into x [hi−lo, D].
func gatherRows[F Float](x []F, r *Routing, lo, hi int, u []F, d int) {
	for p := lo; p < hi; p++ {
		t := int(r.Slots[p]) / r.K
		copy(x[(p-lo)*d:(p-lo+1)*d], u[t*d:(t+1)*d])
	}
}

// project forms the gate and up pre-activations of expert e's tokens
// (slots lo..hi−1) in gu [c, 2W]: through projectRows on the row tiles
// (tiles, the caller's expertTiles; x is then unused), else by gathering
// the tokens into x [c, D] for one product against the stacked
// [Wg_e; Wu_e].
func project[F Float](tiles bool, x, gu []F, r *Routing, e, lo, hi int, u, wg, wu []F, d, w int) {
	c := hi - lo
	if tiles {
		projectRows(any(gu).([]float32), r, e, lo, hi, any(u).([]float32), any(wg).([]float32), any(wu).([]float32), d, w)
		return
	}
	gatherRows(x, r, lo, hi, u, d)
	wgu := stackedExpert(wg, wu, e, w, d)
	expertMatMul[F](c, r.N*r.K, w, d)(false, true, c, 2*w, d, x, wgu, gu, false)
	poolPut(&stacks, wgu)
}

// expertsActivations gathers each expert's tokens, stacks its gate and up
// weights and computes both projections (and sigmoid of the gate) into a
// (reused when big enough).
func expertsActivations[F Float](a *expertAct[F], r Routing, u, wg, wu []F, d, w int) *expertAct[F] {
	if a == nil {
		a = &expertAct[F]{}
	}
	a.grow(r.Kept(), w)
	forEachExpert(&r, w, d, func(e, lo, hi int) {
		tiles := expertTiles[F](hi-lo, r.N*r.K, w, d)
		var x []F // gathered inputs, where the products do not read them in place
		if !tiles {
			x = poolGet[F](&stacks, (hi-lo)*d)
			defer poolPut(&stacks, x)
		}
		project(tiles, x, a.gu[2*lo*w:2*hi*w], &r, e, lo, hi, u, wg, wu, d, w)
		for p := lo; p < hi; p++ {
			sigmoids(a.sg[p*w:(p+1)*w], a.gu[2*p*w:(2*p+1)*w])
		}
	})
	return a
}

// expertsForward computes y (token-major [N, D], every row written: a
// token whose slots were all dropped gets zeros, or, when start is set,
// keeps the row y holds, which every row then starts from: the shared
// experts' output) and, when keep is set,
// leaves the activations in the op's cache for the backward pass. in are
// the op's inputs (the cache's key); u, wg, wu, wd are found by position:
// MoE passes (u, probs, wg, wu, wd), HashMoE (u, ids, table, wg, wu, wd).
// Each expert's projections, activation and down product run in one visit,
// so its rows are still in cache for the next step of the three. An
// expert's gathered inputs always live in scratch of its own size, reused
// by the next expert; without keep (an evaluation graph) so do its
// pre-activations and sigmoids, instead of [S, ·] buffers written out for
// a backward that never comes. The values, and y, are the same. pt (nil
// for none) gets the parts "routed experts" and "k-way sum".
func expertsForward[F Float](c *expertCache, keep bool, in []*tensor.Dense, r Routing, y []F, start bool, d, w int, pt *phaseTimer) {
	nw := len(in)
	u, wg, wu, wd := slice[F](in[0]), slice[F](in[nw-3]), slice[F](in[nw-2]), slice[F](in[nw-1])
	// Buffers hold the kept slots' rows only: sized for an expert-choice
	// routing's N·E slots, the [S, D] temporary alone came to 66 MB at the
	// science shape, of which the layer used a ninth.
	s, k, kept := r.N*r.K, r.K, r.Kept()
	var a *expertAct[F]
	if keep {
		a, _ = c.take().(*expertAct[F])
		if a == nil {
			a = &expertAct[F]{}
		}
		a.grow(kept, w)
	} else {
		c.take() // a backward must not find an older forward's activations
	}
	// o holds the experts' outputs: by slot (token-major, [N·K, D]) where
	// every expert's down product runs on the row tiles (slotRows), so
	// that the sum below reads each token's rows in a row, else in the
	// experts' order ([kept, D]).
	bySlot := slotRows[F](&r, d, w)
	o := getScratch[F](outputRows(bySlot, s, kept) * d)
	defer putScratch(o)
	bySlot = bySlot && blas.Aligned64(any(o).([]float32))
	forEachExpert(&r, w, d, func(e, lo, hi int) {
		n := hi - lo
		// One pooled buffer per visit: [h | x | wd_e | gu | sg] (x only
		// where the inputs are gathered, gu and sg only without keep).
		tiles := expertTiles[F](n, s, w, d)
		nx := n * d
		if tiles {
			nx = 0
		}
		size := n*w + nx + d*w
		if !keep {
			size += 3 * n * w
		}
		buf := poolGet[F](&stacks, size)
		defer poolPut(&stacks, buf)
		h, x, wde := buf[:n*w], buf[n*w:n*w+nx], buf[n*w+nx:n*w+nx+d*w]
		var gu, sg []F
		if keep {
			gu, sg = a.gu[2*lo*w:2*hi*w], a.sg[lo*w:hi*w]
		} else {
			gu, sg = buf[n*w+nx+d*w:n*w+nx+d*w+2*n*w], buf[n*w+nx+d*w+2*n*w:size]
		}
		if keep && tiles && streamedProjection(w, d) {
			projectStreamed(any(gu).([]float32), any(h).([]float32), any(sg).([]float32), &r, e, lo, hi, any(u).([]float32), any(wg).([]float32), any(wu).([]float32), d, w)
		} else {
			project(tiles, x, gu, &r, e, lo, hi, u, wg, wu, d, w)
			siluGateRows(h, sg, gu, n, w)
		}
		// The down product reads wd_e from a copy, as the projections read
		// their stacked copy: in a step an expert's weights come cold from
		// L3 or memory, and the product reads them transposed, a read the
		// hardware prefetches worse than the copy's. 63 DeepSeekMoE-sized
		// experts' products ran 2-9% faster so (BenchmarkColdExpertWeights),
		// sci-moe's forward passes 3-4% (docs/BENCHMARKS.md, round 13). The
		// backward's products read wd_e untransposed and did not gain. On
		// the rows tiles the copy is transposed, the tiles' right operand
		// (round 17).
		if bySlot || tiles {
			dst, slots := o[lo*d:hi*d], []int32(nil) // the expert's rows, packed
			if bySlot {
				dst, slots = o, r.Slots[lo:hi] // each slot's own row
			}
			downRows(any(dst).([]float32), any(h).([]float32), any(wde).([]float32), any(wd).([]float32), slots, e, n, d, w)
			return
		}
		copy(wde, wd[e*d*w:(e+1)*d*w])
		expertMatMul[F](n, s, w, d)(false, true, n, d, w, h, wde, o[lo*d:hi*d], false)
	})
	pt.mark("routed experts")
	// Sum each token's k expert outputs in slot order: a fixed order, so the
	// result does not depend on how experts were spread over workers.
	parallel.For(r.N, 64, func(lo, hi int) {
		offs, gates := make([]int, 0, k), make([]F, 0, k)
		for t := lo; t < hi; t++ {
			offs, gates = offs[:0], gates[:0]
			for j := 0; j < k; j++ {
				sl := t*k + j
				p := int(r.Pos[sl])
				if p < 0 {
					continue // dropped: the residual carries the token
				}
				if bySlot {
					p = sl
				}
				offs, gates = append(offs, p*d), append(gates, F(r.Gates[sl]))
			}
			// Here, not by the op: the row is then in cache for the sum.
			if !start {
				clear(y[t*d : (t+1)*d])
			}
			sumRows(y[t*d:(t+1)*d], o, offs, gates)
		}
	})
	pt.mark("k-way sum")
	if keep {
		c.store(in, r, a)
	}
}

// siluGate sets s = sigmoid(g) and h = silu(g)⊙u for one row (siluGate32,
// siluGate64).
func siluGate[F Float](h, s, g, u []F) {
	switch h := any(h).(type) {
	case []float32:
		siluGate32(h, any(s).([]float32), any(g).([]float32), any(u).([]float32))
	case []float64:
		siluGate64(h, any(s).([]float64), any(g).([]float64), any(u).([]float64))
	}
}

// sigmoids sets s = sigmoid(g): float32 through exp32 (a few ulp; with
// math.Exp the activation costs a third of the expert GEMMs), float64 with
// the overflow-safe form.
func sigmoids[F Float](s, g []F) {
	switch s := any(s).(type) {
	case []float32:
		sigmoid32s(s, any(g).([]float32))
	case []float64:
		for i, v := range any(g).([]float64) {
			s[i] = safeSigmoid(v)
		}
	}
}

// expertsBackward computes du (every row written; with start, added to
// the row du holds, the shared experts' dx), the per-slot gate
// gradients dgate (nil to skip: Hash layers have no router) and the expert
// weight gradients, from
// dy, the forward activations a and the forward's input u (the token-major
// rows r's slots index, gathered again per expert). With O_s =
// SwiGLU_e(x_s) the expert output of slot s and D_s = Wd_eᵀ dy_t (so
// dgate_s = dy_t·O_s = D_s·H_s):
//
//	dH = g·D, dG = dH ⊙ up ⊙ silu'(Gx), dU = dH ⊙ silu(Gx)
//	dWd_e = Σ_s g·dy_t ⊗ H_s, dWg_e = Σ_s dG_s ⊗ x_s, dWu_e = Σ_s dU_s ⊗ x_s
//	dx_s = Wg_eᵀ dG_s + Wu_eᵀ dU_s,  du_t = Σ_j dx_{t·K+j} (slot order)
//
// Weight gradients are one GEMM per expert over its tokens, written once:
// [dWg_e; dWu_e] = [dG | dU]ᵀ·x as one product into scratch, then copied to
// the two gradients; dx = [dG | dU]·[Wg_e; Wu_e] is one product as well.
// On the row tiles an expert's visit is expertBackwardRows instead. pt
// (nil for none) gets the parts "routed experts" and "k-way sum".
func expertsBackward[F Float](du []F, start bool, dgate []float64, dwg, dwu, dwd []F, a *expertAct[F], r Routing, u, dy, wg, wu, wd []F, d, w int, pt *phaseTimer) {
	s, k := r.N*r.K, r.K
	// ob holds each slot's dy row, then its dx row, which the sum below
	// reads after every expert is done: [kept, D] in the experts' order,
	// or [N·K, D] by slot where the forward's outputs go by slot
	// (slotRows), each dx row streamed to its slot's row from the row
	// tiles. The rest is one expert's own: [h | dd | dgu | dw | x] in one
	// pooled buffer per visit, reused by the next expert while it is still
	// in cache, instead of [S, ·] buffers written out to memory.
	bySlot := w >= 8 && slotRows[F](&r, d, w)
	ob := getScratch[F](outputRows(bySlot, s, r.Kept()) * d)
	defer putScratch(ob)
	bySlot = bySlot && blas.Aligned64(any(ob).([]float32))
	forEachExpert(&r, w, d, func(e, lo, hi int) {
		c := hi - lo
		if w >= 8 && d >= 8 && expertTiles[F](c, s, w, d) {
			expertBackwardRows(any(ob).([]float32), bySlot, dgate, any(dwg).([]float32), any(dwu).([]float32), any(dwd).([]float32),
				any(a).(*expertAct[float32]), &r, e, lo, hi, any(u).([]float32), any(dy).([]float32),
				any(wg).([]float32), any(wu).([]float32), any(wd).([]float32), d, w)
			return
		}
		buf := poolGet[F](&stacks, 4*c*w+2*w*d+c*d)
		defer poolPut(&stacks, buf)
		dyg := ob[lo*d : hi*d]
		h, dd, dgu := buf[:c*w], buf[c*w:2*c*w], buf[2*c*w:4*c*w]
		dw, x := buf[4*c*w:4*c*w+2*w*d], buf[4*c*w+2*w*d:]
		gatherRows(dyg, &r, lo, hi, dy, d)
		a.hidden(h, lo, hi, w)
		mm := expertMatMul[F](c, s, w, d)
		// D = dy·Wd_e: [c, D]·[D, W].
		mm(false, false, c, w, d, dyg, wd[e*d*w:(e+1)*d*w], dd, false)
		if dgate != nil {
			rowDots(dgate, r.Slots[lo:hi], h, dd, w)
		}
		for p := lo; p < hi; p++ {
			i := p - lo
			gt := F(r.PosGates[p])
			scaleBy(dyg[i*d:(i+1)*d], gt)
			scaleBy(dd[i*w:(i+1)*w], gt)
		}
		// dWd_e = (g·dy)ᵀ·H: [D, c]·[c, W].
		mm(true, false, d, w, c, dyg, h, dwd[e*d*w:(e+1)*d*w], false)
		// [dG | dU] per slot.
		swigluGradRows(dgu, dd, a.gu[2*lo*w:2*hi*w], a.sg[lo*w:hi*w], c, w)
		// [dWg_e; dWu_e] = [dG | dU]ᵀ·x, the expert's inputs gathered again.
		gatherRows(x, &r, lo, hi, u, d)
		mm(true, false, 2*w, d, c, dgu, x, dw, false)
		copy(dwg[e*w*d:(e+1)*w*d], dw[:w*d])
		copy(dwu[e*w*d:(e+1)*w*d], dw[w*d:2*w*d])
		// dx = [dG | dU]·[Wg_e; Wu_e]: [c, 2W]·[2W, D], into the dy buffer.
		wgu := stackedExpert(wg, wu, e, w, d)
		mm(false, false, c, d, 2*w, dgu, wgu, dyg, false)
		poolPut(&stacks, wgu)
	})
	pt.mark("routed experts")
	parallel.For(r.N, 64, func(lo, hi int) {
		offs, ones := make([]int, 0, k), make([]F, k)
		for j := range ones {
			ones[j] = 1 // y + 1·x is y + x, bit for bit
		}
		for t := lo; t < hi; t++ {
			offs = offs[:0]
			for j := 0; j < k; j++ {
				if p := int(r.Pos[t*k+j]); p >= 0 {
					if bySlot {
						p = t*k + j
					}
					offs = append(offs, p*d)
				}
			}
			if !start {
				clear(du[t*d : (t+1)*d])
			}
			sumRows(du[t*d:(t+1)*d], ob, offs, ones[:len(offs)])
		}
	})
	pt.mark("k-way sum")
}

// expertBackwardRows is one expert's visit of expertsBackward on
// blas.RowsMatMul and blas.OuterSum, which read the slots' rows of dy and
// u where they lie: nothing is gathered, and the weight gradients are
// written in place. The gate scales H's rows instead of dy's:
//
//	D = dy·Wd_e (rows of dy by token), dgate_s = D_s·H_s,
//	dWd_e = Σ_s dy_t ⊗ (g·H_s), dH = g·D,
//	dWg_e = Σ_s dG_s ⊗ x_t, dWu_e = Σ_s dU_s ⊗ x_t (rows of u by token),
//	dx = [dG | dU]·[Wg_e; Wu_e] into the slots' rows of ob: the expert's
//	rows of ob by oneDNN's serial GEMM, or with bySlot the slots' own
//	rows (ob by slot) by blas.RowsMatMulScattered.
func expertBackwardRows(ob []float32, bySlot bool, dgate []float64, dwg, dwu, dwd []float32, a *expertAct[float32], r *Routing, e, lo, hi int, u, dy, wg, wu, wd []float32, d, w int) {
	c := hi - lo
	buf := poolGet[float32](&stacks, 4*c*w)
	defer poolPut(&stacks, buf)
	h, dd, dgu := buf[:c*w], buf[c*w:2*c*w], buf[2*c*w:4*c*w]
	po, all := getOffsets(4 * c)
	defer rowOffsets.Put(po)
	// Offsets: each slot's token row of u and dy; its row of H; its dG
	// and dU parts of [dG | dU].
	offs, hoffs, goffs, uoffs := all[:c], all[c:2*c], all[2*c:3*c], all[3*c:4*c]
	for i, sl := range r.Slots[lo:hi] {
		offs[i], hoffs[i], goffs[i], uoffs[i] = int(sl)/r.K*d, i*w, 2*i*w, (2*i+1)*w
	}
	a.hidden(h, lo, hi, w)
	blas.RowsMatMul(c, w, d, dy, offs, wd[e*d*w:(e+1)*d*w], dd)
	gateRows(dgate, r.Slots[lo:hi], r.PosGates[lo:hi], h, dd, w)
	downWeightGrad(dwd[e*d*w:(e+1)*d*w], dy, offs, h, hoffs, d, w)
	swigluGradRows(dgu, dd, a.gu[2*lo*w:2*hi*w], a.sg[lo*w:hi*w], c, w)
	blas.OuterSum(w, d, dgu, goffs, u, offs, dwg[e*w*d:(e+1)*w*d])
	blas.OuterSum(w, d, dgu, uoffs, u, offs, dwu[e*w*d:(e+1)*w*d])
	wgu := stackedExpert(wg, wu, e, w, d)
	if bySlot {
		// [dG | dU]'s rows are goffs's; uoffs, spent, takes each dx row's
		// place: its slot's row of ob.
		for i, sl := range r.Slots[lo:hi] {
			uoffs[i] = int(sl) * d
		}
		blas.RowsMatMulScattered(c, d, 2*w, dgu, goffs, wgu, ob, uoffs)
	} else {
		blas.MatMulSerial(false, false, c, d, 2*w, dgu, wgu, ob[lo*d:hi*d], false)
	}
	poolPut(&stacks, wgu)
}

// downWeightGrad sets dwd ([D, W]) to Σ_i dy_{offs[i]} ⊗ h_{hoffs[i]}
// with blas.OuterSum. Where W is not a multiple of 32 and D is, it forms
// the transpose Σ_i h ⊗ dy ([W, D]: whole 32-column tiles) into scratch
// and transposes it into dwd: each element is the same chain of FMAs (a
// product's two factors swapped), so the same bits. As [D, W] the last
// W mod 32 columns take the narrower tiles: DeepSeekMoE's 86-wide experts
// put 22 of every 86 columns on the 24-column tile (docs/BENCHMARKS.md,
// round 20).
func downWeightGrad(dwd, dy []float32, offs []int, h []float32, hoffs []int, d, w int) {
	if d%32 != 0 || w%32 == 0 {
		blas.OuterSum(d, w, dy, offs, h, hoffs, dwd)
		return
	}
	t := poolGet[float32](&stacks, w*d)
	blas.OuterSum(w, d, h, hoffs, dy, offs, t)
	transposeRows(dwd, w, t, 0, w, d)
	poolPut(&stacks, t)
}

// gateRows sets dgate[slots[i]] = rowDot(h_i, dd_i) (dgate nil: skipped)
// and then scales h_i and dd_i by the row's gate, float32(gates[i]), for
// the rows h_i, dd_i (width w) of h and dd: the backward's per-slot work
// before its weight gradients, on an expert's rows with their gates in
// the same order (Routing.PosGates). With the vector kernels and a dgate,
// one pass over pairs of rows (gateRows32x8, the same bits as the loop
// below, which takes an odd last row); the three calls a slot it
// replaces took 40 ns a slot at w = 86, 2 ms of CPU a science DeepSeekMoE
// step (docs/BENCHMARKS.md, rounds 18 and 19).
func gateRows(dgate []float64, slots []int32, gates []float64, h, dd []float32, w int) {
	i := 0
	if dgate != nil && vexpOK && w > 0 {
		if i = len(slots) &^ 1; i > 0 {
			_, _, _ = h[i*w-1], dd[i*w-1], gates[i-1] // the kernel reads and writes these whole
			for _, sl := range slots[:i] {
				_ = dgate[sl]
			}
			gateRows32x8(&dgate[0], &slots[0], &gates[0], &h[0], &dd[0], i, w)
		}
	}
	for ; i < len(slots); i++ {
		hi, di := h[i*w:(i+1)*w], dd[i*w:(i+1)*w]
		if dgate != nil {
			dgate[slots[i]] = rowDot(hi, di)
		}
		g := float32(gates[i])
		scale32(hi, g)
		scale32(di, g)
	}
}

// rowDots sets out[slots[i]] = rowDot(a_i, b_i) for the rows a_i, b_i
// (width w) of a and b.
func rowDots[F Float](out []float64, slots []int32, a, b []F, w int) {
	for i, sl := range slots {
		out[sl] = rowDot(a[i*w:(i+1)*w], b[i*w:(i+1)*w])
	}
}

// smallExpert reports whether an expert's [w, d] weight matrices are small
// enough that running different experts on different workers, each product
// as one kernel call, beats splitting every product over the workers:
// DeepSeekMoE's fine-grained experts ([256, 256], 256 KiB in float32) are;
// a GShard expert ([1024, 256], 1 MiB, a whole L2) is not: two workers on
// one expert share its weights in cache. The measurements behind the
// threshold are in docs/BENCHMARKS.md ("Training speed", round 2).
func smallExpert(w, d int) bool { return !expertSplit && w*d < 1<<18 }

// expertSplit restores the earlier expert loop for every expert size
// (experts dealt statically to workers, every product split as blas.MatMul
// does): for benchmarks only.
var expertSplit = false

// expertMatMul returns the GEMM for the products of an expert with c of the
// s slots and [w, d] weight matrices: for small experts, which
// forEachExpert already spreads over the workers, one kernel call per
// product (splitting it again only adds goroutines and cuts a
// ~[228, 256]·[256, 256] product into thinner, slower pieces), unless the
// expert holds more than half of all slots (a collapsed router), so both
// cores still work on it; otherwise blas.MatMul's split. The rule depends on
// the shapes and the routing only, never on the worker count.
func expertMatMul[F Float](c, s, w, d int) func(transA, transB bool, m, n, k int, a, b, cc []F, accumulate bool) {
	if serialExpert(c, s, w, d) {
		return blas.MatMulSerial[F]
	}
	return blas.MatMul[F]
}

// serialExpert is expertMatMul's rule: whether an expert's products run
// as one kernel call on the worker that took the expert.
func serialExpert(c, s, w, d int) bool { return smallExpert(w, d) && 2*c <= s }

// forEachExpert is forExperts for experts with [w, d] weight matrices:
// small experts (see smallExpert) go to workers one at a time from a shared
// queue, largest first, so a worker slowed down (another process on its
// core, a big expert) leaves the rest to the others; large ones use
// forExperts' fixed deal, each product split over the workers. Every call
// writes only its own rows and weight slices and makes the same kernel
// calls whichever worker runs it, so results never depend on the schedule
// or the worker count.
func forEachExpert(r *Routing, w, d int, fn func(e, lo, hi int)) {
	nw := parallel.Workers
	if !smallExpert(w, d) || nw <= 1 || r.N*r.K == 0 {
		forExperts(r, fn)
		return
	}
	order := make([]int32, 0, r.E)
	for e := 0; e < r.E; e++ {
		if r.Offsets[e+1] > r.Offsets[e] {
			order = append(order, int32(e))
		}
	}
	slices.SortStableFunc(order, func(a, b int32) int { return r.Load(int(b)) - r.Load(int(a)) })
	parallel.Drain(len(order), func(take func() (int, bool)) {
		for i, ok := take(); ok; i, ok = take() {
			e := int(order[i])
			fn(e, int(r.Offsets[e]), int(r.Offsets[e+1]))
		}
	})
}

// forExperts calls fn(e, lo, hi) for every expert with at least one slot,
// where [lo, hi) are its rows in expert-major order. Experts are dealt to
// workers by where their rows fall, so each worker gets about S/workers rows
// however skewed the routing is (up to one expert's size). Every call writes
// only its own rows and weight slices, so results never depend on the split.
func forExperts(r *Routing, fn func(e, lo, hi int)) {
	s := r.Kept() // the rows dealt: dropped slots have none
	if s == 0 {
		return
	}
	nw := parallel.Workers
	if nw < 1 {
		nw = 1
	}
	parallel.For(nw, 1, func(wlo, whi int) {
		for e := 0; e < r.E; e++ {
			lo, hi := int(r.Offsets[e]), int(r.Offsets[e+1])
			if lo == hi {
				continue
			}
			owner := min(nw-1, (lo+hi)/2*nw/s)
			if owner >= wlo && owner < whi {
				fn(e, lo, hi)
			}
		}
	})
}

// ---------------------------------------------------------------------------
// Forward-to-backward cache.

// expertCache hands the routing and activations of a forward pass to the
// backward pass of the same graph run, so the backward skips the routing,
// the gate and up GEMMs (2 of the 8 per-expert GEMMs of a
// forward+backward) and the sigmoids. It is keyed by the identity
// (address and length) of the forward's input backing arrays; a backward
// handed other arrays recomputes instead. Within a TapeMachine run the
// forward always runs before its backward, so a hit reflects the current
// values. The backward only reads the cached buffers, and the next forward
// reuses them, so a step allocates no [S, ·] activation buffers. Cost:
// 3·S·W floats held per MoE layer between steps (S = N·K less the dropped
// slots, Routing.Kept), e.g. 44 MB in float32 at N=2048, K=7, W=256. Each
// pass's one [S, D] temporary (the forward's expert outputs, the
// backward's dy and then dx rows) comes from a pool shared by all layers;
// an expert's own temporaries, from another.
type expertCache struct {
	mu    sync.Mutex
	id    []inputID
	route Routing
	act   any // *expertAct[F]
	valid bool
	hits  int // backward passes served from the cache (for tests)
}

type inputID struct {
	addr uintptr
	n    int
}

func idOf(t *tensor.Dense) inputID {
	if t.DataSize() == 0 {
		return inputID{}
	}
	return inputID{t.Uintptr(), t.DataSize()}
}

// take invalidates the cache and returns its activation buffers for reuse;
// its routing's slices go to newRouting.
func (c *expertCache) take() any {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.valid = false
	a := c.act
	c.act = nil
	c.route.release()
	return a
}

func (c *expertCache) store(in []*tensor.Dense, r Routing, act any) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.id = c.id[:0]
	for _, t := range in {
		c.id = append(c.id, idOf(t))
	}
	c.route, c.act, c.valid = r, act, true
}

// load returns the cached routing and activations if they were computed from
// exactly these inputs, else a nil act.
func (c *expertCache) load(in []*tensor.Dense) (Routing, any) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.valid || len(c.id) != len(in) {
		return Routing{}, nil
	}
	for i, t := range in {
		if c.id[i] != idOf(t) {
			return Routing{}, nil
		}
	}
	c.hits++
	return c.route, c.act
}

// grow returns s resized to n, reallocating only when it is too small.
func grow[T any](s []T, n int) []T {
	if cap(s) < n {
		return make([]T, n)
	}
	return s[:n]
}

// Scratch buffers shared by all expert layers (only one op runs at a time in
// a graph run, but the pool also serves concurrent graphs safely).
var activations, stacks scratchPool

// scratchPool keeps reusable float32 and float64 buffers. Buffers of very
// different sizes go to different pools (activations: [S, ·] per layer;
// stacks: one expert's [2W, D] weights), so a small buffer never stands in
// for a large one and forces a fresh allocation.
type scratchPool struct{ p32, p64 sync.Pool }

func (sp *scratchPool) of(f32 bool) *sync.Pool {
	if f32 {
		return &sp.p32
	}
	return &sp.p64
}

func getScratch[F Float](n int) []F { return poolGet[F](&activations, n) }

func putScratch[F Float](s []F) { poolPut(&activations, s) }

func poolGet[F Float](sp *scratchPool, n int) []F {
	var z F
	_, f32 := any(z).(float32)
	if p, ok := sp.of(f32).Get().(*[]F); ok && cap(*p) >= n {
		return (*p)[:n]
	}
	return make([]F, n)
}

func poolPut[F Float](sp *scratchPool, s []F) {
	var z F
	_, f32 := any(z).(float32)
	sp.of(f32).Put(&s)
}

// rowsProducts sends the products of small experts (those whose products
// run on the worker that took them, serialExpert) to blas.RowsMatMul and
// blas.OuterSum, which read each slot's row of the layer's input or of dy
// where it lies instead of gathering the expert's rows first (DeepSeekMoE
// gathers 3.5 times GShard's rows, three times a step): projectRows,
// downRows and expertBackwardRows. On where blas.RowsOK; tests turn it off
// to run the gathering path on the same CPU.
var rowsProducts = blas.RowsOK()

// expertTiles reports whether an expert with c of the s slots and [w, d]
// weight matrices runs its products on the row tiles (the float32
// products of a serial expert, rowTiles); its inputs are then never
// gathered.
func expertTiles[F Float](c, s, w, d int) bool {
	var z F
	_, f32 := any(z).(float32)
	return f32 && rowTiles() && serialExpert(c, s, w, d)
}

// rowTiles reports whether the experts' products take the row tiles now:
// rowsProducts, unless train.products is bf16, which rounds every
// product's operands to bfloat16 for oneDNN's GEMM; the tiles multiply in
// float32, so under bf16 the experts keep the library's path.
func rowTiles() bool { return rowsProducts && !blas.BF16Products() }

// projectRows is project through blas.RowsMatMul: the slots' rows of u
// by their offsets, against [Wg_e; Wu_e] transposed ([D, 2W], the
// product's right operand as the tiles read it) into a pooled buffer.
func projectRows(gu []float32, r *Routing, e, lo, hi int, u, wg, wu []float32, d, w int) {
	po, offs, wt := projectionOperands(r, e, lo, hi, wg, wu, d, w)
	defer releaseProjection(po, wt)
	blas.RowsMatMul(hi-lo, 2*w, d, u, offs, wt, gu)
}

// projectionOperands returns the gate and up product's operands on the row
// tiles for expert e's slots lo..hi−1: the offsets of their token rows in
// u (a pooled table, po its handle), and [Wg_e; Wu_e] transposed ([D, 2W])
// into a pooled buffer; releaseProjection gives both back.
func projectionOperands(r *Routing, e, lo, hi int, wg, wu []float32, d, w int) (po *[]int, offs []int, wt []float32) {
	po, offs = getOffsets(hi - lo)
	for i, sl := range r.Slots[lo:hi] {
		offs[i] = int(sl) / r.K * d
	}
	wt = poolGet[float32](&stacks, 2*w*d)
	transposeRows(wt, 2*w, wg[e*w*d:(e+1)*w*d], 0, w, d)
	transposeRows(wt[w:], 2*w, wu[e*w*d:(e+1)*w*d], 0, w, d)
	return po, offs, wt
}

// releaseProjection gives projectionOperands' buffers back.
func releaseProjection(po *[]int, wt []float32) {
	poolPut(&stacks, wt)
	rowOffsets.Put(po)
}

// projectStreamed is project and the activation for a kept forward on
// the row tiles, in blocks of streamRows rows: each block's [g | u] into
// warm scratch, its h and sigmoids from there, then the block streamed
// (streamCopy32) to the kept activations gu. Written in place by the
// tiles, every line of the kept [S, 2W] (9.9 MB a layer at the science
// DeepSeekMoE) is first read from memory for ownership, and an expert of
// width 86 writes four times GShard's rows per FLOP; streamed, none is.
// The values are project's and siluGateRows's. For DeepSeekMoE at the
// science shape the routed forward ran ~1 ms a step faster; for GShard's
// wider experts (352 × 128) slower, hence streamedProjection
// (docs/BENCHMARKS.md, round 20).
func projectStreamed(gu, h, sg []float32, r *Routing, e, lo, hi int, u, wg, wu []float32, d, w int) {
	n := hi - lo
	po, offs, wt := projectionOperands(r, e, lo, hi, wg, wu, d, w)
	defer releaseProjection(po, wt)
	tmp := poolGet[float32](&stacks, streamRows*2*w)
	for b0 := 0; b0 < n; b0 += streamRows {
		m := min(streamRows, n-b0)
		blas.RowsMatMul(m, 2*w, d, u, offs[b0:], wt, tmp)
		siluGateRows(h[b0*w:(b0+m)*w], sg[b0*w:(b0+m)*w], tmp[:2*m*w], m, w)
		streamCopy32(&gu[2*b0*w], &tmp[0], 2*m*w)
	}
	poolPut(&stacks, tmp)
}

// streamRows is how many rows projectStreamed takes per block.
const streamRows = 64

// streamedProjection reports whether a kept forward's experts with [w, d]
// weights take projectStreamed: where their stacked transposed gate and
// up weights (2·w·d floats) take at most streamProjectionBytes, as
// DeepSeekMoE's science experts' 88 KB do and GShard's 352 KB do not.
func streamedProjection(w, d int) bool {
	return streamProjections && 2*w*d*4 <= streamProjectionBytes
}

// streamProjectionBytes bounds streamedProjection; streamProjections turns
// it off (tests and benchmarks).
const streamProjectionBytes = 128 << 10

var streamProjections = true

// downRows is the forward's down product o = h·Wd_eᵀ through the row
// tiles, against Wd_e transposed into wt ([W, D]): into o's first n rows
// (blas.RowsMatMul), or, with slots, each slot's row at its slot's place
// in o ([N·K, D]: row s for slot s) by blas.RowsMatMulScattered's
// streaming stores. The outputs (7.3 MB a layer at the science shape)
// leave the caches before the k-way sum reads them whichever way they are
// written; written the usual way, each line was first read from memory
// for ownership, and small experts write four times GShard's output rows
// per FLOP. Streamed, no line is read before its write (the forward's and
// the backward's routed parts ran 0.5-1 ms a step faster), and by slot the
// sum reads a token's rows in a row (docs/BENCHMARKS.md, round 20).
func downRows(o, h, wt, wd []float32, slots []int32, e, n, d, w int) {
	transposeRows(wt, d, wd[e*d*w:(e+1)*d*w], 0, d, w)
	po, all := getOffsets(2 * n)
	defer rowOffsets.Put(po)
	offs, coffs := all[:n], all[n:]
	for i := range offs {
		offs[i] = i * w
	}
	if slots == nil {
		blas.RowsMatMul(n, d, w, h, offs, wt, o)
		return
	}
	for i, sl := range slots {
		coffs[i] = int(sl) * d
	}
	blas.RowsMatMulScattered(n, d, w, h, offs, wt, o, coffs)
}

// slotRows reports whether expertsForward keeps the experts' outputs by
// slot (downRows with slots): float32 on the row tiles, D a multiple of 32
// (the streaming tile's width), every expert with slots a serial one, and
// outputs of at least slotRowsBytes.
func slotRows[F Float](r *Routing, d, w int) bool {
	if !slotOutputs || d%32 != 0 || r.N*r.K*d*4 < slotRowsBytes {
		return false
	}
	for e := 0; e < r.E; e++ {
		if !expertTiles[F](r.Load(e), r.N*r.K, w, d) {
			return false
		}
	}
	return true
}

// outputRows is how many rows the experts' outputs take: every slot's by
// slot, the kept slots' otherwise.
func outputRows(bySlot bool, slots, kept int) int {
	if bySlot {
		return slots
	}
	return kept
}

// slotOutputs enables slotRows; off, for tests and benchmarks, the
// outputs stay in the experts' order.
var slotOutputs = true

// slotRowsBytes is the least size of the experts' outputs streamed out by
// slot: a core's L2. Smaller ones, written the usual way, may still be in
// cache for the sum; streamed out, the sum would read them from memory.
var slotRowsBytes = 1 << 20

// rowOffsets holds the row tiles' offset tables between visits.
var rowOffsets = sync.Pool{New: func() any { return new([]int) }}

// getOffsets returns a pooled offset table of n entries (to fill) and
// its handle, which goes back with rowOffsets.Put.
func getOffsets(n int) (*[]int, []int) {
	po := rowOffsets.Get().(*[]int)
	if cap(*po) < n {
		*po = make([]int, n)
	}
	return po, (*po)[:n]
}
