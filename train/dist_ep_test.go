package train

import (
	"context"
	"math"
	"path/filepath"
	"strings"
	"testing"

	"github.com/moetrain/moetrain/configs"
	"github.com/moetrain/moetrain/dist/mpitest"
	"github.com/moetrain/moetrain/rundir"
)

// epConfig is distConfig with the routed experts partitioned over r ranks
// (its device-level loss already has 2 groups, the real partition at r=2).
func epConfig(r int) configs.Config {
	c := distConfig()
	c.Model.ExpertParallel = r
	return c
}

// TestExpertParallelMatchesSingleProcess: expert parallelism over 2 ranks
// (and 2 groups of 2 in a world of 4, where expert gradients are also
// reduced across groups) trains the same 20 steps as one process, loss for
// loss within 1e-5, and logs each rank's share of the routed load.
func TestExpertParallelMatchesSingleProcess(t *testing.T) {
	mpitest.Mpirun(t)
	single := t.TempDir()
	run(t, epConfig(1), single)
	want := trainLosses(t, single)
	for _, np := range []int{2, 4} {
		dir := t.TempDir()
		runRanks(t, np, epConfig(2), dir, false)
		got := trainLosses(t, dir)
		if err := distTol.CheckSlice("losses", got, want); err != nil {
			t.Errorf("%d ranks, expert_parallel 2: %v", np, err)
		}
		if log := string(readFile(t, filepath.Join(dir, "train.log"))); !strings.Contains(log, "expert parallel: ") {
			t.Fatalf("%d ranks: train.log does not mention expert parallelism:\n%s", np, log)
		}
		ms, err := rundir.ReadMetrics(filepath.Join(dir, "metrics.jsonl"))
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range ms {
			if m.Kind != "train" {
				continue
			}
			if len(m.EPLoad) != 2 || math.Abs(m.EPLoad[0]+m.EPLoad[1]-1) > 1e-9 {
				t.Fatalf("%d ranks: ep_load %v, want 2 shares summing to 1", np, m.EPLoad)
			}
		}
		t.Logf("%d ranks: final loss %.6f, single %.6f", np, got[len(got)-1], want[len(want)-1])
	}
}

// TestExpertParallelCheckpoints: a checkpoint written with expert_parallel
// 2 holds every expert once: restored by one process (expert_parallel 1) or
// by 2 ranks and saved again at once it is byte-identical, and training
// continued from it in one process matches the uninterrupted run; a
// single-process checkpoint continued with expert_parallel 2 matches too.
func TestExpertParallelCheckpoints(t *testing.T) {
	mpitest.Mpirun(t)
	c := epConfig(1)
	c.Schedule.TotalTokens = c.Train.Tokens
	straight := t.TempDir()
	run(t, c, straight)
	want := trainLosses(t, straight)

	half := c
	half.Train.Tokens = c.Train.Tokens / 2
	ep2, half2 := c, half
	ep2.Model.ExpertParallel, half2.Model.ExpertParallel = 2, 2
	two := t.TempDir()
	runRanks(t, 2, half2, two, false)
	ck := latestCheckpoint(t, two)
	for _, np := range []int{1, 2} {
		checkResave(t, two, ck, np, half, half2, "written with expert_parallel 2, restored")
	}
	cont := copyRun(t, two)
	run(t, c, cont)
	if err := distTol.CheckSlice("losses", trainLosses(t, cont), want); err != nil {
		t.Errorf("expert_parallel 2 then 1 process: %v", err)
	}

	one := t.TempDir()
	run(t, half, one)
	runRanks(t, 2, ep2, one, false)
	if err := distTol.CheckSlice("losses", trainLosses(t, one), want); err != nil {
		t.Errorf("1 process then expert_parallel 2: %v", err)
	}
}

// TestExpertParallelNeedsRanks: expert_parallel 2 in one process is an
// error, not a silent single-process run.
func TestExpertParallelNeedsRanks(t *testing.T) {
	c := epConfig(2)
	_, err := Run(context.Background(), Options{Config: c, RunDir: t.TempDir()})
	if err == nil {
		t.Fatal("expert_parallel 2 ran in a single process")
	}
}
