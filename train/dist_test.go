package train

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/moetrain/moetrain/configs"
	"github.com/moetrain/moetrain/dist"
	"github.com/moetrain/moetrain/dist/mpitest"
	"github.com/moetrain/moetrain/internal/tol"
)

// distTol is the bound for data-parallel against single-process
// losses: only the summation order of gradients differs.
var distTol = tol.Tol{Rel: 1e-5}

// distConfig is a tiny DeepSeekMoE with batch-level expert and device
// balance losses (the case whose routing counts must be all-reduced), a
// global batch of 8 in micro-batches of 4, for 20 steps.
func distConfig() configs.Config {
	c := tinyConfig(configs.FFNDeepSeekMoE)
	c.Model.RoutedExperts, c.Model.ActiveRouted = 8, 3
	c.Model.Balance.PerSequence = false
	c.Model.Balance.DeviceAlpha, c.Model.Balance.DeviceGroups = 0.02, 2
	c.Train.BatchSize, c.Train.MicroBatchSize = 8, 4
	c.Train.Tokens = 20 * 8 * 32
	c.Log.EveryTokens = 8 * 32
	c.Checkpoint.EveryTokens = 0
	c.Eval.Tokens = 512
	return c
}

// runRanks runs Run over np MPI ranks on dir (TestDistWorker).
func runRanks(t *testing.T, np int, c configs.Config, dir string, stop bool) {
	t.Helper()
	raw, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	env := []string{"MOETRAIN_TEST_CONFIG=" + string(raw), "MOETRAIN_TEST_DIR=" + dir}
	if stop {
		env = append(env, "MOETRAIN_TEST_STOP=1")
	}
	mpitest.Run(t, np, "TestDistWorker", env...)
}

// TestDistWorker is one rank of runRanks.
func TestDistWorker(t *testing.T) {
	if !mpitest.Worker(t) {
		t.Skip("runs under mpirun (runRanks)")
	}
	t.Cleanup(func() {
		if err := dist.Finalize(); err != nil {
			t.Error(err)
		}
	})
	var c configs.Config
	if err := json.Unmarshal([]byte(os.Getenv("MOETRAIN_TEST_CONFIG")), &c); err != nil {
		t.Fatal(err)
	}
	comm, err := dist.World()
	if err != nil {
		t.Fatal(err)
	}
	if !comm.Distributed() {
		t.Fatalf("worker is not distributed: %d rank(s)", comm.Size())
	}
	stop := os.Getenv("MOETRAIN_TEST_STOP") == "1"
	var out bytes.Buffer
	_, err = Run(context.Background(), Options{Config: c, RunDir: os.Getenv("MOETRAIN_TEST_DIR"), Out: &out, Stop: func() bool { return stop }})
	if err != nil {
		t.Fatalf("rank %d: %v\n%s", comm.Rank(), err, out.String())
	}
	if comm.Rank() == 0 {
		t.Logf("%s", out.String())
	}
}

// TestDataParallelMatchesSingleProcess: 2 and 4 ranks train the same 20
// steps as one process, loss for loss within 1e-5 relative.
func TestDataParallelMatchesSingleProcess(t *testing.T) {
	mpitest.Mpirun(t)
	c := distConfig()
	single := t.TempDir()
	run(t, c, single)
	want := trainLosses(t, single)
	if len(want) != 20 {
		t.Fatalf("single process logged %d losses, want 20", len(want))
	}
	for _, np := range []int{2, 4} {
		dir := t.TempDir()
		runRanks(t, np, c, dir, false)
		got := trainLosses(t, dir)
		if err := distTol.CheckSlice("losses", got, want); err != nil {
			t.Errorf("%d ranks: %v", np, err)
		}
		t.Logf("%d ranks: final loss %.6f, single %.6f", np, got[len(got)-1], want[len(want)-1])
	}
}

// TestCheckpointAcrossWorldSizes: a checkpoint written by 2 ranks is loaded
// unchanged by 1 and by 4 ranks (saving it again at once gives the same
// tensors), and training continues from it at either size within 1e-5 of
// the uninterrupted single-process run.
func TestCheckpointAcrossWorldSizes(t *testing.T) {
	mpitest.Mpirun(t)
	c := distConfig()
	c.Schedule.TotalTokens = c.Train.Tokens
	straight := t.TempDir()
	run(t, c, straight)
	want := trainLosses(t, straight)

	half := c
	half.Train.Tokens = c.Train.Tokens / 2
	two := t.TempDir()
	runRanks(t, 2, half, two, false)
	ck := latestCheckpoint(t, two)
	for _, np := range []int{1, 4} {
		// Restore then save at once: the same tensors.
		checkResave(t, two, ck, np, half, half, "restored from 2 ranks")
		// Continue to the end.
		cont := copyRun(t, two)
		if np == 1 {
			run(t, c, cont)
		} else {
			runRanks(t, np, c, cont, false)
		}
		got := trainLosses(t, cont)
		if err := distTol.CheckSlice("losses", got, want); err != nil {
			t.Errorf("2 ranks then %d: %v", np, err)
		}
	}
}

func latestCheckpoint(t *testing.T, dir string) string {
	t.Helper()
	ents, err := filepath.Glob(filepath.Join(dir, "checkpoints", "tokens-*"))
	if err != nil || len(ents) == 0 {
		t.Fatalf("no checkpoint in %s", dir)
	}
	return ents[len(ents)-1]
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// copyRun copies a run directory (config, metrics, checkpoints).
func copyRun(t *testing.T, src string) string {
	t.Helper()
	dst := t.TempDir()
	err := filepath.Walk(src, func(p string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		if info.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), b, info.Mode())
	})
	if err != nil {
		t.Fatal(err)
	}
	return dst
}

// checkResave copies the run in dir, restores it at np ranks (one: the
// config of a single process, many: the config of np ranks), saves at once
// and checks that model and optimizer files equal those of checkpoint ck.
func checkResave(t *testing.T, dir, ck string, np int, one, many configs.Config, what string) {
	t.Helper()
	again := copyRun(t, dir)
	if np == 1 {
		if _, err := Run(context.Background(), Options{Config: one, RunDir: again, Stop: func() bool { return true }}); err != nil {
			t.Fatal(err)
		}
	} else {
		runRanks(t, np, many, again, true)
	}
	for _, f := range []string{"model.safetensors", "optimizer.safetensors"} {
		a, b := readFile(t, filepath.Join(ck, f)), readFile(t, filepath.Join(latestCheckpoint(t, again), f))
		if !bytes.Equal(a, b) {
			t.Errorf("%d rank(s): %s %s and saved again differs", np, f, what)
		}
	}
}
