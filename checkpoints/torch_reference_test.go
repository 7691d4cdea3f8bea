package checkpoints_test

// Interoperability with PyTorch, through the repository's reference
// (reference/torchref.py): files it writes read back here, and files
// written here read back there with the same bits.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/moetrain/moetrain/checkpoints"
	"github.com/moetrain/moetrain/internal/torchref"
)

// A file written by the PyTorch reference (HF key layout, docs/DESIGN.md §8) reads
// back with the expected keys and shapes, and its values match what PyTorch
// itself reads from the same file.
func TestReadPyTorchFile(t *testing.T) {
	t.Parallel()
	torchref.Require(t)
	dir := t.TempDir()
	cfg := map[string]any{
		"hidden_size": 8, "intermediate_size": 16, "moe_intermediate_size": 4,
		"n_routed_experts": 4, "n_shared_experts": 1, "num_experts_per_tok": 2,
		"num_hidden_layers": 2, "num_attention_heads": 2, "vocab_size": 32,
	}
	cfgJSON, _ := json.Marshal(cfg)
	cfgPath, out := filepath.Join(dir, "config.json"), filepath.Join(dir, "init.safetensors")
	if err := os.WriteFile(cfgPath, cfgJSON, 0o644); err != nil {
		t.Fatal(err)
	}
	torchref.Run(t, "init", "--config", cfgPath, "--out", out)
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	ts, _, err := checkpoints.ReadSafetensors(b)
	if err != nil {
		t.Fatal(err)
	}
	// Expected keys from docs/DESIGN.md §8 with d=8, V=32, H·dh=8, w_e=4, E=4,
	// n_shared=1. torchref's default first_k_dense_replace decides which
	// layers are dense, so a layer may have either MLP form.
	want := map[string][]int{
		"model.embed_tokens.weight": {32, 8},
		"model.norm.weight":         {8},
		"lm_head.weight":            {32, 8},
	}
	for i := 0; i < 2; i++ {
		p := fmt.Sprintf("model.layers.%d.", i)
		want[p+"input_layernorm.weight"] = []int{8}
		want[p+"post_attention_layernorm.weight"] = []int{8}
		for _, k := range []string{"q_proj", "k_proj", "v_proj", "o_proj"} {
			want[p+"self_attn."+k+".weight"] = []int{8, 8}
		}
	}
	got := map[string]checkpoints.Tensor{}
	for _, x := range ts {
		got[x.Name] = x
		if x.DType != checkpoints.F32 {
			t.Errorf("%s: got dtype %v, want F32", x.Name, x.DType)
		}
	}
	for k, shape := range want {
		if g, ok := got[k]; !ok {
			t.Errorf("missing %s", k)
		} else if fmt.Sprint(g.Shape) != fmt.Sprint(shape) {
			t.Errorf("%s: got shape %v, want %v", k, g.Shape, shape)
		}
	}
	if g, ok := got["model.layers.1.mlp.experts.3.down_proj.weight"]; !ok || fmt.Sprint(g.Shape) != "[8 4]" {
		t.Errorf("layer 1 expert 3 down_proj: got %v (present %v), want shape [8 4]", g.Shape, ok)
	}
	if g, ok := got["model.layers.1.mlp.shared_experts.gate_proj.weight"]; !ok || fmt.Sprint(g.Shape) != "[4 8]" {
		t.Errorf("layer 1 shared gate_proj: got %v (present %v), want shape [4 8]", g.Shape, ok)
	}

	// PyTorch reads the same file: per-tensor float64 sums must agree.
	script := `import sys, json; sys.path.insert(0, sys.argv[1]); import torchref
print(json.dumps({k: v.double().sum().item() for k, v in torchref.load_safetensors(sys.argv[2]).items()}))`
	pyOut, err := exec.Command(torchref.Python, "-c", script, torchref.Dir, out).Output()
	if err != nil {
		t.Fatalf("python read: %v", err)
	}
	var sums map[string]float64
	if err := json.Unmarshal(pyOut, &sums); err != nil {
		t.Fatalf("parse python output %q: %v", pyOut, err)
	}
	if len(sums) != len(ts) {
		t.Errorf("PyTorch sees %d tensors, we see %d", len(sums), len(ts))
	}
	for _, x := range ts {
		var s float64
		for _, v := range x.F32 {
			s += float64(v)
		}
		if want, ok := sums[x.Name]; !ok || math.Abs(s-want) > 1e-9*(1+math.Abs(want)) {
			t.Errorf("%s: our sum %.12g, PyTorch's %.12g", x.Name, s, want)
		}
	}
}

// Our BF16 and F16 rounding gives the same bits as PyTorch's casts, and
// PyTorch reads our BF16 file back to the values we meant.
func TestHalfMatchesPyTorch(t *testing.T) {
	t.Parallel()
	torchref.Require(t)
	// Values around ties, subnormals and the overflow edge of both formats.
	var vals []float32
	for _, bits := range []uint32{0x3F808000, 0x3F818000, 0x3F808001, 0x3F807FFF, 0x7F7FFFFF, 0x7F7F8000, 0x7F7F7FFF,
		0x00000001, 0x00800000, 0x33000000, 0x33000001, 0x33800000, 0x387FE000, 0x387FF000, 0x477FF000, 0x477FEFFF, 0x477FE000, 0x3EAAAAAB} {
		vals = append(vals, math.Float32frombits(bits), -math.Float32frombits(bits))
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "ours.safetensors")
	var buf bytes.Buffer
	if err := checkpoints.WriteSafetensors(&buf, []checkpoints.Tensor{{Name: "x", DType: checkpoints.BF16, Shape: []int{len(vals)}, F32: vals}}, nil); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	strs := make([]string, len(vals))
	for i, v := range vals {
		strs[i] = fmt.Sprint(math.Float32bits(v))
	}
	script := `import sys, json, struct, torch; sys.path.insert(0, sys.argv[1]); import torchref
bits = [int(s) for s in sys.argv[3].split(",")]
x = torch.tensor(struct.unpack("<%dI" % len(bits), struct.pack("<%dI" % len(bits), *bits))).to(torch.int64).to(torch.int32).view(torch.float32)
print(json.dumps({"bf16": x.to(torch.bfloat16).view(torch.int16).tolist(), "f16": x.to(torch.float16).view(torch.int16).tolist(),
  "read": [struct.unpack("<I", struct.pack("<f", v))[0] for v in torchref.load_safetensors(sys.argv[2])["x"].tolist()]}))`
	pyOut, err := exec.Command(torchref.Python, "-c", script, torchref.Dir, path, strings.Join(strs, ",")).CombinedOutput()
	if err != nil {
		t.Fatalf("python: %v\n%s", err, pyOut)
	}
	var res struct{ BF16, F16, Read []int64 }
	if err := json.Unmarshal(pyOut, &res); err != nil {
		t.Fatalf("parse python output %q: %v", pyOut, err)
	}
	if len(res.BF16) != len(vals) || len(res.F16) != len(vals) || len(res.Read) != len(vals) {
		t.Fatalf("python returned %d/%d/%d values, want %d", len(res.BF16), len(res.F16), len(res.Read), len(vals))
	}
	for i, v := range vals {
		if got, want := checkpoints.BF16FromF32(v), uint16(res.BF16[i]); got != want {
			t.Errorf("bf16(%g = 0x%08X): got 0x%04X, PyTorch 0x%04X", v, math.Float32bits(v), got, want)
		}
		if got, want := checkpoints.F16FromF32(v), uint16(res.F16[i]); got != want {
			t.Errorf("f16(%g = 0x%08X): got 0x%04X, PyTorch 0x%04X", v, math.Float32bits(v), got, want)
		}
		if got, want := uint32(res.Read[i]), math.Float32bits(checkpoints.BF16ToF32(checkpoints.BF16FromF32(v))); got != want {
			t.Errorf("PyTorch read our bf16 of %g as 0x%08X, want 0x%08X", v, got, want)
		}
	}
}
