package ops

import (
	"fmt"

	"github.com/chewxy/hm"
	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"

	"github.com/moetrain/moetrain/internal/parallel"
)

// DropTop returns the router probabilities s [N, E] with the r largest
// entries of each row set to zero: inserted between the router's Softmax and
// the MoE op, it makes every token skip its r most probable routed experts
// and take the next K instead, whose gates keep their raw probabilities. This
// is the paper's redundancy test ("disable the top routed experts", DESIGN.md §4.1,
// Fig. 4). The dropped entries are chosen with TopK's rule (ties towards the
// lower index). The gradient passes through the kept entries unchanged and is
// zero at the dropped ones. r = 0 is the identity.
func DropTop(s *G.Node, r int) (*G.Node, error) {
	if r < 0 {
		return nil, fmt.Errorf("DropTop: r = %d, want >= 0", r)
	}
	return G.ApplyOp(newDropTopOp(r), s)
}

type dropTopOp struct {
	base
	r int
}

func newDropTopOp(r int) *dropTopOp {
	return &dropTopOp{base: base{name: "DropTop", arity: 1, key: fmt.Sprintf("r=%d", r)}, r: r}
}

func (op *dropTopOp) Type() hm.Type { return fnType(2, 2) }

func (op *dropTopOp) InferShape(ds ...G.DimSizer) (tensor.Shape, error) {
	s, err := shapesOf(ds)
	if err != nil {
		return nil, err
	}
	if s[0].Dims() != 2 {
		return nil, fmt.Errorf("DropTop: s %v: want [N, E]", s[0])
	}
	if op.r > s[0][1] {
		return nil, fmt.Errorf("DropTop: cannot drop %d of %d experts", op.r, s[0][1])
	}
	return s[0].Clone(), nil
}

func (op *dropTopOp) Do(vs ...G.Value) (G.Value, error) {
	if profiling.Load() {
		defer record(op.name, startClock())
	}
	in, err := floatInputs(op.name, vs)
	if err != nil {
		return nil, err
	}
	x := in[0]
	n, e := x.Shape()[0], x.Shape()[1]
	y := newOf(x.Dtype(), n, e)
	switch x.Dtype() {
	case tensor.Float32:
		dropTopRows(slice[float32](y), slice[float32](x), slice[float32](x), n, e, op.r)
	case tensor.Float64:
		dropTopRows(slice[float64](y), slice[float64](x), slice[float64](x), n, e, op.r)
	}
	return y, nil
}

func (op *dropTopOp) DiffWRT(int) []bool { return []bool{true} }

// SymDiff masks the incoming gradient with the same rows of s: the backward
// op reads the forward's input, not its output, because a kept probability
// may itself be zero (underflow) and must still pass its gradient.
func (op *dropTopOp) SymDiff(in G.Nodes, _, grad *G.Node) (G.Nodes, error) {
	bwd := &dropTopBackward{base: base{name: "DropTopBackward", arity: 2, key: op.key}, r: op.r}
	dx, err := G.ApplyOp(bwd, in[0], grad)
	if err != nil {
		return nil, err
	}
	return G.Nodes{dx}, nil
}

// dropTopBackward computes ds = dy with the entries DropTop zeroed set to
// zero, from (s, dy).
type dropTopBackward struct {
	base
	sameShape
	r int
}

func (op *dropTopBackward) Type() hm.Type { return fnType(2, 2, 2) }

func (op *dropTopBackward) Do(vs ...G.Value) (G.Value, error) {
	if profiling.Load() {
		defer record(op.name, startClock())
	}
	in, err := floatInputs(op.name, vs)
	if err != nil {
		return nil, err
	}
	s, dy := in[0], in[1]
	n, e := s.Shape()[0], s.Shape()[1]
	dx := newOf(s.Dtype(), n, e)
	switch s.Dtype() {
	case tensor.Float32:
		dropTopRows(slice[float32](dx), slice[float32](dy), slice[float32](s), n, e, op.r)
	case tensor.Float64:
		dropTopRows(slice[float64](dx), slice[float64](dy), slice[float64](s), n, e, op.r)
	}
	return dx, nil
}

// dropTopRows copies src into dst row by row and zeroes, in each row, the
// positions of the r largest entries of key (key and src may be the same
// slice; dst must not alias key).
func dropTopRows[F Float](dst, src, key []F, n, e, r int) {
	copy(dst, src)
	if r == 0 || e == 0 {
		return
	}
	parallel.For(n, denseRowsGrain(e), func(lo, hi int) {
		idx := make([]int32, r)
		for i := lo; i < hi; i++ {
			TopK(idx, key[i*e:(i+1)*e], r)
			for _, j := range idx {
				dst[i*e+int(j)] = 0
			}
		}
	})
}
