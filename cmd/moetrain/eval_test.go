package main

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"github.com/moetrain/moetrain/internal/tol"
	"github.com/moetrain/moetrain/rundir"
)

// moetrain eval and generate on a tiny trained run: JSON held-out scores
// with per-domain parts, task scores from --data, usage errors, and
// deterministic, streamed generation.
func TestEvalAndGenerate(t *testing.T) {
	run := t.TempDir()
	if _, errOut, code := moetrain(t, "train", tinyYAML(t, 4), "--run-dir", run, "--plain"); code != 0 {
		t.Fatalf("train exited %d: %s", code, errOut)
	}

	out, errOut, code := moetrain(t, "eval", run, "--json", "--no-tasks")
	if code != 0 {
		t.Fatalf("eval exited %d: %s", code, errOut)
	}
	var rep evalReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("eval --json: %v\n%s", err, out)
	}
	h := rep.HeldOut
	if h == nil || h.Tokens == 0 || len(h.Domains) != 2 || rep.Tokens != 4*128 {
		t.Fatalf("held-out %+v, tokens %d", h, rep.Tokens)
	}
	if want := h.Loss * float64(h.Tokens) / float64(h.Bytes) / math.Ln2; !(tol.Tol{Rel: 1e-12}).Close(h.BPB, want) {
		t.Errorf("bits per byte %g, want %g", h.BPB, want)
	}
	// One held-out number: by default eval scores what the run's own
	// final evaluation scored (eval.tokens), the loss compare reports.
	logged := loggedHeldOut(t, run)
	if !(tol.Tol{Rel: 1e-9}).Close(h.Loss, logged) || !strings.Contains(rep.HeldOutScope, "first 1,024 tokens") {
		t.Errorf("eval's held-out loss %v (%s), want the run's logged %v over eval.tokens", h.Loss, rep.HeldOutScope, logged)
	}
	out, _, _ = moetrain(t, "eval", run, "--no-tasks", "--tokens", "0")
	if !strings.Contains(out, "held-out: the whole validation split (--tokens 0); compare, plot and serve report its first 1,024 tokens") {
		t.Errorf("eval --tokens 0 does not say which held-out number it is:\n%s", out)
	}

	// Task files of another copy of the dataset, through --data.
	data := filepath.Join(t.TempDir(), "data")
	if err := os.CopyFS(data, os.DirFS(dataset)); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(data, "tasks"), 0o755); err != nil {
		t.Fatal(err)
	}
	task := `{"task": "tiny", "fewshot": 1}
{"context": "Chapter 1\n\n  1 And the", "choices": [" king", " err"], "gold": 0}
{"context": "Chapter 2\n\n  1 And the", "choices": [" city", " ctx"], "gold": 0}
{"context": "package p1\n\nfunc f(n int) (int, error) {\n\tif", "choices": [" land", " n"], "gold": 1}
`
	if err := os.WriteFile(filepath.Join(data, "tasks", "tiny.jsonl"), []byte(task), 0o644); err != nil {
		t.Fatal(err)
	}
	out, errOut, code = moetrain(t, "eval", run, "--data", data, "--tokens", "256", "--json")
	if code != 0 {
		t.Fatalf("eval --data exited %d: %s", code, errOut)
	}
	rep = evalReport{}
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatal(err)
	}
	if len(rep.Tasks) != 1 || rep.Tasks[0].Task != "tiny" || rep.Tasks[0].Examples != 2 || len(rep.Tasks[0].Metrics) != 2 {
		t.Fatalf("tasks %+v", rep.Tasks)
	}
	if out, _, code = moetrain(t, "eval", run, "--data", data, "--tokens", "256"); code != 0 || !strings.Contains(out, "acc_norm") || !strings.Contains(out, "bits/byte") {
		t.Errorf("eval table (exit %d):\n%s", code, out)
	}
	if _, errOut, code = moetrain(t, "eval", run, "--data", data, "--tasks", "nope"); code != 2 || !strings.Contains(errOut, `"nope"`) {
		t.Errorf("unknown task: exit %d, %s", code, errOut)
	}
	if err := os.WriteFile(filepath.Join(data, "tasks", "tiny.jsonl"), []byte(task+`{"context": "x", "choices": [" a"], "gold": 0}`+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, errOut, code = moetrain(t, "eval", run, "--data", data); code != 2 || !strings.Contains(errOut, "tiny.jsonl:5") {
		t.Errorf("malformed task file: exit %d, %s", code, errOut)
	}

	// Greedy generation is deterministic and echoes the prompt; sampling
	// with a seed repeats.
	gen := func(args ...string) string {
		t.Helper()
		out, errOut, code := moetrain(t, append([]string{"generate", run}, args...)...)
		if code != 0 {
			t.Fatalf("generate %v exited %d: %s", args, code, errOut)
		}
		return out
	}
	a, b := gen("--prompt", "Chapter 3", "--max-tokens", "8"), gen("--prompt", "Chapter 3", "--max-tokens", "8")
	if a != b || !strings.HasPrefix(a, "Chapter 3") || len(a) <= len("Chapter 3\n") {
		t.Errorf("greedy runs gave %q and %q", a, b)
	}
	s1 := gen("--prompt", "package", "--max-tokens", "8", "--temperature", "1", "--seed", "5")
	s2 := gen("--prompt", "package", "--max-tokens", "8", "--temperature", "1", "--seed", "5")
	if s1 != s2 {
		t.Errorf("seeded sampling gave %q and %q", s1, s2)
	}
	// Hot sampling draws byte tokens that are not text on their own: the
	// terminal gets valid UTF-8 without control characters.
	for seed := 1; seed <= 3; seed++ {
		hot := gen("--prompt", "x", "--max-tokens", "48", "--temperature", "4", "--seed", strconv.Itoa(seed))
		if !utf8.ValidString(hot) || strings.ContainsFunc(hot, func(r rune) bool { return r != '\n' && r != '\t' && unicode.IsControl(r) }) {
			t.Errorf("generate printed invalid UTF-8 or control characters: %q", hot)
		}
	}
	for _, args := range [][]string{{"--max-tokens", "3"}, {"--prompt", "x", "--temperature", "-1"}, {"--prompt", "x", "--top-p", "2"}, {"--prompt", strings.Repeat("and the ", 40)}} {
		if _, _, code := moetrain(t, append([]string{"generate", run}, args...)...); code != 2 {
			t.Errorf("generate %v: exit %d, want 2", args, code)
		}
	}
}

// A bf16 run's held-out loss is scored again by moetrain eval with bf16
// products (equal to the run's own evaluation), and, where the products
// cannot run (OpenBLAS here), with float32 products and a note saying so.
func TestEvalFollowsTheRunsProducts(t *testing.T) {
	run := t.TempDir()
	_, errOut, code := moetrain(t, "train", tinyYAML(t, 4), "--run-dir", run, "--plain", "--set", "train.products=bf16")
	if code == 1 && strings.Contains(errOut, "bfloat16 products need") {
		t.Skip("no bfloat16 products on this machine")
	}
	if code != 0 {
		t.Fatalf("train exited %d: %s", code, errOut)
	}
	logged := loggedHeldOut(t, run)
	heldOut := func(env []string) (float64, string) {
		t.Helper()
		out, errOut, code := moetrainEnv(t, env, "eval", run, "--json", "--no-tasks")
		if code != 0 {
			t.Fatalf("eval exited %d: %s", code, errOut)
		}
		var rep evalReport
		if err := json.Unmarshal([]byte(out), &rep); err != nil || rep.HeldOut == nil {
			t.Fatalf("eval --json: %v\n%s", err, out)
		}
		return rep.HeldOut.Loss, errOut
	}
	if l, _ := heldOut(nil); !(tol.Tol{Rel: 1e-9}).Close(l, logged) {
		t.Errorf("eval's held-out loss %v, want the bf16 run's logged %v", l, logged)
	}
	l, errOut := heldOut([]string{"MOETRAIN_BLAS=openblas"})
	if !strings.Contains(errOut, "scoring with float32 products") {
		t.Errorf("eval on OpenBLAS of a bf16 run does not say it scores in float32:\n%s", errOut)
	}
	if l == logged || !(tol.Tol{Rel: 1e-2}).Close(l, logged) {
		t.Errorf("held-out loss %v in float32, %v in bf16: want close, not equal", l, logged)
	}
}

// loggedHeldOut is the held-out loss of a run's last in-training
// evaluation (metrics.jsonl), NaN when there is none.
func loggedHeldOut(t *testing.T, run string) float64 {
	t.Helper()
	ms, err := rundir.ReadMetrics(filepath.Join(run, "metrics.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	logged := math.NaN()
	for _, m := range ms {
		if m.Kind == "eval" && m.Task == "heldout" && m.Metric == "loss" {
			logged = *m.Value
		}
	}
	return logged
}
