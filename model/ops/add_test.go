package ops

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"

	"github.com/moetrain/moetrain/internal/gradcheck"
	"github.com/moetrain/moetrain/internal/tol"
)

func addInputs(seed uint64, shape ...int) []gradcheck.Input {
	r := rand.New(rand.NewPCG(seed, 5))
	return []gradcheck.Input{
		{Name: "a", Value: gradcheck.Rand(r, 1, shape...), Diff: true},
		{Name: "b", Value: gradcheck.Rand(r, 1, shape...), Diff: true},
	}
}

func buildAdd(_ *G.ExprGraph, in []*G.Node) (*G.Node, error) { return Add(in[0], in[1]) }

func TestAddGradient(t *testing.T) {
	gradcheck.Check(t, 12, addInputs(1, 5, 6), buildAdd, gradcheck.Default)
	gradcheck.Check(t, 13, addInputs(2, 7), buildAdd, gradcheck.Default)
}

// TestAddSameNode covers x + x, where both gradients land on one node.
func TestAddSameNode(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 5))
	got := gradcheck.Check(t, 14, []gradcheck.Input{{Name: "x", Value: gradcheck.Rand(r, 1, 3, 4), Diff: true}},
		func(_ *G.ExprGraph, in []*G.Node) (*G.Node, error) { return Add(in[0], in[0]) }, gradcheck.Default)
	if len(got["x"]) != 12 {
		t.Errorf("got %d gradient values, want 12", len(got["x"]))
	}
}

func TestAddFloat32(t *testing.T) {
	checkOpFloat32(t, addInputs(4, 5, 6), buildAdd)
}

// TestAddLarge runs a sum big enough to be split across workers and checks
// every element.
func TestAddLarge(t *testing.T) {
	ins := addInputs(5, 3*addGrain+17)
	got, _ := runOpGraph(t, tensor.Float64, ins, buildAdd)
	a, b := ins[0].Value.Data().([]float64), ins[1].Value.Data().([]float64)
	want := make([]float64, len(a))
	for i := range want {
		want[i] = a[i] + b[i]
	}
	if err := tol.Float64.CheckSlice("a+b", got, want); err != nil {
		t.Error(err)
	}
}

func TestAddShapeError(t *testing.T) {
	g := G.NewGraph()
	a := G.NewMatrix(g, tensor.Float64, G.WithShape(5, 6), G.WithName("a"))
	b := G.NewMatrix(g, tensor.Float64, G.WithShape(6, 5), G.WithName("b"))
	if _, err := Add(a, b); err == nil {
		t.Error("Add accepted shapes [5 6] and [6 5]")
	}
}

// TestAddKernelOperands checks addKernel's float32 sums bit for bit against
// a + b, for a separate output and for an output that is a or b, at
// lengths that leave vector tails and span several worker chunks.
func TestAddKernelOperands(t *testing.T) {
	r := rand.New(rand.NewPCG(6, 5))
	for _, n := range []int{1, 7, 8, 29, 3*addGrain + 17} {
		a, b := make([]float32, n), make([]float32, n)
		for i := range a {
			a[i], b[i] = float32(r.NormFloat64()), float32(r.NormFloat64())
		}
		want := make([]float32, n)
		for i := range want {
			want[i] = a[i] + b[i]
		}
		for _, out := range []string{"separate", "a", "b"} {
			x, y := slices.Clone(a), slices.Clone(b)
			dst := make([]float32, n)
			switch out {
			case "a":
				dst = x
			case "b":
				dst = y
			}
			addKernel(dst, x, y)
			for i := range want {
				if math.Float32bits(dst[i]) != math.Float32bits(want[i]) {
					t.Fatalf("n=%d, output %s: [%d] = %g, want %g", n, out, i, dst[i], want[i])
				}
			}
		}
	}
}
