package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// analyze --what tokens prints the per-layer table and writes it with the
// per-id map; a dense model and an expert-choice model are usage errors
// (exit 2) that say why, and write nothing.
func TestAnalyzeTokens(t *testing.T) {
	out := filepath.Join(t.TempDir(), "analysis")
	stdout, e, code := moetrain(t, "analyze", trainedRun(t, 2), "--what", "tokens", "--tokens", "256", "--out", out)
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, e)
	}
	if !strings.Contains(stdout, "H(expert given token id)") || strings.Count(stdout, "\n| ") != 1+2 { // header + 2 MoE layers
		t.Errorf("stdout lacks the per-layer table:\n%s", stdout)
	}
	for _, f := range []string{"analysis-tokens.md", "analysis-tokens.csv", "analysis-tokens-ids.csv"} {
		if st, err := os.Stat(filepath.Join(out, f)); err != nil || st.Size() == 0 {
			t.Errorf("%s: %v", f, err)
		}
	}
	for _, tc := range []struct {
		replace []string
		want    string
	}{
		{[]string{"ffn: deepseekmoe", "ffn: dense", "  shared_experts: 1\n  routed_experts: 7\n  active_routed: 3\n  expert_width: 16\n  balance:\n    expert_alpha: 0.01\n", ""}, "a dense model has no experts"},
		{[]string{"  balance:\n    expert_alpha: 0.01\n", "  router:\n    expert_choice: true\n"}, "routes by expert choice"},
	} {
		out := filepath.Join(t.TempDir(), "analysis")
		_, e, code := moetrain(t, "analyze", trainedRun(t, 2, tc.replace...), "--what", "tokens", "--tokens", "256", "--out", out)
		if code != 2 || !strings.Contains(e, tc.want) {
			t.Errorf("exit %d, stderr:\n%s\nwant exit 2 and %q", code, e, tc.want)
		}
		if _, err := os.Stat(out); err == nil {
			t.Errorf("the refused analysis created %s", out)
		}
	}
}

// analyze --what churn compares every checkpoint of a run (two here) and
// writes its table; a run with one checkpoint, or a checkpoint directory,
// is a usage error that writes nothing.
func TestAnalyzeChurn(t *testing.T) {
	run := trainedRun(t, 4)
	out := filepath.Join(t.TempDir(), "analysis")
	stdout, e, code := moetrain(t, "analyze", run, "--what", "churn", "--tokens", "256", "--out", out)
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, e)
	}
	if !strings.Contains(stdout, "slots moved since previous checkpoint") || strings.Count(stdout, "\n| ") != 1+2*2 { // header + 2 checkpoints × 2 MoE layers
		t.Errorf("stdout lacks the churn table:\n%s", stdout)
	}
	for _, f := range []string{"analysis-churn.md", "analysis-churn.csv", "analysis-churn.png", "analysis-churn.svg"} {
		if st, err := os.Stat(filepath.Join(out, f)); err != nil || st.Size() == 0 {
			t.Errorf("%s: %v", f, err)
		}
	}
	for _, tc := range []struct {
		arg, want string
	}{
		{trainedRun(t, 2), "needs at least 2 checkpoints"},
		{filepath.Join(run, "checkpoints", "tokens-000000000000512"), "give the run directory"},
	} {
		out := filepath.Join(t.TempDir(), "analysis")
		_, e, code := moetrain(t, "analyze", tc.arg, "--what", "churn", "--tokens", "256", "--out", out)
		if code != 2 || !strings.Contains(e, tc.want) {
			t.Errorf("%s: exit %d, stderr:\n%s\nwant exit 2 and %q", tc.arg, code, e, tc.want)
		}
		if _, err := os.Stat(out); err == nil {
			t.Errorf("the refused analysis created %s", out)
		}
	}
}

// analyze --over-seeds prints written tokens analyses as mean ± std per
// name and writes nothing; with a RUN_DIR too, or over a directory without
// analyses, it is a usage error.
func TestAnalyzeOverSeeds(t *testing.T) {
	run := trainedRun(t, 2)
	dir := t.TempDir()
	for _, s := range []string{"1", "2"} {
		if _, e, code := moetrain(t, "analyze", run, "--what", "tokens", "--tokens", "256", "--out", filepath.Join(dir, "tiny_seed-"+s)); code != 0 {
			t.Fatalf("exit %d\n%s", code, e)
		}
	}
	before, _ := os.ReadDir(dir)
	stdout, e, code := moetrain(t, "analyze", "--over-seeds", dir, "--what", "tokens")
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, e)
	}
	// The same run analysed twice: every spread is 0.
	if !strings.Contains(stdout, "| tiny | 0 | 7 | 3 | 2 | ") || !strings.Contains(stdout, "± 0.0000") {
		t.Errorf("stdout:\n%s", stdout)
	}
	if after, _ := os.ReadDir(dir); len(after) != len(before) {
		t.Errorf("--over-seeds wrote into %s", dir)
	}
	for _, args := range [][]string{
		{"analyze", run, "--over-seeds", dir, "--what", "tokens"},
		{"analyze", "--over-seeds", t.TempDir(), "--what", "tokens"},
		{"analyze", "--over-seeds", dir, "--what", "load"},
	} {
		if _, e, code := moetrain(t, args...); code != 2 {
			t.Errorf("%v: exit %d, want 2\n%s", args, code, e)
		}
	}
}
