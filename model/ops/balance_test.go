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

// refBalance is DESIGN.md §3.2/§3.3 written out, following torchref.Gate: count
// the top-k slots per segment (sequence, or the whole batch), f = count /
// (tokens·k/E), P = mean probability; then f' = group mean of f, P' = group
// sum of P, and L = α · mean over segments of Σ_g f'·P'. groups = E is the
// expert-level loss.
func refBalance(probs []float64, batch, seq, e, k, groups int, alpha float64, perSeq bool) float64 {
	segs, segLen := 1, batch*seq
	if perSeq {
		segs, segLen = batch, seq
	}
	gs := e / groups
	var loss float64
	for s := 0; s < segs; s++ {
		count := make([]float64, e)
		pmean := make([]float64, e)
		for t := s * segLen; t < (s+1)*segLen; t++ {
			row := probs[t*e : (t+1)*e]
			for _, x := range sortedTopK(row, k) {
				count[x]++
			}
			for i, v := range row {
				pmean[i] += v / float64(segLen)
			}
		}
		for g := 0; g < groups; g++ {
			var fg, pg float64
			for i := g * gs; i < (g+1)*gs; i++ {
				fg += count[i] / (float64(segLen*k) / float64(e)) / float64(gs)
				pg += pmean[i]
			}
			loss += alpha * fg * pg / float64(segs)
		}
	}
	return loss
}

// randomProbs returns random probability rows (softmax of N(0, 1) logits).
func randomProbs(r *rand.Rand, n, e int) *tensor.Dense {
	p := make([]float64, n*e)
	for t := 0; t < n; t++ {
		row := p[t*e : (t+1)*e]
		var z float64
		for i := range row {
			row[i] = math.Exp(r.NormFloat64())
			z += row[i]
		}
		for i := range row {
			row[i] /= z
		}
	}
	return tensor.New(tensor.WithShape(n, e), tensor.WithBacking(p))
}

// circulant returns T = E tokens per sequence where token t's probabilities
// are a fixed decreasing profile rotated by t: every expert is chosen k
// times per sequence (f = 1) and has mean probability 1/E (P = 1/E), the
// perfectly uniform routing of DESIGN.md §3.1.
func circulant(batch, e int) *tensor.Dense {
	prof := make([]float64, e)
	var z float64
	for j := range prof {
		prof[j] = math.Exp(-0.3 * float64(j))
		z += prof[j]
	}
	p := make([]float64, batch*e*e)
	for b := 0; b < batch; b++ {
		for t := 0; t < e; t++ {
			for i := 0; i < e; i++ {
				p[(b*e+t)*e+i] = prof[(i-t+e)%e] / z
			}
		}
	}
	return tensor.New(tensor.WithShape(batch*e, e), tensor.WithBacking(p))
}

type balanceCase struct {
	name             string
	batch, seq, e, k int
	groups           int // 0: ExpertBalance
	perSeq           bool
	alpha            float64
}

var balanceCases = []balanceCase{
	{"expert seq k=1", 3, 5, 6, 1, 0, true, 0.01},
	{"expert seq k=2", 3, 5, 6, 2, 0, true, 0.01},
	{"expert batch k=3", 3, 5, 6, 3, 0, false, 0.001},
	{"device seq 3 groups", 2, 7, 6, 2, 3, true, 0.05},
	{"device batch 2 groups", 2, 7, 6, 3, 2, false, 0.05},
}

func (c balanceCase) build(in []*G.Node) (*G.Node, error) {
	if c.groups == 0 {
		return ExpertBalance(in[0], c.batch, c.seq, c.k, c.alpha, c.perSeq)
	}
	return DeviceBalance(in[0], c.batch, c.seq, c.k, c.groups, c.alpha, c.perSeq)
}

func (c balanceCase) ref(p []float64) float64 {
	groups := c.groups
	if groups == 0 {
		groups = c.e
	}
	return refBalance(p, c.batch, c.seq, c.e, c.k, groups, c.alpha, c.perSeq)
}

func TestBalanceMatchesFormula(t *testing.T) {
	for i, c := range balanceCases {
		t.Run(c.name, func(t *testing.T) {
			p := randomProbs(rand.New(rand.NewPCG(uint64(i), 11)), c.batch*c.seq, c.e)
			got, _ := runOp(t, []*tensor.Dense{p}, false, c.build)
			want := c.ref(p.Data().([]float64))
			if !tol.Float64.Close(got[0], want) {
				t.Errorf("got %.12g, want %.12g", got[0], want)
			}
			p32 := toDtype(p, tensor.Float32)
			got32, _ := runOp(t, []*tensor.Dense{p32}, false, c.build)
			if !(tol.Tol{Rel: 1e-5}).Close(got32[0], want) {
				t.Errorf("float32: got %.8g, want %.8g", got32[0], want)
			}
		})
	}
}

func TestBalanceUniformIsAlpha(t *testing.T) {
	const batch, e, alpha = 2, 8, 0.01
	p := circulant(batch, e)
	for _, k := range []int{1, 2, 5} {
		for _, perSeq := range []bool{true, false} {
			for _, groups := range []int{0, 1, 2, 4, 8} {
				c := balanceCase{"", batch, e, e, k, groups, perSeq, alpha}
				got, _ := runOp(t, []*tensor.Dense{p}, false, c.build)
				if !tol.Float64.Close(got[0], alpha) {
					t.Errorf("k=%d perSeq=%t groups=%d: got %.12g, want α = %g", k, perSeq, groups, got[0], alpha)
				}
			}
		}
	}
}

// One device group holding every expert has f' = 1 and P' = 1 whatever the
// routing, so the loss is α; E groups is the expert-level loss.
func TestDeviceBalanceLimits(t *testing.T) {
	const batch, seq, e, k, alpha = 2, 6, 4, 2, 0.1
	p := randomProbs(rand.New(rand.NewPCG(8, 8)), batch*seq, e)
	one, _ := runOp(t, []*tensor.Dense{p}, false, balanceCase{"", batch, seq, e, k, 1, true, alpha}.build)
	if !tol.Float64.Close(one[0], alpha) {
		t.Errorf("one group: got %.12g, want α = %g", one[0], alpha)
	}
	dev, _ := runOp(t, []*tensor.Dense{p}, false, balanceCase{"", batch, seq, e, k, e, true, alpha}.build)
	exp, _ := runOp(t, []*tensor.Dense{p}, false, balanceCase{"", batch, seq, e, k, 0, true, alpha}.build)
	if dev[0] != exp[0] {
		t.Errorf("E groups: got %.12g, want the expert-level loss %.12g", dev[0], exp[0])
	}
}

func TestBalanceGradient(t *testing.T) {
	for i, c := range balanceCases {
		t.Run(c.name, func(t *testing.T) {
			p := separatedProbs(rand.New(rand.NewPCG(uint64(i), 12)), c.batch*c.seq, c.e)
			gradcheck.Check(t, uint64(i), []gradcheck.Input{{Name: "probs", Value: p, Diff: true}}, func(g *G.ExprGraph, in []*G.Node) (*G.Node, error) {
				return c.build(in)
			}, gradcheck.Default)
		})
	}
}

func TestBalanceErrors(t *testing.T) {
	g := G.NewGraph()
	p := G.NewTensor(g, tensor.Float64, 2, G.WithShape(6, 4))
	if _, err := ExpertBalance(p, 2, 4, 1, 0.01, true); err == nil {
		t.Error("B·T != N: got no error")
	}
	if _, err := ExpertBalance(p, 2, 3, 5, 0.01, true); err == nil {
		t.Error("k > E: got no error")
	}
	if _, err := DeviceBalance(p, 2, 3, 1, 3, 0.01, true); err == nil {
		t.Error("3 groups of 4 experts: got no error")
	}
	if _, err := DeviceBalance(p, 2, 3, 1, 0, 0.01, true); err == nil {
		t.Error("0 groups: got no error")
	}
	if _, err := DeviceBalance(p, 2, 3, 1, 2, 0.01, true); err != nil {
		t.Errorf("valid: %v", err)
	}
}
