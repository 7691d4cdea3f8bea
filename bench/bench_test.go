package bench

import (
	"math"
	"testing"
	"time"

	"github.com/moetrain/moetrain/configs"
	"github.com/moetrain/moetrain/internal/blas"
)

// tiny is a small model of the given FFN kind that runs a step in
// milliseconds.
func tiny(ffn string) configs.Config {
	c := configs.Default()
	m := &c.Model
	m.VocabSize, m.Hidden, m.Layers, m.Heads, m.DenseWidth, m.FFN = 64, 16, 2, 2, 32, ffn
	switch ffn {
	case configs.FFNDeepSeekMoE:
		m.SharedExperts, m.RoutedExperts, m.ActiveRouted, m.ExpertWidth = 1, 7, 3, 8
		m.Balance.ExpertAlpha = 0.01
	case configs.FFNGShard:
		m.RoutedExperts, m.ActiveRouted, m.ExpertWidth = 4, 2, 32
		m.Balance.ExpertAlpha = 0.01
	}
	c.Train.BatchSize, c.Train.SeqLen = 2, 8
	return c
}

func TestRunReportsConsistentFigures(t *testing.T) {
	for _, ffn := range []string{configs.FFNDense, configs.FFNDeepSeekMoE} {
		t.Run(string(ffn), func(t *testing.T) {
			cfg := tiny(ffn)
			r, err := Run(cfg, "tiny", Options{Steps: 3, Warmup: 1, NoPeak: true, Breakdown: true, Forward: true})
			if err != nil {
				t.Fatal(err)
			}
			if len(r.StepTimes) != 3 || r.StepS <= 0 {
				t.Fatalf("step times %v, median %g", r.StepTimes, r.StepS)
			}
			if want := float64(r.Batch*r.Seq) / r.StepS; math.Abs(r.TokensPerS-want) > 1e-9*want {
				t.Errorf("tokens/s %g, want B·T/median = %g", r.TokensPerS, want)
			}
			// Random tokens: the loss of a freshly initialised model is near ln V.
			if lnV := math.Log(float64(cfg.Model.VocabSize)); math.Abs(r.Loss-lnV) > 0.5 {
				t.Errorf("loss %g, want about ln V = %g", r.Loss, lnV)
			}
			if r.PeakRSS <= 0 || r.Estimated <= 0 {
				t.Errorf("peak RSS %d, estimate %d", r.PeakRSS, r.Estimated)
			}
			if r.ForwardTokensPerS <= 0 || math.Abs(r.ForwardRatio-r.ForwardTokensPerS/r.TokensPerS) > 1e-9*r.ForwardRatio {
				t.Errorf("forward-only %g tokens/s, ratio %g to training's %g", r.ForwardTokensPerS, r.ForwardRatio, r.TokensPerS)
			}
			if r.MFU != 0 {
				t.Errorf("MFU %g without a peak measurement", r.MFU)
			}
			seen := map[string]bool{}
			for _, o := range r.Ops {
				seen[o.Op] = true
			}
			for _, op := range []string{"RMSNorm", "Attention", "AttentionBackward", "LMHeadCrossEntropy", "(adamw)"} {
				if !seen[op] {
					t.Errorf("breakdown lacks %s: %+v", op, r.Ops)
				}
			}
			if ffn == configs.FFNDeepSeekMoE && !(seen["MoE"] && seen["MoEBackward"]) {
				t.Errorf("breakdown lacks the MoE ops: %+v", r.Ops)
			}
		})
	}
}

func TestStepsChangeWeights(t *testing.T) {
	s, err := NewStepper(tiny(configs.FFNGShard), 0, 0, 3)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	before := append([]float32(nil), s.step.Params[0].Data...)
	for range 2 {
		if _, err := s.Step(); err != nil {
			t.Fatal(err)
		}
	}
	changed := 0
	for i, v := range s.step.Params[0].Data {
		if v != before[i] {
			changed++
		}
	}
	if changed == 0 {
		t.Fatalf("%s unchanged after two AdamW steps", s.step.Params[0].Name)
	}
}

func TestMedian(t *testing.T) {
	if got := median([]float64{3, 1, 2}); got != 2 {
		t.Errorf("median of 3 = %g", got)
	}
	if got := median([]float64{4, 1, 2, 3}); got != 2.5 {
		t.Errorf("median of 4 = %g", got)
	}
}

// benchStep times one training step (forward, backward, gradient copy,
// clipping, AdamW) of the speed-benchmark model configs/bench/NAME.yaml at
// batch 8 × 256. Run with e.g.
//
//	go test ./bench -run '^$' -bench Step -benchtime 5x -count 5
func benchStep(b *testing.B, name string) {
	cfg, err := configs.Load("../configs/bench/"+name+".yaml", nil)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := blas.Init(); err != nil {
		b.Fatal(err)
	}
	s, err := NewStepper(cfg, 0, 0, 1)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	for range 2 { // warm-up: page faults, GC pacing
		if _, err := s.Step(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if _, err := s.Step(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*s.Batch*s.Seq)/b.Elapsed().Seconds(), "tok/s")
}

func BenchmarkStepDense(b *testing.B)       { benchStep(b, "dense-small") }
func BenchmarkStepDeepSeekMoE(b *testing.B) { benchStep(b, "moe-small") }
func BenchmarkStepGShard(b *testing.B)      { benchStep(b, "gshard-small") }
func BenchmarkStepSwitch(b *testing.B)      { benchStep(b, "switch-small") }

// BenchmarkStepRatio alternates training steps of moe-small (DeepSeekMoE)
// and gshard-small (GShard, same activated size) in one process, so load
// changes on a shared machine hit both alike, and reports the median step
// of each, their ratio (the goal: ≤ 1.25) and the median phases of
// the DeepSeekMoE step. Run with e.g.
//
//	go test ./bench -run '^$' -bench StepRatio -benchtime 8x
func BenchmarkStepRatio(b *testing.B) {
	if _, err := blas.Init(); err != nil {
		b.Fatal(err)
	}
	var steppers [2]*Stepper
	for i, name := range []string{"moe-small", "gshard-small"} {
		cfg, err := configs.Load("../configs/bench/"+name+".yaml", nil)
		if err != nil {
			b.Fatal(err)
		}
		s, err := NewStepper(cfg, 0, 0, 1)
		if err != nil {
			b.Fatal(err)
		}
		defer s.Close()
		steppers[i] = s
	}
	step := func(s *Stepper) float64 {
		t0 := time.Now()
		if _, err := s.Step(); err != nil {
			b.Fatal(err)
		}
		return time.Since(t0).Seconds()
	}
	for range 2 {
		for _, s := range steppers {
			step(s)
		}
	}
	var times [2][]float64
	var phases []Phases
	b.ResetTimer()
	for i := range b.N {
		for j := range steppers {
			s := steppers[(i+j)%2] // alternate which model goes first
			times[(i+j)%2] = append(times[(i+j)%2], step(s))
			if (i+j)%2 == 0 {
				phases = append(phases, s.last)
			}
		}
	}
	moe, gs := median(times[0]), median(times[1])
	ph := medianPhases(phases)
	b.ReportMetric(moe*1e3, "moe-ms")
	b.ReportMetric(gs*1e3, "gshard-ms")
	b.ReportMetric(moe/gs, "ratio")
	b.ReportMetric(ph.GraphS*1e3, "moe-graph-ms")
	b.ReportMetric((ph.CopyS+ph.ClipS+ph.AdamS)*1e3, "moe-optim-ms")
}
