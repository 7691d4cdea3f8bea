package ops

import (
	"math/rand/v2"
	"testing"

	G "gorgonia.org/gorgonia"

	"github.com/moetrain/moetrain/internal/gradcheck"
)

func TestRMSNormGradient(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	gradcheck.Check(t, 3, []gradcheck.Input{
		{Name: "x", Value: gradcheck.Rand(r, 1, 5, 7), Diff: true},
		{Name: "w", Value: gradcheck.Rand(r, 1, 7), Diff: true},
	}, func(g *G.ExprGraph, in []*G.Node) (*G.Node, error) {
		return RMSNorm(in[0], in[1], 1e-6)
	}, gradcheck.Default)
}
