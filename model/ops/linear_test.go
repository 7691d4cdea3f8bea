package ops

import (
	"fmt"
	"math/rand/v2"
	"testing"

	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"

	"github.com/moetrain/moetrain/internal/gradcheck"
	"github.com/moetrain/moetrain/internal/parallel"
	"github.com/moetrain/moetrain/internal/tol"
)

// float32Tol compares a float32 run of an op with its float64 run on inputs
// of scale ~1 and tiny inner sizes (rounding ~1e-7 per operation).
var float32Tol = tol.Tol{Abs: 1e-5, Rel: 1e-4}

// runOpGraph builds the graph on ins converted to dt, runs forward and backward
// of sum(weights ⊙ out) (or of out itself when it is a scalar) and returns the
// output and the gradient of every input with Diff set, widened to float64.
func runOpGraph(t *testing.T, dt tensor.Dtype, ins []gradcheck.Input, build gradcheck.Builder) ([]float64, map[string][]float64) {
	t.Helper()
	g := G.NewGraph()
	nodes := make([]*G.Node, len(ins))
	for i, in := range ins {
		v := in.Value
		if v.Dtype() == tensor.Float64 {
			v = toDtype(v, dt)
		} else {
			v = v.Clone().(*tensor.Dense)
		}
		nodes[i] = G.NewTensor(g, v.Dtype(), v.Shape().Dims(), G.WithShape(v.Shape()...), G.WithName(in.Name), G.WithValue(v))
	}
	out, err := build(g, nodes)
	if err != nil {
		t.Fatalf("build %v: %v", dt, err)
	}
	cost := out
	if !out.IsScalar() {
		w := toDtype(gradcheck.Rand(rand.New(rand.NewPCG(7, 8)), 1, out.Shape()...), dt)
		wn := G.NewTensor(g, dt, out.Shape().Dims(), G.WithShape(out.Shape()...), G.WithName("weights"), G.WithValue(w))
		cost = G.Must(G.Sum(G.Must(G.HadamardProd(out, wn))))
	}
	var wrt []*G.Node
	for i, in := range ins {
		if in.Diff {
			wrt = append(wrt, nodes[i])
		}
	}
	if len(wrt) > 0 {
		if _, err := G.Grad(cost, wrt...); err != nil {
			t.Fatalf("grad %v: %v", dt, err)
		}
	}
	var outVal G.Value
	G.Read(out, &outVal)
	vm := G.NewTapeMachine(g)
	defer vm.Close()
	if err := vm.RunAll(); err != nil {
		t.Fatalf("run %v: %v", dt, err)
	}
	got := widen(outVal.Data())
	grads := map[string][]float64{}
	for i, in := range ins {
		if in.Diff {
			gv, err := nodes[i].Grad()
			if err != nil {
				t.Fatalf("%s: no gradient: %v", in.Name, err)
			}
			grads[in.Name] = widen(gv.Data())
		}
	}
	return got, grads
}

// checkOpFloat32 runs the graph in float64 and float32 and checks that the
// output and every gradient agree within float32Tol.
func checkOpFloat32(t *testing.T, ins []gradcheck.Input, build gradcheck.Builder) {
	t.Helper()
	want, wantG := runOpGraph(t, tensor.Float64, ins, build)
	got, gotG := runOpGraph(t, tensor.Float32, ins, build)
	if err := float32Tol.CheckSlice("output", got, want); err != nil {
		t.Error(err)
	}
	for name, w := range wantG {
		if err := float32Tol.CheckSlice("d/d"+name, gotG[name], w); err != nil {
			t.Error(err)
		}
	}
}

func buildLinear(_ *G.ExprGraph, in []*G.Node) (*G.Node, error) {
	return LinearStacked(in[0], in[1:]...)
}

// linearInputs are x [5, 6] and weights w1, w2, … of the given row counts.
func linearInputs(seed uint64, rows ...int) []gradcheck.Input {
	r := rand.New(rand.NewPCG(seed, 3))
	ins := []gradcheck.Input{{Name: "x", Value: gradcheck.Rand(r, 1, 5, 6), Diff: true}}
	for i, m := range rows {
		ins = append(ins, gradcheck.Input{Name: fmt.Sprintf("w%d", i+1), Value: gradcheck.Rand(r, 1, m, 6), Diff: true})
	}
	return ins
}

// weightSets are Linear's one weight and LinearStacked's three.
var weightSets = [][]int{{4}, {4, 3, 2}}

func TestLinearGradient(t *testing.T) {
	for i, rows := range weightSets {
		gradcheck.Check(t, uint64(11+i), linearInputs(1, rows...), buildLinear, gradcheck.Default)
	}
}

func TestLinearFloat32(t *testing.T) {
	for _, rows := range weightSets {
		checkOpFloat32(t, linearInputs(2, rows...), buildLinear)
	}
}

// TestLinearForward checks y = x·wᵀ against a direct triple loop, so a
// transpose mix-up that the gradient check would pass consistently still shows.
func TestLinearForward(t *testing.T) {
	ins := linearInputs(3, 4)
	x, w := ins[0].Value.Data().([]float64), ins[1].Value.Data().([]float64)
	got, _ := runOpGraph(t, tensor.Float64, ins, func(_ *G.ExprGraph, in []*G.Node) (*G.Node, error) { return Linear(in[0], in[1]) })
	want := make([]float64, 5*4)
	for i := 0; i < 5; i++ {
		for o := 0; o < 4; o++ {
			for k := 0; k < 6; k++ {
				want[i*4+o] += x[i*6+k] * w[o*6+k]
			}
		}
	}
	if err := tol.Float64.CheckSlice("y", got, want); err != nil {
		t.Error(err)
	}
}

// A stacked product's rows are the three separate products side by side,
// and its gradients theirs: x's the sum of the three.
func TestLinearStackedMatchesSeparate(t *testing.T) {
	ins := linearInputs(4, weightSets[1]...)
	got, gotG := runOpGraph(t, tensor.Float64, ins, buildLinear)
	want, wantG := runOpGraph(t, tensor.Float64, ins, func(g *G.ExprGraph, in []*G.Node) (*G.Node, error) {
		var parts []*G.Node
		for _, w := range in[1:] {
			y, err := Linear(in[0], w)
			if err != nil {
				return nil, err
			}
			parts = append(parts, y)
		}
		return G.Concat(1, parts...)
	})
	if err := tol.Float64.CheckSlice("y", got, want); err != nil {
		t.Error(err)
	}
	for _, in := range ins {
		if err := tol.Float64.CheckSlice("d/d"+in.Name, gotG[in.Name], wantG[in.Name]); err != nil {
			t.Error(err)
		}
	}
}

func TestLinearShapeError(t *testing.T) {
	g := G.NewGraph()
	x := G.NewMatrix(g, tensor.Float64, G.WithShape(5, 6), G.WithName("x"))
	w := G.NewMatrix(g, tensor.Float64, G.WithShape(4, 5), G.WithName("w"))
	if _, err := Linear(x, w); err == nil {
		t.Error("Linear accepted x [5 6] with w [4 5]")
	}
}

// TestDenseOpsDeterministic runs every op of this file set in float32, with
// inputs large enough to be split across workers, on 1 and on 3 workers: the
// outputs and gradients must agree bit for bit.
func TestDenseOpsDeterministic(t *testing.T) {
	defer func(w int) { parallel.Workers = w }(parallel.Workers)
	r := rand.New(rand.NewPCG(30, 31))
	ids := func(n, v int) *tensor.Dense {
		d := make([]int, n)
		for i := range d {
			d[i] = r.IntN(v)
		}
		return intTensor(d...)
	}
	in := func(name string, v *tensor.Dense, diff bool) gradcheck.Input {
		return gradcheck.Input{Name: name, Value: v, Diff: diff}
	}
	cases := []struct {
		name  string
		ins   []gradcheck.Input
		build gradcheck.Builder
	}{
		{"Linear", []gradcheck.Input{in("x", gradcheck.Rand(r, 1, 300, 16), true), in("w", gradcheck.Rand(r, 1, 24, 16), true)}, buildLinear},
		{"SwiGLU", []gradcheck.Input{in("x", gradcheck.Rand(r, 1, 200, 16), true), in("wg", gradcheck.Rand(r, 1, 128, 16), true),
			in("wu", gradcheck.Rand(r, 1, 128, 16), true), in("wd", gradcheck.Rand(r, 1, 16, 128), true)}, buildSwiGLU},
		{"Embed", []gradcheck.Input{in("ids", ids(3000, 50), false), in("table", gradcheck.Rand(r, 1, 50, 16), true)}, buildEmbed},
		{"Add", []gradcheck.Input{in("a", gradcheck.Rand(r, 1, 3*addGrain+5), true), in("b", gradcheck.Rand(r, 1, 3*addGrain+5), true)}, buildAdd},
		{"Softmax", []gradcheck.Input{in("x", gradcheck.Rand(r, 3, 500, 63), true)}, buildSoftmax},
		{"CrossEntropy", []gradcheck.Input{in("x", gradcheck.Rand(r, 1, ceChunk+200, 8), true), in("w", gradcheck.Rand(r, 1, 200, 8), true),
			in("targets", ids(ceChunk+200, 200), false)}, buildCE},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var runs [][]float64
			for _, w := range []int{1, 3} {
				parallel.Workers = w
				out, grads := runOpGraph(t, tensor.Float32, c.ins, c.build)
				for _, in := range c.ins {
					out = append(out, grads[in.Name]...)
				}
				runs = append(runs, out)
			}
			if err := (tol.Tol{}).CheckSlice("1 vs 3 workers", runs[1], runs[0]); err != nil {
				t.Error(err)
			}
		})
	}
}
