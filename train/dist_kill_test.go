package train

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/moetrain/moetrain/checkpoints"
	"github.com/moetrain/moetrain/dist/mpitest"
)

// TestDPxEPKilledResumesAtTwoRanks: a run of 4 ranks, data-parallel 2 ×
// expert-parallel 2, checkpoints every 4 steps and is killed (SIGKILL to
// mpirun and every rank) once it has written one; resumed at 2 ranks
// (expert-parallel 2) it ends equal to the uninterrupted single-process run
// within distTol, 1e-5 relative on every logged loss (the world size changes
// the order in which gradients are summed, nothing else).
func TestDPxEPKilledResumesAtTwoRanks(t *testing.T) {
	mpitest.Mpirun(t)
	c := epConfig(1)
	c.Schedule.TotalTokens = c.Train.Tokens
	straight := t.TempDir()
	run(t, c, straight)
	want := trainLosses(t, straight)

	stepTokens := int64(c.Train.BatchSize * c.Train.SeqLen)
	killed := epConfig(2)
	killed.Schedule.TotalTokens = c.Train.Tokens
	killed.Train.Tokens = 1000 * stepTokens // still running when killed
	killed.Checkpoint.EveryTokens, killed.Checkpoint.KeepLast = 4*stepTokens, 1000
	raw, err := json.Marshal(killed)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	var out bytes.Buffer
	cmd := mpitest.Start(t, 4, "TestDistWorker", &out, "MOETRAIN_TEST_CONFIG="+string(raw), "MOETRAIN_TEST_DIR="+dir)
	deadline := time.Now().Add(3 * time.Minute)
	for {
		if infos, _ := checkpoints.List(dir); len(infos) > 0 {
			break
		}
		if time.Now().After(deadline) {
			mpitest.Kill(cmd)
			t.Fatalf("no checkpoint after 3 minutes:\n%s", out.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	mpitest.Kill(cmd)
	// A rank that outlived the kill must not write into the run resumed.
	resumed := copyRun(t, dir)
	// Resume from a checkpoint that leaves steps to train (the kill may
	// have come a few checkpoints late).
	infos, err := checkpoints.List(resumed)
	if err != nil {
		t.Fatal(err)
	}
	var from int64
	for _, in := range infos {
		if in.Tokens > c.Train.Tokens/2 {
			if err := os.RemoveAll(in.Dir); err != nil {
				t.Fatal(err)
			}
			continue
		}
		from = max(from, in.Tokens)
	}
	if from == 0 {
		t.Fatalf("the killed run left no checkpoint at or before %d tokens: %v", c.Train.Tokens/2, infos)
	}
	two := epConfig(2)
	two.Schedule.TotalTokens = c.Train.Tokens
	runRanks(t, 2, two, resumed, false)
	got := trainLosses(t, resumed)
	if err := distTol.CheckSlice("losses", got, want); err != nil {
		t.Errorf("killed at 4 ranks (DP 2 × EP 2), resumed at 2 (EP 2) from %d tokens: %v", from, err)
	}
	if log := readFile(t, filepath.Join(resumed, "train.log")); !bytes.Contains(log, []byte("resumed from")) {
		t.Errorf("train.log does not say it resumed:\n%s", log)
	}
	t.Logf("resumed from step %d of %d; final loss %.6f, single process %.6f", from/stepTokens, len(want), got[len(got)-1], want[len(want)-1])
}
