package model

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"gorgonia.org/tensor"

	"github.com/moetrain/moetrain/configs"
	"github.com/moetrain/moetrain/internal/gradcheck"
)

// tinyModel returns a tiny config of the given FFN kind (fixtures shared by
// the tests of this package).
func tinyModel(ffn string) configs.Model {
	m := configs.Default().Model
	m.VocabSize, m.Hidden, m.Layers, m.Heads, m.DenseWidth = 37, 16, 2, 2, 24
	m.FFN, m.InitStd = ffn, 0.1
	m.Balance.ExpertAlpha = 0.01
	switch ffn {
	case configs.FFNDense:
		m.Balance.ExpertAlpha = 0
	case configs.FFNDeepSeekMoE:
		m.SharedExperts, m.RoutedExperts, m.ActiveRouted, m.ExpertWidth = 1, 7, 3, 6
		m.Balance.DeviceAlpha, m.Balance.DeviceGroups = 0.05, 7
	case configs.FFNGShard:
		m.RoutedExperts, m.ActiveRouted, m.ExpertWidth = 6, 2, 12
	case configs.FFNSwitch:
		m.RoutedExperts, m.ActiveRouted, m.ExpertWidth = 6, 1, 12
	case configs.FFNHash:
		m.RoutedExperts, m.ActiveRouted, m.ExpertWidth = 6, 1, 12
		m.Balance.ExpertAlpha = 0
	}
	return m
}

var allKinds = []string{configs.FFNDense, configs.FFNDeepSeekMoE, configs.FFNGShard, configs.FFNSwitch, configs.FFNHash}

func randomTokens(r *rand.Rand, b, t, v int) []int32 {
	toks := make([]int32, b*(t+1))
	for i := range toks {
		toks[i] = int32(r.IntN(v))
	}
	return toks
}

// At init (tiny weights) the model predicts nearly uniformly: loss ≈ ln V.
func TestInitialLossIsLogVocab(t *testing.T) {
	for _, kind := range allKinds {
		t.Run(kind, func(t *testing.T) {
			c := tinyModel(kind)
			c.InitStd = 0.006
			m, err := New(c, tensor.Float32)
			if err != nil {
				t.Fatal(err)
			}
			g, err := m.Build(GraphOptions{Batch: 2, Seq: 8, Backward: true})
			if err != nil {
				t.Fatal(err)
			}
			defer g.Close()
			res, err := g.Run(randomTokens(rand.New(rand.NewPCG(1, 1)), 2, 8, c.VocabSize))
			if err != nil {
				t.Fatal(err)
			}
			if want := math.Log(float64(c.VocabSize)); math.Abs(res.Loss-want) > 0.05 {
				t.Errorf("initial loss %.4f, want ≈ ln V = %.4f", res.Loss, want)
			}
			for i, b := range g.Balance {
				// Near-uniform routing gives α·1 for the expert loss (DESIGN.md §3.1).
				if b.Kind == "expert" && math.Abs(res.Balance[i]/c.Balance.ExpertAlpha-1) > 0.5 {
					t.Errorf("layer %d expert balance %.4g, want ≈ α = %g", b.Layer, res.Balance[i], c.Balance.ExpertAlpha)
				}
			}
		})
	}
}

// A float64 finite-difference check of the whole model's loss (every block
// of the FFN kind, the balance losses included) against its gradient, on a
// sample of each tensor's elements. Routing must not change under the
// perturbation, or the check is meaningless; the test asserts it.
func TestModelGradientFiniteDifference(t *testing.T) {
	for _, kind := range allKinds {
		t.Run(kind, func(t *testing.T) { checkModelGradient(t, tinyModel(kind), nil) })
	}
}

// routerVariants are the model.router settings beyond the paper's, on
// DeepSeekMoE (shared experts, k = 3) and Switch (k = 1).
func routerVariants() map[string]configs.Model {
	out := map[string]configs.Model{}
	c := tinyModel(configs.FFNDeepSeekMoE)
	c.Router.ZLoss, c.Router.BiasRate = 0.05, 0.001
	out["softmax+z-loss+bias+balance"] = c
	c = tinyModel(configs.FFNDeepSeekMoE)
	c.Balance.ExpertAlpha, c.Balance.DeviceAlpha = 0, 0
	c.Router.Score, c.Router.Scale, c.Router.BiasRate, c.Router.ZLoss = configs.ScoreSigmoid, 2.5, 0.001, 0.01
	out["sigmoid+bias+scale+z-loss"] = c
	c = tinyModel(configs.FFNSwitch)
	c.Balance.ExpertAlpha = 0
	c.Router.Score, c.Router.BiasRate = configs.ScoreSigmoid, 0.001
	out["switch sigmoid k=1+bias"] = c
	c = tinyModel(configs.FFNGShard)
	c.Balance.ExpertAlpha = 0
	c.Router.ExpertChoice, c.Router.ZLoss = true, 0.01
	out["gshard expert choice+z-loss"] = c
	return out
}

// setBias gives every router bias of m distinct values, so that it changes
// the routing.
func setBias(m *Model) {
	for l := 0; l < m.Cfg.Layers; l++ {
		if b, ok := m.RouterBias(l).([]float64); ok {
			for e := range b {
				b[e] = 0.02 * float64((e*5)%7)
			}
		}
	}
}

// The float64 finite-difference check of the whole model for each router
// variant (the selection bias set, so it moves the routing).
func TestModelGradientRouterVariants(t *testing.T) {
	for name, c := range routerVariants() {
		t.Run(name, func(t *testing.T) { checkModelGradient(t, c, setBias) })
	}
}

func checkModelGradient(t *testing.T, c configs.Model, prep func(*Model)) {
	c.Layers = 1
	m, err := New(c, tensor.Float64)
	if err != nil {
		t.Fatal(err)
	}
	if prep != nil {
		prep(m)
	}
	g, err := m.Build(GraphOptions{Batch: 2, Seq: 5, Backward: true})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	r := rand.New(rand.NewPCG(7, 7))
	toks := randomTokens(r, 2, 5, c.VocabSize)
	run := func() (float64, []int32) {
		res, err := g.Run(toks)
		if err != nil {
			t.Fatal(err)
		}
		var route []int32
		for _, rec := range g.Routes {
			route = append(route, rec.Experts...)
		}
		return res.Total, route
	}
	_, route0 := run()
	grads := make([][]float64, len(m.Layout))
	for i, p := range m.Layout {
		if !p.Trained() {
			continue
		}
		gt, err := g.Grad(i)
		if err != nil {
			t.Fatal(err)
		}
		grads[i] = append([]float64(nil), gt.Data().([]float64)...)
	}
	const h = 1e-6
	for i, p := range m.Layout {
		if !p.Trained() {
			continue
		}
		w := m.Values[i].Data().([]float64)
		for s := 0; s < 6; s++ {
			j := r.IntN(len(w))
			orig := w[j]
			w[j] = orig + h
			lp, rp := run()
			w[j] = orig - h
			lm, rm := run()
			w[j] = orig
			if !slices.Equal(rp, route0) || !slices.Equal(rm, route0) {
				t.Fatalf("%s[%d]: routing changed under a %g perturbation; pick another fixture", p.Name, j, h)
			}
			num := (lp - lm) / (2 * h)
			if !gradcheck.Default.Close(grads[i][j], num) {
				t.Errorf("%s[%d]: analytic %.8g, numeric %.8g", p.Name, j, grads[i][j], num)
			}
		}
	}
}

// TestUpdateRouterBias checks one bias step against a hand computation:
// loads 6, 2, 4, 0 have mean 3, so b += γ·(−1, +1, −1, +1); a load equal to
// the mean leaves its bias alone.
func TestUpdateRouterBias(t *testing.T) {
	c := tinyModel(configs.FFNGShard)
	c.RoutedExperts, c.Router.BiasRate = 4, 0.25
	for _, dt := range []tensor.Dtype{tensor.Float32, tensor.Float64} {
		m, err := New(c, dt)
		if err != nil {
			t.Fatal(err)
		}
		if err := m.UpdateRouterBias(1, []float64{6, 2, 4, 0}); err != nil {
			t.Fatal(err)
		}
		if err := m.UpdateRouterBias(1, []float64{3, 3, 5, 1}); err != nil {
			t.Fatal(err)
		}
		want := []float64{-0.25, 0.25, -0.5, 0.5}
		got := m.Float64s(m.Index("model.layers.1." + BiasSuffix))
		if !slices.Equal(got, want) {
			t.Errorf("%v: bias %v, want %v", dt, got, want)
		}
		if b := m.Float64s(m.Index("model.layers.0." + BiasSuffix)); !slices.Equal(b, make([]float64, 4)) {
			t.Errorf("%v: layer 0 bias moved: %v", dt, b)
		}
		if err := m.UpdateRouterBias(1, []float64{1, 2}); err == nil {
			t.Error("2 loads for 4 experts accepted")
		}
	}
	// The bias is model state, not a parameter.
	plain := c
	plain.Router.BiasRate = 0
	if Count(c) != Count(plain) {
		t.Errorf("the bias changed the parameter counts: %+v, without %+v", Count(c), Count(plain))
	}
}

func TestRunRejectsBadTokens(t *testing.T) {
	m, err := New(tinyModel(configs.FFNDense), tensor.Float32)
	if err != nil {
		t.Fatal(err)
	}
	g, err := m.Build(GraphOptions{Batch: 1, Seq: 3})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	for _, toks := range [][]int32{{1, 2, 3}, {1, 2, 3, 99}, {1, -1, 3, 4}} {
		if _, err := g.Run(toks); err == nil {
			t.Errorf("Run(%v): no error", toks)
		}
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	c := tinyModel(configs.FFNGShard)
	c.ActiveRouted = 9
	if _, err := New(c, tensor.Float32); err == nil {
		t.Error("New accepted top-k above the expert count")
	}
}

func TestInitIsDeterministic(t *testing.T) {
	a, _ := New(tinyModel(configs.FFNHash), tensor.Float32)
	b, _ := New(tinyModel(configs.FFNHash), tensor.Float32)
	for i := range a.Values {
		if fmt.Sprint(a.Values[i].Data()) != fmt.Sprint(b.Values[i].Data()) {
			t.Fatalf("%s differs between two inits with the same seed", a.Layout[i].Name)
		}
	}
}

// Capacity-factor dropping applies to training graphs only: an evaluation
// graph of a model with a capacity factor computes exactly what the same
// weights without one compute, while its training graph drops slots.
func TestCapacityDropsInTrainingOnly(t *testing.T) {
	for _, kind := range []string{configs.FFNGShard, configs.FFNSwitch} {
		c := tinyModel(kind)
		c.Router.CapacityFactor = 0.5
		plain := c
		plain.Router.CapacityFactor = 0
		toks := randomTokens(rand.New(rand.NewPCG(3, 3)), 2, 8, c.VocabSize)
		loss := func(cfg configs.Model, training bool) (float64, int) {
			m, err := New(cfg, tensor.Float32)
			if err != nil {
				t.Fatal(err)
			}
			g, err := m.Build(GraphOptions{Batch: 2, Seq: 8, Training: training})
			if err != nil {
				t.Fatal(err)
			}
			defer g.Close()
			res, err := g.Run(toks)
			if err != nil {
				t.Fatal(err)
			}
			dropped := 0
			for _, rec := range g.Routes {
				dropped += rec.Dropped
			}
			return res.Loss, dropped
		}
		evalLoss, evalDropped := loss(c, false)
		plainLoss, _ := loss(plain, true)
		trainLoss, trainDropped := loss(c, true)
		if evalLoss != plainLoss || evalDropped != 0 {
			t.Errorf("%s: evaluation loss %v with %d dropped, without a capacity factor %v", kind, evalLoss, evalDropped, plainLoss)
		}
		if trainDropped == 0 || trainLoss == plainLoss {
			t.Errorf("%s: training graph dropped %d slots (loss %v, undropped %v); factor 0.5 must drop", kind, trainDropped, trainLoss, plainLoss)
		}
	}
}

// An evaluation graph builds no auxiliary losses (nothing reads them, and
// they took 3% of a science MoE's forward pass), and its language-model loss
// is the training graph's on the same tokens, bit for bit.
func TestEvaluationGraphHasNoBalanceLosses(t *testing.T) {
	c := tinyModel(configs.FFNDeepSeekMoE)
	c.Router.ZLoss = 0.01
	m, err := New(c, tensor.Float32)
	if err != nil {
		t.Fatal(err)
	}
	toks := randomTokens(rand.New(rand.NewPCG(5, 5)), 2, 8, c.VocabSize)
	results := map[string]Result{}
	for name, opt := range map[string]GraphOptions{
		"eval":     {Batch: 2, Seq: 8},
		"training": {Batch: 2, Seq: 8, Training: true},
		"backward": {Batch: 2, Seq: 8, Backward: true},
	} {
		g, err := m.Build(opt)
		if err != nil {
			t.Fatal(err)
		}
		res, err := g.Run(toks)
		g.Close()
		if err != nil {
			t.Fatal(err)
		}
		if want := map[bool]int{true: 3 * c.Layers, false: 0}[name != "eval"]; len(g.Balance) != want || len(res.Balance) != want {
			t.Errorf("%s graph: %d balance losses (%d values), want %d (z, expert and device per layer)", name, len(g.Balance), len(res.Balance), want)
		}
		results[name] = res
	}
	ev, tr := results["eval"], results["backward"]
	if ev.Loss != tr.Loss || ev.Total != ev.Loss || !(tr.Total > tr.Loss) {
		t.Errorf("eval loss %v total %v; training loss %v total %v: want equal losses, eval total = its loss, training total above", ev.Loss, ev.Total, tr.Loss, tr.Total)
	}
}

// Residual sums written over the branch they add (ops.AddInPlace) change
// no value a run reports: the loss, the total and every gradient of a
// training graph, and the loss and logits of an evaluation graph, bit for
// bit against graphs with the sums in buffers of their own, over two runs
// on different tokens (the second finds the first's buffers).
func TestAddsInPlaceChangeNothing(t *testing.T) {
	defer SetAddsInPlace(true)
	for _, kind := range allKinds {
		c := tinyModel(kind)
		m, err := New(c, tensor.Float32)
		if err != nil {
			t.Fatal(err)
		}
		r := rand.New(rand.NewPCG(9, 9))
		batches := [][]int32{randomTokens(r, 2, 8, c.VocabSize), randomTokens(r, 2, 8, c.VocabSize)}
		type outcome struct {
			res    []Result
			values [][]float32 // gradients, or the logits
			adds   int
		}
		run := func(inPlace bool, opt GraphOptions) outcome {
			SetAddsInPlace(inPlace)
			g, err := m.Build(opt)
			if err != nil {
				t.Fatal(err)
			}
			defer g.Close()
			o := outcome{adds: g.inPlaceAdds}
			for _, toks := range batches {
				res, err := g.Run(toks)
				if err != nil {
					t.Fatal(err)
				}
				o.res = append(o.res, res)
				if opt.Logits {
					l, err := g.Logits()
					if err != nil {
						t.Fatal(err)
					}
					o.values = append(o.values, slices.Clone(l.Data().([]float32)))
					continue
				}
				for i := range m.Layout {
					gd, err := g.Grad(i)
					if err != nil {
						t.Fatal(err)
					}
					if gd != nil {
						o.values = append(o.values, slices.Clone(gd.Data().([]float32)))
					}
				}
			}
			return o
		}
		for name, opt := range map[string]GraphOptions{
			"training":   {Batch: 2, Seq: 8, Backward: true, Training: true},
			"evaluation": {Batch: 2, Seq: 8, Logits: true},
		} {
			own, in := run(false, opt), run(true, opt)
			if in.adds == 0 || own.adds != 0 {
				t.Fatalf("%s %s: %d sums in place (%d with the setting off), want some", kind, name, in.adds, own.adds)
			}
			if fmt.Sprint(own.res) != fmt.Sprint(in.res) {
				t.Errorf("%s %s: results %v in place, %v apart", kind, name, in.res, own.res)
			}
			if len(own.values) != len(in.values) {
				t.Fatalf("%s %s: %d value sets in place, %d apart", kind, name, len(in.values), len(own.values))
			}
			for i := range own.values {
				if !slices.Equal(own.values[i], in.values[i]) {
					t.Errorf("%s %s: value set %d differs in place", kind, name, i)
				}
			}
		}
	}
}
