package train

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/moetrain/moetrain/checkpoints"
	"github.com/moetrain/moetrain/configs"
	"github.com/moetrain/moetrain/model"
	"github.com/moetrain/moetrain/rundir"
)

// biasConfig is tinyConfig with DeepSeek-V3-style routing: sigmoid scores,
// auxiliary-loss-free bias balancing, a gate scale and the z-loss.
func biasConfig() configs.Config {
	c := tinyConfig(configs.FFNDeepSeekMoE)
	c.Model.Balance.ExpertAlpha = 0
	c.Model.Router = configs.Router{Score: configs.ScoreSigmoid, Scale: 2, ZLoss: 0.001, BiasRate: 0.01}
	return c
}

// biasRanges returns every train line's per-layer (min, max) bias.
func biasRanges(t *testing.T, dir string) [][2]float64 {
	t.Helper()
	ms, err := rundir.ReadMetrics(filepath.Join(dir, "metrics.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	var out [][2]float64
	for _, m := range ms {
		if m.Kind != "train" {
			continue
		}
		for _, l := range m.MoE {
			if l.BiasMin == nil || l.BiasMax == nil {
				t.Fatalf("step %d layer %d: no bias range logged", m.Step, l.Layer)
			}
			out = append(out, [2]float64{*l.BiasMin, *l.BiasMax})
		}
	}
	return out
}

// The bias is model state: it moves by ±γ per step, is saved in the
// checkpoint under DeepSeek-V3's key, and a resumed run ends with the same
// bytes (bias included) as a straight one.
func TestBiasBalancingResumeIsBitExact(t *testing.T) {
	c := biasConfig()
	c.Train.MicroBatchSize = 2
	straight, split := resumeMatchesStraight(t, c)
	a, b := biasRanges(t, straight), biasRanges(t, split)
	if fmt.Sprint(a) != fmt.Sprint(b) {
		t.Errorf("bias ranges differ:\n straight %v\n resumed  %v", a, b)
	}
	// After s steps every bias is a sum of s terms in {−γ, 0, γ}.
	steps := int(c.Train.Tokens / int64(c.Train.BatchSize*c.Train.SeqLen))
	last := a[len(a)-1]
	if !(last[1] > last[0]) || last[0] < -float64(steps)*0.01-1e-6 || last[1] > float64(steps)*0.01+1e-6 {
		t.Errorf("final bias range %v: want a bias that moved, within ±%d·γ", last, steps)
	}
	ck, err := checkpoints.Load(latestCheckpoint(t, straight))
	if err != nil {
		t.Fatal(err)
	}
	found := 0
	for _, ts := range ck.Model {
		for l := 0; l < c.Model.Layers; l++ {
			if ts.Name == fmt.Sprintf("model.layers.%d.%s", l, model.BiasSuffix) {
				found++
			}
		}
	}
	if found != c.Model.Layers {
		t.Errorf("checkpoint holds %d router biases, want %d", found, c.Model.Layers)
	}
}

// routerBiases reads every layer's router bias from a run's newest checkpoint.
func routerBiases(t *testing.T, dir string) map[string][]float32 {
	t.Helper()
	ck, err := checkpoints.Load(latestCheckpoint(t, dir))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]float32{}
	for _, ts := range ck.Model {
		if strings.HasSuffix(ts.Name, model.BiasSuffix) {
			out[ts.Name] = ts.F32
		}
	}
	return out
}

// A skipped non-finite step moves no bias: with a learning rate so large
// that the first update overflows the weights, step 1 trains and every later
// step is skipped, so the run ends with the bias of a one-step run, bit for
// bit.
func TestSkippedStepLeavesBias(t *testing.T) {
	c := biasConfig()
	c.Train.NonFinite = "skip"
	c.Schedule.MaxLR, c.Schedule.WarmupTokens, c.Schedule.Kind = 1e30, 0, "constant"
	c.Train.Tokens = 4 * int64(c.Train.BatchSize*c.Train.SeqLen)
	one := c
	one.Train.Tokens = int64(c.Train.BatchSize * c.Train.SeqLen)
	a, b := t.TempDir(), t.TempDir()
	run(t, one, a)
	run(t, c, b)
	log, err := os.ReadFile(filepath.Join(b, "train.log"))
	if err != nil {
		t.Fatal(err)
	}
	steps := int(c.Train.Tokens / one.Train.Tokens)
	if n := strings.Count(string(log), "skipped: non-finite"); n != steps-1 {
		t.Fatalf("%d of %d steps skipped, want all but the first (the fixture must overflow)", n, steps)
	}
	want, got := routerBiases(t, a), routerBiases(t, b)
	if len(want) != c.Model.Layers {
		t.Fatalf("%d biases in the checkpoint, want %d", len(want), c.Model.Layers)
	}
	moved := false
	for name, w := range want {
		if !slices.Equal(got[name], w) {
			t.Errorf("%s: %v after the skipped steps, %v after step 1", name, got[name], w)
		}
		for _, v := range w {
			moved = moved || v != 0
		}
	}
	if !moved {
		t.Error("the first step did not move the bias")
	}
}

// MoE health per layer: MaxVio always, the dropped fraction with a capacity
// factor (a tight one drops some but not all slots).
func TestMoEHealthLogged(t *testing.T) {
	c := tinyConfig(configs.FFNGShard)
	c.Model.Router.CapacityFactor = 0.5
	c.Train.Tokens = 2 * int64(c.Train.BatchSize*c.Train.SeqLen)
	dir := t.TempDir()
	run(t, c, dir)
	ms, err := rundir.ReadMetrics(filepath.Join(dir, "metrics.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	lines := 0
	for _, m := range ms {
		if m.Kind != "train" {
			continue
		}
		lines++
		for _, l := range m.MoE {
			if l.Dropped == nil || *l.Dropped <= 0 || *l.Dropped >= 0.75 {
				t.Errorf("step %d layer %d: dropped %v, want a fraction in (0, 0.75) at capacity factor 0.5", m.Step, l.Layer, l.Dropped)
			}
			if l.MaxVio == nil || *l.MaxVio < 0 || math.Abs(*l.MaxVio-(l.LoadMaxOverMean-1)) > 1 {
				t.Errorf("step %d layer %d: max_vio %v with load_max_over_mean %v", m.Step, l.Layer, l.MaxVio, l.LoadMaxOverMean)
			}
			if l.BiasMin != nil {
				t.Errorf("step %d layer %d: a bias range without bias balancing", m.Step, l.Layer)
			}
		}
	}
	if lines != 2 {
		t.Fatalf("%d train lines, want 2", lines)
	}
}

// An expert-choice model trains and is evaluated as trained, on whole
// held-out sequences (its experts choose within each sequence).
func TestExpertChoiceTrainsAndEvaluates(t *testing.T) {
	c := tinyConfig(configs.FFNGShard)
	c.Model.Balance.ExpertAlpha = 0
	c.Model.Router.ExpertChoice = true
	c.Train.Tokens = 2 * int64(c.Train.BatchSize*c.Train.SeqLen)
	s := run(t, c, t.TempDir())
	if !(s.ValLoss > 0) || math.IsInf(s.ValLoss, 0) {
		t.Errorf("held-out loss %v", s.ValLoss)
	}
}
