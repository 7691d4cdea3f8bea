package ops

import (
	"fmt"
	"math"

	"github.com/chewxy/hm"
	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"

	"github.com/moetrain/moetrain/internal/parallel"
)

// Router variants beyond the paper's softmax router (docs/CONFIG.md,
// model.router): sigmoid scores (DeepSeek-V3) and the router z-loss
// (ST-MoE). Selection with a bias and the gate scaling are in Route.

// Sigmoid returns σ(x) element-wise for router logits x [N, E]: the
// DeepSeek-V3 router scores s = σ(u·e). Its gradient is s(1 − s)·dy.
func Sigmoid(x *G.Node) (*G.Node, error) {
	return G.ApplyOp(&sigmoidOp{base{name: "Sigmoid", arity: 1}}, x)
}

type sigmoidOp struct{ base }

func (op *sigmoidOp) Type() hm.Type { return fnType(2, 2) }

func (op *sigmoidOp) InferShape(ds ...G.DimSizer) (tensor.Shape, error) {
	s, err := shapesOf(ds)
	if err != nil {
		return nil, err
	}
	if s[0].Dims() != 2 {
		return nil, fmt.Errorf("Sigmoid: x %v: want [N, E]", s[0])
	}
	return s[0].Clone(), nil
}

func (op *sigmoidOp) Do(vs ...G.Value) (G.Value, error) {
	if profiling.Load() {
		defer record(op.name, startClock())
	}
	in, err := floatInputs(op.name, vs)
	if err != nil {
		return nil, err
	}
	x := in[0]
	y := op.outputOver(x.Dtype(), x.Shape()...)
	switch x.Dtype() {
	case tensor.Float32:
		sigmoids(slice[float32](y), slice[float32](x))
	case tensor.Float64:
		sigmoids(slice[float64](y), slice[float64](x))
	}
	return y, nil
}

func (op *sigmoidOp) DiffWRT(int) []bool { return []bool{true} }

// SymDiff reads the forward output s rather than recomputing it.
func (op *sigmoidOp) SymDiff(_ G.Nodes, out, grad *G.Node) (G.Nodes, error) {
	dx, err := G.ApplyOp(&sigmoidBackward{base: base{name: "SigmoidBackward", arity: 2}}, out, grad)
	if err != nil {
		return nil, err
	}
	return G.Nodes{dx}, nil
}

// sigmoidBackward computes dx = s(1 − s)·dy from (s, dy).
type sigmoidBackward struct {
	base
	sameShape
}

func (op *sigmoidBackward) Type() hm.Type { return fnType(2, 2, 2) }

func (op *sigmoidBackward) Do(vs ...G.Value) (G.Value, error) {
	if profiling.Load() {
		defer record(op.name, startClock())
	}
	in, err := floatInputs(op.name, vs)
	if err != nil {
		return nil, err
	}
	s, dy := in[0], in[1]
	dx := op.outputOver(s.Dtype(), s.Shape()...)
	switch s.Dtype() {
	case tensor.Float32:
		sigmoidGrad(slice[float32](dx), slice[float32](s), slice[float32](dy))
	case tensor.Float64:
		sigmoidGrad(slice[float64](dx), slice[float64](s), slice[float64](dy))
	}
	return dx, nil
}

func sigmoidGrad[F Float](dx, s, dy []F) {
	for i, v := range s {
		dx[i] = v * (1 - v) * dy[i]
	}
}

// RowSigmoid writes σ(x) into y (which may alias x) exactly as the Sigmoid
// op computes it, for decoders that must route as the graph does.
func RowSigmoid[F Float](y, x []F) { sigmoids(y, x) }

// ZLoss is the router z-loss of ST-MoE (Zoph et al. 2022, eq. 5) on router
// logits x [N, E]:
//
//	L = α · (1/N) Σ_t (log Σ_i exp x_{t,i})²
//
// It pulls the logits towards zero, which keeps the router's softmax (and
// the gates) numerically stable. ∂L/∂x_{t,i} = 2α/N · lse_t · softmax(x_t)_i.
func ZLoss(x *G.Node, alpha float64) (*G.Node, error) {
	if x.Shape().Dims() != 2 {
		return nil, fmt.Errorf("ZLoss: logits %v, want [N, E]", x.Shape())
	}
	return G.ApplyOp(&zLossOp{base: base{name: "ZLoss", arity: 1, key: fmt.Sprintf("alpha=%g", alpha)}, alpha: alpha}, x)
}

type zLossOp struct {
	base
	alpha float64
}

func (op *zLossOp) Type() hm.Type { return fnType(2, 0) }

func (op *zLossOp) InferShape(ds ...G.DimSizer) (tensor.Shape, error) {
	s, err := shapesOf(ds)
	if err != nil {
		return nil, err
	}
	if s[0].Dims() != 2 || s[0][1] < 1 {
		return nil, fmt.Errorf("ZLoss: logits %v, want [N, E]", s[0])
	}
	return tensor.ScalarShape(), nil
}

func (op *zLossOp) Do(vs ...G.Value) (G.Value, error) {
	if profiling.Load() {
		defer record(op.name, startClock())
	}
	x, err := dense(op.name, vs[0])
	if err != nil {
		return nil, err
	}
	n, e := x.Shape()[0], x.Shape()[1]
	var lse []float64
	switch x.Dtype() {
	case tensor.Float32:
		lse = rowLogSumExp(slice[float32](x), n, e)
	case tensor.Float64:
		lse = rowLogSumExp(slice[float64](x), n, e)
	default:
		return nil, fmt.Errorf("ZLoss: dtype %v", x.Dtype())
	}
	var sum float64
	for _, v := range lse {
		sum += v * v
	}
	return scalarOf(x.Dtype(), op.alpha*sum/float64(max(n, 1))), nil
}

// rowLogSumExp returns log Σ_i exp x_{t,i} of every row, shifted by the
// row's max so that nothing overflows. float32 rows exponentiate a copy
// with exp32, eight lanes at a time (expLogSumExp32, the cross-entropy's
// arithmetic); math.Exp took about 0.85 ms a layer for the science
// router's 2048 × 63 logits (docs/BENCHMARKS.md, round 14).
func rowLogSumExp[F Float](x []F, n, e int) []float64 {
	out := make([]float64, n)
	parallel.For(n, denseRowsGrain(e), func(lo, hi int) {
		var buf []float32
		for t := lo; t < hi; t++ {
			switch row := any(x[t*e : (t+1)*e]).(type) {
			case []float32:
				buf = append(buf[:0], row...)
				out[t], _ = expLogSumExp32(buf)
			case []float64:
				m := maxOfRow(row)
				var s float64
				for _, v := range row {
					s += math.Exp(v - m)
				}
				out[t] = m + math.Log(s)
			}
		}
	})
	return out
}

func (op *zLossOp) DiffWRT(int) []bool { return []bool{true} }

func (op *zLossOp) SymDiff(in G.Nodes, _, grad *G.Node) (G.Nodes, error) {
	bwd := &zLossBackward{base: base{name: "ZLossBackward", arity: 2, key: op.key}, alpha: op.alpha}
	dx, err := G.ApplyOp(bwd, in[0], grad)
	if err != nil {
		return nil, err
	}
	return G.Nodes{dx}, nil
}

// zLossBackward computes dx [N, E] from (x, dL).
type zLossBackward struct {
	base
	sameShape
	alpha float64
}

func (op *zLossBackward) Type() hm.Type { return fnType(2, 0, 2) }

func (op *zLossBackward) Do(vs ...G.Value) (G.Value, error) {
	if profiling.Load() {
		defer record(op.name, startClock())
	}
	x, err := dense(op.name, vs[0])
	if err != nil {
		return nil, err
	}
	dl, err := scalarOf64(vs[1])
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op.name, err)
	}
	n, e := x.Shape()[0], x.Shape()[1]
	dx := op.outputOver(x.Dtype(), n, e)
	c := 2 * op.alpha * dl / float64(max(n, 1))
	switch x.Dtype() {
	case tensor.Float32:
		zLossGrad(slice[float32](dx), slice[float32](x), n, e, c)
	case tensor.Float64:
		zLossGrad(slice[float64](dx), slice[float64](x), n, e, c)
	default:
		return nil, fmt.Errorf("%s: dtype %v", op.name, x.Dtype())
	}
	return dx, nil
}

// zLossGrad writes dx_{t,i} = c · lse_t · softmax(x_t)_i. A float32 row
// is formed in place in dx: its shifted exponentials e_i and their sum s
// (rowLogSumExp's arithmetic, so lse_t is the forward's), then
// dx_i = e_i · float32(c·lse_t/s).
func zLossGrad[F Float](dx, x []F, n, e int, c float64) {
	if d32, ok := any(dx).([]float32); ok {
		x32 := any(x).([]float32)
		parallel.For(n, denseRowsGrain(e), func(lo, hi int) {
			for t := lo; t < hi; t++ {
				row := d32[t*e : (t+1)*e]
				copy(row, x32[t*e:(t+1)*e])
				lse, s := expLogSumExp32(row)
				scale32(row, float32(c*lse/s))
			}
		})
		return
	}
	lse := rowLogSumExp(x, n, e)
	parallel.For(n, denseRowsGrain(e), func(lo, hi int) {
		for t := lo; t < hi; t++ {
			for i, v := range x[t*e : (t+1)*e] {
				dx[t*e+i] = F(c * lse[t] * math.Exp(float64(v)-lse[t]))
			}
		}
	})
}
