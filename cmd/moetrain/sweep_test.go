package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// `sweep --dry-run` prints every run's estimated time (the FLOPs left at
// a timed step rate) and the total, and trains nothing.
func TestSweepDryRunEstimates(t *testing.T) {
	dir := t.TempDir()
	spec := filepath.Join(dir, "s.yaml")
	out := filepath.Join(dir, "out")
	y := "name: s\nbase: " + tinyYAML(t, 4) + "\nout: " + out + "\nseeds: [1, 2]\n"
	if err := os.WriteFile(spec, []byte(y), 0o644); err != nil {
		t.Fatal(err)
	}
	stdout, stderr, code := moetrain(t, "sweep", spec, "--dry-run")
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, stderr)
	}
	run := regexp.MustCompile(`(?m)^# \S+ \(new\): about \S+: 512 tokens left, [0-9.]+×10\S+ FLOPs at \d+ tokens/s \([0-9.]+ GFLOP/s, from a timed step\)$`)
	if n := len(run.FindAllString(stdout, -1)); n != 2 {
		t.Errorf("%d run estimates, want 2:\n%s", n, stdout)
	}
	if !regexp.MustCompile(`# 2 runs, 512 training tokens each; estimated \S+ one run at a time`).MatchString(stdout) {
		t.Errorf("no total estimate:\n%s", stdout)
	}
	// One model shape: timed once.
	if n := strings.Count(stderr, "timing 3 training steps"); n != 1 {
		t.Errorf("timed %d times, want once:\n%s", n, stderr)
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Errorf("a dry run created %s", out)
	}
}
