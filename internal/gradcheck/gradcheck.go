// Package gradcheck verifies hand-written backward passes against central
// finite differences (gonum's diff/fd) in float64. A graph's output is
// reduced to a scalar with random weights, not a plain sum, so that gradient
// errors which cancel in a sum still show.
package gradcheck

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"gonum.org/v1/gonum/diff/fd"
	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"

	"github.com/moetrain/moetrain/internal/tol"
)

// Default is the tolerance for float64 finite-difference checks.
var Default = tol.Tol{Abs: 1e-6, Rel: 1e-4}

// Input is one input of the graph under test.
type Input struct {
	Name  string
	Value *tensor.Dense // float64 (differentiated when Diff) or Int (never)
	Diff  bool
}

// Builder builds the expression under test from the input nodes.
type Builder func(g *G.ExprGraph, in []*G.Node) (*G.Node, error)

// Rand returns a float64 tensor of the given shape with entries
// uniform in [-scale, scale), drawn from a seeded generator.
func Rand(r *rand.Rand, scale float64, shape ...int) *tensor.Dense {
	n := 1
	for _, s := range shape {
		n *= s
	}
	d := make([]float64, n)
	for i := range d {
		d[i] = scale * (2*r.Float64() - 1)
	}
	return tensor.New(tensor.WithShape(shape...), tensor.WithBacking(d))
}

// Check builds the graph, computes the analytic gradient of
// sum(weights ⊙ output) for every input with Diff set and compares it with
// central differences. It returns the analytic gradients by input name.
func Check(t testing.TB, seed uint64, ins []Input, build Builder, tl tol.Tol) map[string][]float64 {
	t.Helper()
	g := G.NewGraph()
	nodes := make([]*G.Node, len(ins))
	for i, in := range ins {
		v := in.Value.Clone().(*tensor.Dense)
		if v.Shape().Dims() == 0 {
			nodes[i] = G.NewScalar(g, v.Dtype(), G.WithName(in.Name), G.WithValue(v))
		} else {
			nodes[i] = G.NewTensor(g, v.Dtype(), v.Shape().Dims(), G.WithShape(v.Shape()...), G.WithName(in.Name), G.WithValue(v))
		}
	}
	out, err := build(g, nodes)
	if err != nil {
		t.Fatalf("build: %v", err)
	}
	cost := out
	if !out.IsScalar() {
		r := rand.New(rand.NewPCG(seed, 99))
		w := Rand(r, 1, out.Shape()...)
		wn := G.NewTensor(g, tensor.Float64, out.Shape().Dims(), G.WithShape(out.Shape()...), G.WithName("gradcheck.weights"), G.WithValue(w))
		cost = G.Must(G.Sum(G.Must(G.HadamardProd(out, wn))))
	}
	var wrt []*G.Node
	for i, in := range ins {
		if in.Diff {
			wrt = append(wrt, nodes[i])
		}
	}
	if _, err := G.Grad(cost, wrt...); err != nil {
		t.Fatalf("grad: %v", err)
	}
	vm := G.NewTapeMachine(g)
	defer vm.Close()
	run := func() float64 {
		vm.Reset()
		if err := vm.RunAll(); err != nil {
			t.Fatalf("run: %v", err)
		}
		return cost.Value().Data().(float64)
	}
	run()
	got := map[string][]float64{}
	for i, in := range ins {
		if !in.Diff {
			continue
		}
		gv, err := nodes[i].Grad()
		if err != nil {
			t.Fatalf("%s: no gradient: %v", in.Name, err)
		}
		got[in.Name] = append([]float64(nil), flat(gv)...)
	}
	for i, in := range ins {
		if !in.Diff {
			continue
		}
		x := nodes[i].Value().Data().([]float64)
		x0 := append([]float64(nil), x...)
		want := fd.Gradient(nil, func(p []float64) float64 {
			copy(x, p)
			return run()
		}, x0, &fd.Settings{Formula: fd.Central, Step: 1e-5})
		copy(x, x0)
		if err := tl.CheckSlice("d/d"+in.Name, got[in.Name], want); err != nil {
			t.Error(err)
		}
	}
	return got
}

func flat(v G.Value) []float64 {
	switch d := v.Data().(type) {
	case []float64:
		return d
	case float64:
		return []float64{d}
	}
	panic(fmt.Sprintf("gradcheck: gradient of type %T", v.Data()))
}
