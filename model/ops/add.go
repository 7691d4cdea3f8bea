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
	// into is the input the sum is written over, −1 for a buffer of the
	// op's own (AddInPlace).
	into int
}

func newAddOp(dims int) *addOp {
	return &addOp{base: base{name: "Add", arity: 2, key: fmt.Sprintf("dims=%d", dims)}, dims: dims, into: -1}
}

// AddInPlace makes every Add node of g whose second input (else first)
// is read by that Add alone write its sum over that input instead of
// into a buffer of its own, and returns how many it changed. Call it on
// a finished graph, its backward built. An input qualifies if it is made
// by an op of this package that is not a view of its own input and it is
// not in keep (values read after a run). The sum then lands in lines the
// input's op has just written, in cache, where the Add's own buffer was
// last written a pass ago and came back from memory: 8 residual sums of
// a science forward pass took 0.7 ms so and 0.1-0.2 ms in place
// (docs/BENCHMARKS.md, round 21). The input's node then holds the sum
// after a run; no op here reads its output but through the graph.
func AddInPlace(g *G.ExprGraph, keep ...*G.Node) int {
	readers := map[*G.Node]int{}
	for _, n := range g.AllNodes() {
		for _, c := range children(g, n) {
			readers[c]++
		}
	}
	kept := map[*G.Node]bool{}
	for _, n := range keep {
		kept[n] = true
	}
	changed := 0
	for _, n := range g.AllNodes() {
		op, ok := n.Op().(*addOp)
		if !ok {
			continue
		}
		in := children(g, n)
		for _, i := range []int{1, 0} {
			c := in[i]
			if readers[c] != 1 || kept[c] || !ownsOutput(c.Op()) {
				continue
			}
			op.into = i
			changed++
			break
		}
	}
	return changed
}

// ownsOutput reports whether op is one of this package's whose output is
// a buffer of its own (every op here but gradView's views).
func ownsOutput(op G.Op) bool {
	if _, ok := op.(*gradView); ok {
		return false
	}
	_, ok := op.(interface{ isOp() })
	return ok
}

func (*base) isOp() {}

// children returns the inputs of n's op, in order.
func children(g *G.ExprGraph, n *G.Node) []*G.Node {
	var cs []*G.Node
	for it := g.From(n.ID()); it.Next(); {
		cs = append(cs, it.Node().(*G.Node))
	}
	return cs
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
	y := b
	switch op.into {
	case 0:
		y = a
	case -1:
		y = op.outputOver(a.Dtype(), a.Shape().Clone()...)
	}
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
