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

// WriteHFDir writes the model's weights (HF keys, float32) and config.json
// into dir, the layout torchref.py reads.
func writeHFDir(t *testing.T, m *Model, dir string, seq int) {
	t.Helper()
	var ts []checkpoints.Tensor
	for _, h := range m.HFTensors() {
		ct := checkpoints.Tensor{Name: h.Name, Shape: h.Shape}
		switch {
		case h.F32 != nil:
			ct.DType, ct.F32 = checkpoints.F32, h.F32
		default:
			t.Fatalf("%s: reference comparisons run in float32", h.Name)
		}
		ts = append(ts, ct)
	}
	var buf bytes.Buffer
	if err := checkpoints.WriteSafetensors(&buf, ts, nil); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "model.safetensors"), buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	hc, err := HFConfig(m.Cfg, seq)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := json.MarshalIndent(hc, "", "  ")
	if err := os.WriteFile(filepath.Join(dir, "config.json"), raw, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestAgreesWithPyTorchReference runs the same weights and tokens through
// moetrain (float32) and torchref.py dump, and compares loss, aux loss, the
// full logits, every gradient and the chosen experts: max|ours − ref| must be
// at most 1e-4·max|ref| per tensor, and the experts identical.
func TestAgreesWithPyTorchReference(t *testing.T) {
	torchref.Require(t)
	const B, T = 2, 12
	for _, kind := range []string{configs.FFNDense, configs.FFNDeepSeekMoE, configs.FFNGShard, configs.FFNSwitch} {
		t.Run(kind, func(t *testing.T) {
			c := tinyModel(kind)
			c.Balance.DeviceAlpha = 0 // the reference has no device-level loss
			c.InitStd = 0.2           // wide router logits: top-k margins well above float32 noise
			var m *Model
			var d torchref.Dump
			toks := make([]int32, B*(T+1))
			// Seeds are tried in a fixed order until the reference reports a
			// smallest top-k margin of at least 1e-5 (Dump.Fragile).
			for seed := uint64(1); ; seed++ {
				if seed > 8 {
					t.Fatal("no fixture with a top-k margin >= 1e-5 in 8 seeds")
				}
				c.InitSeed = seed
				var err error
				if m, err = New(c, tensor.Float32); err != nil {
					t.Fatal(err)
				}
				r := rand.New(rand.NewPCG(seed, 3))
				for i := range toks {
					toks[i] = int32(r.IntN(c.VocabSize))
				}
				dir := t.TempDir()
				writeHFDir(t, m, dir, T)
				d = torchref.RunDump(t, filepath.Join(dir, "config.json"), filepath.Join(dir, "model.safetensors"), toks, B, T)
				if !d.Fragile() {
					break
				}
			}
			refs := d.Tensors
			g, err := m.Build(GraphOptions{Batch: B, Seq: T, Backward: true, Logits: true})
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
			// Gradients, tensor by tensor, under the HF names.
			grads := map[string][]float64{}
			for i, p := range m.Layout {
				gt, err := g.Grad(i)
				if err != nil || gt == nil {
					continue
				}
				all := torchref.ToFloat64(gt.Data())
				parts := 1
				if p.Experts > 0 {
					parts = p.Experts
				}
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
			for j, rec := range g.Routes {
				torchref.CheckExperts(t, g.RouteOf[j], rec.N, rec.K, rec.Experts, d)
			}
		})
	}
}
