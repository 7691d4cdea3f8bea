package train

import (
	"context"
	"errors"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sync"
	"testing"

	"github.com/moetrain/moetrain/configs"
	"github.com/moetrain/moetrain/data"
	"github.com/moetrain/moetrain/data/prepare"
	"github.com/moetrain/moetrain/rundir"
	"github.com/moetrain/moetrain/tasks"
)

var (
	kjvOnce sync.Once
	kjvDir  string
	kjvErr  error
)

// kjvDataset prepares the whole KJV (bible-kjv's `bible` command) with a
// 1024-token vocabulary, once per test binary. It skips where bible-kjv is
// not installed, except in CI, which installs it.
func kjvDataset(t *testing.T) string {
	t.Helper()
	if _, err := exec.LookPath("bible"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("CI must have bible-kjv installed")
		}
		t.Skip("bible-kjv is not installed")
	}
	kjvOnce.Do(func() {
		text, err := exec.Command("bible", "Gen1:1-Rev22:21").Output()
		if err != nil {
			kjvErr = err
			return
		}
		dir := filepath.Join(filepath.Dir(dataset), "kjv")
		src := filepath.Join(filepath.Dir(dataset), "kjv.txt")
		if kjvErr = os.WriteFile(src, text, 0o644); kjvErr != nil {
			return
		}
		_, kjvErr = prepare.Run(context.Background(), []prepare.Source{{Domain: "prose", Path: src}}, prepare.Options{
			Out: dir, VocabSize: 1024, ValFraction: 0.02, Seed: 1,
			DocStart: regexp.MustCompile(`^[1-9A-Z][A-Za-z ]* [0-9]+$`),
		})
		kjvDir = dir
		// The built-in tasks, as `moetrain prepare` makes them.
		_, kjvErr = tasks.BuildBuiltin(context.Background(), dir, tasks.BuiltinOptions{})
	})
	if kjvErr != nil {
		t.Fatal(kjvErr)
	}
	return kjvDir
}

// unigramEntropy is the entropy (nats) of the training split's token
// frequencies: the loss of the best model that ignores context.
func unigramEntropy(t *testing.T, dir string) float64 {
	s, err := data.Open(data.StreamConfig{Dir: dir, Split: "train", SeqLen: 255, Batch: 64, Epochs: 1}, data.Cursor{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	counts := map[int32]float64{}
	var n float64
	for {
		b, err := s.Next()
		for _, id := range b.Tokens {
			counts[id]++
			n++
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	var h float64
	for _, c := range counts {
		h -= c / n * math.Log(c/n)
	}
	return h
}

// Loss on real text (the KJV) falls well below the unigram entropy for every
// FFN kind: the models learn context, not just token frequencies.
func TestKJVLossBelowUnigramEntropy(t *testing.T) {
	dir := kjvDataset(t)
	h := unigramEntropy(t, dir)
	for _, kind := range []string{configs.FFNDense, configs.FFNDeepSeekMoE, configs.FFNGShard, configs.FFNSwitch, configs.FFNHash} {
		t.Run(kind, func(t *testing.T) {
			c := tinyConfig(kind)
			c.Model.VocabSize, c.Data.Path = 1024, dir
			c.Train.SeqLen, c.Train.BatchSize, c.Train.Tokens = 64, 8, 200*8*64
			c.Schedule.MaxLR = 6e-3
			if kind == configs.FFNGShard {
				// GShard's renormalised top-2 is unstable at 6e-3 at this
				// size: held-out 4.43-4.83 over init seeds 1-3 (seed 2
				// fails the bar) against 4.41-4.54 at 3e-3; a change of
				// float32 rounding alone moved seed 1 from 4.70 to 4.83.
				c.Schedule.MaxLR = 3e-3
			}
			c.Log.EveryTokens = 50 * 8 * 64
			c.Schedule.WarmupTokens = 10 * 8 * 64
			c.Eval.Tokens = 8192
			s := run(t, c, t.TempDir())
			// "Well below": at least 1 nat under the unigram entropy.
			if !(s.ValLoss < h-1) {
				t.Errorf("held-out loss %.3f, unigram entropy %.3f: want at least 1 nat below", s.ValLoss, h)
			}
			t.Logf("%s: held-out loss %.3f nats, unigram entropy %.3f nats", kind, s.ValLoss, h)
		})
	}
}

// taskScore reads the last eval value of task/metric from a run's metrics.
func taskScore(t *testing.T, dir, task, metric string) float64 {
	t.Helper()
	ms, err := rundir.ReadMetrics(filepath.Join(dir, "metrics.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	v := math.NaN()
	for _, m := range ms {
		if m.Kind == "eval" && m.Task == task && m.Metric == metric && m.Value != nil {
			v = *m.Value
		}
	}
	if math.IsNaN(v) {
		t.Fatalf("no %s %s in %s", task, metric, dir)
	}
	return v
}

// A model trained on the KJV scores well above chance on the built-in prose
// task last_word (4 choices: chance 0.25), while an untrained one is at
// chance. Tolerances: with 200 examples the standard error of an accuracy
// near 0.25 is ~0.031; "at chance" is within 0.25 ± 0.10 (3σ), "well above"
// is at least 0.10 above chance and 0.05 above the untrained model.
func TestKJVTrainedModelBeatsChanceOnBuiltinTasks(t *testing.T) {
	dir := kjvDataset(t)
	c := tinyConfig(configs.FFNDense)
	c.Model.VocabSize, c.Data.Path = 1024, dir
	c.Model.Hidden, c.Model.Heads, c.Model.DenseWidth = 64, 4, 172
	c.Train.SeqLen, c.Train.BatchSize = 128, 8
	c.Schedule.MaxLR, c.Schedule.WarmupTokens = 6e-3, 20*8*128
	c.Log.EveryTokens, c.Eval.Tokens = 100*8*128, 4096
	c.Eval.Tasks = []string{tasks.LastWord}

	untrained := c
	untrained.Train.Tokens, untrained.Schedule.WarmupTokens = 8*128, 0
	untrained.Schedule.MaxLR = 1e-9
	du := t.TempDir()
	run(t, untrained, du)
	base := taskScore(t, du, tasks.LastWord, "acc")

	c.Train.Tokens = 400 * 8 * 128
	dt := t.TempDir()
	run(t, c, dt)
	got := taskScore(t, dt, tasks.LastWord, "acc")
	t.Logf("last_word accuracy: untrained %.3f, trained %.3f (chance 0.25)", base, got)
	if math.Abs(base-0.25) > 0.10 {
		t.Errorf("untrained accuracy %.3f, want 0.25 ± 0.10", base)
	}
	if got < 0.35 || got < base+0.05 {
		t.Errorf("trained accuracy %.3f, want >= 0.35 and >= untrained + 0.05 (%.3f)", got, base+0.05)
	}
}
