package ops

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// A selection is taken from the share only for equal scores, bias and k;
// any difference selects afresh, and what is taken equals selecting alone.
func TestSharedTopKTakesOnlyEqualScores(t *testing.T) {
	r := rand.New(rand.NewPCG(8, 9))
	n, e, k := 37, 11, 3
	scores := make([]float32, n*e)
	for i := range scores {
		scores[i] = float32(r.NormFloat64())
	}
	bias := make([]float32, e)
	for i := range bias {
		bias[i] = float32(r.NormFloat64())
	}
	alone := func(scores, bias []float32, k int) []int32 {
		idx := make([]int32, n*k)
		topKRows(nil, idx, scores, bias, n, e, k)
		return idx
	}
	s := &SharedTopK{}
	check := func(name string, scores, bias []float32, k, hits int) {
		t.Helper()
		idx := make([]int32, n*k)
		topKRows(s, idx, scores, bias, n, e, k)
		if want := alone(scores, bias, k); !slices.Equal(idx, want) {
			t.Fatalf("%s: selection differs from selecting alone", name)
		}
		if s.hits != hits {
			t.Fatalf("%s: %d selections taken from the share, want %d", name, s.hits, hits)
		}
	}
	check("first", scores, nil, k, 0)
	check("same scores", slices.Clone(scores), nil, k, 1)
	check("other k", scores, nil, k+1, 1)
	check("same k again", scores, nil, k+1, 2)
	check("with a bias", scores, bias, k+1, 2)
	check("same bias", scores, slices.Clone(bias), k+1, 3)
	check("no bias", scores, nil, k+1, 3)
	changed := slices.Clone(scores)
	changed[5*e+2] += 3
	check("one score changed", changed, nil, k+1, 3)
	// The same values in float64 are other scores.
	wide := make([]float64, len(changed))
	for i, v := range changed {
		wide[i] = float64(v)
	}
	idx := make([]int32, n*(k+1))
	topKRows(s, idx, wide, nil, n, e, k+1)
	if s.hits != 3 {
		t.Fatal("float64 scores took a float32 selection")
	}
	// Bits decide, since a selection is a function of its scores' bits: a
	// NaN matches the same NaN, and −0 is not +0 (a fresh selection, which
	// chooses the same).
	nan := slices.Clone(scores)
	nan[3] = float32(math.NaN())
	check("a NaN", nan, nil, k, 3)
	check("the same NaN", slices.Clone(nan), nil, k, 4)
	zero := slices.Clone(scores)
	zero[4] = 0
	check("a zero", zero, nil, k, 4)
	negZero := slices.Clone(zero)
	negZero[4] = float32(math.Copysign(0, -1))
	check("minus zero", negZero, nil, k, 4)
	check("minus zero again", slices.Clone(negZero), nil, k, 5)
}

// In a graph, an MoE op and a balance loss sharing their selection give
// exactly what they give alone, run after run, also when the scores change
// in place between runs (the share must not hand out a stale choice).
func TestSharedTopKInGraph(t *testing.T) {
	c := moeCase{"k=3", 8, 4, 6, 3, 3, false}
	ins := c.inputs(71)
	run := func(share bool, probs [][]float64) (ys [][]float64, losses []float64, hits int) {
		g := G.NewGraph()
		nodes := make([]*G.Node, len(ins))
		for i, v := range ins {
			v = v.Clone().(*tensor.Dense)
			nodes[i] = G.NewTensor(g, v.Dtype(), v.Shape().Dims(), G.WithShape(v.Shape()...), G.WithValue(v))
		}
		y := G.Must(MoE(nodes[0], nodes[1], nodes[2], nodes[3], nodes[4], c.k, c.renorm))
		b := G.Must(ExpertBalance(nodes[1], 2, c.n/2, c.k, 0.01, true))
		s := &SharedTopK{}
		if share {
			if err := ShareTopK(s, y, b); err != nil {
				t.Fatal(err)
			}
		}
		var yv, bv G.Value
		G.Read(y, &yv)
		G.Read(b, &bv)
		vm := G.NewTapeMachine(g)
		defer vm.Close()
		for _, p := range probs {
			copy(nodes[1].Value().Data().([]float64), p) // in place
			if err := vm.RunAll(); err != nil {
				t.Fatal(err)
			}
			ys, losses = append(ys, widen(yv.Data())), append(losses, widen(bv.Data())[0])
			vm.Reset()
		}
		return ys, losses, s.hits
	}
	r := rand.New(rand.NewPCG(72, 1))
	var probs [][]float64
	for range 3 {
		probs = append(probs, separatedProbs(r, c.n, c.e).Data().([]float64))
	}
	probs = append(probs, probs[2])
	ys, losses, _ := run(false, probs)
	ysS, lossesS, hits := run(true, probs)
	// One op of each run takes the other's selection; in the last run,
	// whose scores repeat the run before, both ops take it.
	if hits != len(probs)+1 {
		t.Errorf("%d selections taken from the share in %d runs, want %d", hits, len(probs), len(probs)+1)
	}
	for i := range probs {
		if !slices.Equal(ys[i], ysS[i]) || losses[i] != lossesS[i] {
			t.Fatalf("run %d: shared selection changed the results", i)
		}
	}
	if err := ShareTopK(&SharedTopK{}, ins0Node(t)); err == nil {
		t.Error("ShareTopK accepted an op that does not select")
	}
}

// ins0Node returns a node whose op is not a selecting one.
func ins0Node(t *testing.T) *G.Node {
	g := G.NewGraph()
	a := G.NewMatrix(g, tensor.Float64, G.WithShape(2, 2), G.WithInit(G.Zeroes()))
	return G.Must(G.Add(a, a))
}
