package ops

import (
	"fmt"

	"github.com/chewxy/hm"
	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"

	"github.com/moetrain/moetrain/internal/blas"
)

// Linear returns y = x·wᵀ for x [N, in] and w [out, in] (PyTorch layout), so
// y is [N, out]. No bias: no layer in the model has one (DESIGN.md §1).
func Linear(x, w *G.Node) (*G.Node, error) {
	return G.ApplyOp(newLinearOp(), x, w)
}

type linearOp struct{ base }

func newLinearOp() *linearOp { return &linearOp{base{name: "Linear", arity: 2}} }

func (op *linearOp) Type() hm.Type { return fnType(2, 2, 2) }

func (op *linearOp) InferShape(ds ...G.DimSizer) (tensor.Shape, error) {
	s, err := shapesOf(ds)
	if err != nil {
		return nil, err
	}
	if s[0].Dims() != 2 || s[1].Dims() != 2 || s[0][1] != s[1][1] {
		return nil, fmt.Errorf("Linear: x %v and w %v: want [N, in] and [out, in]", s[0], s[1])
	}
	return tensor.Shape{s[0][0], s[1][0]}, nil
}

func (op *linearOp) Do(vs ...G.Value) (G.Value, error) {
	if profiling.Load() {
		defer record(op.name, startClock())
	}
	in, err := floatInputs(op.name, vs)
	if err != nil {
		return nil, err
	}
	x, w := in[0], in[1]
	n, k, m := x.Shape()[0], x.Shape()[1], w.Shape()[0]
	if w.Shape()[1] != k {
		return nil, fmt.Errorf("Linear: x %v and w %v: inner sizes differ", x.Shape(), w.Shape())
	}
	y := op.outputOver(x.Dtype(), n, m)
	switch x.Dtype() {
	case tensor.Float32:
		mulTransposed(slice[float32](y), slice[float32](x), slice[float32](w), n, m, k)
	case tensor.Float64:
		mulTransposed(slice[float64](y), slice[float64](x), slice[float64](w), n, m, k)
	}
	return y, nil
}

// mulTransposed sets y = x·wᵀ for x [n, k] and w [m, k] (a forward product
// against PyTorch-layout weights) as x·wt with wt = wᵀ [k, m] copied first,
// from the stacks pool. At every forward shape of the science and bench
// models oneDNN ran the product with an untransposed right operand 4-15%
// faster than with w transposed by the kernel (docs/BENCHMARKS.md, round
// 12); the copy is one pass over w, small next to the product's n rows.
func mulTransposed[F Float](y, x, w []F, n, m, k int) {
	wt := poolGet[F](&stacks, k*m)
	transposeInto(wt, m, w, m, k)
	blas.MatMul(false, false, n, m, k, x, wt, y, false)
	poolPut(&stacks, wt)
}

func (op *linearOp) DiffWRT(int) []bool { return []bool{true, true} }

func (op *linearOp) SymDiff(in G.Nodes, out, grad *G.Node) (G.Nodes, error) {
	bwd := &linearBackward{base{name: "LinearBackward", arity: 3}}
	return packedGrads(bwd, G.Nodes{in[0], in[1], grad}, in, []bool{true, true})
}

// linearBackward packs [dx (N·in) | dw (out·in)] from (x, w, dy):
// dx = dy·w and dw = dyᵀ·x, each a single GEMM with BLAS transpose flags, so
// the result does not depend on the worker count and nothing is transposed
// in memory.
type linearBackward struct{ base }

func (op *linearBackward) Type() hm.Type { return fnType(2, 2, 2, 1) }

func (op *linearBackward) InferShape(ds ...G.DimSizer) (tensor.Shape, error) {
	s, err := shapesOf(ds)
	if err != nil {
		return nil, err
	}
	return tensor.Shape{s[0].TotalSize() + s[1].TotalSize()}, nil
}

func (op *linearBackward) Do(vs ...G.Value) (G.Value, error) {
	if profiling.Load() {
		defer record(op.name, startClock())
	}
	in, err := floatInputs(op.name, vs)
	if err != nil {
		return nil, err
	}
	x, w, dy := in[0], in[1], in[2]
	n, k, m := x.Shape()[0], x.Shape()[1], w.Shape()[0]
	p := op.outputOver(x.Dtype(), n*k+m*k)
	switch x.Dtype() {
	case tensor.Float32:
		linearBackwardKernel(slice[float32](p), slice[float32](x), slice[float32](w), slice[float32](dy), n, k, m)
	case tensor.Float64:
		linearBackwardKernel(slice[float64](p), slice[float64](x), slice[float64](w), slice[float64](dy), n, k, m)
	}
	return p, nil
}

// linearBackwardKernel writes dx into packed[:n·k] and dw into the rest.
func linearBackwardKernel[F Float](packed, x, w, dy []F, n, k, m int) {
	dx, dw := packed[:n*k], packed[n*k:]
	blas.MatMul(false, false, n, k, m, dy, w, dx, false)
	blas.MatMul(true, false, m, k, n, dy, x, dw, false)
}

// floatInputs converts every value to *tensor.Dense and checks that they all
// share one float dtype (float32 or float64), so kernels can assert types.
func floatInputs(op string, vs []G.Value) ([]*tensor.Dense, error) {
	in, err := inputs(op, vs)
	if err != nil {
		return nil, err
	}
	if err := sameFloat(op, in...); err != nil {
		return nil, err
	}
	return in, nil
}

// sameFloat checks that every tensor has the dtype of the first, and that it
// is float32 or float64.
func sameFloat(op string, ts ...*tensor.Dense) error {
	dt := ts[0].Dtype()
	if dt != tensor.Float32 && dt != tensor.Float64 {
		return fmt.Errorf("%s: dtype %v, want float32 or float64", op, dt)
	}
	for i, t := range ts[1:] {
		if t.Dtype() != dt {
			return fmt.Errorf("%s: input %d has dtype %v, input 0 has %v", op, i+1, t.Dtype(), dt)
		}
	}
	return nil
}
