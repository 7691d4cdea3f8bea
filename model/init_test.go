package model

import (
	"fmt"
	"math"
	"testing"

	"gorgonia.org/tensor"

	"github.com/moetrain/moetrain/configs"
)

// initModel is a small model of each kind at the default init_std, with
// tensors big enough for their statistics to be tight.
func initModel(ffn string, seed uint64) *Model {
	c := configs.Default().Model
	c.VocabSize, c.Hidden, c.Layers, c.Heads, c.DenseWidth, c.FFN = 512, 64, 2, 2, 172, ffn
	c.InitSeed = seed
	switch ffn {
	case configs.FFNDeepSeekMoE:
		c.SharedExperts, c.RoutedExperts, c.ActiveRouted, c.ExpertWidth = 1, 15, 3, 43
		c.Balance.ExpertAlpha = 0.01
	case configs.FFNHash:
		c.RoutedExperts, c.ActiveRouted, c.ExpertWidth = 4, 1, 172
	}
	m, err := New(c, tensor.Float32)
	if err != nil {
		panic(err)
	}
	return m
}

// TestInitStatistics: every matrix is drawn from N(0, init_std²): its mean
// is within 5 standard errors (init_std/√n) of 0 and its standard deviation
// within 5 standard errors (init_std/√(2n)) of init_std; every RMSNorm
// weight is exactly 1. Each routed expert of a stacked tensor is checked on
// its own slice, so one expert drawn differently cannot hide in the stack.
func TestInitStatistics(t *testing.T) {
	for _, kind := range []string{configs.FFNDense, configs.FFNDeepSeekMoE, configs.FFNHash} {
		m := initModel(kind, 1)
		std := m.Cfg.InitStd
		for i, p := range m.Layout {
			v := m.Float64s(i)
			switch {
			case p.Int:
				continue
			case p.Kind == "norm":
				for _, x := range v {
					if x != 1 {
						t.Fatalf("%s %s: norm weight %g, want 1", kind, p.Name, x)
					}
				}
				continue
			}
			parts := 1
			if p.Experts > 0 {
				parts = p.Experts
			}
			per := len(v) / parts
			for e := 0; e < parts; e++ {
				name := p.HFName(e)
				mean, sd := meanStd(v[e*per : (e+1)*per])
				n := float64(per)
				if math.Abs(mean) > 5*std/math.Sqrt(n) {
					t.Errorf("%s %s: mean %.3g, want 0 ± %.3g", kind, name, mean, 5*std/math.Sqrt(n))
				}
				if math.Abs(sd-std) > 5*std/math.Sqrt(2*n) {
					t.Errorf("%s %s: std %.5g, want init_std %g ± %.3g", kind, name, sd, std, 5*std/math.Sqrt(2*n))
				}
			}
		}
	}
}

// TestInitStreamsAreIndependent: no two tensors share a stream of random
// numbers, within a model or across init seeds 1-4 (a collision of the
// per-tensor seeds would make two tensors equal or shifted copies). Every
// pair of draws (each routed expert on its own) has a correlation of its
// first values, at lags 0 to 3, within 6/√m of 0; the same seed drawn twice
// is identical, which shows the check would see a shared stream.
func TestInitStreamsAreIndependent(t *testing.T) {
	const m = 512 // values compared per draw
	type draw struct {
		name string
		z    [4][]float64 // values lag..lag+m, standardised, for lags 0-3
	}
	standardise := func(v []float64) []float64 {
		mean, sd := meanStd(v)
		z := make([]float64, len(v))
		for i, x := range v {
			z[i] = (x - mean) / sd
		}
		return z
	}
	var draws []draw
	for seed := uint64(1); seed <= 4; seed++ {
		for _, kind := range []string{configs.FFNDense, configs.FFNDeepSeekMoE} {
			mod := initModel(kind, seed)
			for i, p := range mod.Layout {
				if p.Int || p.Kind == "norm" {
					continue
				}
				// Dense and DeepSeekMoE share the attention, embedding and
				// head names; one model's copy of them is enough per seed.
				if kind == configs.FFNDeepSeekMoE && p.Kind != "router" && p.Kind != "experts" && p.Kind != "shared" {
					continue
				}
				v := mod.Float64s(i)
				parts := 1
				if p.Experts > 0 {
					parts = p.Experts
				}
				per := len(v) / parts
				for e := 0; e < parts; e++ {
					if per < m+3 {
						t.Fatalf("%s: %d values per draw, the check needs %d", p.HFName(e), per, m+3)
					}
					d := draw{name: fmt.Sprintf("seed %d %s", seed, p.HFName(e))}
					for lag := range d.z {
						d.z[lag] = standardise(v[e*per+lag : e*per+lag+m])
					}
					draws = append(draws, d)
				}
			}
		}
	}
	bound := 6 / math.Sqrt(m)
	for a := range draws {
		for b := a + 1; b < len(draws); b++ {
			for lag := 0; lag <= 3; lag++ {
				var c float64
				for i, x := range draws[a].z[lag] {
					c += x * draws[b].z[0][i]
				}
				if c /= m; math.Abs(c) > bound {
					t.Fatalf("%s and %s (lag %d): correlation %.3f > %.3f: they share a random stream", draws[a].name, draws[b].name, lag, c, bound)
				}
			}
		}
	}
	x, y := initModel(configs.FFNDense, 3), initModel(configs.FFNDense, 3)
	if c := corr(x.Float64s(1), y.Float64s(1)); c < 1-1e-12 {
		t.Fatalf("the same seed drawn twice: correlation %g, want 1", c)
	}
}

func meanStd(v []float64) (mean, sd float64) {
	for _, x := range v {
		mean += x
	}
	mean /= float64(len(v))
	for _, x := range v {
		sd += (x - mean) * (x - mean)
	}
	return mean, math.Sqrt(sd / float64(len(v)))
}

func corr(a, b []float64) float64 {
	ma, sa := meanStd(a)
	mb, sb := meanStd(b)
	var s float64
	for i := range a {
		s += (a[i] - ma) * (b[i] - mb)
	}
	return s / float64(len(a)) / (sa * sb)
}
