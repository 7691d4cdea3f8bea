package ops

import (
	"fmt"
	"slices"

	"github.com/chewxy/hm"
	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"

	"github.com/moetrain/moetrain/internal/blas"
)

// Linear returns y = x·wᵀ for x [N, in] and w [out, in] (PyTorch layout), so
// y is [N, out]. No bias: no layer in the model has one (DESIGN.md §1).
func Linear(x, w *G.Node) (*G.Node, error) { return LinearStacked(x, w) }

// LinearStacked returns x·[w_1; w_2; …]ᵀ for weights w_i [out_i, in]: y is
// [N, Σ out_i], row t holding x_t·w_1ᵀ, x_t·w_2ᵀ, … side by side. The
// attention's q, k and v projections run so: one product each way
// instead of three, and x has one consumer, whose backward forms dx in
// one product where three consumers' gradients were summed by gorgonia
// (docs/BENCHMARKS.md, round 15).
func LinearStacked(x *G.Node, ws ...*G.Node) (*G.Node, error) {
	if len(ws) == 0 {
		return nil, fmt.Errorf("Linear: no weights")
	}
	return G.ApplyOp(newLinearOp(len(ws)), append(G.Nodes{x}, ws...)...)
}

// linearOp takes (x, w_1, …, w_k).
type linearOp struct{ base }

func newLinearOp(weights int) *linearOp {
	return &linearOp{base{name: "Linear", arity: 1 + weights, key: fmt.Sprintf("weights=%d", weights)}}
}

func (op *linearOp) Type() hm.Type { return fnType(slices.Repeat([]int{2}, op.arity+1)...) }

func (op *linearOp) InferShape(ds ...G.DimSizer) (tensor.Shape, error) {
	s, err := shapesOf(ds)
	if err != nil {
		return nil, err
	}
	m := 0
	for _, w := range s[1:] {
		if s[0].Dims() != 2 || w.Dims() != 2 || s[0][1] != w[1] {
			return nil, fmt.Errorf("Linear: x %v and w %v: want [N, in] and [out, in]", s[0], w)
		}
		m += w[0]
	}
	return tensor.Shape{s[0][0], m}, nil
}

func (op *linearOp) Do(vs ...G.Value) (G.Value, error) {
	if profiling.Load() {
		defer record(op.name, startClock())
	}
	in, err := floatInputs(op.name, vs)
	if err != nil {
		return nil, err
	}
	x := in[0]
	n, k, m := x.Shape()[0], x.Shape()[1], 0
	for _, w := range in[1:] {
		if w.Shape()[1] != k {
			return nil, fmt.Errorf("Linear: x %v and w %v: inner sizes differ", x.Shape(), w.Shape())
		}
		m += w.Shape()[0]
	}
	y := op.outputOver(x.Dtype(), n, m)
	switch x.Dtype() {
	case tensor.Float32:
		mulStackedTransposed(slice[float32](y), slice[float32](x), slicesOf[float32](in[1:]), n, k)
	case tensor.Float64:
		mulStackedTransposed(slice[float64](y), slice[float64](x), slicesOf[float64](in[1:]), n, k)
	}
	return y, nil
}

// slicesOf returns the backing slices of ts.
func slicesOf[F Float](ts []*tensor.Dense) [][]F {
	out := make([][]F, len(ts))
	for i, t := range ts {
		out[i] = slice[F](t)
	}
	return out
}

// mulStackedTransposed sets y = x·[w_1; …]ᵀ for x [n, k] and w_i [m_i, k]
// (a forward product against PyTorch-layout weights) as x·wt with wt =
// [w_1ᵀ | w_2ᵀ | …] ([k, Σ m_i]) copied first, from the stacks pool. At
// every forward shape of the science and bench models oneDNN ran the
// product with an untransposed right operand 4-15% faster than with w
// transposed by the kernel (docs/BENCHMARKS.md, round 12); the copy is one
// pass over the weights, small next to the product's n rows.
func mulStackedTransposed[F Float](y, x []F, ws [][]F, n, k int) {
	m := 0
	for _, w := range ws {
		m += len(w) / k
	}
	wt := poolGet[F](&stacks, k*m)
	off := 0
	for _, w := range ws {
		transposeInto(wt[off:], m, w, len(w)/k, k)
		off += len(w) / k
	}
	blas.MatMul(false, false, n, m, k, x, wt, y, false)
	poolPut(&stacks, wt)
}

// mulTransposed is mulStackedTransposed with one weight w [m, k].
func mulTransposed[F Float](y, x, w []F, n, m, k int) {
	mulStackedTransposed(y, x, [][]F{w[:m*k]}, n, k)
}

func (op *linearOp) DiffWRT(int) []bool { return slices.Repeat([]bool{true}, op.arity) }

func (op *linearOp) SymDiff(in G.Nodes, out, grad *G.Node) (G.Nodes, error) {
	bwd := &linearBackward{base{name: "LinearBackward", arity: op.arity + 1, key: op.key}}
	return packedGrads(bwd, append(slices.Clone(in), grad), in, op.DiffWRT(0))
}

// linearBackward packs [dx (N·in) | dw_1 | dw_2 | …] from (x, w_1, …, dy):
// dx = dy·[w_1; w_2; …] and [dw_1; dw_2; …] = dyᵀ·x, each a single GEMM
// with BLAS transpose flags (the dw_i are consecutive rows of that
// product), so the result does not depend on the worker count.
type linearBackward struct{ base }

func (op *linearBackward) Type() hm.Type {
	return fnType(append(slices.Repeat([]int{2}, op.arity), 1)...)
}

func (op *linearBackward) InferShape(ds ...G.DimSizer) (tensor.Shape, error) {
	s, err := shapesOf(ds)
	if err != nil {
		return nil, err
	}
	n := 0
	for _, t := range s[:len(s)-1] {
		n += t.TotalSize()
	}
	return tensor.Shape{n}, nil
}

func (op *linearBackward) Do(vs ...G.Value) (G.Value, error) {
	if profiling.Load() {
		defer record(op.name, startClock())
	}
	in, err := floatInputs(op.name, vs)
	if err != nil {
		return nil, err
	}
	x, ws, dy := in[0], in[1:len(in)-1], in[len(in)-1]
	n, k, m := x.Shape()[0], x.Shape()[1], 0
	for _, w := range ws {
		m += w.Shape()[0]
	}
	p := op.outputOver(x.Dtype(), n*k+m*k)
	switch x.Dtype() {
	case tensor.Float32:
		linearBackwardKernel(slice[float32](p), slice[float32](x), slicesOf[float32](ws), slice[float32](dy), n, k, m)
	case tensor.Float64:
		linearBackwardKernel(slice[float64](p), slice[float64](x), slicesOf[float64](ws), slice[float64](dy), n, k, m)
	}
	return p, nil
}

// linearBackwardKernel writes dx into packed[:n·k] and the weights'
// gradients into the rest. Several weights are stacked into one [m, k]
// copy (from the stacks pool) for dx's product.
func linearBackwardKernel[F Float](packed, x []F, ws [][]F, dy []F, n, k, m int) {
	dx, dw := packed[:n*k], packed[n*k:]
	w := ws[0]
	if len(ws) > 1 {
		w = poolGet[F](&stacks, m*k)
		defer poolPut(&stacks, w)
		off := 0
		for _, wi := range ws {
			off += copy(w[off:], wi)
		}
	}
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
