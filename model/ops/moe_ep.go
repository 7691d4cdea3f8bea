package ops

import (
	"fmt"
	"sync"

	"github.com/chewxy/hm"
	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"

	"github.com/moetrain/moetrain/internal/blas"
	"github.com/moetrain/moetrain/internal/parallel"
)

// EPComm is what the expert-parallel MoE op needs from a communicator: its
// rank and size within the expert-parallel group and two all-to-alls with
// the semantics of dist.Comm's, which satisfies it (the world, or a group
// made by dist.Comm.Grid). Every rank of the group must run the op's
// forward and backward passes in the same order.
type EPComm interface {
	Rank() int
	Size() int
	AlltoallInts(send []int) ([]int, error)
	AlltoallvF32(send []float32, sendCounts []int, recv []float32, recvCounts []int) error
}

// MoEExpertParallel is MoE (same inputs, routing, gates and result) with the
// routed experts partitioned over the ranks of comm: this rank holds experts
// [r·E/R, (r+1)·E/R) as wg, wu [E/R, W, D] and wd [E/R, D, W], and probs
// [N, E] covers all E experts. u and probs are this rank's own tokens.
//
// Forward: route locally (Route, as MoE); send each chosen (token row) to
// the rank owning its expert, expert-major (the per-expert counts go first
// in each block, the blocks' sizes by AlltoallInts); run every local expert
// over the rows it received with one GEMM per projection; send the outputs
// back in the order received; sum each token's k outputs times its gates in
// slot order. Backward: send (dy_t, gate) along the same paths, compute the
// input gradients, the gate gradients dy_t·O (where the expert activations
// are) and this rank's expert weight gradients, and send (dx, dgate) back.
//
// A rank's expert gradient sums over the tokens of every rank of the group,
// received in rank order and then token order: with the ranks' tokens
// concatenated in rank order, the rows of every expert GEMM are those of
// the single-process MoE op in the same order. Results are deterministic.
// Float32 only (the wire format).
func MoEExpertParallel(u, probs, wg, wu, wd *G.Node, k int, renorm bool, comm EPComm, rec *RouteRecord) (*G.Node, error) {
	return MoEExpertParallelGated(u, probs, wg, wu, wd, nil, Gating{K: k, Renorm: renorm}, comm, rec)
}

// MoEExpertParallelGated is MoEExpertParallel with the whole Gating and an
// optional selection bias [E], as MoEGated. Every rank holds the whole
// bias, so every rank routes its tokens as the single-process op would.
func MoEExpertParallelGated(u, probs, wg, wu, wd, bias *G.Node, g Gating, comm EPComm, rec *RouteRecord) (*G.Node, error) {
	k := g.K
	if k < 1 {
		return nil, fmt.Errorf("MoEExpertParallel: k = %d, want >= 1", k)
	}
	if comm == nil || comm.Size() < 1 {
		return nil, fmt.Errorf("MoEExpertParallel: no communicator")
	}
	op := &moeEPOp{
		base:   base{name: "MoEExpertParallel", arity: 5, key: fmt.Sprintf("%s,rank=%d/%d", g.key(), comm.Rank(), comm.Size())},
		k:      k,
		gating: g,
		comm:   comm,
		rec:    rec,
		st:     &epState{},
	}
	if bias == nil {
		return G.ApplyOp(op, u, probs, wg, wu, wd)
	}
	op.arity, op.bias, op.key = 6, true, op.key+",bias"
	return G.ApplyOp(op, u, probs, wg, wu, wd, bias)
}

type moeEPOp struct {
	base
	k      int
	gating Gating
	bias   bool // a sixth input: the selection bias [E]
	comm   EPComm
	rec    *RouteRecord
	st     *epState
}

// epState carries a forward pass's exchange to the backward pass of the
// same graph run (keyed by the inputs' identity, as expertCache).
type epState struct {
	mu       sync.Mutex
	id       []inputID
	valid    bool
	route    Routing // this rank's tokens over all E experts
	sendRows []int   // rows sent to each rank (expert-major blocks of route)
	recvRows []int   // rows received from each rank
	local    Routing // the received rows (K = 1) over the local experts
	act      *expertAct[float32]
	bufs     [5][]float32 // reused wire buffers; bufs[2] keeps the received rows from forward to backward
	hits     int
}

func (op *moeEPOp) Type() hm.Type {
	if op.bias {
		return fnType(2, 2, 3, 3, 3, 1, 2)
	}
	return fnType(2, 2, 3, 3, 3, 2)
}

func (op *moeEPOp) InferShape(ds ...G.DimSizer) (tensor.Shape, error) {
	s, err := shapesOf(ds)
	if err != nil {
		return nil, err
	}
	if err := checkExpertShapes(op.name, s[0], s[2], s[3], s[4]); err != nil {
		return nil, err
	}
	u, p, el := s[0], s[1], s[2][0]
	e := el * op.comm.Size()
	if p.Dims() != 2 || p[0] != u[0] || p[1] != e {
		return nil, fmt.Errorf("%s: probs %v with u %v and %d local experts on %d ranks: want [N, E] = [%d, %d]", op.name, p, u, el, op.comm.Size(), u[0], e)
	}
	if op.k > e {
		return nil, fmt.Errorf("%s: k = %d > %d experts", op.name, op.k, e)
	}
	if op.bias && (s[5].Dims() != 1 || s[5][0] != e) {
		return nil, fmt.Errorf("%s: bias %v with %d experts: want [%d]", op.name, s[5], e, e)
	}
	return u.Clone(), nil
}

func (op *moeEPOp) DiffWRT(int) []bool { return moeDiff(op.bias, false) }

func (op *moeEPOp) SymDiff(in G.Nodes, out, grad *G.Node) (G.Nodes, error) {
	bwd := &moeEPBackward{base: base{name: "MoEExpertParallelBackward", arity: 6, key: op.key}, fwd: op}
	children := G.Nodes{in[0], in[1], in[2], in[3], in[4], grad}
	if op.bias {
		bwd.arity = 7
		children = append(children, in[5])
	}
	return packedGrads(bwd, children, in, moeDiff(op.bias, false))
}

func (op *moeEPOp) Do(vs ...G.Value) (G.Value, error) {
	if profiling.Load() {
		defer record(op.name, startClock())
	}
	in, err := inputs(op.name, vs)
	if err != nil {
		return nil, err
	}
	for _, t := range in {
		if t.Dtype() != tensor.Float32 {
			return nil, fmt.Errorf("%s: dtype %v, want float32", op.name, t.Dtype())
		}
	}
	n, d := in[0].Shape()[0], in[0].Shape()[1]
	y := op.output(tensor.Float32, n, d)
	if err := op.forward(in[:5], biasOf[float32](in, op.bias), y.Float32s()); err != nil {
		return nil, err
	}
	op.rec.store(&op.st.route)
	return y, nil
}

// forward runs the exchange and the local experts, fills y when non-nil and
// leaves everything the backward needs in op.st.
func (op *moeEPOp) forward(in []*tensor.Dense, bias, y []float32) error {
	st := op.st
	st.mu.Lock()
	defer st.mu.Unlock()
	st.valid = false
	u, probs := in[0].Float32s(), in[1].Float32s()
	wg, wu, wd := in[2].Float32s(), in[3].Float32s(), in[4].Float32s()
	n, d := in[0].Shape()[0], in[0].Shape()[1]
	el, w := in[2].Shape()[0], in[2].Shape()[1]
	R, k := op.comm.Size(), op.k
	e := el * R
	r := RouteGated(probs, bias, n, e, op.gating)
	st.route = r

	// Dispatch: to rank q go its experts' per-expert counts, then the rows
	// of its experts in expert-major order.
	st.sendRows = make([]int, R)
	sc := make([]int, R)
	for q := 0; q < R; q++ {
		st.sendRows[q] = int(r.Offsets[(q+1)*el] - r.Offsets[q*el])
		sc[q] = el + st.sendRows[q]*d
	}
	rc, err := op.comm.AlltoallInts(sc)
	if err != nil {
		return fmt.Errorf("%s: exchange counts: %w", op.name, err)
	}
	st.recvRows = make([]int, R)
	m := 0
	for q, c := range rc {
		if c < el || (c-el)%d != 0 {
			return fmt.Errorf("%s: rank %d announces %d values, not %d counts plus rows of %d", op.name, q, c, el, d)
		}
		st.recvRows[q] = (c - el) / d
		m += st.recvRows[q]
	}
	send := growBuf(&st.bufs[0], sum(sc))
	off := 0
	for q := 0; q < R; q++ {
		for x := q * el; x < (q+1)*el; x++ {
			send[off] = float32(r.Load(x))
			off++
		}
		for p := int(r.Offsets[q*el]); p < int(r.Offsets[(q+1)*el]); p++ {
			t := int(r.Slots[p]) / k
			copy(send[off:off+d], u[t*d:(t+1)*d])
			off += d
		}
	}
	recv := growBuf(&st.bufs[1], sum(rc))
	if err := op.comm.AlltoallvF32(send, sc, recv, rc); err != nil {
		return fmt.Errorf("%s: dispatch: %w", op.name, err)
	}

	// The received rows, source-rank-major, are "tokens" routed with K = 1
	// to local experts; their expert-major order is expert, source rank,
	// source token: the single-process order of the concatenated tokens.
	experts := make([]int32, m)
	xr := growBuf(&st.bufs[2], m*d)
	off, row := 0, 0
	for q := 0; q < R; q++ {
		counts := recv[off : off+el]
		off += el
		total := 0
		for x, c := range counts {
			for i := 0; i < int(c); i++ {
				experts[row+total+i] = int32(x)
			}
			total += int(c)
		}
		if total != st.recvRows[q] {
			return fmt.Errorf("%s: rank %d sent %d rows but counts summing to %d", op.name, q, st.recvRows[q], total)
		}
		copy(xr[row*d:], recv[off:off+total*d])
		off += total * d
		row += total
	}
	st.local = fixedRouting(experts, el)
	st.act = expertsActivations(st.act, st.local, xr, wg, wu, d, w)
	a := st.act
	h, o := getScratch[float32](m*w), getScratch[float32](m*d)
	defer putScratch(h)
	defer putScratch(o)
	forExperts(&st.local, func(x, lo, hi int) {
		hb := h[lo*w : hi*w]
		a.hidden(hb, lo, hi, w)
		blas.MatMul(false, true, hi-lo, d, w, hb, wd[x*d*w:(x+1)*d*w], o[lo*d:hi*d], false)
	})

	// Combine: outputs go back in the order received; the sender gets them
	// in its expert-major order.
	if y != nil {
		back := growBuf(&st.bufs[3], m*d)
		for i := 0; i < m; i++ {
			p := int(st.local.Pos[i])
			copy(back[i*d:(i+1)*d], o[p*d:(p+1)*d])
		}
		outs := growBuf(&st.bufs[0], n*k*d)
		if err := op.comm.AlltoallvF32(back, scaled(st.recvRows, d), outs, scaled(st.sendRows, d)); err != nil {
			return fmt.Errorf("%s: combine: %w", op.name, err)
		}
		parallel.For(n, 64, func(lo, hi int) {
			for t := lo; t < hi; t++ {
				yr := y[t*d : (t+1)*d]
				for j := 0; j < k; j++ {
					sl := t*k + j
					gt := float32(r.Gates[sl])
					p := int(r.Pos[sl])
					or := outs[p*d : (p+1)*d]
					for i := range yr {
						yr[i] += gt * or[i]
					}
				}
			}
		})
	}
	st.id = st.id[:0]
	for _, t := range in {
		st.id = append(st.id, idOf(t))
	}
	st.valid = true
	return nil
}

// moeEPBackward packs [du (N·D) | dprobs (N·E) | dwg | dwu | dwd] (the
// local experts' gradients) from (u, probs, wg, wu, wd, dy).
type moeEPBackward struct {
	base
	fwd *moeEPOp
}

func (op *moeEPBackward) Type() hm.Type {
	if op.fwd.bias {
		return fnType(2, 2, 3, 3, 3, 2, 1, 1)
	}
	return fnType(2, 2, 3, 3, 3, 2, 1)
}

func (op *moeEPBackward) InferShape(ds ...G.DimSizer) (tensor.Shape, error) {
	s, err := shapesOf(ds)
	if err != nil {
		return nil, err
	}
	return tensor.Shape{packedSize(s[:5], []bool{true, true, true, true, true})}, nil
}

func (op *moeEPBackward) Do(vs ...G.Value) (G.Value, error) {
	if profiling.Load() {
		defer record(op.name, startClock())
	}
	in, err := inputs(op.name, vs)
	if err != nil {
		return nil, err
	}
	for _, t := range in {
		if t.Dtype() != tensor.Float32 {
			return nil, fmt.Errorf("%s: dtype %v, want float32", op.name, t.Dtype())
		}
	}
	f := op.fwd
	st := f.st
	if !st.matches(in[:5]) {
		// No forward of these inputs in this run: redo its exchange (every
		// rank of the group is in the same situation, so they all do).
		if err := f.forward(in[:5], backwardBias[float32](in, f.bias), nil); err != nil {
			return nil, err
		}
	} else {
		st.mu.Lock()
		st.hits++
		st.mu.Unlock()
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	u, probs, dy := in[0], in[1].Float32s(), in[5].Float32s()
	wg, wu, wd := in[2].Float32s(), in[3].Float32s(), in[4].Float32s()
	n, d := u.Shape()[0], u.Shape()[1]
	el, w := in[2].Shape()[0], in[2].Shape()[1]
	R, k := f.comm.Size(), f.k
	e := el * R
	sizes := []int{n * d, n * e, el * w * d, el * w * d, el * d * w}
	p := op.output(tensor.Float32, sizes[0]+sizes[1]+sizes[2]+sizes[3]+sizes[4])
	g := split(p.Float32s(), sizes)
	r := st.route

	// (dy_t, gate) along the dispatch paths, one row of D+1 per slot.
	s := n * k
	send := growBuf(&st.bufs[0], s*(d+1))
	for pos := 0; pos < s; pos++ {
		sl := int(r.Slots[pos])
		t := sl / k
		row := send[pos*(d+1) : (pos+1)*(d+1)]
		copy(row, dy[t*d:(t+1)*d])
		row[d] = float32(r.Gates[sl])
	}
	m := st.local.N
	recv := growBuf(&st.bufs[1], m*(d+1))
	if err := f.comm.AlltoallvF32(send, scaled(st.sendRows, d+1), recv, scaled(st.recvRows, d+1)); err != nil {
		return nil, fmt.Errorf("%s: dispatch: %w", op.name, err)
	}
	dyr := growBuf(&st.bufs[4], m*d) // bufs[2] still holds the forward's received rows
	local := st.local
	local.Gates, local.PosGates = make([]float64, m), make([]float64, m)
	for i := 0; i < m; i++ {
		copy(dyr[i*d:(i+1)*d], recv[i*(d+1):i*(d+1)+d])
		local.Gates[i] = float64(recv[i*(d+1)+d])
	}
	local.gatherGates()
	dx := make([]float32, m*d)
	dgate := make([]float64, m)
	expertsBackward(dx, false, dgate, g[2], g[3], g[4], st.act, local, st.bufs[2][:m*d], dyr, wg, wu, wd, d, w, nil)

	// (dx, dgate) back in the order received.
	back := growBuf(&st.bufs[3], m*(d+1))
	for i := 0; i < m; i++ {
		copy(back[i*(d+1):], dx[i*d:(i+1)*d])
		back[i*(d+1)+d] = float32(dgate[i])
	}
	ret := growBuf(&st.bufs[0], s*(d+1))
	if err := f.comm.AlltoallvF32(back, scaled(st.recvRows, d+1), ret, scaled(st.sendRows, d+1)); err != nil {
		return nil, fmt.Errorf("%s: combine: %w", op.name, err)
	}
	du := g[0]
	dg := make([]float64, s)
	parallel.For(n, 64, func(lo, hi int) {
		for t := lo; t < hi; t++ {
			dr := du[t*d : (t+1)*d]
			for j := 0; j < k; j++ {
				pos := int(r.Pos[t*k+j])
				xr := ret[pos*(d+1) : pos*(d+1)+d]
				for i := range dr {
					dr[i] += xr[i]
				}
				dg[t*k+j] = float64(ret[pos*(d+1)+d])
			}
		}
	})
	gateBackward(g[1], dg, probs, r, f.gating)
	return p, nil
}

func (st *epState) matches(in []*tensor.Dense) bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	if !st.valid || len(st.id) != len(in) {
		return false
	}
	for i, t := range in {
		if st.id[i] != idOf(t) {
			return false
		}
	}
	return true
}

// growBuf returns *b resized to n (reallocated only when too small).
func growBuf(b *[]float32, n int) []float32 {
	*b = grow(*b, n)
	return *b
}

func sum(xs []int) int {
	s := 0
	for _, x := range xs {
		s += x
	}
	return s
}

func scaled(xs []int, f int) []int {
	out := make([]int, len(xs))
	for i, x := range xs {
		out[i] = x * f
	}
	return out
}
