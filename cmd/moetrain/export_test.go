package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// trainedRun trains the tiny config for steps steps (with edits applied to
// its YAML) and returns the run directory.
func trainedRun(t *testing.T, steps int, replace ...string) string {
	t.Helper()
	cfg := tinyYAML(t, steps)
	if len(replace) > 0 {
		raw, _ := os.ReadFile(cfg)
		os.WriteFile(cfg, []byte(strings.NewReplacer(replace...).Replace(string(raw))), 0o644)
	}
	run := filepath.Join(t.TempDir(), "run")
	if _, e, code := moetrain(t, "train", cfg, "--run-dir", run, "--plain"); code != 0 {
		t.Fatalf("train: exit %d\n%s", code, e)
	}
	return run
}

// The CLI round trip: train → export → import → train continues; the
// imported checkpoint's weights file is byte-identical to the trained one.
func TestExportImportTrainCLI(t *testing.T) {
	run := trainedRun(t, 2)
	out := filepath.Join(t.TempDir(), "hf")
	stdout, stderr, code := moetrain(t, "export", run, "--format", "hf", "--out", out, "--shard-size", "20KB")
	if code != 0 {
		t.Fatalf("export: exit %d\n%s", code, stderr)
	}
	if !strings.Contains(stdout, "every one read back and verified") {
		t.Errorf("export output lacks the verification note:\n%s", stdout)
	}
	for _, f := range []string{"config.json", "generation_config.json", "tokenizer.json", "model.safetensors.index.json"} {
		if _, err := os.Stat(filepath.Join(out, f)); err != nil {
			t.Errorf("export lacks %s", f)
		}
	}
	var hc map[string]any
	raw, _ := os.ReadFile(filepath.Join(out, "config.json"))
	if err := json.Unmarshal(raw, &hc); err != nil || hc["n_shared_experts"] != 1.0 || hc["n_routed_experts"] != 7.0 {
		t.Errorf("config.json: %v (%v)", hc, err)
	}

	run2 := filepath.Join(t.TempDir(), "imported")
	if _, stderr, code := moetrain(t, "import", out, "--out", run2, "--set", "data.path="+dataset, "--set", "train.batch_size=4"); code != 0 {
		t.Fatalf("import: exit %d\n%s", code, stderr)
	}
	if !bytes.Equal(finalModel(t, run), finalModel(t, run2)) {
		t.Error("the imported checkpoint's model.safetensors differs from the trained one's")
	}
	stdout, stderr, code = moetrain(t, "train", filepath.Join(run2, "config.yaml"), "--run-dir", run2, "--plain", "--set", "train.tokens=256")
	if code != 0 {
		t.Fatalf("train after import: exit %d\n%s%s", code, stdout, stderr)
	}
	if !strings.Contains(stdout, "resumed from") {
		t.Errorf("train did not start from the imported checkpoint:\n%s", stdout)
	}
}

func TestExportImportExitCodes(t *testing.T) {
	run := trainedRun(t, 2)
	hashRun := trainedRun(t, 2, "ffn: deepseekmoe", "ffn: hash", "shared_experts: 1", "shared_experts: 0",
		"active_routed: 3", "active_routed: 1", "expert_alpha: 0.01", "expert_alpha: 0")
	good := filepath.Join(t.TempDir(), "good")
	if _, e, code := moetrain(t, "export", run, "--out", good); code != 0 {
		t.Fatalf("export: exit %d\n%s", code, e)
	}
	full := t.TempDir()
	os.WriteFile(filepath.Join(full, "x"), nil, 0o644)
	// Broken HF directories, each a copy of the good export with one fault.
	broken := func(name string, edit func(dir string)) string {
		dir := filepath.Join(t.TempDir(), name)
		os.MkdirAll(dir, 0o755)
		ents, _ := os.ReadDir(good)
		for _, e := range ents {
			b, _ := os.ReadFile(filepath.Join(good, e.Name()))
			os.WriteFile(filepath.Join(dir, e.Name()), b, 0o644)
		}
		edit(dir)
		return dir
	}
	editConfig := func(from, to string) func(string) {
		return func(dir string) {
			p := filepath.Join(dir, "config.json")
			b, _ := os.ReadFile(p)
			os.WriteFile(p, bytes.Replace(b, []byte(from), []byte(to), 1), 0o644)
		}
	}
	noConfig := broken("noconfig", func(d string) { os.Remove(filepath.Join(d, "config.json")) })
	garbage := broken("garbage", func(d string) { os.WriteFile(filepath.Join(d, "model.safetensors"), []byte("not safetensors"), 0o644) })
	llama := broken("llama", editConfig(`"model_type": "deepseek"`, `"model_type": "mixtral"`))
	deeper := broken("deeper", editConfig(`"num_hidden_layers": 2`, `"num_hidden_layers": 3`))
	existing := filepath.Join(t.TempDir(), "existing")
	if _, e, code := moetrain(t, "import", good, "--out", existing); code != 0 {
		t.Fatalf("import: exit %d\n%s", code, e)
	}
	tests := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"export without --out", []string{"export", run}, 2, "--out is required"},
		{"export format", []string{"export", run, "--format", "gguf", "--out", t.TempDir() + "/o"}, 2, "gguf"},
		{"export dtype", []string{"export", run, "--dtype", "fp16", "--out", t.TempDir() + "/o"}, 2, "fp16"},
		{"export shard size", []string{"export", run, "--shard-size", "lots", "--out", t.TempDir() + "/o"}, 2, "lots"},
		{"export missing path", []string{"export", "/nonexistent/run", "--out", t.TempDir() + "/o"}, 2, "/nonexistent/run"},
		{"export into a full dir", []string{"export", run, "--out", full}, 2, "not empty"},
		{"export hash", []string{"export", hashRun, "--out", t.TempDir() + "/o"}, 2, "hash routing has no Hugging Face equivalent"},
		{"export no checkpoint", []string{"export", t.TempDir(), "--out", t.TempDir() + "/o"}, 2, "holds no checkpoint"},
		{"import missing path", []string{"import", "/nonexistent/hf", "--out", t.TempDir() + "/r"}, 2, "/nonexistent/hf"},
		{"import without --out", []string{"import", good}, 2, "--out is required"},
		{"import no config.json", []string{"import", noConfig, "--out", t.TempDir() + "/r"}, 1, filepath.Join(noConfig, "config.json")},
		{"import unreadable weights", []string{"import", garbage, "--out", t.TempDir() + "/r"}, 1, filepath.Join(garbage, "model.safetensors")},
		{"import unknown model_type", []string{"import", llama, "--out", t.TempDir() + "/r"}, 1, `unknown model type "mixtral"`},
		{"import missing keys", []string{"import", deeper, "--out", t.TempDir() + "/r"}, 1, "missing model.layers.2.self_attn.q_proj.weight"},
		{"import into a run", []string{"import", good, "--out", existing}, 2, "already holds a run"},
		{"import model override", []string{"import", good, "--out", t.TempDir() + "/r", "--set", "model.hidden=64"}, 2, "model.hidden: comes from config.json"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, stderr, code := moetrain(t, tc.args...)
			if code != tc.code || !strings.Contains(stderr, tc.want) {
				t.Errorf("exit %d, stderr %q; want exit %d and %q", code, stderr, tc.code, tc.want)
			}
			if strings.Contains(stderr, "goroutine ") || strings.Contains(stderr, "panic:") {
				t.Errorf("stack trace on bad input:\n%s", stderr)
			}
		})
	}
}
