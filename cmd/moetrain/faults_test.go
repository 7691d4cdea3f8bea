package main

import (
	"bytes"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Fault injection: a run is killed with SIGKILL at 20 random moments, half
// of them while a checkpoint is being written or pruned (a hidden .tmp-
// directory exists), and resumed each time. Whatever the moment, the final
// weights must equal an uninterrupted run's byte for byte, the metrics must
// read as if nothing happened, and no leftover may remain.
func TestKillAnywhereResumesBitExact(t *testing.T) {
	const steps, kills = 40, 20
	sets := []string{"--plain", "--set", "checkpoint.every_tokens=128", "--set", "checkpoint.keep_last=2"}
	cfg := tinyYAML(t, steps)
	straight := t.TempDir()
	if _, e, code := moetrain(t, append([]string{"train", cfg, "--run-dir", straight}, sets...)...); code != 0 {
		t.Fatalf("straight run: exit %d\n%s", code, e)
	}
	seed := uint64(time.Now().UnixNano())
	r := rand.New(rand.NewPCG(seed, 2))
	t.Logf("seed %d", seed)
	run := t.TempDir()
	inWrite := 0
	for k := 0; k < kills; k++ {
		before := trainLines(run)
		cmd := exec.Command(binary, append([]string{"train", cfg, "--run-dir", run}, sets...)...)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		// Kill only once this launch has trained a step of its own, so that
		// every launch makes progress.
		if !waitFor(exited, func() bool { return trainLines(run) > before }) {
			t.Fatalf("launch %d ended before training a step: %v\n%s", k, <-exited, out.String())
		}
		if k%2 == 1 {
			// Inside a checkpoint write or prune.
			if waitFor(exited, func() bool { return hasTmp(run) }) {
				time.Sleep(time.Duration(r.IntN(3000)) * time.Microsecond)
			}
		} else {
			time.Sleep(time.Duration(r.IntN(40)) * time.Millisecond)
		}
		cmd.Process.Kill()
		if err := <-exited; err == nil {
			t.Fatalf("launch %d finished the run before it was killed (make the run longer)\n%s", k, out.String())
		}
		if hasTmp(run) {
			inWrite++
		}
	}
	t.Logf("%d of %d kills left an unfinished checkpoint write or prune behind", inWrite, kills)
	if inWrite == 0 {
		t.Error("no kill landed inside a checkpoint write")
	}
	if _, e, code := moetrain(t, append([]string{"train", cfg, "--run-dir", run}, sets...)...); code != 0 {
		t.Fatalf("final resume: exit %d\n%s", code, e)
	}
	if !bytes.Equal(finalModel(t, straight), finalModel(t, run)) {
		t.Error("the final weights differ from the uninterrupted run's")
	}
	a, _ := os.ReadFile(filepath.Join(straight, "metrics.jsonl"))
	b, _ := os.ReadFile(filepath.Join(run, "metrics.jsonl"))
	if la, lb := losses(a), losses(b); la != lb {
		t.Errorf("loss sequences differ:\n%s\n%s", la, lb)
	}
	if hasTmp(run) {
		t.Error("leftovers of interrupted saves remain after the final run")
	}
}

// waitFor polls cond until it holds (true) or the process exits (false).
func waitFor(exited chan error, cond func() bool) bool {
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		if cond() {
			return true
		}
		select {
		case err := <-exited:
			exited <- err
			return cond()
		default:
		}
		time.Sleep(200 * time.Microsecond)
	}
	return false
}

func trainLines(run string) int {
	b, _ := os.ReadFile(filepath.Join(run, "metrics.jsonl"))
	return strings.Count(string(b), `"kind":"train"`)
}

// hasTmp reports whether the run's checkpoints directory holds a hidden
// entry: a checkpoint write, replacement or prune in progress (or
// interrupted).
func hasTmp(run string) bool {
	es, _ := os.ReadDir(filepath.Join(run, "checkpoints"))
	for _, e := range es {
		if strings.HasPrefix(e.Name(), ".") {
			return true
		}
	}
	return false
}
