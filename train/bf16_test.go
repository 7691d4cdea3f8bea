package train

import (
	"errors"
	"fmt"
	"math"
	"testing"

	"github.com/moetrain/moetrain/configs"
	"github.com/moetrain/moetrain/internal/blas"
)

// needBF16 skips where this machine has no bfloat16 products (the mode is
// an opt-in for CPUs that have them; CI machines may not).
func needBF16(t *testing.T) {
	t.Helper()
	if _, err := blas.Init(); err != nil {
		t.Fatal(err)
	}
	err := blas.SetBF16Products(true)
	defer blas.SetBF16Products(false)
	if errors.Is(err, blas.ErrNoBF16) {
		t.Skip(err)
	} else if err != nil {
		t.Fatal(err)
	}
}

// With train.products: bf16 a run resumes bit-exactly (the bfloat16
// products are deterministic) and computes something else than float32
// products do.
func TestBF16ResumeIsBitExact(t *testing.T) {
	needBF16(t)
	c := tinyConfig(configs.FFNDeepSeekMoE)
	c.Schedule.TotalTokens = c.Train.Tokens
	fp32 := t.TempDir()
	run(t, c, fp32)
	c.Train.Products = configs.ProductsBF16
	straight, _ := resumeMatchesStraight(t, c)
	if a, f := trainLosses(t, straight), trainLosses(t, fp32); fmt.Sprint(f) == fmt.Sprint(a) {
		t.Errorf("bf16 and fp32 runs gave the same losses %v: the mode did not take", a)
	}
}

// bf16Tol bounds how far apart the mean held-out losses of three bf16
// and three float32 runs (init seeds 1-3) may end in
// TestBF16TrainsLikeFP32OnKJV. At this size the seeds alone spread a
// float32 run's loss by 0.16 nats (4.4448-4.6057, 2026-12-04, oneDNN
// 2.6.3 on AVX-512), so two means of three are about 0.07 apart by
// chance (the standard error of their difference); 0.1 nats is that
// plus a margin for other machines' bits.
const bf16Tol = 0.1

// On real text bf16 products train as float32 products do: the same
// DeepSeekMoE on the KJV, three init seeds each, ends with mean held-out
// losses within bf16Tol nats, and every bf16 run well below the unigram
// entropy. The runs' losses are logged (docs/BENCHMARKS.md, round 10,
// quotes them).
func TestBF16TrainsLikeFP32OnKJV(t *testing.T) {
	needBF16(t)
	dir := kjvDataset(t)
	h := unigramEntropy(t, dir)
	mean := map[string]float64{}
	for _, products := range []string{configs.ProductsFP32, configs.ProductsBF16} {
		for seed := uint64(1); seed <= 3; seed++ {
			c := tinyConfig(configs.FFNDeepSeekMoE)
			c.Model.VocabSize, c.Data.Path, c.Model.InitSeed = 1024, dir, seed
			c.Train.SeqLen, c.Train.BatchSize, c.Train.Tokens = 64, 8, 150*8*64
			c.Train.Products = products
			c.Schedule.MaxLR, c.Schedule.WarmupTokens = 6e-3, 10*8*64
			c.Log.EveryTokens = 50 * 8 * 64
			c.Eval.Tokens = 8192
			s := run(t, c, t.TempDir())
			t.Logf("%s products, init seed %d: held-out loss %.4f nats (unigram entropy %.3f)", products, seed, s.ValLoss, h)
			if products == configs.ProductsBF16 && !(s.ValLoss < h-1) {
				t.Errorf("bf16, seed %d: held-out loss %.3f, unigram entropy %.3f: want at least 1 nat below", seed, s.ValLoss, h)
			}
			mean[products] += s.ValLoss / 3
		}
	}
	if d := math.Abs(mean[configs.ProductsBF16] - mean[configs.ProductsFP32]); !(d <= bf16Tol) {
		t.Errorf("mean held-out loss %.4f with bf16 products, %.4f with fp32: %.4f apart, want at most %g",
			mean[configs.ProductsBF16], mean[configs.ProductsFP32], d, bf16Tol)
	}
}
