package ops

import (
	"fmt"
	"math"

	"github.com/chewxy/hm"
	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"

	"github.com/moetrain/moetrain/internal/parallel"
)

// Softmax returns the softmax of each row of x [N, E] (the MoE router
// scores s = softmax(u·Wᵀ), DESIGN.md §2). Each row is shifted by its own max, so
// any finite logits give finite probabilities (tensor's SoftMax shifts by
// the first element of the whole tensor, which overflows when rows differ).
func Softmax(x *G.Node) (*G.Node, error) {
	return G.ApplyOp(newSoftmaxOp(), x)
}

type softmaxOp struct{ base }

func newSoftmaxOp() *softmaxOp { return &softmaxOp{base{name: "Softmax", arity: 1}} }

func (op *softmaxOp) Type() hm.Type { return fnType(2, 2) }

func (op *softmaxOp) InferShape(ds ...G.DimSizer) (tensor.Shape, error) {
	s, err := shapesOf(ds)
	if err != nil {
		return nil, err
	}
	if s[0].Dims() != 2 {
		return nil, fmt.Errorf("Softmax: x %v: want [N, E]", s[0])
	}
	return s[0].Clone(), nil
}

func (op *softmaxOp) Do(vs ...G.Value) (G.Value, error) {
	if profiling.Load() {
		defer record(op.name, startClock())
	}
	in, err := floatInputs(op.name, vs)
	if err != nil {
		return nil, err
	}
	x := in[0]
	n, e := x.Shape()[0], x.Shape()[1]
	y := op.outputOver(x.Dtype(), n, e)
	switch x.Dtype() {
	case tensor.Float32:
		softmaxRows(slice[float32](y), slice[float32](x), n, e)
	case tensor.Float64:
		softmaxRows(slice[float64](y), slice[float64](x), n, e)
	}
	return y, nil
}

func (op *softmaxOp) DiffWRT(int) []bool { return []bool{true} }

// SymDiff reads the forward output s rather than recomputing it from x.
func (op *softmaxOp) SymDiff(_ G.Nodes, out, grad *G.Node) (G.Nodes, error) {
	dx, err := G.ApplyOp(&softmaxBackward{base: base{name: "SoftmaxBackward", arity: 2}}, out, grad)
	if err != nil {
		return nil, err
	}
	return G.Nodes{dx}, nil
}

// softmaxBackward computes dx = s ⊙ (dy − Σ_j dy_j s_j) row by row from
// (s, dy).
type softmaxBackward struct {
	base
	sameShape
}

func (op *softmaxBackward) Type() hm.Type { return fnType(2, 2, 2) }

func (op *softmaxBackward) Do(vs ...G.Value) (G.Value, error) {
	if profiling.Load() {
		defer record(op.name, startClock())
	}
	in, err := floatInputs(op.name, vs)
	if err != nil {
		return nil, err
	}
	s, dy := in[0], in[1]
	n, e := s.Shape()[0], s.Shape()[1]
	dx := op.outputOver(s.Dtype(), n, e)
	switch s.Dtype() {
	case tensor.Float32:
		softmaxBackwardRows(slice[float32](dx), slice[float32](s), slice[float32](dy), n, e)
	case tensor.Float64:
		softmaxBackwardRows(slice[float64](dx), slice[float64](s), slice[float64](dy), n, e)
	}
	return dx, nil
}

// denseRowGrain is how many elements a parallel.For chunk of rows should hold at
// least before splitting across cores is worth a goroutine.
const denseRowGrain = 1 << 13

// denseRowsGrain converts denseRowGrain to a number of rows of width w.
func denseRowsGrain(w int) int { return max(1, denseRowGrain/max(w, 1)) }

func softmaxRows[F Float](y, x []F, n, e int) {
	if e == 0 {
		return
	}
	parallel.For(n, denseRowsGrain(e), func(lo, hi int) {
		if y32, ok := any(y).([]float32); ok && vexpOK && e >= 8 {
			// One call per 64 rows (softmaxRows32x8, the same bits):
			// RowSoftmax's eight calls a router row of 63 floats were most
			// of the op (docs/BENCHMARKS.md, round 16).
			x32 := any(x).([]float32)
			_, _ = y32[hi*e-1], x32[hi*e-1]
			var nan [64]bool
			for r0 := lo; r0 < hi; r0 += len(nan) {
				r1 := min(hi, r0+len(nan))
				softmaxRows32x8(&y32[r0*e], &x32[r0*e], &nan[0], r1-r0, e)
				for i := r0; i < r1; i++ {
					if nan[i-r0] {
						RowSoftmax(y[i*e:(i+1)*e], x[i*e:(i+1)*e])
					}
				}
			}
			return
		}
		for i := lo; i < hi; i++ {
			RowSoftmax(y[i*e:(i+1)*e], x[i*e:(i+1)*e])
		}
	})
}

// RowSoftmax writes softmax(x) into y (which may alias x). It is the
// router softmax; the KV-cache decoder calls it too, so that it routes
// every token exactly as the graph does. Every exponent is ≤ 0 (the row is
// shifted by its maximum), so nothing overflows, and the row's sum is kept
// in float64.
//
// float32 rows take exp32 (rowSoftmax32), eight lanes at a time, as the
// attention softmax does; float64 rows take math.Exp, four at a time for
// rows of up to 256 (expRow, the same bits).
func RowSoftmax[F Float](y, x []F) {
	if f, ok := any(x).([]float32); ok {
		rowSoftmax32(any(y).([]float32), f)
		return
	}
	m := maxForShift(x)
	var sum float64
	if len(x) <= 256 {
		var buf [256]float64
		ev := buf[:(len(x)+3)&^3] // padded with zeros, whose exponentials are not read
		for j, v := range x {
			ev[j] = float64(v - m)
		}
		expRow(ev)
		for j := range x {
			y[j] = F(ev[j])
			sum += ev[j]
		}
	} else {
		for j, v := range x {
			ev := math.Exp(float64(v - m))
			y[j] = F(ev)
			sum += ev
		}
	}
	inv := F(1 / sum)
	for j := range y {
		y[j] *= inv
	}
}

// rowSoftmax32 is RowSoftmax of a float32 row: the attention's row
// softmax (softmaxRow32: exp32 of the shifted row, the float64 sum in
// rowSum's lanes) on a copy in y. The exponentials were the router
// softmax's cost in float64 (math.Exp's bits, four lanes): 2048 rows of 63
// took 0.29 ms, 0.15 ms in float32 (BenchmarkSoftmaxForward/sci,
// docs/BENCHMARKS.md round 14).
func rowSoftmax32(y, x []float32) {
	if len(x) == 0 {
		return
	}
	y = y[:len(x)]
	copy(y, x)
	softmaxRow32(y, y)
}

// maxForShift is maxOfRow for a row about to be shifted by its maximum
// (x − m), eight lanes at a time for float32 rows without NaN. A maximum of
// zeros may come back as either zero, which changes x − m only in the sign
// of a zero difference, and exp of either zero is 1: the softmax is the
// same bits.
func maxForShift[F Float](x []F) F {
	if f, ok := any(x).([]float32); ok {
		if m, ok := vectorMax32(f); ok {
			return F(m)
		}
	}
	return maxOfRow(x)
}

// vectorMax32 is maxForShift's vector path: the largest of x's floats
// (max32x8 on whole vectors, then the rest), with ok false, and nothing
// computed, without vector kernels, for fewer than eight floats or when
// the vectors hold a NaN.
func vectorMax32(x []float32) (m float32, ok bool) {
	n := len(x) &^ 7
	if !vexpOK || n == 0 {
		return 0, false
	}
	m, nan := max32x8(&x[0], n)
	if nan {
		return 0, false
	}
	for _, v := range x[n:] {
		if v > m {
			m = v
		}
	}
	return m, true
}

// maxOfRow returns the largest element of a non-empty row.
func maxOfRow[F Float](x []F) F {
	m := x[0]
	for _, v := range x[1:] {
		if v > m {
			m = v
		}
	}
	return m
}

// softmaxBackwardRows sets dx = s ⊙ (dy − Σ_j dy_j s_j) row by row, the
// dot product in rowDot's lanes and the rest in dsoftmax's.
func softmaxBackwardRows[F Float](dx, s, dy []F, n, e int) {
	parallel.For(n, denseRowsGrain(e), func(lo, hi int) {
		if dx32, ok := any(dx).([]float32); ok && vexpOK && e > 0 {
			// The rows below in one call (dsoftmaxRows32x8, the same bits).
			copy(dx[lo*e:hi*e], dy[lo*e:hi*e])
			s32 := any(s).([]float32)
			_, _ = dx32[hi*e-1], s32[hi*e-1]
			dsoftmaxRows32x8(&dx32[lo*e], &s32[lo*e], hi-lo, e, e, false)
			return
		}
		for i := lo; i < hi; i++ {
			g, dr := dy[i*e:(i+1)*e], dx[i*e:(i+1)*e]
			dot := rowDot(g, s[i*e:(i+1)*e])
			copy(dr, g)
			dsoftmax(dr, s[i*e:(i+1)*e], F(dot))
		}
	})
}
