package main

import (
	"bytes"
	"encoding/csv"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/moetrain/moetrain/data/prepare"
	"github.com/moetrain/moetrain/rundir"
)

// A trained run with held-out evals, compared and plotted through the CLI;
// then the bad inputs and their exit codes.
func TestCompareAndPlotCLI(t *testing.T) {
	run := trainedRun(t, 4, "  every_tokens: 0\n", "  every_tokens: 256\n")
	ms, err := rundir.ReadMetrics(filepath.Join(run, "metrics.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	var loss float64
	evals := 0
	for _, m := range ms {
		if m.Kind == "eval" && m.Task == "heldout" && m.Metric == "loss" {
			loss = *m.Value
			evals++
		}
	}
	if evals < 2 {
		t.Fatalf("the run has %d held-out evals; want 2 or more", evals)
	}

	dir := t.TempDir()
	csvPath := filepath.Join(dir, "t.csv")
	stdout, stderr, code := moetrain(t, "compare", run, "--csv", csvPath)
	if code != 0 {
		t.Fatalf("compare: exit %d\n%s", code, stderr)
	}
	if !strings.Contains(stdout, "Held-out loss: the run's last evaluation, mean cross-entropy over the first eval.tokens (1,024) tokens of the validation split") {
		t.Errorf("compare does not say which held-out loss it shows:\n%s", stdout)
	}
	if !strings.Contains(stdout, "| Variant | DeepSeekMoE 1+3/7 |") || !strings.Contains(stdout, "| Held-out loss (nats/token) | "+strconv.FormatFloat(loss, 'f', 3, 64)+" |") {
		t.Errorf("compare markdown lacks the variant or the loss %.3f:\n%s", loss, stdout)
	}
	raw, _ := os.ReadFile(csvPath)
	recs, err := csv.NewReader(bytes.NewReader(raw)).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, r := range recs {
		if r[0] == "heldout_loss" {
			got, _ := strconv.ParseFloat(r[1], 64)
			found = got == loss
		}
	}
	if !found {
		t.Errorf("CSV lacks heldout_loss %v:\n%s", loss, raw)
	}
	mdPath := filepath.Join(dir, "t.md")
	if stdout, _, code := moetrain(t, "compare", run, "--md", mdPath); code != 0 || stdout != "" {
		t.Errorf("compare --md: exit %d, stdout %q (want the table in the file only)", code, stdout)
	}
	if md, _ := os.ReadFile(mdPath); !strings.HasPrefix(string(md), "| Metric | run |") {
		t.Errorf("--md file: %q", md)
	}

	out := filepath.Join(dir, "fig")
	stdout, stderr, code = moetrain(t, "plot", run, "--out", out)
	if code != 0 {
		t.Fatalf("plot: exit %d\n%s", code, stderr)
	}
	// Held-out loss only (no task evals): the two loss figures.
	for _, name := range []string{"loss_vs_tokens", "loss_vs_flops"} {
		for _, ext := range []string{".png", ".svg"} {
			if st, err := os.Stat(filepath.Join(out, name+ext)); err != nil || st.Size() == 0 || !strings.Contains(stdout, name+ext) {
				t.Errorf("plot did not write %s%s (%v)", name, ext, err)
			}
		}
	}

	noEval := filepath.Join(dir, "noeval")
	os.MkdirAll(noEval, 0o755)
	cfg, _ := os.ReadFile(filepath.Join(run, "config.yaml"))
	os.WriteFile(filepath.Join(noEval, "config.yaml"), cfg, 0o644)
	os.WriteFile(filepath.Join(noEval, "metrics.jsonl"), []byte(`{"kind":"train","tokens":128,"step":1,"loss":5}`+"\n"), 0o644)
	corrupt := filepath.Join(dir, "corrupt")
	os.MkdirAll(corrupt, 0o755)
	os.WriteFile(filepath.Join(corrupt, "config.yaml"), cfg, 0o644)
	os.WriteFile(filepath.Join(corrupt, "metrics.jsonl"), []byte("{oops\n"), 0o644)
	missing := filepath.Join(dir, "missing")
	tests := []struct {
		args []string
		code int
		want string
	}{
		{[]string{"compare"}, 2, "requires at least 1 arg"},
		{[]string{"compare", missing}, 2, missing},
		{[]string{"compare", run, noEval}, 2, noEval},
		{[]string{"compare", corrupt}, 1, corrupt},
		{[]string{"compare", run, "--tasks", "nope"}, 2, "unknown task nope"},
		{[]string{"plot", run, "--tasks", "nope", "--out", out}, 2, "unknown task nope"},
		{[]string{"plot", run}, 2, "--out"},
		{[]string{"plot", missing, "--out", out}, 2, missing},
		{[]string{"plot", corrupt, "--out", out}, 1, corrupt},
		{[]string{"tasks", "build", missing}, 2, missing},
		{[]string{"tasks", "build", noEval}, 1, "manifest"},
	}
	for _, tc := range tests {
		_, stderr, code := moetrain(t, tc.args...)
		if code != tc.code || !strings.Contains(stderr, tc.want) || strings.Contains(stderr, "panic") {
			t.Errorf("moetrain %v: exit %d, stderr %q; want exit %d naming %q", tc.args, code, stderr, tc.code, tc.want)
		}
	}
}

func TestTasksBuildCLI(t *testing.T) {
	ds := filepath.Join(t.TempDir(), "ds")
	if err := os.CopyFS(ds, os.DirFS(dataset)); err != nil {
		t.Fatal(err)
	}
	os.RemoveAll(filepath.Join(ds, "tasks"))
	stdout, stderr, code := moetrain(t, "tasks", "build", ds, "--max-examples", "5")
	if code != 0 {
		t.Fatalf("tasks build: exit %d\n%s", code, stderr)
	}
	for _, name := range []string{"next_verse", "last_word", "code_next_line"} {
		raw, err := os.ReadFile(filepath.Join(ds, "tasks", name+".jsonl"))
		if err != nil {
			t.Fatalf("%s: %v\n%s", name, err, stdout)
		}
		if n := strings.Count(string(raw), "\n"); n != 6 {
			t.Errorf("%s has %d lines, want a header and 5 examples", name, n)
		}
		if !strings.Contains(stdout, "task "+name+": 5 multiple_choice examples") {
			t.Errorf("output lacks %s:\n%s", name, stdout)
		}
	}
}

// prepare ends by building the built-in tasks of the new dataset.
func TestPrepareBuildsTasksCLI(t *testing.T) {
	src := t.TempDir()
	var prose strings.Builder
	codeDir := filepath.Join(src, "code")
	os.MkdirAll(codeDir, 0o755)
	for i, d := range prepare.Synthetic(5, 80) {
		if d.Domain == "prose" {
			prose.WriteString(d.Text + "\n")
			continue
		}
		os.WriteFile(filepath.Join(codeDir, "f"+strconv.Itoa(i)+".go"), []byte(d.Text), 0o644)
	}
	os.WriteFile(filepath.Join(src, "prose.txt"), []byte(prose.String()), 0o644)
	out := filepath.Join(t.TempDir(), "ds")
	stdout, stderr, code := moetrain(t, "prepare", "--out", out, "--vocab", "300", "--val-fraction", "0.25",
		"--doc-start", "^Chapter [0-9]+$", "prose="+filepath.Join(src, "prose.txt"), "code="+codeDir)
	if code != 0 {
		t.Fatalf("prepare: exit %d\n%s", code, stderr)
	}
	for _, name := range []string{"next_verse", "last_word", "code_next_line"} {
		if _, err := os.Stat(filepath.Join(out, "tasks", name+".jsonl")); err != nil || !strings.Contains(stdout, "task "+name+":") {
			t.Errorf("prepare did not build %s (%v):\n%s", name, err, stdout)
		}
	}
}
