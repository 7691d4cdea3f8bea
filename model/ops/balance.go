package ops

import (
	"fmt"
	"sync"

	"github.com/chewxy/hm"
	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"

	"github.com/moetrain/moetrain/internal/parallel"
)

// ExpertBalance is the expert-level balance loss (DESIGN.md §3.1, §3.3) of router
// probabilities probs [B·T, E] (row b·T+t is token t of sequence b) with
// top-k routing:
//
//	perSequence (seq_aux): f[b,i] = count[b,i] / (T·k/E), P[b,i] = mean_t probs[b,t,i],
//	                       L = α · (1/B) Σ_b Σ_i f[b,i]·P[b,i]
//	otherwise:             f_i = count_i / (B·T·k/E), P_i = mean over all tokens, L = α Σ_i f_i·P_i
//
// where count is the number of (token, slot) pairs routed to expert i, with
// the same TopK as the MoE forward pass. Uniform routing gives L = α. f
// carries no gradient; the gradient flows to probs through P only.
func ExpertBalance(probs *G.Node, batch, seq, k int, alpha float64, perSequence bool) (*G.Node, error) {
	return balance("ExpertBalance", probs, batch, seq, k, 0, alpha, perSequence)
}

// DeviceBalance is the device-level balance loss (DESIGN.md §3.2): the E experts
// are split into `groups` contiguous groups of E/groups, and with f and P as
// in ExpertBalance, f'_g = mean of f over group g, P'_g = sum of P over g and
// L = α Σ_g f'_g·P'_g (per sequence and averaged over sequences when
// perSequence, else over the whole batch). groups must divide E.
func DeviceBalance(probs *G.Node, batch, seq, k, groups int, alpha float64, perSequence bool) (*G.Node, error) {
	if groups < 1 {
		return nil, fmt.Errorf("DeviceBalance: %d groups, want >= 1", groups)
	}
	return balance("DeviceBalance", probs, batch, seq, k, groups, alpha, perSequence)
}

// BatchCounts carries routing counts gathered over a whole batch, so that a
// batch-level balance loss (perSequence false) computed on one micro-batch
// uses the batch's f rather than the micro-batch's: with f fixed, the mean
// of the micro-batch losses is then exactly the batch loss, and so are its
// gradients. Load[i] counts (token, slot) pairs routed to expert i over
// Tokens tokens. A nil or empty BatchCounts means "use this run's counts".
type BatchCounts struct {
	Load   []float64
	Tokens int
}

// ExpertBalanceWithCounts is ExpertBalance whose batch-level f comes from
// counts when counts.Tokens > 0 (ignored when perSequence). When bias [E] is
// not nil, the counts of this run come from TopK(probs_t + bias), the
// selection of an MoE op with that bias (RouteGated); P is unchanged.
func ExpertBalanceWithCounts(probs, bias *G.Node, batch, seq, k int, alpha float64, perSequence bool, counts *BatchCounts) (*G.Node, error) {
	return balanceCounts("ExpertBalance", probs, bias, batch, seq, k, 0, alpha, perSequence, counts)
}

// DeviceBalanceWithCounts is DeviceBalance with batch counts and a
// selection bias, as ExpertBalanceWithCounts.
func DeviceBalanceWithCounts(probs, bias *G.Node, batch, seq, k, groups int, alpha float64, perSequence bool, counts *BatchCounts) (*G.Node, error) {
	if groups < 1 {
		return nil, fmt.Errorf("DeviceBalance: %d groups, want >= 1", groups)
	}
	return balanceCounts("DeviceBalance", probs, bias, batch, seq, k, groups, alpha, perSequence, counts)
}

// balance builds the op; groups 0 means one group per expert.
func balance(name string, probs *G.Node, batch, seq, k, groups int, alpha float64, perSequence bool) (*G.Node, error) {
	return balanceCounts(name, probs, nil, batch, seq, k, groups, alpha, perSequence, nil)
}

func balanceCounts(name string, probs, bias *G.Node, batch, seq, k, groups int, alpha float64, perSequence bool, counts *BatchCounts) (*G.Node, error) {
	s := probs.Shape()
	if s.Dims() != 2 {
		return nil, fmt.Errorf("%s: probs %v, want [B·T, E]", name, s)
	}
	e := s[1]
	switch {
	case batch < 1 || seq < 1 || batch*seq != s[0]:
		return nil, fmt.Errorf("%s: probs %v is not [B·T, E] with B=%d, T=%d", name, s, batch, seq)
	case k < 1 || k > e:
		return nil, fmt.Errorf("%s: k = %d with %d experts", name, k, e)
	case groups > 0 && e%groups != 0:
		return nil, fmt.Errorf("%s: %d groups do not divide %d experts", name, groups, e)
	}
	gsize := 1
	if groups > 0 {
		gsize = e / groups
	}
	op := &balanceOp{
		base:  base{name: name, arity: 1, key: fmt.Sprintf("B=%d,T=%d,k=%d,gsize=%d,alpha=%g,seq=%t", batch, seq, k, gsize, alpha, perSequence)},
		batch: batch, seq: seq, k: k, gsize: gsize, alpha: alpha, perSeq: perSequence, global: counts,
	}
	if bias == nil {
		return G.ApplyOp(op, probs)
	}
	if bias.Shape().Dims() != 1 || bias.Shape()[0] != e {
		return nil, fmt.Errorf("%s: bias %v with %d experts: want [%d]", name, bias.Shape(), e, e)
	}
	op.arity, op.bias, op.key = 2, true, op.key+",bias"
	return G.ApplyOp(op, probs, bias)
}

type balanceOp struct {
	base
	batch, seq, k int
	gsize         int // experts per group (1: expert-level loss)
	alpha         float64
	perSeq        bool
	global        *BatchCounts // batch-level counts from outside (micro-batching), or nil
	bias          bool         // a second input: the selection bias [E]
	// counted hands the forward's top-k counts to the backward of the same
	// run, which would otherwise route every token again.
	counted countCache
	weights []float64   // groupWeights' result, reused
	share   *SharedTopK // see ShareTopK; nil: select alone
}

// countCache holds the per-segment top-k counts of the last forward and the
// identity of the probs and bias arrays they came from; like takeProbs, the
// backward uses them once and only when handed the same arrays.
type countCache struct {
	mu          sync.Mutex
	counts      []float64
	probs, bias any // first-element pointers
	filled      bool
	// topKCounts' own buffers, reused run after run (fresh ones cost page
	// faults every step): the selection, the integer counts of a segment,
	// the counts it returns.
	idx, cnt []int32
	work     []float64
}

// firstAddr is the identity of a []float32 or []float64: its first
// element's address (nil for nil or empty).
func firstAddr(x any) any {
	switch v := x.(type) {
	case []float32:
		if len(v) > 0 {
			return &v[0]
		}
	case []float64:
		if len(v) > 0 {
			return &v[0]
		}
	}
	return nil
}

func (op *balanceOp) Type() hm.Type {
	if op.bias {
		return fnType(2, 1, 0)
	}
	return fnType(2, 0)
}

func (op *balanceOp) InferShape(ds ...G.DimSizer) (tensor.Shape, error) {
	s, err := shapesOf(ds)
	if err != nil {
		return nil, err
	}
	if s[0].Dims() != 2 || s[0][0] != op.batch*op.seq || s[0][1]%op.gsize != 0 || s[0][1] < op.k {
		return nil, fmt.Errorf("%s: probs %v, want [%d, E]", op.name, s[0], op.batch*op.seq)
	}
	return tensor.ScalarShape(), nil
}

// groupWeights returns, per segment (sequence, or the whole batch) and group,
// c[seg,g] = ∂L/∂P'[seg,g] · 1/(tokens per segment), i.e. the coefficient of
// every probs entry of that segment and group: L = Σ c·Σ_t probs. Forward and
// backward share it, so the gradient is exactly the loss's coefficients.
func (op *balanceOp) groupWeights(probs, bias any, e int, backward bool) []float64 {
	n := op.batch * op.seq
	segs, segLen := 1, n
	if op.perSeq {
		segs, segLen = op.batch, op.seq
	}
	ng := e / op.gsize
	counts := op.topKCounts(probs, bias, e, segs, segLen, backward)
	fTokens := segLen
	if g := op.global; g != nil && g.Tokens > 0 && !op.perSeq && len(g.Load) == e {
		copy(counts, g.Load)
		fTokens = g.Tokens
	}
	// f[i] = count[i]·E/(fTokens·k); f'_g = mean of f over the group; each
	// segment's loss is α·Σ_g f'_g·P'_g scaled by 1/segs, and P'_g is
	// Σ_{i∈g} Σ_t probs/segLen.
	op.weights = grow(op.weights, segs*ng) // written whole below
	c := op.weights
	for sg := 0; sg < segs; sg++ {
		for g := 0; g < ng; g++ {
			var fsum float64
			for i := g * op.gsize; i < (g+1)*op.gsize; i++ {
				fsum += counts[sg*e+i] * float64(e) / float64(fTokens*op.k)
			}
			c[sg*ng+g] = op.alpha / float64(segs) * (fsum / float64(op.gsize)) / float64(segLen)
		}
	}
	return c
}

// topKCounts counts, per segment, how often each expert is among a token's
// top k (with the bias, as RouteGated selects). A forward keeps the counts
// for its backward (countCache), which takes them instead of routing again.
func (op *balanceOp) topKCounts(probs, bias any, e, segs, segLen int, backward bool) []float64 {
	c := &op.counted
	c.mu.Lock()
	defer c.mu.Unlock()
	if backward && c.filled && c.probs == firstAddr(probs) && c.bias == firstAddr(bias) && len(c.counts) == segs*e {
		c.filled = false
		return c.counts // spent now: the caller may write over it
	}
	c.filled = false
	c.work = grow(c.work, segs*e) // written whole below
	counts := c.work
	n, k := segs*segLen, op.k
	// The selection's buffer is the op's own, reused: a fresh [N·K] one
	// cost page faults every step.
	c.idx = grow(c.idx, n*k)
	idx := c.idx
	switch p := probs.(type) {
	case []float32:
		b, _ := bias.([]float32)
		topKRows(op.share, idx, p, b, n, e, k)
	case []float64:
		b, _ := bias.([]float64)
		topKRows(op.share, idx, p, b, n, e, k)
	}
	// Counted in integers segment by segment: float64 increments, with a
	// division per token for its segment, took 0.08 ms a layer at 2048
	// tokens × 7 choices.
	c.cnt = grow(c.cnt, e)
	cnt := c.cnt
	for sg := range segs {
		clear(cnt)
		for _, x := range idx[sg*segLen*k : (sg+1)*segLen*k] {
			cnt[x]++
		}
		for i, v := range cnt {
			counts[sg*e+i] = float64(v)
		}
	}
	if !backward {
		c.counts = append(c.counts[:0], counts...)
		c.probs, c.bias, c.filled = firstAddr(probs), firstAddr(bias), true
	}
	return counts
}

// biasData returns the bias input's data ([]float32 or []float64), or nil.
func biasData(op *balanceOp, vs []G.Value, i int) (any, error) {
	if !op.bias {
		return nil, nil
	}
	b, err := dense(op.name, vs[i])
	if err != nil {
		return nil, err
	}
	return b.Data(), nil
}

func (op *balanceOp) Do(vs ...G.Value) (G.Value, error) {
	if profiling.Load() {
		defer record(op.name, startClock())
	}
	p, err := dense(op.name, vs[0])
	if err != nil {
		return nil, err
	}
	bias, err := biasData(op, vs, 1)
	if err != nil {
		return nil, err
	}
	e := p.Shape()[1]
	var loss float64
	switch p.Dtype() {
	case tensor.Float32:
		loss = balanceLoss(op, slice[float32](p), bias, e)
	case tensor.Float64:
		loss = balanceLoss(op, slice[float64](p), bias, e)
	default:
		return nil, fmt.Errorf("%s: dtype %v", op.name, p.Dtype())
	}
	return scalarOf(p.Dtype(), loss), nil
}

// balanceLossChunk is how many tokens each partial sum of balanceLoss
// covers: fixed, so the loss's bits do not depend on the worker count.
const balanceLossChunk = 256

// balanceLoss sums c[seg, group(i)]·probs[t,i] in float64. The tokens go
// in chunks of balanceLossChunk, on the workers; within a chunk, each run
// of tokens of one segment (where the coefficients are fixed) is summed
// per expert first, in token order, and the chunk's sum adds coef_i times
// each expert's sum in expert order; the chunks' sums are added in chunk
// order. One running sum over every element, its additions each waiting
// on the last, took 0.13 ms a layer at 2048 tokens × 63 experts.
func balanceLoss[F Float](op *balanceOp, probs []F, bias any, e int) float64 {
	c := op.groupWeights(probs, bias, e, false)
	n, segLen, ng := op.batch*op.seq, op.batch*op.seq, e/op.gsize
	if op.perSeq {
		segLen = op.seq
	}
	parts := make([]float64, (n+balanceLossChunk-1)/balanceLossChunk)
	parallel.For(len(parts), 1, func(lo, hi int) {
		coef, col := make([]float64, e), make([]float64, e)
		for ch := lo; ch < hi; ch++ {
			var sum float64
			end := min(n, (ch+1)*balanceLossChunk)
			for t0 := ch * balanceLossChunk; t0 < end; {
				seg := t0 / segLen
				t1 := min(end, (seg+1)*segLen)
				coef = expertCoefs(coef, c[seg*ng:(seg+1)*ng], e, op.gsize)
				clear(col)
				colSums(col, probs[t0*e:t1*e], t1-t0, e)
				for i, v := range col {
					sum += coef[i] * v
				}
				t0 = t1
			}
			parts[ch] = sum
		}
	})
	var loss float64
	for _, p := range parts {
		loss += p
	}
	return loss
}

// expertCoefs returns, in buf (reused), each expert's coefficient: its
// group's entry of cs. The loss and gradient loops read it per element
// instead of dividing the expert index by the group size there.
func expertCoefs(buf, cs []float64, e, gsize int) []float64 {
	if cap(buf) < e {
		buf = make([]float64, e)
	}
	buf = buf[:e]
	for i := range buf {
		buf[i] = cs[i/gsize]
	}
	return buf
}

func (op *balanceOp) DiffWRT(int) []bool {
	if op.bias {
		return []bool{true, false}
	}
	return []bool{true}
}

func (op *balanceOp) SymDiff(in G.Nodes, out, grad *G.Node) (G.Nodes, error) {
	bwd := &balanceBackward{base: base{name: op.name + "Backward", arity: 2, key: op.key}, fwd: op}
	children := G.Nodes{in[0], grad}
	if op.bias {
		bwd.arity = 3
		children = append(children, in[1])
	}
	d, err := G.ApplyOp(bwd, children...)
	if err != nil {
		return nil, err
	}
	if op.bias {
		return G.Nodes{d, nil}, nil
	}
	return G.Nodes{d}, nil
}

// balanceBackward computes dprobs [B·T, E] from (probs, dL[, bias]).
type balanceBackward struct {
	base
	sameShape
	fwd *balanceOp
}

func (op *balanceBackward) Type() hm.Type {
	if op.fwd.bias {
		return fnType(2, 0, 1, 2)
	}
	return fnType(2, 0, 2)
}

func (op *balanceBackward) Do(vs ...G.Value) (G.Value, error) {
	if profiling.Load() {
		defer record(op.name, startClock())
	}
	p, err := dense(op.name, vs[0])
	if err != nil {
		return nil, err
	}
	dl, err := scalarOf64(vs[1])
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op.name, err)
	}
	bias, err := biasData(op.fwd, vs, 2)
	if err != nil {
		return nil, err
	}
	n, e := p.Shape()[0], p.Shape()[1]
	out := op.outputOver(p.Dtype(), n, e)
	switch p.Dtype() {
	case tensor.Float32:
		balanceGrad(op.fwd, slice[float32](out), slice[float32](p), bias, e, dl)
	case tensor.Float64:
		balanceGrad(op.fwd, slice[float64](out), slice[float64](p), bias, e, dl)
	default:
		return nil, fmt.Errorf("%s: dtype %v", op.name, p.Dtype())
	}
	return out, nil
}

func balanceGrad[F Float](op *balanceOp, dp, probs []F, bias any, e int, dl float64) {
	c := op.groupWeights(probs, bias, e, true)
	segLen, ng := op.batch*op.seq, e/op.gsize
	if op.perSeq {
		segLen = op.seq
	}
	// Every row of a segment is the same: dl·coef, formed once per segment
	// and copied.
	parallel.For(op.batch*op.seq, 256, func(lo, hi int) {
		var coef []float64
		rowv := make([]F, e)
		for t := lo; t < hi; t++ {
			if t == lo || t%segLen == 0 {
				coef = expertCoefs(coef, c[(t/segLen)*ng:(t/segLen+1)*ng], e, op.gsize)
				for i := range rowv {
					rowv[i] = F(dl * coef[i])
				}
			}
			copy(dp[t*e:(t+1)*e], rowv)
		}
	})
}

// scalarOf64 reads a scalar gradient, which gorgonia passes either as its
// own scalar values (*F64, *F32) or as a one-element tensor.
func scalarOf64(v G.Value) (float64, error) {
	switch s := v.(type) {
	case *G.F64:
		return float64(*s), nil
	case *G.F32:
		return float64(*s), nil
	case *tensor.Dense:
		if s.DataSize() != 1 {
			return 0, fmt.Errorf("gradient of a scalar has %d elements", s.DataSize())
		}
		return ScalarValue(s), nil
	}
	return 0, fmt.Errorf("gradient of a scalar is %T", v)
}
