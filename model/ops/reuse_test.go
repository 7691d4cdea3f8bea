package ops

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// TestReusedOutputsWrittenWhole covers the router's elementwise ops and
// the embedding, whose Do takes its output buffer back unzeroed
// (base.outputOver): each must write every element.
// The output of a first run is overwritten with NaN, the op runs again on
// the same inputs, and the second output must be the first's bits.
func TestReusedOutputsWrittenWhole(t *testing.T) {
	const n, e, d, v = 12, 9, 5, 7
	r := rand.New(rand.NewPCG(41, 42))
	for _, dt := range []tensor.Dtype{tensor.Float32, tensor.Float64} {
		mat := func(rows, cols int, scale float64) *tensor.Dense {
			x := tensor.New(tensor.WithShape(rows, cols), tensor.Of(dt))
			for i := range rows * cols {
				val := r.NormFloat64() * scale
				if dt == tensor.Float32 {
					x.Data().([]float32)[i] = float32(val)
				} else {
					x.Data().([]float64)[i] = val
				}
			}
			return x
		}
		probs, err := newSoftmaxOp().Do(mat(n, e, 2))
		if err != nil {
			t.Fatal(err)
		}
		sig, err := (&sigmoidOp{base{name: "Sigmoid", arity: 1}}).Do(mat(n, e, 2))
		if err != nil {
			t.Fatal(err)
		}
		bal := &balanceOp{base: base{name: "ExpertBalance", arity: 1}, batch: 3, seq: 4, k: 2, gsize: 1, alpha: 0.01, perSeq: true}
		ids := tensor.New(tensor.WithShape(n), tensor.WithBacking(make([]int, n)))
		for i := range n {
			ids.Data().([]int)[i] = r.IntN(v)
		}
		var one G.Value = G.NewF64(1) // the loss's gradient, as gorgonia passes it
		if dt == tensor.Float32 {
			one = G.NewF32(1)
		}
		for _, c := range []struct {
			name string
			op   G.Op
			in   []G.Value
		}{
			{"Softmax", newSoftmaxOp(), []G.Value{mat(n, e, 2)}},
			{"SoftmaxBackward", &softmaxBackward{base: base{name: "SoftmaxBackward", arity: 2}}, []G.Value{probs, mat(n, e, 1)}},
			{"ExpertBalanceBackward", &balanceBackward{base: base{name: "ExpertBalanceBackward", arity: 2}, fwd: bal}, []G.Value{probs, one}},
			{"Sigmoid", &sigmoidOp{base{name: "Sigmoid", arity: 1}}, []G.Value{mat(n, e, 2)}},
			{"SigmoidBackward", &sigmoidBackward{base: base{name: "SigmoidBackward", arity: 2}}, []G.Value{sig, mat(n, e, 1)}},
			{"ZLossBackward", &zLossBackward{base: base{name: "ZLossBackward", arity: 2}, alpha: 1e-3}, []G.Value{mat(n, e, 2), one}},
			{"Embed", newEmbedOp(), []G.Value{ids, mat(v, d, 1)}},
		} {
			name := fmt.Sprintf("%s %v", c.name, dt)
			first, err := c.op.Do(c.in...)
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			want := bitsOf(first.(*tensor.Dense))
			poison(first.(*tensor.Dense))
			second, err := c.op.Do(c.in...)
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			if second.(*tensor.Dense) != first.(*tensor.Dense) {
				t.Fatalf("%s: the second run did not reuse the first's output", name)
			}
			if got := bitsOf(second.(*tensor.Dense)); !slices.Equal(got, want) {
				t.Errorf("%s: an element left unwritten (the second run's output differs from the first's)", name)
			}
		}
	}
}

// bitsOf returns x's elements as float64 bit patterns.
func bitsOf(x *tensor.Dense) []uint64 {
	var out []uint64
	switch d := x.Data().(type) {
	case []float32:
		for _, v := range d {
			out = append(out, uint64(math.Float32bits(v)))
		}
	case []float64:
		for _, v := range d {
			out = append(out, math.Float64bits(v))
		}
	}
	return out
}

// poison overwrites x's elements with NaN.
func poison(x *tensor.Dense) {
	switch d := x.Data().(type) {
	case []float32:
		for i := range d {
			d[i] = float32(math.NaN())
		}
	case []float64:
		for i := range d {
			d[i] = math.NaN()
		}
	}
}
