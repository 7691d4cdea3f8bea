package hf

import (
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"testing"

	"gorgonia.org/tensor"

	"github.com/moetrain/moetrain/configs"
	"github.com/moetrain/moetrain/internal/tol"
	"github.com/moetrain/moetrain/internal/torchref"
	"github.com/moetrain/moetrain/model"
)

const refB, refT = 2, 12

// refConfig is tinyConfig's model with wide weights, so that router logits
// have top-k margins well above float32 noise, and no device-level loss
// (the reference has none).
func refConfig(kind string) configs.Model {
	c := tinyConfig(kind).Model
	c.InitStd = 0.2
	c.Balance.DeviceAlpha = 0
	return c
}

func refTokens(seed uint64, vocab int) []int32 {
	r := rand.New(rand.NewPCG(seed, 3))
	toks := make([]int32, refB*(refT+1))
	for i := range toks {
		toks[i] = int32(r.IntN(vocab))
	}
	return toks
}

// agree checks moetrain's loss, full logits and chosen experts on toks
// against the reference's dump: max|Δ| <= 1e-4·max|ref| per tensor.
func agree(t *testing.T, m *model.Model, toks []int32, d torchref.Dump) {
	t.Helper()
	g, err := m.Build(model.GraphOptions{Batch: refB, Seq: refT, Logits: true})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	res, err := g.Run(toks)
	if err != nil {
		t.Fatal(err)
	}
	if err := tol.CheckScaled("loss", []float64{res.Loss}, torchref.Float64s(d.Tensors["loss"]), 1e-4); err != nil {
		t.Error(err)
	}
	lg, err := g.Logits()
	if err != nil {
		t.Fatal(err)
	}
	if err := tol.CheckScaled("logits", torchref.ToFloat64(lg.Data()), torchref.Float64s(d.Tensors["logits"]), 1e-4); err != nil {
		t.Error(err)
	}
	for j, rec := range g.Routes {
		torchref.CheckExperts(t, g.RouteOf[j], rec.N, rec.K, rec.Experts, d)
	}
}

// exportForRef picks the first seed whose model the reference routes with
// top-k margins of at least 1e-5 (a near-tie makes any float32 comparison
// of routing fragile), exports it and returns the model, the directory, the
// tokens and the dump of the exported files.
func exportForRef(t *testing.T, kind string, dt DType) (*model.Model, string, []int32, torchref.Dump) {
	t.Helper()
	c := refConfig(kind)
	for seed := uint64(1); seed <= 8; seed++ {
		c.InitSeed = seed
		m, err := model.New(c, tensor.Float32)
		if err != nil {
			t.Fatal(err)
		}
		dir := filepath.Join(t.TempDir(), "hf")
		if _, err := Export(m, ExportOptions{Out: dir, DType: dt, MaxPositions: refT}); err != nil {
			t.Fatal(err)
		}
		toks := refTokens(seed, c.VocabSize)
		d := torchref.RunDump(t, filepath.Join(dir, ConfigFile), filepath.Join(dir, WeightsFile), toks, refB, refT)
		if !d.Fragile() {
			return m, dir, toks, d
		}
	}
	t.Fatal("no fixture with a top-k margin >= 1e-5 in 8 seeds")
	return nil, "", nil, torchref.Dump{}
}

// TestExportAgreesWithReference: the reference loads each exported
// directory (strictly: a missing or extra key fails its load) and computes
// the same loss, full logits and experts as moetrain on the same tokens. In
// bf16, both sides see the rounded weights: moetrain reads the export back.
func TestExportAgreesWithReference(t *testing.T) {
	torchref.Require(t)
	for _, kind := range exportable {
		t.Run(kind, func(t *testing.T) {
			m, _, toks, d := exportForRef(t, kind, Float32)
			agree(t, m, toks, d)
		})
	}
	t.Run("deepseekmoe-bf16", func(t *testing.T) {
		_, dir, toks, d := exportForRef(t, configs.FFNDeepSeekMoE, BFloat16)
		l, err := Load(dir)
		if err != nil {
			t.Fatal(err)
		}
		agree(t, l.Model, toks, d)
	})
}

// TestExpertSurvives changes one routed expert that the reference sends
// tokens to, exports again, and checks that the reference's output changes
// and still equals moetrain's: the expert crossed the export at its index.
func TestExpertSurvives(t *testing.T) {
	torchref.Require(t)
	for _, kind := range []string{configs.FFNDeepSeekMoE, configs.FFNGShard} {
		t.Run(kind, func(t *testing.T) {
			m, _, toks, before := exportForRef(t, kind, Float32)
			// The last MoE layer, and the expert its first token goes to.
			layer := -1
			for i := 0; i < m.Cfg.Layers; i++ {
				if m.Cfg.IsMoELayer(i) {
					layer = i
				}
			}
			route := before.Tensors[fmt.Sprintf("route.%d.topk_idx", layer)]
			e := int(route.I32[0])
			idx := m.Index(fmt.Sprintf("model.layers.%d.mlp.experts.*.down_proj.weight", layer))
			w := m.Values[idx].Data().([]float32)
			per := len(w) / m.Cfg.RoutedExperts
			for j := e * per; j < (e+1)*per; j++ {
				w[j] = -2 * w[j]
			}
			dir := filepath.Join(t.TempDir(), "changed")
			if _, err := Export(m, ExportOptions{Out: dir, MaxPositions: refT}); err != nil {
				t.Fatal(err)
			}
			after := torchref.RunDump(t, filepath.Join(dir, ConfigFile), filepath.Join(dir, WeightsFile), toks, refB, refT)
			a, b := torchref.Float64s(before.Tensors["logits"]), torchref.Float64s(after.Tensors["logits"])
			if d, ref := tol.MaxAbsDiff(b, a); d < 1e-2*ref {
				t.Fatalf("changing expert %d of layer %d moved the reference's logits by only %.3g (max |logit| %.3g): the expert did not reach it", e, layer, d, ref)
			}
			agree(t, m, toks, after)
		})
	}
}

// TestImportTorchInit: weights written by `torchref.py init` beside their
// config.json import (as the one *.safetensors file there) and give the
// reference's loss and logits. n_shared_experts 0 and null are both tried.
func TestImportTorchInit(t *testing.T) {
	torchref.Require(t)
	type variant struct {
		name string
		kind string
		edit func(map[string]any)
	}
	vs := []variant{
		{"dense", configs.FFNDense, nil},
		{"deepseekmoe", configs.FFNDeepSeekMoE, nil},
		{"gshard-null-shared", configs.FFNGShard, nil},
		{"gshard-zero-shared", configs.FFNGShard, func(c map[string]any) { c["n_shared_experts"] = 0 }},
		{"switch", configs.FFNSwitch, nil},
	}
	for _, v := range vs {
		t.Run(v.name, func(t *testing.T) {
			hc, err := model.HFConfig(refConfig(v.kind), refT)
			if err != nil {
				t.Fatal(err)
			}
			if v.edit != nil {
				v.edit(hc)
			}
			for seed := 0; seed < 8; seed++ {
				dir := t.TempDir()
				if err := writeJSON(filepath.Join(dir, ConfigFile), hc); err != nil {
					t.Fatal(err)
				}
				weights := filepath.Join(dir, "torch-init.safetensors")
				torchref.Run(t, "init", "--config", filepath.Join(dir, ConfigFile), "--out", weights, "--seed", fmt.Sprint(seed))
				toks := refTokens(uint64(seed)+1, refConfig(v.kind).VocabSize)
				d := torchref.RunDump(t, filepath.Join(dir, ConfigFile), weights, toks, refB, refT)
				if d.Fragile() {
					continue
				}
				l, err := Load(dir)
				if err != nil {
					t.Fatal(err)
				}
				if l.Model.Cfg.FFN != v.kind {
					t.Fatalf("imported as ffn %s, want %s", l.Model.Cfg.FFN, v.kind)
				}
				agree(t, l.Model, toks, d)
				return
			}
			t.Fatal("no fixture with a top-k margin >= 1e-5 in 8 seeds")
		})
	}
}
