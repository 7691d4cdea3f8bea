package ops

import (
	"math/rand/v2"
	"testing"

	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"

	"github.com/moetrain/moetrain/internal/gradcheck"
)

func buildDropTop(r int) gradcheck.Builder {
	return func(_ *G.ExprGraph, in []*G.Node) (*G.Node, error) { return DropTop(in[0], r) }
}

// dropTopInputs are rows whose entries are a shuffled ladder with steps of
// 0.1, so that a finite-difference step never reorders them (a gradient
// across a change of the dropped set is meaningless).
func dropTopInputs(seed uint64, n, e int) []gradcheck.Input {
	r := rand.New(rand.NewPCG(seed, 11))
	x := make([]float64, n*e)
	for i := 0; i < n; i++ {
		for j, p := range r.Perm(e) {
			x[i*e+j] = 0.1*float64(p) + 0.01*r.Float64()
		}
	}
	return []gradcheck.Input{{Name: "s", Value: tensor.New(tensor.WithShape(n, e), tensor.WithBacking(x)), Diff: true}}
}

func TestDropTopGradient(t *testing.T) {
	for _, r := range []int{0, 1, 3} {
		gradcheck.Check(t, uint64(20+r), dropTopInputs(uint64(r), 4, 7), buildDropTop(r), gradcheck.Default)
	}
}

func TestDropTopFloat32(t *testing.T) {
	checkOpFloat32(t, dropTopInputs(9, 5, 6), buildDropTop(2))
}

// TestDropTopZeroesTheLargest checks the forward against its definition: in
// each row exactly r entries become zero, they are the r largest, every
// other entry is unchanged, and the gradient is the upstream weight at kept
// entries and zero at dropped ones.
func TestDropTopZeroesTheLargest(t *testing.T) {
	const n, e = 6, 9
	for _, r := range []int{0, 1, 4, e} {
		in := dropTopInputs(uint64(40+r), n, e)
		x := in[0].Value.Data().([]float64)
		got, grads := runOpGraph(t, tensor.Float64, in, buildDropTop(r))
		// The upstream weights runOpGraph uses, to check the mask.
		w := gradcheck.Rand(rand.New(rand.NewPCG(7, 8)), 1, n, e).Data().([]float64)
		for i := 0; i < n; i++ {
			var dropped []float64
			var kept []float64
			for j := 0; j < e; j++ {
				k := i*e + j
				switch got[k] {
				case 0:
					dropped = append(dropped, x[k])
					if grads["s"][k] != 0 {
						t.Errorf("r=%d row %d: gradient %g at dropped entry %d, want 0", r, i, grads["s"][k], j)
					}
				case x[k]:
					kept = append(kept, x[k])
					if grads["s"][k] != w[k] {
						t.Errorf("r=%d row %d: gradient %g at kept entry %d, want the upstream %g", r, i, grads["s"][k], j, w[k])
					}
				default:
					t.Fatalf("r=%d row %d entry %d: got %g, want %g or 0", r, i, j, got[k], x[k])
				}
			}
			if len(dropped) != r {
				t.Fatalf("r=%d row %d: %d entries dropped, want %d", r, i, len(dropped), r)
			}
			for _, d := range dropped {
				for _, k := range kept {
					if k > d {
						t.Errorf("r=%d row %d: kept %g above dropped %g", r, i, k, d)
					}
				}
			}
		}
	}
}

// TestDropTopZeroIsIdentity: disabling no expert leaves the probabilities,
// and therefore the experts an MoE layer picks and its output, bit for bit
// as they were.
func TestDropTopZeroIsIdentity(t *testing.T) {
	c := moeCases[0]
	ins := c.inputs(3)
	plain, _ := runOp(t, ins, false, buildMoE(c.k, c.renorm, nil))
	dropped, _ := runOp(t, ins, false, func(in []*G.Node) (*G.Node, error) {
		p, err := DropTop(in[1], 0)
		if err != nil {
			return nil, err
		}
		return MoE(in[0], p, in[2], in[3], in[4], c.k, c.renorm)
	})
	for i := range plain {
		if plain[i] != dropped[i] {
			t.Fatalf("output %d: %g with DropTop(0), %g without", i, dropped[i], plain[i])
		}
	}
}

func TestDropTopRejects(t *testing.T) {
	g := G.NewGraph()
	s := G.NewMatrix(g, tensor.Float64, G.WithShape(3, 4), G.WithName("s"))
	if _, err := DropTop(s, -1); err == nil {
		t.Error("DropTop(-1): no error")
	}
	if _, err := DropTop(s, 5); err == nil {
		t.Error("DropTop(5) of 4 experts: no error")
	}
}
