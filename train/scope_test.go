package train

import (
	"fmt"
	"path/filepath"
	"slices"
	"testing"

	"github.com/moetrain/moetrain/configs"
	"github.com/moetrain/moetrain/dist/mpitest"
	"github.com/moetrain/moetrain/rundir"
)

// scopeConfig is distConfig (batch-level expert and device losses, a
// global batch of 8) for 4 steps, with auxiliary-loss-free bias balancing
// on top, whose update also counts over the global batch.
func scopeConfig() configs.Config {
	c := distConfig()
	c.Model.Router.BiasRate = 0.01
	c.Train.Tokens = 4 * 8 * 32
	return c
}

// balanceLines returns every train line's balance losses, in a fixed order.
func balanceLines(t *testing.T, dir string) []float64 {
	t.Helper()
	ms, err := rundir.ReadMetrics(filepath.Join(dir, "metrics.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	var out []float64
	for _, m := range ms {
		if m.Kind != "train" {
			continue
		}
		keys := make([]string, 0, len(m.Balance))
		for k := range m.Balance {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			out = append(out, m.Balance[k])
		}
	}
	return out
}

// TestGlobalBatchBalanceInvariantToAccumulationAndRanks: with
// balance.per_sequence false the balance losses' f counts the whole global
// batch (Qiu et al. 2025, arXiv 2501.11873), gathered over micro-batches and
// ranks before any backward pass, and the bias update counts the same
// batch. So the batch of 8 sequences gives the same balance losses,
// training losses and router biases whether it runs as 1, 2 or 4
// micro-batches in one process, or over 2 data-parallel ranks, or 2 ranks
// that also split the experts.
func TestGlobalBatchBalanceInvariantToAccumulationAndRanks(t *testing.T) {
	c := scopeConfig()
	c.Train.MicroBatchSize = 8
	ref := t.TempDir()
	run(t, c, ref)
	wantLoss, wantBal, wantBias := trainLosses(t, ref), balanceLines(t, ref), routerBiases(t, ref)
	if len(wantBal) != 4*2*c.Model.Layers {
		t.Fatalf("%d balance values logged, want 4 steps × %d layers × (expert, device)", len(wantBal), c.Model.Layers)
	}
	check := func(what, dir string) {
		t.Helper()
		if err := distTol.CheckSlice(what+" losses", trainLosses(t, dir), wantLoss); err != nil {
			t.Error(err)
		}
		if err := distTol.CheckSlice(what+" balance losses", balanceLines(t, dir), wantBal); err != nil {
			t.Error(err)
		}
		got := routerBiases(t, dir)
		for name, w := range wantBias {
			if !slices.Equal(got[name], w) {
				t.Errorf("%s: %s %v, one batch %v", what, name, got[name], w)
			}
		}
	}
	for _, micro := range []int{4, 2} {
		c.Train.MicroBatchSize = micro
		dir := t.TempDir()
		run(t, c, dir)
		check(fmt.Sprintf("%d micro-batches", 8/micro), dir)
	}
	mpitest.Mpirun(t)
	for _, ep := range []int{1, 2} {
		c.Train.MicroBatchSize = 2
		c.Model.ExpertParallel = ep
		dir := t.TempDir()
		runRanks(t, 2, c, dir, false)
		check(fmt.Sprintf("2 ranks, expert_parallel %d", ep), dir)
	}
}
