package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/moetrain/moetrain/data"
	"github.com/moetrain/moetrain/data/prepare"
	"github.com/moetrain/moetrain/rundir"
)

// treeSnapshot records every path under dir with its size and modification
// time, to show that a command changed nothing.
func treeSnapshot(t *testing.T, dir string) string {
	t.Helper()
	var b strings.Builder
	err := filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		fmt.Fprintf(&b, "%s %d %v\n", p, fi.Size(), fi.ModTime().UnixNano())
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// eval, generate, export and analyze (with --out elsewhere) only read a run
// directory: not even the leftovers of an interrupted save, which belong to
// the trainer, are touched.
func TestReadOnlyCommandsChangeNothing(t *testing.T) {
	run := trainedRun(t, 4)
	for _, name := range []string{".tmp-tokens-000000000000384-abc", ".old-tokens-000000000000256-def"} {
		if err := os.MkdirAll(filepath.Join(run, "checkpoints", name), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	before := treeSnapshot(t, run)
	for _, args := range [][]string{
		{"eval", run, "--no-tasks", "--tokens", "256"},
		{"generate", run, "--prompt", "hi", "--max-tokens", "2"},
		{"export", run, "--out", filepath.Join(t.TempDir(), "hf")},
		{"analyze", run, "--what", "load", "--what", "tokens", "--tokens", "256", "--out", filepath.Join(t.TempDir(), "analysis")},
	} {
		if _, e, code := moetrain(t, args...); code != 0 {
			t.Errorf("%s: exit %d\n%s", args[0], code, e)
		}
		if after := treeSnapshot(t, run); after != before {
			t.Fatalf("%s changed the run directory:\nbefore:\n%safter:\n%s", args[0], before, after)
		}
	}
}

// A read-only command run again and again while the trainer saves (and
// prunes) a checkpoint at every step neither disturbs the trainer nor
// fails itself.
func TestReadOnlyCommandsDuringTraining(t *testing.T) {
	cfg := tinyYAML(t, 40)
	run := t.TempDir()
	cmd := exec.Command(binary, "train", cfg, "--run-dir", run, "--plain",
		"--set", "checkpoint.every_tokens=128", "--set", "checkpoint.keep_last=1")
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error)
	go func() { done <- cmd.Wait() }()
	waitForSteps(t, run, 2)
	reads := 0
	for {
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("the trainer failed while generate ran: %v\n%s", err, out.String())
			}
			if reads < 3 {
				t.Errorf("only %d generate calls ran during training", reads)
			}
			return
		default:
		}
		if _, e, code := moetrain(t, "generate", run, "--prompt", "hi", "--max-tokens", "1"); code != 0 {
			t.Errorf("generate during training: exit %d\n%s", code, e)
		}
		reads++
	}
}

// When every checkpoint is damaged the trainer stops (exit 1) instead of
// silently training again from zero, and touches nothing; --restart makes
// it start again from zero.
func TestAllCheckpointsDamaged(t *testing.T) {
	run := trainedRun(t, 4)
	opts, _ := filepath.Glob(filepath.Join(run, "checkpoints", "tokens-*", "optimizer.safetensors"))
	if len(opts) != 2 {
		t.Fatalf("want 2 checkpoints, got %v", opts)
	}
	for _, p := range opts {
		if err := os.Truncate(p, 1000); err != nil {
			t.Fatal(err)
		}
	}
	before := treeSnapshot(t, filepath.Join(run, "checkpoints"))
	cfg := tinyYAML(t, 6)
	_, e, code := moetrain(t, "train", cfg, "--run-dir", run, "--plain")
	if code != 1 || !strings.Contains(e, "no intact checkpoint") || !strings.Contains(e, "--restart") {
		t.Fatalf("exit %d, stderr:\n%s\nwant exit 1 saying no intact checkpoint and naming --restart", code, e)
	}
	if after := treeSnapshot(t, filepath.Join(run, "checkpoints")); after != before {
		t.Errorf("the failed resume changed the checkpoints:\nbefore:\n%safter:\n%s", before, after)
	}
	if o, e, code := moetrain(t, "train", cfg, "--run-dir", run, "--plain", "--restart"); code != 0 || !strings.Contains(o+e, "from zero") {
		t.Fatalf("--restart: exit %d\n%s%s", code, o, e)
	}
	// Every checkpoint left is intact: the damaged ones were replaced.
	ms, _ := filepath.Glob(filepath.Join(run, "checkpoints", "tokens-*"))
	for _, m := range ms {
		if _, e, code := moetrain(t, "eval", m, "--no-tasks", "--tokens", "128"); code != 0 {
			t.Errorf("checkpoint %s after --restart: exit %d\n%s", m, code, e)
		}
	}
}

// A second trainer on a run directory that is being trained exits 1 naming
// the first one's pid and leaves the run alone; once the first is killed
// (kill -9 leaves the lock file, not the lock) training resumes.
func TestSecondTrainerRefused(t *testing.T) {
	cfg := tinyYAML(t, 60)
	run := t.TempDir()
	first := exec.Command(binary, "train", cfg, "--run-dir", run, "--plain")
	if err := first.Start(); err != nil {
		t.Fatal(err)
	}
	defer first.Process.Kill()
	waitForSteps(t, run, 1)
	_, e, code := moetrain(t, "train", cfg, "--run-dir", run, "--plain")
	if code != 1 || !strings.Contains(e, fmt.Sprintf("process %d", first.Process.Pid)) {
		t.Errorf("second trainer: exit %d, stderr:\n%s\nwant exit 1 naming pid %d", code, e, first.Process.Pid)
	}
	first.Process.Kill()
	first.Wait()
	// The lock is free again; a short budget keeps the resume cheap (it is
	// complete at once when a checkpoint is past it).
	if _, e, code := moetrain(t, "train", cfg, "--run-dir", run, "--plain", "--set", "train.tokens=256"); code != 0 {
		t.Fatalf("resume after kill -9: exit %d\n%s", code, e)
	}
}

// A diverging run with train.non_finite: skip finishes (exit 0) and its
// metrics.jsonl holds only finite values; with stop it exits 1 naming the
// failing quantity and where the run would resume, not a bogus norm.
func TestNonFinite(t *testing.T) {
	cfg := tinyYAML(t, 4)
	run := t.TempDir()
	o, e, code := moetrain(t, "train", cfg, "--run-dir", run, "--plain", "--set", "schedule.max_lr=1e6", "--set", "train.non_finite=skip")
	if code != 0 || !strings.Contains(o+e, "skipped") {
		t.Fatalf("skip: exit %d\n%s%s", code, o, e)
	}
	b, err := os.ReadFile(filepath.Join(run, "metrics.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rundir.ReadMetrics(filepath.Join(run, "metrics.jsonl")); err != nil || strings.Contains(strings.ToLower(string(b)), "nan") {
		t.Errorf("metrics.jsonl: %v\n%s", err, b)
	}

	_, e, code = moetrain(t, "train", cfg, "--run-dir", t.TempDir(), "--plain", "--set", "schedule.max_lr=1e6")
	if code != 1 || !strings.Contains(e, "non-finite loss (NaN)") && !strings.Contains(e, "non-finite loss (+Inf)") ||
		strings.Contains(e, "gradient norm (0)") {
		t.Errorf("stop: exit %d, stderr:\n%s", code, e)
	}
	// The checkpoint named must exist and be the newest.
	m := regexp.MustCompile(`newest checkpoint is (\S+) `).FindStringSubmatch(e)
	if m == nil {
		t.Fatalf("stop: no checkpoint named:\n%s", e)
	}
	cks, _ := filepath.Glob(filepath.Join(filepath.Dir(m[1]), "tokens-*"))
	if len(cks) == 0 || cks[len(cks)-1] != m[1] {
		t.Errorf("stop names %s, the checkpoints are %v", m[1], cks)
	}
}

// The checkpoint carries the config it was written with: deleting or
// editing RUN/config.yaml does not let a resume change the model or the
// schedule.
func TestResumeComparesCheckpointConfig(t *testing.T) {
	run := trainedRun(t, 2)
	cfgPath := filepath.Join(run, "config.yaml")
	orig, err := os.ReadFile(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	os.Remove(cfgPath)
	for _, set := range []string{"model.heads=4", "schedule.max_lr=1e-3"} {
		_, e, code := moetrain(t, "train", tinyYAML(t, 4), "--run-dir", run, "--plain", "--set", set)
		if key := strings.Split(set, "=")[0]; code != 2 || !strings.Contains(e, key) {
			t.Errorf("config.yaml deleted, --set %s: exit %d, stderr:\n%s\nwant exit 2 naming %s", set, code, e, key)
		}
	}
	if now, _ := os.ReadFile(cfgPath); string(now) != string(orig) {
		t.Errorf("config.yaml not restored from the checkpoint:\n%s\nwant\n%s", now, orig)
	}
	// config.yaml edited to agree with a changed launch: the checkpoint disagrees.
	os.WriteFile(cfgPath, []byte(strings.Replace(string(orig), "heads: 2", "heads: 4", 1)), 0o644)
	_, e, code := moetrain(t, "train", tinyYAML(t, 4), "--run-dir", run, "--plain", "--set", "model.heads=4")
	if code != 2 || !strings.Contains(e, "model.heads") || !strings.Contains(e, "tokens-") {
		t.Errorf("config.yaml edited: exit %d, stderr:\n%s\nwant exit 2 naming model.heads and the checkpoint", code, e)
	}
}

// A tokenizer.json swapped for another one of the same size is refused
// wherever the tokenizer is read: train, generate, eval and export (which
// would ship it).
func TestSwappedTokenizerRefused(t *testing.T) {
	ds := filepath.Join(t.TempDir(), "data")
	if err := os.CopyFS(ds, os.DirFS(dataset)); err != nil {
		t.Fatal(err)
	}
	run := trainedRun(t, 2, dataset, ds)
	other := filepath.Join(t.TempDir(), "other")
	if err := prepare.SyntheticDataset(other, 4, 300, 320, 0.1); err != nil {
		t.Fatal(err)
	}
	a, _ := os.ReadFile(filepath.Join(ds, "tokenizer.json"))
	b, _ := os.ReadFile(filepath.Join(other, "tokenizer.json"))
	if string(a) == string(b) {
		t.Fatal("the other dataset's tokenizer is the same")
	}
	if err := os.WriteFile(filepath.Join(ds, "tokenizer.json"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "hf")
	for _, args := range [][]string{
		{"train", tinyYAML(t, 4), "--run-dir", run, "--plain", "--set", "data.path=" + ds},
		{"generate", run, "--prompt", "hi", "--max-tokens", "1"},
		{"eval", run, "--no-tasks"},
		{"export", run, "--out", out},
	} {
		_, e, code := moetrain(t, args...)
		if code != 1 || !strings.Contains(e, "tokenizer does not match") {
			t.Errorf("%s: exit %d, stderr:\n%s\nwant exit 1 saying the tokenizer does not match", args[0], code, e)
		}
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Errorf("export wrote %s anyway", out)
	}
}

// Training a finished run again says it is complete, exits 0 and changes
// neither its checkpoints nor its metrics.
func TestFinishedRunAgain(t *testing.T) {
	run := trainedRun(t, 2)
	before := treeSnapshot(t, filepath.Join(run, "checkpoints"))
	metrics, _ := os.ReadFile(filepath.Join(run, "metrics.jsonl"))
	o, e, code := moetrain(t, "train", tinyYAML(t, 2), "--run-dir", run, "--plain")
	if code != 0 || !strings.Contains(o, "already complete") || strings.Contains(o, "final train loss") {
		t.Fatalf("exit %d\n%s%s", code, o, e)
	}
	if after := treeSnapshot(t, filepath.Join(run, "checkpoints")); after != before {
		t.Errorf("checkpoints changed:\nbefore:\n%safter:\n%s", before, after)
	}
	if now, _ := os.ReadFile(filepath.Join(run, "metrics.jsonl")); string(now) != string(metrics) {
		t.Errorf("metrics.jsonl changed:\n%s\nwas\n%s", now, metrics)
	}
}

// A budget that is not a whole number of steps is rounded up, with a note.
func TestBudgetNotWholeSteps(t *testing.T) {
	o, e, code := moetrain(t, "train", tinyYAML(t, 1), "--run-dir", t.TempDir(), "--plain", "--set", "train.tokens=100", "--set", "schedule.warmup_tokens=50")
	if code != 0 || !strings.Contains(o, "train.tokens 100 is not a multiple of one step's 128 tokens") || !strings.Contains(o, "1 steps, 128 tokens") {
		t.Errorf("exit %d\n%s%s", code, o, e)
	}
}

// Mistakes in what prepare is asked to do are usage errors (exit 2), a
// binary file given as a source included.
func TestPrepareUsageErrors(t *testing.T) {
	text := filepath.Join(t.TempDir(), "a.txt")
	os.WriteFile(text, []byte("In the beginning God created the heaven and the earth.\n"), 0o644)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"prepare", "--vocab", "10", "--out", filepath.Join(t.TempDir(), "d"), text}, "vocab size 10 is too small"},
		{[]string{"prepare", "--out", dataset, text}, "already holds a dataset"},
		{[]string{"prepare", "--out", filepath.Join(t.TempDir(), "d"), exe}, "is not a text file"},
		{[]string{"prepare", "--out", filepath.Join(t.TempDir(), "d"), filepath.Join(t.TempDir(), "missing.txt")}, "check the path"},
	} {
		_, e, code := moetrain(t, tc.args...)
		if code != 2 || !strings.Contains(e, tc.want) {
			t.Errorf("%v: exit %d, stderr:\n%s\nwant exit 2 and %q", tc.args, code, e, tc.want)
		}
	}
}

// Usage and config mistakes exit 2 naming what is wrong: a directory that
// is no run for the commands that read one, a task or a domain the dataset
// does not have.
func TestMistakesExitTwo(t *testing.T) {
	empty := t.TempDir()
	for _, args := range [][]string{
		{"eval", empty},
		{"generate", empty, "--prompt", "hi"},
		{"export", empty, "--out", filepath.Join(t.TempDir(), "hf")},
		{"analyze", empty, "--what", "load"},
	} {
		if _, e, code := moetrain(t, args...); code != 2 || !strings.Contains(e, "holds no checkpoint") {
			t.Errorf("%s on a directory without checkpoints: exit %d\n%s", args[0], code, e)
		}
	}
	for _, set := range []string{"eval.tasks=[nosuchtask]", "data.weights={nosuchdomain: 1}"} {
		key := strings.Split(set, "=")[0]
		_, e, code := moetrain(t, "train", tinyYAML(t, 2), "--run-dir", t.TempDir(), "--plain", "--set", set)
		if code != 2 || !strings.Contains(e, key+":") {
			t.Errorf("--set %s: exit %d, stderr:\n%s\nwant exit 2 naming %s", set, code, e, key)
		}
	}
}

// A damaged validation shard stops the run at launch, before any training,
// not at the final evaluation.
func TestDamagedValidationShardStopsAtLaunch(t *testing.T) {
	ds := filepath.Join(t.TempDir(), "data")
	if err := os.CopyFS(ds, os.DirFS(dataset)); err != nil {
		t.Fatal(err)
	}
	man, err := data.LoadManifest(ds)
	if err != nil {
		t.Fatal(err)
	}
	val := man.ShardsOf(data.Validation, "")
	if len(val) == 0 {
		t.Fatal("the test dataset has no validation shard")
	}
	p := filepath.Join(ds, val[0].File)
	b, _ := os.ReadFile(p)
	b[len(b)/2] ^= 1
	os.WriteFile(p, b, 0o644)
	run := t.TempDir()
	_, e, code := moetrain(t, "train", tinyYAML(t, 2), "--run-dir", run, "--plain", "--set", "data.path="+ds)
	if code != 1 || !strings.Contains(e, val[0].File) {
		t.Errorf("exit %d, stderr:\n%s\nwant exit 1 naming %s", code, e, val[0].File)
	}
	if n := trainLines(run); n != 0 {
		t.Errorf("%d steps trained before the damaged shard was noticed", n)
	}
}

// prepare and export killed while they build their output leave a
// <out>.tmp-<pid> directory; the next prepare or export of the same output
// removes it, and the killed prepare --force left the old dataset intact.
func TestKilledPrepareAndExportLeaveNothing(t *testing.T) {
	root := t.TempDir()
	var text strings.Builder
	for i := 0; text.Len() < 4<<20; i++ {
		fmt.Fprintf(&text, "Chapter %d\n\n  1 And the %d word of line %d went forth unto %x.\n", i, i*7, i, i*31)
	}
	src := filepath.Join(root, "text.txt")
	os.WriteFile(src, []byte(text.String()), 0o644)
	out := filepath.Join(root, "ds")
	args := []string{"prepare", "--out", out, "--vocab", "300", "--force", "--doc-start", "^Chapter", "--val-fraction", "0.05", src}
	if _, e, code := moetrain(t, args...); code != 0 {
		t.Fatalf("prepare: exit %d\n%s", code, e)
	}
	oldID := manifestID(t, out)
	cmd := exec.Command(binary, args...)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	tmp := fmt.Sprintf("%s.tmp-%d", out, cmd.Process.Pid)
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		if _, err := os.Stat(tmp); err == nil {
			break
		}
	}
	cmd.Process.Kill()
	cmd.Wait()
	if _, err := os.Stat(tmp); err != nil {
		t.Fatalf("the kill left no %s (%v): the test did not kill prepare while it wrote", tmp, err)
	}
	if id := manifestID(t, out); id != oldID {
		t.Errorf("the killed prepare --force replaced the dataset")
	}
	_, e, code := moetrain(t, args...)
	if code != 0 || !strings.Contains(e, "removed "+tmp) {
		t.Errorf("prepare after the kill: exit %d, stderr:\n%s\nwant a note that %s was removed", code, e, tmp)
	}
	if left, _ := filepath.Glob(out + ".*"); len(left) != 0 {
		t.Errorf("left behind: %v", left)
	}

	// export: a leftover of a dead process is removed by the next export.
	run := trainedRun(t, 2)
	hf := filepath.Join(t.TempDir(), "hf")
	dead := exec.Command("true")
	dead.Run()
	stale := fmt.Sprintf("%s.tmp-%d", hf, dead.Process.Pid)
	os.MkdirAll(stale, 0o755)
	if _, e, code := moetrain(t, "export", run, "--out", hf); code != 0 {
		t.Fatalf("export: exit %d\n%s", code, e)
	}
	if left, _ := filepath.Glob(hf + ".*"); len(left) != 0 {
		t.Errorf("export left: %v", left)
	}
}

func manifestID(t *testing.T, dir string) string {
	t.Helper()
	m, err := data.LoadManifest(dir)
	if err != nil {
		t.Fatal(err)
	}
	return m.ID()
}

// --set data.weights=null clears the config's map and --set
// data.weights={...} replaces it whole: a weight naming a domain the
// dataset lacks is gone either way (without them the run stops, exit 2).
func TestSetClearsAndReplacesWeights(t *testing.T) {
	cfg := tinyYAML(t, 2)
	raw, _ := os.ReadFile(cfg)
	os.WriteFile(cfg, []byte(strings.Replace(string(raw), "data:\n", "data:\n  weights:\n    prose: 1\n    nosuchdomain: 1\n", 1)), 0o644)
	if _, e, code := moetrain(t, "train", cfg, "--run-dir", t.TempDir(), "--plain"); code != 2 || !strings.Contains(e, "nosuchdomain") {
		t.Fatalf("the config's own weights: exit %d\n%s", code, e)
	}
	for set, want := range map[string]string{"data.weights=null": "", "data.weights={code: 1}": "code: 1"} {
		run := t.TempDir()
		if _, e, code := moetrain(t, "train", cfg, "--run-dir", run, "--plain", "--set", set); code != 0 {
			t.Errorf("--set %s: exit %d\n%s", set, code, e)
			continue
		}
		stored, _ := os.ReadFile(filepath.Join(run, "config.yaml"))
		if strings.Contains(string(stored), "prose") || want != "" && !strings.Contains(string(stored), want) {
			t.Errorf("--set %s: the run's config.yaml:\n%s", set, stored)
		}
	}
}
