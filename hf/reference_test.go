package hf

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"gorgonia.org/tensor"

	"github.com/moetrain/moetrain/checkpoints"
	"github.com/moetrain/moetrain/configs"
	"github.com/moetrain/moetrain/internal/tol"
	"github.com/moetrain/moetrain/model"
)

// torchref is the PyTorch reference shipped beside the repo.
var torchref = filepath.Join("..", "..", "shared", "tools", "torchref.py")

// requireTorch skips when the reference cannot run (no python3-torch),
// except under CI=1, which installs python3-torch and must run these tests.
func requireTorch(t *testing.T) {
	t.Helper()
	ci := os.Getenv("CI") != ""
	if _, err := os.Stat(torchref); err != nil {
		if ci {
			t.Fatalf("CI must have the reference at %s: %v", torchref, err)
		}
		t.Skipf("no reference at %s", torchref)
	}
	if err := exec.Command("/usr/bin/python3", "-c", "import torch").Run(); err != nil {
		if ci {
			t.Fatalf("CI must have python3-torch: %v", err)
		}
		t.Skip("python3-torch is not installed")
	}
}

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

type refDump struct {
	Loss       float64
	MinTopKGap *float64 `json:"min_topk_gap"`
	Tensors    map[string]checkpoints.Tensor
}

// runRef runs torchref.py with args and returns its stdout.
func runRef(t *testing.T, args ...string) []byte {
	t.Helper()
	cmd := exec.Command("/usr/bin/python3", append([]string{torchref}, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("torchref %s: %v\n%s%s", args[0], err, out, stderr.String())
	}
	return out
}

// dump runs `torchref.py dump` on config.json and weights in dir with toks.
func dump(t *testing.T, dir, weights string, toks []int32) refDump {
	t.Helper()
	var lines []string
	for b := 0; b < refB; b++ {
		var row []string
		for _, x := range toks[b*(refT+1) : (b+1)*(refT+1)] {
			row = append(row, fmt.Sprint(x))
		}
		lines = append(lines, strings.Join(row, " "))
	}
	tokPath := filepath.Join(t.TempDir(), "tokens.txt")
	if err := os.WriteFile(tokPath, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	outPath := filepath.Join(t.TempDir(), "dump.safetensors")
	out := runRef(t, "dump", "--config", filepath.Join(dir, ConfigFile), "--weights", weights,
		"--tokens", tokPath, "--out", outPath, "--threads", "1")
	var d refDump
	lines = strings.Split(strings.TrimSpace(string(out)), "\n")
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &d); err != nil {
		t.Fatalf("torchref output %q: %v", out, err)
	}
	raw, err := os.ReadFile(outPath)
	if err != nil {
		t.Fatal(err)
	}
	ts, _, err := checkpoints.ReadSafetensors(raw)
	if err != nil {
		t.Fatal(err)
	}
	d.Tensors = map[string]checkpoints.Tensor{}
	for _, x := range ts {
		d.Tensors[x.Name] = x
	}
	return d
}

func (d refDump) fragile() bool { return d.MinTopKGap != nil && *d.MinTopKGap < 1e-5 }

// agree checks moetrain's loss, full logits and chosen experts on toks
// against the reference's dump: max|Δ| <= 1e-4·max|ref| per tensor.
func agree(t *testing.T, m *model.Model, toks []int32, d refDump) {
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
	if err := tol.CheckScaled("loss", []float64{res.Loss}, f64(d.Tensors["loss"]), 1e-4); err != nil {
		t.Error(err)
	}
	lg, err := g.Logits()
	if err != nil {
		t.Fatal(err)
	}
	if err := tol.CheckScaled("logits", f64s(lg.Data().([]float32)), f64(d.Tensors["logits"]), 1e-4); err != nil {
		t.Error(err)
	}
	for j, rec := range g.Routes {
		want, ok := d.Tensors[fmt.Sprintf("route.%d.topk_idx", g.RouteOf[j])]
		if !ok {
			t.Fatalf("the reference has no routing for layer %d", g.RouteOf[j])
		}
		for tk := 0; tk < rec.N; tk++ {
			got := append([]int32(nil), rec.Experts[tk*rec.K:(tk+1)*rec.K]...)
			sortInt32(got)
			if fmt.Sprint(got) != fmt.Sprint(want.I32[tk*rec.K:(tk+1)*rec.K]) {
				t.Fatalf("layer %d token %d: experts %v, reference %v", g.RouteOf[j], tk, got, want.I32[tk*rec.K:(tk+1)*rec.K])
			}
		}
	}
}

// exportForRef picks the first seed whose model the reference routes with
// top-k margins of at least 1e-5 (a near-tie makes any float32 comparison
// of routing fragile), exports it and returns the model, the directory, the
// tokens and the dump of the exported files.
func exportForRef(t *testing.T, kind string, dt DType) (*model.Model, string, []int32, refDump) {
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
		d := dump(t, dir, filepath.Join(dir, WeightsFile), toks)
		if !d.fragile() {
			return m, dir, toks, d
		}
	}
	t.Fatal("no fixture with a top-k margin >= 1e-5 in 8 seeds")
	return nil, "", nil, refDump{}
}

// TestExportAgreesWithReference: the reference loads each exported
// directory (strictly: a missing or extra key fails its load) and computes
// the same loss, full logits and experts as moetrain on the same tokens. In
// bf16, both sides see the rounded weights: moetrain reads the export back.
func TestExportAgreesWithReference(t *testing.T) {
	requireTorch(t)
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
	requireTorch(t)
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
			after := dump(t, dir, filepath.Join(dir, WeightsFile), toks)
			a, b := f64(before.Tensors["logits"]), f64(after.Tensors["logits"])
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
	requireTorch(t)
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
				runRef(t, "init", "--config", filepath.Join(dir, ConfigFile), "--out", weights, "--seed", fmt.Sprint(seed))
				toks := refTokens(uint64(seed)+1, refConfig(v.kind).VocabSize)
				d := dump(t, dir, weights, toks)
				if d.fragile() {
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

func sortInt32(s []int32) {
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j] < s[j-1]; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
}

func f64(t checkpoints.Tensor) []float64 {
	if t.F64 != nil {
		return t.F64
	}
	return f64s(t.F32)
}

func f64s(x []float32) []float64 {
	out := make([]float64, len(x))
	for i, v := range x {
		out[i] = float64(v)
	}
	return out
}
