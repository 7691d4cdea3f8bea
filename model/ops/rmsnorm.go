package ops

import (
	"fmt"
	"math"

	"github.com/chewxy/hm"
	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"

	"github.com/moetrain/moetrain/internal/parallel"
)

// RMSNorm returns y[n,:] = w ⊙ x[n,:] / sqrt(mean_j x[n,j]² + eps) for
// x [N, D] and w [D] (DESIGN.md §1).
func RMSNorm(x, w *G.Node, eps float64) (*G.Node, error) {
	return G.ApplyOp(newRMSNormOp(eps), x, w)
}

type rmsNormOp struct {
	base
	eps float64
}

func newRMSNormOp(eps float64) *rmsNormOp {
	return &rmsNormOp{base: base{name: "RMSNorm", arity: 2, key: fmt.Sprintf("eps=%g", eps)}, eps: eps}
}

func (op *rmsNormOp) Type() hm.Type { return fnType(2, 1, 2) }

func (op *rmsNormOp) InferShape(ds ...G.DimSizer) (tensor.Shape, error) {
	s, err := shapesOf(ds)
	if err != nil {
		return nil, err
	}
	if s[0].Dims() != 2 || s[1].Dims() != 1 || s[0][1] != s[1][0] {
		return nil, fmt.Errorf("RMSNorm: x %v and w %v: want [N, D] and [D]", s[0], s[1])
	}
	return s[0].Clone(), nil
}

func (op *rmsNormOp) Do(vs ...G.Value) (G.Value, error) {
	if profiling.Load() {
		defer record(op.name, startClock())
	}
	in, err := inputs(op.name, vs)
	if err != nil {
		return nil, err
	}
	x, w := in[0], in[1]
	n, d := x.Shape()[0], x.Shape()[1]
	y := op.outputOver(x.Dtype(), n, d)
	switch x.Dtype() {
	case tensor.Float32:
		rmsNormForward(slice[float32](y), slice[float32](x), slice[float32](w), n, d, op.eps)
	case tensor.Float64:
		rmsNormForward(slice[float64](y), slice[float64](x), slice[float64](w), n, d, op.eps)
	default:
		return nil, fmt.Errorf("RMSNorm: dtype %v", x.Dtype())
	}
	return y, nil
}

func (op *rmsNormOp) DiffWRT(int) []bool { return []bool{true, true} }

func (op *rmsNormOp) SymDiff(in G.Nodes, out, grad *G.Node) (G.Nodes, error) {
	bwd := &rmsNormBackward{base: base{name: "RMSNormBackward", arity: 3, key: op.key}, eps: op.eps}
	return packedGrads(bwd, G.Nodes{in[0], in[1], grad}, in, []bool{true, true})
}

// rmsNormBackward packs [dx (N·D) | dw (D)] from (x, w, dy).
type rmsNormBackward struct {
	base
	eps float64
}

func (op *rmsNormBackward) Type() hm.Type { return fnType(2, 1, 2, 1) }

func (op *rmsNormBackward) InferShape(ds ...G.DimSizer) (tensor.Shape, error) {
	s, err := shapesOf(ds)
	if err != nil {
		return nil, err
	}
	return tensor.Shape{s[0].TotalSize() + s[1].TotalSize()}, nil
}

func (op *rmsNormBackward) Do(vs ...G.Value) (G.Value, error) {
	if profiling.Load() {
		defer record(op.name, startClock())
	}
	in, err := inputs(op.name, vs)
	if err != nil {
		return nil, err
	}
	x, w, dy := in[0], in[1], in[2]
	n, d := x.Shape()[0], x.Shape()[1]
	p := op.output(x.Dtype(), n*d+d)
	switch x.Dtype() {
	case tensor.Float32:
		pk := slice[float32](p)
		rmsNormBackwardKernel(pk[:n*d], pk[n*d:], slice[float32](x), slice[float32](w), slice[float32](dy), n, d, op.eps)
	case tensor.Float64:
		pk := slice[float64](p)
		rmsNormBackwardKernel(pk[:n*d], pk[n*d:], slice[float64](x), slice[float64](w), slice[float64](dy), n, d, op.eps)
	default:
		return nil, fmt.Errorf("RMSNormBackward: dtype %v", x.Dtype())
	}
	return p, nil
}

// rowBlock is the fixed number of rows whose partial weight gradients are
// summed together. Fixing it (rather than deriving it from the worker count)
// keeps reductions in the same order on any number of cores.
const rowBlock = 64

// rmsFromSquares is 1/sqrt(ss/d + eps), a row's rms⁻¹ from its sum of
// squares (rowSquares).
func rmsFromSquares(ss float64, d int, eps float64) float64 {
	return 1 / math.Sqrt(ss/float64(d)+eps)
}

// rmsRows32 reports whether float32 rows of width d go to the row
// kernels (rmsForwardRows32x8, rmsBackRows32x8): the same operations in
// the same order as the per-row calls, one call per chunk of rows instead
// of two per row (the calls' wrappers were a third of the op at d = 128,
// docs/BENCHMARKS.md round 16).
func rmsRows32[F Float](d int) bool {
	var z F
	_, f32 := any(z).(float32)
	return f32 && vexpOK && d%8 == 0 && d > 0
}

func rmsNormForward[F Float](y, x, w []F, n, d int, eps float64) {
	parallel.For(n, 16, func(lo, hi int) {
		if rmsRows32[F](d) {
			y32, x32, w32 := any(y[lo*d:hi*d]).([]float32), any(x[lo*d:hi*d]).([]float32), any(w[:d]).([]float32)
			rmsForwardRows32x8(&y32[0], &w32[0], &x32[0], hi-lo, d, eps)
			return
		}
		for i := lo; i < hi; i++ {
			xr := x[i*d : (i+1)*d]
			rmsScale(y[i*d:(i+1)*d], w, xr, F(rmsFromSquares(rowSquares(xr), d, eps)))
		}
	})
}

// rmsPartials holds rmsNormBackwardKernel's per-block weight gradients.
var rmsPartials scratchPool

// rmsNormBackwardKernel: with r = rms⁻¹ and y = w⊙x·r,
// dw_j = Σ_n dy_nj x_nj r_n, dx_nj = r_n w_j dy_nj − x_nj r_n³/D · Σ_k w_k dy_nk x_nk.
func rmsNormBackwardKernel[F Float](dx, dw, x, w, dy []F, n, d int, eps float64) {
	blocks := (n + rowBlock - 1) / rowBlock
	partial := poolGet[F](&rmsPartials, blocks*d) // pooled: a fresh one each call cost page faults
	defer poolPut(&rmsPartials, partial)
	clear(partial) // the kernels add into it
	parallel.For(blocks, 1, func(blo, bhi int) {
		for b := blo; b < bhi; b++ {
			pw := partial[b*d : (b+1)*d]
			if lo, hi := b*rowBlock, min(n, (b+1)*rowBlock); rmsRows32[F](d) {
				f32 := func(s []F) []float32 { return any(s).([]float32) }
				dx32, x32, dy32 := f32(dx[lo*d:hi*d]), f32(x[lo*d:hi*d]), f32(dy[lo*d:hi*d])
				rmsBackRows32x8(&dx32[0], &f32(pw)[0], &f32(w[:d])[0], &dy32[0], &x32[0], hi-lo, d, eps)
				continue
			}
			for i := b * rowBlock; i < min(n, (b+1)*rowBlock); i++ {
				xr, gr := x[i*d:(i+1)*d], dy[i*d:(i+1)*d]
				ss, dot := rowSquaresDot(xr, gr, w)
				r := rmsFromSquares(ss, d, eps)
				rmsGrad(dx[i*d:(i+1)*d], pw, w, gr, xr, F(r), F(r*r*r*dot/float64(d)))
			}
		}
	})
	for b := 0; b < blocks; b++ {
		for j, v := range partial[b*d : (b+1)*d] {
			dw[j] += v
		}
	}
}
