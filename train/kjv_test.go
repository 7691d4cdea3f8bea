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
		_, kjvErr = data.Prepare(context.Background(), []data.Source{{Domain: "prose", Path: src}}, data.PrepareOptions{
			Out: dir, VocabSize: 1024, ValFraction: 0.02, Seed: 1,
			DocStart: regexp.MustCompile(`^[1-9A-Z][A-Za-z ]* [0-9]+$`),
		})
		kjvDir = dir
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
