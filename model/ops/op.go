package ops

import (
	"fmt"
	"hash"
	"hash/fnv"

	"github.com/chewxy/hm"
	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// Float is the element type of every kernel: float32 for training, float64
// for gradient checks.
type Float interface{ float32 | float64 }

// base is the bookkeeping half of gorgonia.Op shared by every op here. key
// must hold every field that changes what the op computes (sizes, k, wrt,
// flags): gorgonia merges nodes whose ops hash alike, so two ops that differ
// only in a field left out of key would be silently fused.
type base struct {
	name  string
	arity int
	key   string
	out   *tensor.Dense // the output returned by the last Do (see output)
}

// output returns a zeroed tensor of dtype dt and the given shape for Do to
// fill and return: the same tensor on every call while dtype and shape stay
// the same, so a training step does not allocate (and fault in) every
// activation and gradient anew. TapeMachine's Reset already allocated them
// fresh each run (gorgonia's tape machine does); keeping one buffer per op is safe because a
// node's value is only read within the run that produced it (the trainer
// copies gradients out before the next Run; Graph.Grad, Logits and
// RouterProbs are documented as valid until the next Run), and every node
// has its own op value. An op value applied to two nodes of one graph
// would break this, so none is.
func (b *base) output(dt tensor.Dtype, shape ...int) *tensor.Dense {
	return b.reuse(true, dt, shape...)
}

// outputOver is output for kernels that write every element of their
// output (GEMMs with beta 0, elementwise maps, scatters covering all rows
// and columns): the reused buffer keeps the last run's values instead of
// being zeroed, a pass over memory saved per op and step.
func (b *base) outputOver(dt tensor.Dtype, shape ...int) *tensor.Dense {
	return b.reuse(false, dt, shape...)
}

func (b *base) reuse(zero bool, dt tensor.Dtype, shape ...int) *tensor.Dense {
	if t := b.out; t != nil && t.Dtype() == dt && t.Shape().Eq(tensor.Shape(shape)) && t.IsNativelyAccessible() {
		switch d := t.Data().(type) {
		case []float32:
			if zero {
				clear(d)
			}
			return t
		case []float64:
			if zero {
				clear(d)
			}
			return t
		}
	}
	b.out = newOf(dt, shape...)
	return b.out
}

func (b base) Arity() int            { return b.arity }
func (b base) ReturnsPtr() bool      { return false }
func (b base) CallsExtern() bool     { return false }
func (b base) OverwritesInput() int  { return -1 }
func (b base) String() string        { return b.name + "{" + b.key + "}" }
func (b base) WriteHash(h hash.Hash) { fmt.Fprint(h, b.String()) }
func (b base) Hashcode() uint32 {
	h := fnv.New32a()
	b.WriteHash(h)
	return h.Sum32()
}

// sameShape is embedded by ops whose output has the shape of their first
// input.
type sameShape struct{}

func (sameShape) InferShape(ds ...G.DimSizer) (tensor.Shape, error) {
	s, err := shapesOf(ds)
	if err != nil {
		return nil, err
	}
	return s[0].Clone(), nil
}

// tensorType is a tensor of dims dimensions whose element type is the type
// variable 'a' (float32 or float64, fixed by the inputs).
func tensorType(dims int) hm.Type {
	if dims == 0 {
		return hm.TypeVariable('a')
	}
	return G.TensorType{Dims: dims, Of: hm.TypeVariable('a')}
}

// intVector is the type of integer inputs (token ids, hash tables).
var intVector = G.TensorType{Dims: 1, Of: tensor.Int}

// fnType builds the op type in → out from the dims of each input and of the
// output; a negative dims value means an integer vector.
func fnType(dims ...int) hm.Type {
	ts := make([]hm.Type, len(dims))
	for i, d := range dims {
		if d < 0 {
			ts[i] = intVector
		} else {
			ts[i] = tensorType(d)
		}
	}
	return hm.NewFnType(ts...)
}

// dense returns v as a *tensor.Dense or an error naming the op.
// gorgonia's scalar values (*G.F32, *G.F64) become 0-d tensors, so ops
// accept scalars from any source.
func dense(op string, v G.Value) (*tensor.Dense, error) {
	switch s := v.(type) {
	case *G.F32:
		return tensor.New(tensor.FromScalar(float32(*s))), nil
	case *G.F64:
		return tensor.New(tensor.FromScalar(float64(*s))), nil
	}
	t, ok := v.(*tensor.Dense)
	if !ok {
		return nil, fmt.Errorf("%s: input is %T, want *tensor.Dense", op, v)
	}
	return t, nil
}

// inputs converts every value to *tensor.Dense.
func inputs(op string, vs []G.Value) ([]*tensor.Dense, error) {
	out := make([]*tensor.Dense, len(vs))
	for i, v := range vs {
		t, err := dense(op, v)
		if err != nil {
			return nil, err
		}
		out[i] = t
	}
	return out, nil
}

// newOf allocates a zeroed tensor of dtype dt and the given shape, on the
// ops' engine (its Add runs on every worker).
func newOf(dt tensor.Dtype, shape ...int) *tensor.Dense {
	return tensor.New(tensor.Of(dt), tensor.WithShape(shape...), tensor.WithEngine(Engine))
}

// scalarOf returns a 0-d tensor holding v in dtype dt.
func scalarOf(dt tensor.Dtype, v float64) *tensor.Dense {
	if dt == tensor.Float32 {
		return tensor.New(tensor.FromScalar(float32(v)))
	}
	return tensor.New(tensor.FromScalar(v))
}

// ScalarValue reads a 0-d (or one-element) float value: a tensor or one of
// gorgonia's scalar values, such as a loss node's Value().
func ScalarValue(t interface{ Data() interface{} }) float64 {
	switch d := t.Data().(type) {
	case float32:
		return float64(d)
	case float64:
		return d
	case []float32:
		return float64(d[0])
	case []float64:
		return d[0]
	}
	panic(fmt.Sprintf("ops: ScalarValue of %T", t.Data()))
}

// slice returns the backing data of t as []F. It panics if the dtype is not F
// (an internal invariant: ops check dtypes before calling kernels).
// A 0-d tensor gives a slice of length 1.
func slice[F Float](t *tensor.Dense) []F {
	var zero F
	switch any(zero).(type) {
	case float32:
		return any(t.Float32s()).([]F)
	default:
		return any(t.Float64s()).([]F)
	}
}

// ints returns the backing data of an integer tensor.
func ints(t *tensor.Dense) []int { return t.Data().([]int) }

// ---------------------------------------------------------------------------
// Packed gradients. A gorgonia op has one output, but a backward pass usually
// produces the gradients of several inputs from shared work. The backward op
// therefore returns all of them concatenated in one flat tensor, and a
// zero-copy view op per input slices its gradient out.

// gradView selects elements [off, off+size) of a packed gradient and gives
// them the shape of the input they belong to.
type gradView struct {
	base
	off   int
	shape tensor.Shape
}

func newGradView(owner string, off int, shape tensor.Shape) *gradView {
	return &gradView{base: base{name: "gradView", arity: 1, key: fmt.Sprintf("%s,off=%d,shape=%v", owner, off, shape)}, off: off, shape: shape.Clone()}
}

func (op *gradView) Type() hm.Type {
	return hm.NewFnType(tensorType(1), tensorType(op.shape.Dims()))
}

func (op *gradView) InferShape(...G.DimSizer) (tensor.Shape, error) { return op.shape.Clone(), nil }

func (op *gradView) Do(vs ...G.Value) (G.Value, error) {
	if profiling.Load() {
		defer record(op.name, startClock())
	}
	p, err := dense("gradView", vs[0])
	if err != nil {
		return nil, err
	}
	n := op.shape.TotalSize()
	var backing any
	switch d := p.Data().(type) {
	case []float32:
		backing = d[op.off : op.off+n]
	case []float64:
		backing = d[op.off : op.off+n]
	default:
		return nil, fmt.Errorf("gradView: dtype %v", p.Dtype())
	}
	if op.shape.Dims() == 0 {
		return scalarOf(p.Dtype(), ScalarValue(tensor.New(tensor.WithBacking(backing)))), nil
	}
	return tensor.New(tensor.WithShape(op.shape.Clone()...), tensor.WithBacking(backing), tensor.WithEngine(Engine)), nil
}

// packedGrads applies bwd (whose output packs the gradients of every input i
// with diff[i] true, in input order) to children and returns one view node per
// input (nil where diff is false). sizes are taken from the input nodes.
func packedGrads(bwd G.Op, children G.Nodes, in G.Nodes, diff []bool) (G.Nodes, error) {
	packed, err := G.ApplyOp(bwd, children...)
	if err != nil {
		return nil, err
	}
	out := make(G.Nodes, len(in))
	off := 0
	for i, n := range in {
		if !diff[i] {
			continue
		}
		out[i], err = G.ApplyOp(newGradView(bwd.String(), off, n.Shape()), packed)
		if err != nil {
			return nil, err
		}
		off += n.Shape().TotalSize()
	}
	return out, nil
}

// packedSize is the length of a packed gradient for inputs of these shapes.
func packedSize(shapes []tensor.Shape, diff []bool) int {
	n := 0
	for i, s := range shapes {
		if diff[i] {
			n += s.TotalSize()
		}
	}
	return n
}

// shapesOf converts DimSizers (always tensor.Shape in practice) to shapes.
func shapesOf(ds []G.DimSizer) ([]tensor.Shape, error) {
	out := make([]tensor.Shape, len(ds))
	for i, d := range ds {
		s, ok := d.(tensor.Shape)
		if !ok {
			return nil, fmt.Errorf("input %d: shape is %T", i, d)
		}
		out[i] = s
	}
	return out, nil
}
