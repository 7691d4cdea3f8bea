package train

import (
	"context"
	"fmt"
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
// loss within 1e-5, evaluates (expert-parallel) to the same held-out loss,
// logs each rank's share of the routed load, and rank 0 allocates only its
// half of the experts.
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
		log := string(readFile(t, filepath.Join(dir, "train.log")))
		if !strings.Contains(log, "expert parallel: ") {
			t.Fatalf("%d ranks: train.log does not mention expert parallelism:\n%s", np, log)
		}
		checkRank0Experts(t, log, 2)
		ms, err := rundir.ReadMetrics(filepath.Join(dir, "metrics.jsonl"))
		if err != nil {
			t.Fatal(err)
		}
		// The held-out evaluation at the end runs expert-parallel on the
		// first group: the same loss as one process's.
		if got, want := heldOutLosses(t, dir), heldOutLosses(t, single); len(want) == 0 {
			t.Fatal("the single process logged no held-out loss")
		} else if err := distTol.CheckSlice("held-out losses", got, want); err != nil {
			t.Errorf("%d ranks, expert_parallel 2: %v", np, err)
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

// heldOutLosses are a run's logged held-out losses, in order.
func heldOutLosses(t *testing.T, dir string) []float64 {
	t.Helper()
	ms, err := rundir.ReadMetrics(filepath.Join(dir, "metrics.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	var out []float64
	for _, m := range ms {
		if m.Kind == "eval" && m.Task == "heldout" && m.Metric == "loss" && m.Value != nil {
			out = append(out, *m.Value)
		}
	}
	return out
}

// checkRank0Experts: rank 0 (which writes train.log) allocated only its
// 1/r of the routed experts' weights, gradients and AdamW moments, as
// measured by the capacity of their arrays, which includes any larger
// array a shard would be a view of.
func checkRank0Experts(t *testing.T, log string, r int) {
	t.Helper()
	var weights, grads, moments, whole int
	i := strings.Index(log, "this rank allocates ")
	if i < 0 {
		t.Fatalf("train.log does not say what rank 0 allocates:\n%s", log)
	}
	if _, err := fmt.Sscanf(log[i:], "this rank allocates %d routed-expert weights, %d gradients and %d AdamW moments (the whole model has %d routed-expert weights)",
		&weights, &grads, &moments, &whole); err != nil {
		t.Fatalf("%v: %s", err, log[i:])
	}
	if whole == 0 || weights*r != whole || grads*r != whole || moments*r != 2*whole {
		t.Errorf("rank 0 at expert_parallel %d allocates %d expert weights, %d gradients, %d moments; the whole model has %d expert weights (want 1/%d of each, 2 moments per weight)",
			r, weights, grads, moments, whole, r)
	}
	t.Logf("rank 0 at expert_parallel %d: %d of %d expert weights, %d gradients, %d moments", r, weights, whole, grads, moments)
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
