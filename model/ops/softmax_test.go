package ops

import (
	"math"
	"math/rand/v2"
	"testing"

	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"

	"github.com/moetrain/moetrain/internal/gradcheck"
	"github.com/moetrain/moetrain/internal/tol"
)

func buildSoftmax(_ *G.ExprGraph, in []*G.Node) (*G.Node, error) { return Softmax(in[0]) }

func softmaxInputs(seed uint64) []gradcheck.Input {
	r := rand.New(rand.NewPCG(seed, 6))
	return []gradcheck.Input{{Name: "x", Value: gradcheck.Rand(r, 2, 5, 7), Diff: true}}
}

func TestSoftmaxGradient(t *testing.T) {
	gradcheck.Check(t, 15, softmaxInputs(1), buildSoftmax, gradcheck.Default)
}

func TestSoftmaxFloat32(t *testing.T) {
	checkOpFloat32(t, softmaxInputs(2), buildSoftmax)
}

// TestSoftmaxLargeLogits is the case gorgonia tensor's SoftMax gets wrong:
// rows whose maxima differ by hundreds must each be shifted by their own max.
func TestSoftmaxLargeLogits(t *testing.T) {
	x := []float64{0, 0, -3, 200, 0, 199, -200, -201, -200, 1000, 999, 998}
	in := []gradcheck.Input{{Name: "x", Value: tensor.New(tensor.WithShape(4, 3), tensor.WithBacking(x)), Diff: true}}
	for _, dt := range []tensor.Dtype{tensor.Float64, tensor.Float32} {
		got, grads := runOpGraph(t, dt, in, buildSoftmax)
		want := make([]float64, len(x))
		for i := 0; i < 4; i++ {
			row := x[i*3 : (i+1)*3]
			m := math.Max(row[0], math.Max(row[1], row[2]))
			var z float64
			for _, v := range row {
				z += math.Exp(v - m)
			}
			for j, v := range row {
				want[i*3+j] = math.Exp(v-m) / z
			}
		}
		if err := float32Tol.CheckSlice(dt.String()+" softmax", got, want); err != nil {
			t.Error(err)
		}
		for i, v := range grads["x"] {
			if math.IsNaN(v) || math.IsInf(v, 0) {
				t.Errorf("%v: d/dx[%d] = %v", dt, i, v)
			}
		}
	}
}

// TestSoftmaxRowsSumToOne checks a wide router-sized batch split across
// workers.
func TestSoftmaxRowsSumToOne(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 6))
	n, e := 3*denseRowsGrain(64)+5, 64
	x := gradcheck.Rand(r, 30, n, e)
	got, _ := runOpGraph(t, tensor.Float64, []gradcheck.Input{{Name: "x", Value: x}}, buildSoftmax)
	for i := 0; i < n; i++ {
		var s float64
		for _, v := range got[i*e : (i+1)*e] {
			s += v
		}
		if !tol.Float64.Close(s, 1) {
			t.Fatalf("row %d sums to %.12g, want 1", i, s)
		}
	}
}
