package main

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/moetrain/moetrain/data/prepare"
)

// The CLI is tested as users run it: a built binary in a subprocess.
var (
	binary  string
	dataset string
	workdir string
)

func TestMain(m *testing.M) {
	var err error
	workdir, err = os.MkdirTemp("", "moetrain-cli-test-")
	if err != nil {
		panic(err)
	}
	binary = filepath.Join(workdir, "moetrain")
	if out, err := exec.Command("go", "build", "-o", binary, ".").CombinedOutput(); err != nil {
		panic(fmt.Sprintf("build: %v\n%s", err, out))
	}
	dataset = filepath.Join(workdir, "data")
	if err := prepare.SyntheticDataset(dataset, 3, 300, 320, 0.1); err != nil {
		panic(err)
	}
	code := m.Run()
	os.RemoveAll(workdir)
	os.Exit(code)
}

// tinyYAML is a tiny DeepSeekMoE run on the synthetic dataset: steps of
// 4×32 tokens, a checkpoint every 2 steps.
func tinyYAML(t *testing.T, steps int) string {
	t.Helper()
	y := fmt.Sprintf(`model:
  vocab_size: 320
  hidden: 32
  layers: 2
  heads: 2
  dense_width: 64
  ffn: deepseekmoe
  shared_experts: 1
  routed_experts: 7
  active_routed: 3
  expert_width: 16
  balance:
    expert_alpha: 0.01
data:
  path: %s
train:
  tokens: %d
  batch_size: 4
  seq_len: 32
schedule:
  max_lr: 3.0e-3
  warmup_tokens: 128
checkpoint:
  every_tokens: 256
  keep_last: 100
eval:
  every_tokens: 0
  tokens: 1024
log:
  every_tokens: 128
`, dataset, steps*128)
	p := filepath.Join(t.TempDir(), "tiny.yaml")
	if err := os.WriteFile(p, []byte(y), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func moetrain(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := exec.Command(binary, args...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		return o.String(), e.String(), ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return o.String(), e.String(), 0
}

func finalModel(t *testing.T, run string) []byte {
	t.Helper()
	ms, _ := filepath.Glob(filepath.Join(run, "checkpoints", "tokens-*", "model.safetensors"))
	if len(ms) == 0 {
		t.Fatalf("no checkpoint in %s", run)
	}
	b, err := os.ReadFile(ms[len(ms)-1])
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestExitCodes(t *testing.T) {
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(bad, []byte("model:\n  heads: 3\n  hidden: 32\n  bogus: 1\n"), 0o644)
	tests := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"unknown flag", []string{"train", "--bogus"}, 2, "unknown flag"},
		{"missing run dir", []string{"train", tinyYAML(t, 2)}, 2, "--run-dir is required"},
		{"bad config", []string{"train", bad, "--run-dir", t.TempDir()}, 2, "model.bogus: unknown key"},
		{"bad --set", []string{"params", tinyYAML(t, 2), "--set", "model.heads=x"}, 2, "model.heads"},
		{"missing dataset", []string{"train", tinyYAML(t, 2), "--run-dir", t.TempDir(), "--set", "data.path=/nonexistent"}, 1, "/nonexistent"},
		{"no args", []string{"params"}, 2, "accepts 1 arg"},
		{"unknown command", []string{"trian", "x.yaml"}, 2, `unknown command "trian" for "moetrain" (did you mean train?)`},
		{"unknown subcommand", []string{"data", "inspcet"}, 2, `unknown command "inspcet" for "moetrain data" (did you mean inspect?)`},
		{"not a dataset", []string{"data", "inspect", t.TempDir()}, 2, "a dataset directory made by 'moetrain prepare'?"},
		{"stray argument to a group", []string{"tasks", "/some/dir"}, 2, `unknown command "/some/dir" for "moetrain tasks"`},
		// Token dropping and expert choice are single-rank routings: refused at
		// launch, before any rank trains, naming both keys.
		{"capacity under expert parallelism", []string{"train", tinyYAML(t, 2), "--run-dir", t.TempDir(), "--set", "model.ffn=gshard", "--set", "model.shared_experts=0",
			"--set", "model.routed_experts=8", "--set", "model.active_routed=2", "--set", "model.router.capacity_factor=1.25", "--set", "model.expert_parallel=2"},
			2, "model.router.capacity_factor: token dropping is not expert-parallel (model.expert_parallel 2)"},
		{"expert choice under expert parallelism", []string{"train", tinyYAML(t, 2), "--run-dir", t.TempDir(), "--set", "model.routed_experts=8",
			"--set", "model.balance.expert_alpha=0", "--set", "model.router.expert_choice=true", "--set", "model.expert_parallel=2"},
			2, "model.router.expert_choice: expert-choice routing is not expert-parallel (model.expert_parallel 2)"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, stderr, code := moetrain(t, tc.args...)
			if code != tc.code || !strings.Contains(stderr, tc.want) {
				t.Errorf("exit %d, stderr %q; want exit %d and %q", code, stderr, tc.code, tc.want)
			}
			if strings.Contains(stderr, "goroutine ") || strings.Contains(stderr, "panic:") {
				t.Errorf("stack trace on a user mistake:\n%s", stderr)
			}
		})
	}
}

// SIGTERM saves a checkpoint at the next step boundary and exits 0 with the
// command to resume; resuming then ends where a straight run ends.
func TestSIGTERMSavesAndExitsZero(t *testing.T) {
	cfg := tinyYAML(t, 60)
	run := t.TempDir()
	cmd := exec.Command(binary, "train", cfg, "--run-dir", run)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waitForSteps(t, run, 2)
	cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("exit after SIGTERM: %v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "resume with: moetrain train") {
		t.Errorf("no resume command in the output:\n%s", out.String())
	}
	ms, _ := filepath.Glob(filepath.Join(run, "checkpoints", "tokens-*"))
	if len(ms) == 0 {
		t.Fatal("SIGTERM left no checkpoint")
	}
}

// A run killed with SIGKILL at a random moment and restarted loses at most
// one save interval and then matches the uninterrupted run bit for bit.
func TestSIGKILLThenResumeMatchesStraightRun(t *testing.T) {
	cfg := tinyYAML(t, 24)
	straight := t.TempDir()
	if _, e, code := moetrain(t, "train", cfg, "--run-dir", straight); code != 0 {
		t.Fatalf("straight run: exit %d\n%s", code, e)
	}
	r := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))
	killed := t.TempDir()
	cmd := exec.Command(binary, "train", cfg, "--run-dir", killed)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waitForSteps(t, killed, 1+r.IntN(12))
	time.Sleep(time.Duration(r.IntN(50)) * time.Millisecond)
	cmd.Process.Kill()
	cmd.Wait()
	if _, e, code := moetrain(t, "train", cfg, "--run-dir", killed); code != 0 {
		t.Fatalf("resumed run: exit %d\n%s", code, e)
	}
	if !bytes.Equal(finalModel(t, straight), finalModel(t, killed)) {
		t.Error("the killed and resumed run's final weights differ from the straight run's")
	}
	a, _ := os.ReadFile(filepath.Join(straight, "metrics.jsonl"))
	b, _ := os.ReadFile(filepath.Join(killed, "metrics.jsonl"))
	if la, lb := losses(a), losses(b); la != lb {
		t.Errorf("loss sequences differ:\n%s\n%s", la, lb)
	}
}

// losses extracts the "loss" fields of train lines, in order.
func losses(metrics []byte) string {
	var out []string
	for _, line := range strings.Split(string(metrics), "\n") {
		if !strings.Contains(line, `"kind":"train"`) {
			continue
		}
		i := strings.Index(line, `"loss":`)
		j := strings.Index(line[i:], ",")
		out = append(out, line[i+7:i+j])
	}
	return strings.Join(out, " ")
}

// waitForSteps waits until the run's metrics hold n train lines.
func waitForSteps(t *testing.T, run string, n int) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		b, _ := os.ReadFile(filepath.Join(run, "metrics.jsonl"))
		if strings.Count(string(b), `"kind":"train"`) >= n {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("run %s did not reach %d steps", run, n)
}
