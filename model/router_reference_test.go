package model

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gorgonia.org/tensor"

	"github.com/moetrain/moetrain/checkpoints"
	"github.com/moetrain/moetrain/configs"
	"github.com/moetrain/moetrain/internal/tol"
	"github.com/moetrain/moetrain/internal/torchref"
)

// writeMoetrainDir writes the model's weights (buffers included) and its
// config as moetrain JSON into dir: the form torchref.py reads for the
// router variants, which have no Hugging Face config.
func writeMoetrainDir(t *testing.T, m *Model, dir string) {
	t.Helper()
	var ts []checkpoints.Tensor
	for _, h := range m.HFTensors() {
		ts = append(ts, checkpoints.Tensor{Name: h.Name, Shape: h.Shape, DType: checkpoints.F32, F32: h.F32})
	}
	var buf bytes.Buffer
	if err := checkpoints.WriteSafetensors(&buf, ts, nil); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "model.safetensors"), buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	raw, _ := json.Marshal(map[string]any{"model": m.Cfg})
	if err := os.WriteFile(filepath.Join(dir, "config.json"), raw, 0o644); err != nil {
		t.Fatal(err)
	}
}

// referenceVariants are the router variants checked against the PyTorch
// reference: each piece of model.router on the kind it applies to.
func referenceVariants() map[string]configs.Model {
	out := map[string]configs.Model{}
	c := tinyModel(configs.FFNDeepSeekMoE)
	c.Balance.DeviceAlpha = 0
	c.Router.ZLoss, c.Router.BiasRate = 0.05, 0.001
	out["softmax+z-loss+bias+balance"] = c
	c = tinyModel(configs.FFNDeepSeekMoE)
	c.Balance.ExpertAlpha, c.Balance.DeviceAlpha = 0, 0
	c.Router.Score, c.Router.Scale, c.Router.BiasRate, c.Router.ZLoss = configs.ScoreSigmoid, 2.5, 0.001, 0.01
	out["sigmoid+scale+bias+z-loss"] = c
	c = tinyModel(configs.FFNGShard)
	c.Router.CapacityFactor = 0.75
	out["gshard capacity 0.75"] = c
	c = tinyModel(configs.FFNSwitch)
	c.Router.CapacityFactor = 1
	out["switch capacity 1"] = c
	c = tinyModel(configs.FFNGShard)
	c.Balance.ExpertAlpha = 0
	c.Router.ExpertChoice = true
	out["gshard expert choice"] = c
	c = tinyModel(configs.FFNSwitch)
	c.Router.Input = configs.RouterInputEmbedding
	out["switch router on embeddings"] = c
	c = tinyModel(configs.FFNDeepSeekMoE)
	c.Router.Input = configs.RouterInputEmbedding
	out["deepseekmoe router on embeddings"] = c
	return out
}

// TestRouterVariantsAgreeWithPyTorchReference: one forward and backward
// pass of each router variant (a training graph: capacity dropping on), in
// moetrain (float32) and in torchref.py, on the same weights (router biases
// set) and tokens: loss, auxiliary losses (balance and z), logits and every
// gradient within 1e-4 of the reference's scale, and the same experts.
func TestRouterVariantsAgreeWithPyTorchReference(t *testing.T) {
	torchref.Require(t)
	const B, T = 2, 12
	for name, c := range referenceVariants() {
		t.Run(name, func(t *testing.T) {
			c.InitStd = 0.2
			var m *Model
			var d torchref.Dump
			toks := make([]int32, B*(T+1))
			for seed := uint64(1); ; seed++ {
				if seed > 8 {
					t.Fatal("no fixture with a top-k margin >= 1e-5 in 8 seeds")
				}
				c.InitSeed = seed
				var err error
				if m, err = New(c, tensor.Float32); err != nil {
					t.Fatal(err)
				}
				for l := 0; l < c.Layers; l++ {
					if b, ok := m.RouterBias(l).([]float32); ok {
						for e := range b {
							b[e] = 0.02 * float32((e*5+l)%7)
						}
					}
				}
				r := rand.New(rand.NewPCG(seed, 3))
				for i := range toks {
					toks[i] = int32(r.IntN(c.VocabSize))
				}
				dir := t.TempDir()
				writeMoetrainDir(t, m, dir)
				d = torchref.RunDump(t, filepath.Join(dir, "config.json"), filepath.Join(dir, "model.safetensors"), toks, B, T)
				if !d.Fragile() {
					break
				}
			}
			refs := d.Tensors
			g, err := m.Build(GraphOptions{Batch: B, Seq: T, Backward: true, Training: true, Logits: true})
			if err != nil {
				t.Fatal(err)
			}
			defer g.Close()
			res, err := g.Run(toks)
			if err != nil {
				t.Fatal(err)
			}
			var aux float64
			for _, b := range res.Balance {
				aux += b
			}
			check := func(name string, got []float64, want checkpoints.Tensor) {
				t.Helper()
				if err := tol.CheckScaled(name, got, torchref.Float64s(want), 1e-4); err != nil {
					t.Error(err)
				}
			}
			check("loss", []float64{res.Loss}, refs["loss"])
			check("aux_loss", []float64{aux}, refs["aux_loss"])
			lg, _ := g.Logits()
			check("logits", torchref.ToFloat64(lg.Data()), refs["logits"])
			grads := map[string][]float64{}
			for i, p := range m.Layout {
				gt, err := g.Grad(i)
				if err != nil || gt == nil {
					continue
				}
				all := torchref.ToFloat64(gt.Data())
				parts := max(p.Experts, 1)
				per := len(all) / parts
				for e := 0; e < parts; e++ {
					grads[p.HFName(e)] = all[e*per : (e+1)*per]
				}
			}
			compared := 0
			for name, want := range refs {
				if !strings.HasPrefix(name, "grad.") {
					continue
				}
				got, ok := grads[strings.TrimPrefix(name, "grad.")]
				if !ok {
					t.Errorf("%s: no gradient on our side", name)
					continue
				}
				check(name, got, want)
				compared++
			}
			if compared != len(grads) {
				t.Errorf("compared %d gradients, we have %d", compared, len(grads))
			}
			if !c.Router.ExpertChoice {
				for j, rec := range g.Routes {
					torchref.CheckExperts(t, g.RouteOf[j], rec.N, rec.K, rec.Experts, d)
				}
			}
		})
	}
}
