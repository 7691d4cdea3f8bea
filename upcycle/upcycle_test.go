package upcycle

import (
	"errors"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"gorgonia.org/tensor"

	"github.com/moetrain/moetrain/configs"
	"github.com/moetrain/moetrain/internal/tol"
	"github.com/moetrain/moetrain/model"
)

// denseModel is a small dense float32 model with weights drawn wide enough
// that its FFNs matter.
func denseModel(t *testing.T) *model.Model {
	t.Helper()
	c := configs.Default().Model
	c.VocabSize, c.Hidden, c.Layers, c.Heads, c.DenseWidth = 53, 16, 2, 2, 24
	c.InitStd, c.InitSeed = 0.2, 5
	m, err := model.New(c, tensor.Float32)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func moeConfig(dense configs.Model, ffn string) configs.Model {
	c := dense
	c.FFN, c.InitSeed = ffn, 99
	switch ffn {
	case configs.FFNGShard:
		c.RoutedExperts, c.ActiveRouted, c.ExpertWidth = 4, 2, dense.DenseWidth
	case configs.FFNSwitch:
		c.RoutedExperts, c.ActiveRouted, c.ExpertWidth = 4, 1, dense.DenseWidth
	case configs.FFNDeepSeekMoE:
		// m = 24/6 = 4 slices: 1 shared, routed experts cycle over 3.
		c.SharedExperts, c.RoutedExperts, c.ActiveRouted, c.ExpertWidth = 1, 6, 2, 6
	}
	return c
}

func logits(t *testing.T, m *model.Model, toks []int32) []float64 {
	t.Helper()
	g, err := m.Build(model.GraphOptions{Batch: 2, Seq: 7, Logits: true})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	if _, err := g.Run(toks); err != nil {
		t.Fatal(err)
	}
	lg, err := g.Logits()
	if err != nil {
		t.Fatal(err)
	}
	var out []float64
	for _, v := range lg.Data().([]float32) {
		out = append(out, float64(v))
	}
	return out
}

// An upcycled GShard model computes what the dense model computes: its two
// renormalised gates sum to 1 over two identical copies of the dense FFN.
func TestUpcycledGShardEqualsDense(t *testing.T) {
	dense := denseModel(t)
	moe, err := Upcycle(dense, moeConfig(dense.Cfg, configs.FFNGShard))
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(1, 2))
	toks := make([]int32, 2*8)
	for i := range toks {
		toks[i] = int32(r.IntN(53))
	}
	want, got := logits(t, dense, toks), logits(t, moe, toks)
	if err := tol.CheckScaled("logits", got, want, 1e-5); err != nil {
		t.Error(err)
	}
	// The router is fresh, not copied from anywhere: it is the MoE
	// config's own init.
	fresh, err := model.New(moe.Cfg, tensor.Float32)
	if err != nil {
		t.Fatal(err)
	}
	i := moe.Index("model.layers.0.mlp.gate.weight")
	if a, b := moe.Float64s(i), fresh.Float64s(i); !equal(a, b) {
		t.Error("the router is not the MoE config's fresh init")
	}
}

func equal(a, b []float64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// swiglu is Wd·(silu(Wg·x) ⊙ Wu·x) for one token, in float64 from float32
// weights: wg, wu [f, d], wd [d, f] (wd's row stride ld ≥ f, columns from c0).
func swiglu(x []float64, wg, wu []float32, wd []float32, d, f, ld, c0 int) []float64 {
	y := make([]float64, d)
	for j := 0; j < f; j++ {
		var a, b float64
		for i := 0; i < d; i++ {
			a += float64(wg[j*d+i]) * x[i]
			b += float64(wu[j*d+i]) * x[i]
		}
		h := a / (1 + math.Exp(-a)) * b
		for i := 0; i < d; i++ {
			y[i] += float64(wd[i*ld+c0+j]) * h
		}
	}
	return y
}

// The fine-grained construction: the shared experts plus one routed expert
// per remaining slice, summed, are the dense FFN exactly.
func TestFineGrainedSlicesSumToDense(t *testing.T) {
	dense := denseModel(t)
	c := moeConfig(dense.Cfg, configs.FFNDeepSeekMoE)
	moe, err := Upcycle(dense, c)
	if err != nil {
		t.Fatal(err)
	}
	d, f, w, ks := c.Hidden, c.DenseWidth, c.ExpertWidth, c.SharedExperts
	get := func(m *model.Model, name string) []float32 { return m.Values[m.Index(name)].Data().([]float32) }
	r := rand.New(rand.NewPCG(3, 4))
	for l := 0; l < c.Layers; l++ {
		pre := "model.layers." + string(rune('0'+l)) + ".mlp."
		x := make([]float64, d)
		for i := range x {
			x[i] = r.NormFloat64()
		}
		want := swiglu(x, get(dense, pre+"gate_proj.weight"), get(dense, pre+"up_proj.weight"), get(dense, pre+"down_proj.weight"), d, f, f, 0)
		got := swiglu(x, get(moe, pre+"shared_experts.gate_proj.weight"), get(moe, pre+"shared_experts.up_proj.weight"), get(moe, pre+"shared_experts.down_proj.weight"), d, ks*w, ks*w, 0)
		eg, eu, ed := get(moe, pre+"experts.*.gate_proj.weight"), get(moe, pre+"experts.*.up_proj.weight"), get(moe, pre+"experts.*.down_proj.weight")
		for e := 0; e < f/w-ks; e++ {
			y := swiglu(x, eg[e*w*d:(e+1)*w*d], eu[e*w*d:(e+1)*w*d], ed[e*d*w:(e+1)*d*w], d, w, w, 0)
			for i := range got {
				got[i] += y[i]
			}
		}
		if err := tol.Float64.CheckSlice("layer "+pre, got, want); err != nil {
			t.Error(err)
		}
		// Routed experts past the first cycle repeat its slices.
		m := f/w - ks
		if !equal(f64(eg[m*w*d:(m+1)*w*d]), f64(eg[:w*d])) {
			t.Errorf("%s: routed expert %d is not a copy of routed expert 0", pre, m)
		}
	}
}

func f64(x []float32) []float64 {
	out := make([]float64, len(x))
	for i, v := range x {
		out[i] = float64(v)
	}
	return out
}

// Mismatched configs are refused, every key named at once.
func TestUpcycleRefusesMismatches(t *testing.T) {
	dense := denseModel(t)
	c := moeConfig(dense.Cfg, configs.FFNGShard)
	c.Hidden, c.Heads, c.ExpertWidth = 32, 4, 12
	_, err := Upcycle(dense, c)
	var ce *configs.Error
	if !errors.As(err, &ce) {
		t.Fatalf("got %v, want a *configs.Error", err)
	}
	for _, key := range []string{"model.hidden", "model.heads", "model.expert_width"} {
		if !strings.Contains(err.Error(), key) {
			t.Errorf("error does not name %s:\n%v", key, err)
		}
	}
	c = moeConfig(dense.Cfg, configs.FFNDeepSeekMoE)
	c.ExpertWidth = 7
	if _, err := Upcycle(dense, c); err == nil || !strings.Contains(err.Error(), "model.expert_width: 7 must divide dense_width 24") {
		t.Errorf("got %v", err)
	}
	moe, err := Upcycle(dense, moeConfig(dense.Cfg, configs.FFNSwitch))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Upcycle(moe, moeConfig(dense.Cfg, configs.FFNGShard)); err == nil || !strings.Contains(err.Error(), "model.ffn: the model to upcycle is switch") {
		t.Errorf("upcycling an MoE: got %v", err)
	}
}
