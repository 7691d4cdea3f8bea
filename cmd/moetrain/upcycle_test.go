package main

import (
	"path/filepath"
	"strings"
	"testing"
)

// upcycle end to end: a dense run's checkpoint becomes a DeepSeekMoE run at
// 0 tokens that train continues; mistakes exit 2 naming the key.
func TestUpcycleCLI(t *testing.T) {
	cfg := tinyYAML(t, 2)
	denseSets := []string{"--set", "model.ffn=dense", "--set", "model.shared_experts=0", "--set", "model.routed_experts=0",
		"--set", "model.active_routed=0", "--set", "model.expert_width=0", "--set", "model.balance.expert_alpha=0"}
	dense := filepath.Join(t.TempDir(), "dense")
	if _, stderr, code := moetrain(t, append([]string{"train", cfg, "--run-dir", dense}, denseSets...)...); code != 0 {
		t.Fatalf("dense training: exit %d\n%s", code, stderr)
	}
	moe := filepath.Join(t.TempDir(), "moe")
	stdout, stderr, code := moetrain(t, "upcycle", dense, "--config", cfg, "--out", moe)
	if code != 0 || !strings.Contains(stdout, "upcycled") {
		t.Fatalf("upcycle: exit %d\n%s%s", code, stdout, stderr)
	}
	if _, stderr, code := moetrain(t, "train", filepath.Join(moe, "config.yaml"), "--run-dir", moe, "--set", "train.tokens=256"); code != 0 {
		t.Fatalf("training the upcycled run: exit %d\n%s", code, stderr)
	}
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"hidden differs", []string{"upcycle", dense, "--config", cfg, "--out", filepath.Join(t.TempDir(), "x"), "--set", "model.hidden=64"}, "model.hidden: 64, the dense model's is 32"},
		{"run exists", []string{"upcycle", dense, "--config", cfg, "--out", moe}, "already holds a run"},
		{"no --config", []string{"upcycle", dense, "--out", moe}, "--config and --out are required"},
		{"not a dense model", []string{"upcycle", moe, "--config", cfg, "--out", filepath.Join(t.TempDir(), "y")}, "model.ffn: the model to upcycle is deepseekmoe"},
	} {
		_, stderr, code := moetrain(t, tc.args...)
		if code != 2 || !strings.Contains(stderr, tc.want) {
			t.Errorf("%s: exit %d, stderr %q; want exit 2 and %q", tc.name, code, stderr, tc.want)
		}
	}
}
