package ops

import (
	"math/rand/v2"
	"strings"
	"testing"

	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"

	"github.com/moetrain/moetrain/internal/gradcheck"
	"github.com/moetrain/moetrain/internal/tol"
)

func buildEmbed(_ *G.ExprGraph, in []*G.Node) (*G.Node, error) { return Embed(in[0], in[1]) }

// embedInputs repeats ids so that the scatter-add must sum several rows.
func embedInputs(seed uint64, ids ...int) []gradcheck.Input {
	r := rand.New(rand.NewPCG(seed, 7))
	return []gradcheck.Input{
		{Name: "ids", Value: intTensor(ids...)},
		{Name: "table", Value: gradcheck.Rand(r, 1, 7, 6), Diff: true},
	}
}

func TestEmbedGradient(t *testing.T) {
	gradcheck.Check(t, 16, embedInputs(1, 3, 0, 6, 3, 3), buildEmbed, gradcheck.Default)
}

func TestEmbedFloat32(t *testing.T) {
	checkOpFloat32(t, embedInputs(2, 1, 5, 1, 0, 6), buildEmbed)
}

// TestEmbedForwardBackward checks the gather and the scatter-add against
// direct loops: y rows are table rows, and table row r's gradient is the sum
// of the output weights of the tokens with id r (the weights runOpGraph uses).
func TestEmbedForwardBackward(t *testing.T) {
	ids := []int{4, 2, 4, 4, 0}
	ins := embedInputs(3, ids...)
	table := ins[1].Value.Data().([]float64)
	got, grads := runOpGraph(t, tensor.Float64, ins, buildEmbed)
	w := gradcheck.Rand(rand.New(rand.NewPCG(7, 8)), 1, 5, 6).Data().([]float64)
	wantY := make([]float64, 5*6)
	wantG := make([]float64, 7*6)
	for n, id := range ids {
		copy(wantY[n*6:], table[id*6:(id+1)*6])
		for j := 0; j < 6; j++ {
			wantG[id*6+j] += w[n*6+j]
		}
	}
	if err := tol.Float64.CheckSlice("y", got, wantY); err != nil {
		t.Error(err)
	}
	if err := tol.Float64.CheckSlice("d/dtable", grads["table"], wantG); err != nil {
		t.Error(err)
	}
}

func TestEmbedBadID(t *testing.T) {
	for _, bad := range []int{7, -1} {
		g := G.NewGraph()
		ids := G.NewVector(g, tensor.Int, G.WithShape(3), G.WithName("ids"), G.WithValue(intTensor(0, bad, 2)))
		table := G.NewMatrix(g, tensor.Float64, G.WithShape(7, 6), G.WithName("table"),
			G.WithValue(gradcheck.Rand(rand.New(rand.NewPCG(4, 7)), 1, 7, 6)))
		y, err := Embed(ids, table)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := G.Grad(G.Must(G.Sum(y)), table); err != nil {
			t.Fatal(err)
		}
		vm := G.NewTapeMachine(g)
		err = vm.RunAll()
		vm.Close()
		if err == nil || !strings.Contains(err.Error(), "outside [0, 7)") {
			t.Errorf("id %d: got error %v, want one naming the range [0, 7)", bad, err)
		}
	}
}
