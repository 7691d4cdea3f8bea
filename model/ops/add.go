package ops

import (
	"fmt"

	"github.com/chewxy/hm"
	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"

	"github.com/moetrain/moetrain/internal/parallel"
)

// Add returns a + b for two tensors of the same shape (the residual
// connections). Unlike gorgonia's Add it runs on all cores and writes the
// sum in one pass instead of cloning a first.
func Add(a, b *G.Node) (*G.Node, error) {
	if !a.Shape().Eq(b.Shape()) {
		return nil, fmt.Errorf("Add: shapes %v and %v differ", a.Shape(), b.Shape())
	}
	return G.ApplyOp(newAddOp(a.Shape().Dims()), a, b)
}

type addOp struct {
	base
	dims int
}

func newAddOp(dims int) *addOp {
	return &addOp{base: base{name: "Add", arity: 2, key: fmt.Sprintf("dims=%d", dims)}, dims: dims}
}

func (op *addOp) Type() hm.Type { return fnType(op.dims, op.dims, op.dims) }

func (op *addOp) InferShape(ds ...G.DimSizer) (tensor.Shape, error) {
	s, err := shapesOf(ds)
	if err != nil {
		return nil, err
	}
	if !s[0].Eq(s[1]) {
		return nil, fmt.Errorf("Add: shapes %v and %v differ", s[0], s[1])
	}
	return s[0].Clone(), nil
}

func (op *addOp) Do(vs ...G.Value) (G.Value, error) {
	if profiling.Load() {
		defer record(op.name, startClock())
	}
	in, err := floatInputs(op.name, vs)
	if err != nil {
		return nil, err
	}
	a, b := in[0], in[1]
	if !a.Shape().Eq(b.Shape()) {
		return nil, fmt.Errorf("Add: shapes %v and %v differ", a.Shape(), b.Shape())
	}
	y := op.outputOver(a.Dtype(), a.Shape().Clone()...)
	addDense(y, a, b)
	return y, nil
}

// addDense sets y = a + b for float tensors of one dtype and size (y may be
// a or b), split over the workers: the Add op's kernel and the engine's.
func addDense(y, a, b *tensor.Dense) {
	switch a.Dtype() {
	case tensor.Float32:
		addKernel(slice[float32](y), slice[float32](a), slice[float32](b))
	case tensor.Float64:
		addKernel(slice[float64](y), slice[float64](a), slice[float64](b))
	}
}

func (op *addOp) DiffWRT(int) []bool { return []bool{true, true} }

// SymDiff passes the incoming gradient unchanged to both inputs (as
// gorgonia's own Add does): no node, no copy.
func (op *addOp) SymDiff(_ G.Nodes, _, grad *G.Node) (G.Nodes, error) {
	return G.Nodes{grad, grad}, nil
}

// addGrain is the number of elements below which a sum stays on one core.
const addGrain = 1 << 14

// addKernel sets dst = a + b through addTo's vector kernel (x + y and
// y + x are the same float, so which operand dst already holds does not
// matter): a Go loop's scalar adds took 73 µs per science-size residual,
// eight a forward pass (docs/BENCHMARKS.md, round 16).
func addKernel[F Float](dst, a, b []F) {
	parallel.For(len(dst), addGrain, func(lo, hi int) {
		d, x, y := dst[lo:hi], a[lo:hi], b[lo:hi]
		switch {
		case len(d) == 0:
		case &d[0] == &y[0]:
			addTo(d, x)
		default:
			if &d[0] != &x[0] {
				copy(d, x)
			}
			addTo(d, y)
		}
	})
}
