package ops

import (
	"fmt"
	"math"
	"unsafe"

	"github.com/chewxy/hm"
	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"

	"github.com/moetrain/moetrain/internal/blas"
	"github.com/moetrain/moetrain/internal/parallel"
)

// ceChunk is the number of rows whose logits are held at once: memory stays
// at ceChunk·V values whatever N is, and the chunk order (hence the order in
// which dw is summed) is fixed.
const ceChunk = 256

// LMHeadCrossEntropy returns the scalar mean over the N rows of
// −log softmax(x·wᵀ)[target] for hidden states x [N, d], the LM head w [V, d]
// and targets [N] (an Int vector): the LM head and the loss of DESIGN.md §1 fused,
// so the N×V logits never exist at once. Each row's log-sum-exp is shifted by
// the row's own max. A target outside [0, V) is an error from the run. The
// value is a gorgonia scalar (*F32 or *F64).
//
// Eager gradients: once the graph differentiates the loss (SymDiff has been
// called), the forward pass also forms dx and dw of the loss for an incoming
// gradient of 1 while each chunk's logits are at hand, and keeps them in
// the op with the backing arrays of x, w and targets it read. The backward
// then only scales them by the incoming gradient. This saves the backward's
// recomputation of the logits (a quarter of the op's GEMM work) and a second
// pass of exponentials. The backward falls back to recomputing chunk by
// chunk when it is handed other arrays or the cache was spent. A graph
// without gradients runs the plain forward.
func LMHeadCrossEntropy(x, w, targets *G.Node) (*G.Node, error) {
	return G.ApplyOp(&ceOp{base: base{name: "LMHeadCrossEntropy", arity: 3}, cache: &ceCache{}}, x, w, targets)
}

type ceOp struct {
	base
	cache *ceCache
}

// ceCache carries eagerly computed gradients from the forward to the
// backward. eager is set by SymDiff at graph-build time; packed ([dx | dw]
// for dloss = 1), x, w and targets are set by a forward and cleared by the
// backward that consumes them. hits counts such backward passes.
type ceCache struct {
	eager         bool
	packed        *tensor.Dense
	x, w, targets any
	hits          int
	buf           any // []F: the packed gradient's backing, reused across runs (see base.output)
}

func (op *ceOp) Type() hm.Type { return fnType(2, 2, -1, 0) }

func (op *ceOp) InferShape(ds ...G.DimSizer) (tensor.Shape, error) {
	s, err := shapesOf(ds)
	if err != nil {
		return nil, err
	}
	if err := ceShapes(s); err != nil {
		return nil, err
	}
	return tensor.ScalarShape(), nil
}

func ceShapes(s []tensor.Shape) error {
	if s[0].Dims() != 2 || s[1].Dims() != 2 || s[2].Dims() != 1 || s[0][1] != s[1][1] || s[2][0] != s[0][0] {
		return fmt.Errorf("LMHeadCrossEntropy: x %v, w %v, targets %v: want [N, d], [V, d], [N]", s[0], s[1], s[2])
	}
	if s[0][0] == 0 {
		return fmt.Errorf("LMHeadCrossEntropy: no rows: the mean is undefined")
	}
	return nil
}

// ceArgs unpacks (x, w, targets) and checks shapes, dtypes and targets.
func ceArgs(op string, vs []G.Value) (x, w *tensor.Dense, targets []int, err error) {
	in, err := inputs(op, vs[:3])
	if err != nil {
		return nil, nil, nil, err
	}
	x, w = in[0], in[1]
	if err := sameFloat(op, x, w); err != nil {
		return nil, nil, nil, err
	}
	if err := ceShapes([]tensor.Shape{x.Shape(), w.Shape(), in[2].Shape()}); err != nil {
		return nil, nil, nil, err
	}
	targets, err = checkIDs(op, "target", in[2], w.Shape()[0])
	return x, w, targets, err
}

func (op *ceOp) Do(vs ...G.Value) (G.Value, error) {
	if profiling.Load() {
		defer record(op.name, startClock())
	}
	x, w, targets, err := ceArgs(op.name, vs)
	if err != nil {
		return nil, err
	}
	n, d, v := x.Shape()[0], x.Shape()[1], w.Shape()[0]
	nll := make([]float64, n)
	c := op.cache
	c.packed, c.x, c.w, c.targets = nil, nil, nil, nil
	switch x.Dtype() {
	case tensor.Float32:
		ceForward(c, nll, slice[float32](x), slice[float32](w), targets, n, d, v)
	case tensor.Float64:
		ceForward(c, nll, slice[float64](x), slice[float64](w), targets, n, d, v)
	}
	var sum float64
	for _, l := range nll { // row order: the same sum on any worker count
		sum += l
	}
	return scalarValueOf(x.Dtype(), sum/float64(n)), nil
}

// ceForward fills nll, plus the cache's packed gradient when eager.
func ceForward[F Float](c *ceCache, nll []float64, x, w []F, targets []int, n, d, v int) {
	if !c.eager {
		ceRows(nll, x, w, targets, n, d, v)
		return
	}
	p, ok := c.buf.([]F)
	if !ok || len(p) != n*d+v*d {
		p = make([]F, n*d+v*d)
		c.buf = p
	}
	// ceGradKernel overwrites every element (dx rows once, dw with beta 0 on
	// the first chunk), so the reused buffer needs no clearing.
	ceGradKernel(nll, p[:n*d], p[n*d:], x, w, targets, n, d, v, 1/float64(n))
	c.packed = tensor.New(tensor.WithShape(len(p)), tensor.WithBacking(p))
	c.x, c.w, c.targets = x, w, targets
}

// scalarValueOf returns v as gorgonia's own scalar value (*F32 or *F64), not
// as a 0-d tensor: gorgonia's scalar arithmetic (loss + α·aux, loss·c)
// rejects a 0-d *tensor.Dense operand with a type mismatch.
func scalarValueOf(dt tensor.Dtype, v float64) G.Value {
	if dt == tensor.Float32 {
		return G.NewF32(float32(v))
	}
	return G.NewF64(v)
}

func (op *ceOp) DiffWRT(int) []bool { return []bool{true, true, false} }

func (op *ceOp) SymDiff(in G.Nodes, _, grad *G.Node) (G.Nodes, error) {
	op.cache.eager = true
	bwd := &ceBackward{base: base{name: "LMHeadCrossEntropyBackward", arity: 4}, cache: op.cache}
	return packedGrads(bwd, G.Nodes{in[0], in[1], in[2], grad}, in, []bool{true, true, false})
}

// ceBackward packs [dx (N·d) | dw (V·d)] from (x, w, targets, dloss), dloss
// being the scalar gradient of the loss.
type ceBackward struct {
	base
	cache *ceCache
}

func (op *ceBackward) Type() hm.Type { return fnType(2, 2, -1, 0, 1) }

func (op *ceBackward) InferShape(ds ...G.DimSizer) (tensor.Shape, error) {
	s, err := shapesOf(ds)
	if err != nil {
		return nil, err
	}
	return tensor.Shape{s[0].TotalSize() + s[1].TotalSize()}, nil
}

func (op *ceBackward) Do(vs ...G.Value) (G.Value, error) {
	if profiling.Load() {
		defer record(op.name, startClock())
	}
	x, w, targets, err := ceArgs(op.name, vs)
	if err != nil {
		return nil, err
	}
	g, err := scalarArg(op.name, vs[3])
	if err != nil {
		return nil, err
	}
	n, d, v := x.Shape()[0], x.Shape()[1], w.Shape()[0]
	c := op.cache
	p := c.packed
	hit := p != nil && p.Dtype() == x.Dtype() && p.Shape().TotalSize() == n*d+v*d
	c.packed = nil // handed to gorgonia below or stale: never reused
	switch x.Dtype() {
	case tensor.Float32:
		p = ceBackwardOf(c, hit, p, g, slice[float32](x), slice[float32](w), targets, n, d, v)
	case tensor.Float64:
		p = ceBackwardOf(c, hit, p, g, slice[float64](x), slice[float64](w), targets, n, d, v)
	}
	c.x, c.w, c.targets = nil, nil, nil
	return p, nil
}

// ceBackwardOf returns the packed gradient for dloss = g: the cached one
// scaled by g when the cache matches these arrays, else a recomputation.
func ceBackwardOf[F Float](c *ceCache, hit bool, p *tensor.Dense, g float64, x, w []F, targets []int, n, d, v int) *tensor.Dense {
	if hit && sameArray(c.x, x) && sameArray(c.w, w) && sameArray(c.targets, targets) {
		c.hits++
		if g != 1 {
			pk := slice[F](p)
			gf := F(g)
			parallel.For(len(pk), addGrain, func(lo, hi int) {
				for i := lo; i < hi; i++ {
					pk[i] *= gf
				}
			})
		}
		return p
	}
	pk := make([]F, n*d+v*d)
	ceGradKernel(nil, pk[:n*d], pk[n*d:], x, w, targets, n, d, v, g/float64(n))
	return tensor.New(tensor.WithShape(len(pk)), tensor.WithBacking(pk))
}

// sameArray reports whether cached (a []E or nil) is the very slice s.
func sameArray[E float32 | float64 | int](cached any, s []E) bool {
	c, ok := cached.([]E)
	return ok && len(c) == len(s) && (len(s) == 0 || &c[0] == &s[0])
}

// scalarArg reads a scalar gradient: gorgonia passes *F64/*F32 for the seed
// of Grad and 0-d tensors elsewhere.
func scalarArg(op string, v G.Value) (float64, error) {
	switch d := v.Data().(type) {
	case float64:
		return d, nil
	case float32:
		return float64(d), nil
	case []float64:
		if len(d) == 1 {
			return d[0], nil
		}
	case []float32:
		if len(d) == 1 {
			return float64(d[0]), nil
		}
	}
	return 0, fmt.Errorf("%s: gradient is %T of shape %v, want a scalar", op, v, v.Shape())
}

// ceRows sets nll[i] = logsumexp(logits_i) − logits_i[targets[i]] with
// logits = x·wᵀ, at most ceChunk rows at a time. targets must be in range.
// Rows are independent here (no weight gradient is summed over them).
// When w is small enough to stay in L2 (evalBlockWeightBytes), the
// workers take whole chunks from a shared queue, each its own serial
// product, against an untransposed copy of w as mulTransposed reads, and
// its own rows: one parallel region for the pass instead of two per chunk
// (the science head's evaluation 10-25% faster). A larger head (the bench
// models' 8 MiB) was 5% slower so, each worker streaming all of w per
// chunk, and keeps the chunks in turn with each product split.
func ceRows[F Float](nll []float64, x, w []F, targets []int, n, d, v int) {
	var z F
	if d*v*int(unsafe.Sizeof(z)) > evalBlockWeightBytes {
		logits := poolGet[F](&ceLogits, min(ceChunk, n)*v) // written whole by each chunk's product
		defer poolPut(&ceLogits, logits)
		for c0 := 0; c0 < n; c0 += ceChunk {
			c := min(ceChunk, n-c0)
			lg := logits[:c*v]
			blas.MatMul(false, true, c, v, d, x[c0*d:(c0+c)*d], w, lg, false)
			parallel.For(c, denseRowsGrain(v), func(lo, hi int) {
				for i := lo; i < hi; i++ {
					nll[c0+i] = nllRow(lg[i*v:(i+1)*v], targets[c0+i])
				}
			})
		}
		return
	}
	rows := min(ceChunk, (n+parallel.Workers-1)/max(1, parallel.Workers))
	wt := poolGet[F](&stacks, d*v)
	defer poolPut(&stacks, wt)
	transposeInto(wt, v, w, v, d)
	mm := blockMatMul[F](rows, d)
	parallel.Drain((n+rows-1)/rows, func(take func() (int, bool)) {
		logits := poolGet[F](&stacks, rows*v)
		defer poolPut(&stacks, logits)
		for ch, ok := take(); ok; ch, ok = take() {
			c0 := ch * rows
			c := min(rows, n-c0)
			lg := logits[:c*v]
			mm(c, v, d, x[c0*d:(c0+c)*d], wt, lg)
			for i := range c {
				nll[c0+i] = nllRow(lg[i*v:(i+1)*v], targets[c0+i])
			}
		}
	})
}

// nllRow returns −log softmax(row)[t], overwriting row with its
// exponentials: nllGradRow's arithmetic (the evaluation loss equals the
// training loss bit for bit) without the gradient. The shifted
// exponentials are summed in float64 (rowSum's lanes for float32 rows,
// which use exp32: math.Exp cost as much as the logits GEMM).
func nllRow[F Float](row []F, t int) float64 {
	switch r := any(row).(type) {
	case []float32:
		zt := r[t]
		lse, _ := expLogSumExp32(r)
		return lse - float64(zt)
	case []float64:
		m, zt := maxOfRow(r), r[t]
		var s float64
		for j, z := range r {
			e := math.Exp(z - m)
			r[j] = e
			s += e
		}
		return m + math.Log(s) - zt
	}
	panic("ops: nllRow of a non-float row")
}

// expLogSumExp32 overwrites r with exp32(r − m) for its maximum m and
// returns log Σ_j e^{r_j} = m + log s and s, the exponentials' float64
// sum (rowSum): the float32 arithmetic of the cross-entropy and the
// router z-loss.
func expLogSumExp32(r []float32) (lse, s float64) {
	m := maxForShift(r)
	shift(r, m)
	exp32s(r, r)
	s = rowSum(r)
	return float64(m) + math.Log(s), s
}

// nllGradRow returns −log softmax(row)[t] (nllRow's arithmetic) and
// overwrites row with
// scale·(softmax(row) − onehot(t)).
func nllGradRow[F Float](row []F, t int, scale float64) float64 {
	switch r := any(row).(type) {
	case []float32:
		zt := r[t]
		lse, s := expLogSumExp32(r)
		scale32(r, float32(scale/s))
		r[t] -= float32(scale)
		return lse - float64(zt)
	case []float64:
		m, zt := maxOfRow(r), r[t]
		var s float64
		for j, z := range r {
			e := math.Exp(z - m)
			r[j] = e
			s += e
		}
		k := scale / s
		for j := range r {
			r[j] *= k
		}
		r[t] -= scale
		return m + math.Log(s) - zt
	}
	panic("ops: nllGradRow of a non-float row")
}

// ceLogits holds the chunk of logits of ceRows and ceGradKernel: pooled, since a fresh
// buffer every step costs a page fault every 4 KB.
var ceLogits scratchPool

// ceGradKernel: with p = softmax(logits) per row,
// dlogits = scale·(p − onehot(target)), dx = dlogits·w and
// dw = Σ_chunks dlogitsᵀ·x_chunk; nll (nil to skip) receives each row's
// loss term as in ceRows. dx rows are written once per chunk; dw is
// accumulated in chunk order by GEMMs, so the sum order is fixed.
func ceGradKernel[F Float](nll []float64, dx, dw, x, w []F, targets []int, n, d, v int, scale float64) {
	logits := poolGet[F](&ceLogits, min(ceChunk, n)*v) // written whole by each chunk's product
	defer poolPut(&ceLogits, logits)
	for c0 := 0; c0 < n; c0 += ceChunk {
		c := min(ceChunk, n-c0)
		lg := logits[:c*v]
		xc := x[c0*d : (c0+c)*d]
		blas.MatMul(false, true, c, v, d, xc, w, lg, false)
		parallel.For(c, denseRowsGrain(v), func(lo, hi int) {
			for i := lo; i < hi; i++ {
				l := nllGradRow(lg[i*v:(i+1)*v], targets[c0+i], scale)
				if nll != nil {
					nll[c0+i] = l
				}
			}
		})
		blas.MatMul(false, false, c, d, v, lg, w, dx[c0*d:(c0+c)*d], false)
		blas.MatMul(true, false, v, d, c, lg, xc, dw, c0 > 0)
	}
}

// TokenLogProbs sets dst[i] = log softmax(x_i·wᵀ)[targets[i]] for the n rows
// of x [n, d] and the head w [v, d]: the evaluation-side twin of
// LMHeadCrossEntropy (same chunked kernel, so dst[i] is exactly minus the
// loss term of row i). It returns an error for a target outside [0, v) or
// slices of the wrong length.
func TokenLogProbs[F Float](dst []float64, x, w []F, targets []int, n, d, v int) error {
	if len(dst) != n || len(x) != n*d || len(w) != v*d || len(targets) != n {
		return fmt.Errorf("token log-probs: lengths dst %d, x %d, w %d, targets %d do not fit n=%d, d=%d, v=%d", len(dst), len(x), len(w), len(targets), n, d, v)
	}
	for i, t := range targets {
		if t < 0 || t >= v {
			return fmt.Errorf("token log-probs: target %d at position %d is outside [0, %d)", t, i, v)
		}
	}
	if n == 0 {
		return nil
	}
	ceRows(dst, x, w, targets, n, d, v)
	for i := range dst {
		dst[i] = -dst[i]
	}
	return nil
}

// LogitsRows sets dst [n, v] = x·wᵀ for x [n, d] and the head w [v, d]: full
// logits for generation or inspection (training never needs them all).
// It panics if the slice lengths do not match the sizes.
func LogitsRows[F Float](dst, x, w []F, n, d, v int) {
	if len(dst) != n*v || len(x) != n*d || len(w) != v*d {
		panic(fmt.Sprintf("ops: LogitsRows lengths dst %d, x %d, w %d do not fit n=%d, d=%d, v=%d", len(dst), len(x), len(w), n, d, v))
	}
	blas.MatMul(false, true, n, v, d, x, w, dst, false)
}
