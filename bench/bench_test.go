package bench

import (
	"cmp"
	"errors"
	"flag"
	"maps"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/moetrain/moetrain/configs"
	"github.com/moetrain/moetrain/internal/blas"
	"github.com/moetrain/moetrain/internal/cputime"
	"github.com/moetrain/moetrain/internal/stats"
	"github.com/moetrain/moetrain/model"
	"github.com/moetrain/moetrain/model/ops"
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
			// The ratio compares the passes with the steps alternated with
			// them: B·T/ForwardStepS tokens/s.
			if want := r.ForwardTokensPerS * r.ForwardStepS / float64(r.Batch*r.Seq); r.ForwardTokensPerS <= 0 || r.ForwardStepS <= 0 || math.Abs(r.ForwardRatio-want) > 1e-9*want {
				t.Errorf("forward-only %g tokens/s, ratio %g to alternated steps of %g s (want %g)", r.ForwardTokensPerS, r.ForwardRatio, r.ForwardStepS, want)
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
			// The ops recorded CPU time; the rows (graph and optimizer
			// phases) add up to no more than the step (which also draws
			// its tokens), and the ops' CPU time to no more than the
			// step's; the helpers' share is a share.
			var sum, cpu float64
			for _, o := range r.Ops {
				if o.Part == "" {
					sum += o.Seconds
					cpu += o.CPUSeconds
				}
			}
			checkParts(t, r.Ops)
			if ffn == configs.FFNDeepSeekMoE && !seenPart(r.Ops, "MoE", "k-way sum") {
				t.Errorf("breakdown lacks the MoE op's k-way sum: %+v", r.Ops)
			}
			st := r.OpsStep
			if sum > st.WallS+1e-9 || sum < 0.5*st.WallS || cpu <= 0 || cpu > st.CPUS*1.05+0.01 {
				t.Errorf("step breakdown: rows %g s against the step's %g; ops' CPU %g s against the step's %g", sum, st.WallS, cpu, st.CPUS)
			}
			if st.HelperBusy < 0 || st.HelperBusy > 1.05 {
				t.Errorf("helpers busy %g of the step", st.HelperBusy)
			}
			// The forward-only pass: its own ops, no backward, no optimizer.
			fseen := map[string]bool{}
			sum = 0
			for _, o := range r.ForwardOps {
				fseen[o.Op] = true
				if o.Part == "" {
					sum += o.Seconds
				}
			}
			checkParts(t, r.ForwardOps)
			if !fseen["Attention"] || !fseen["LMHeadCrossEntropy"] || fseen["AttentionBackward"] || fseen["(adamw)"] {
				t.Errorf("forward breakdown: %+v", r.ForwardOps)
			}
			if math.Abs(sum-r.ForwardOpsPass.WallS) > 1e-9 {
				t.Errorf("forward breakdown rows %g s against the pass's %g", sum, r.ForwardOpsPass.WallS)
			}
		})
	}
}

// checkParts: every part row follows its op's row (or another part of
// it), and an op's parts take no more than the op.
func checkParts(t *testing.T, rows []OpTime) {
	t.Helper()
	var op OpTime
	var parts float64
	for i, o := range rows {
		if o.Part == "" {
			op, parts = o, 0
			continue
		}
		if i == 0 || o.Op != op.Op {
			t.Errorf("part %s/%s does not follow its op: %+v", o.Op, o.Part, rows)
		}
		if parts += o.Seconds; parts > op.Seconds*(1+1e-9) {
			t.Errorf("the parts of %s take %g s of its %g: %+v", op.Op, parts, op.Seconds, rows)
		}
	}
}

// seenPart reports whether rows hold op's part.
func seenPart(rows []OpTime, op, part string) bool {
	for _, o := range rows {
		if o.Op == op && o.Part == part {
			return true
		}
	}
	return false
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

// benchStep times one training step (forward, backward, gradient copy,
// clipping, AdamW) of the speed-benchmark model configs/bench/NAME.yaml at
// batch 8 × 256. Run with e.g.
//
//	go test ./bench -run '^$' -bench Step -benchtime 5x -count 5
func benchStep(b *testing.B, name string) {
	benchPasses(b, name, func(s *Stepper) error { _, err := s.Step(); return err })
}

// BenchmarkForward times forward-only passes through the evaluation graph
// of the science yardsticks alone (moetrain bench times them after its
// training steps), for profiles of the forward pass: e.g.
//
//	go test ./bench -run '^$' -bench Forward/sci-dense -benchtime 300x -cpuprofile fwd.prof
func BenchmarkForward(b *testing.B) {
	for _, name := range []string{"sci-dense", "sci-moe"} {
		b.Run(name, func(b *testing.B) {
			benchPasses(b, name, func(s *Stepper) error { _, err := s.Forward(); return err })
		})
	}
}

// benchPasses times pass (a training step or a forward pass) on
// configs/bench/NAME.yaml after two untimed ones (page faults, GC pacing),
// reporting tokens/s and allocations.
func benchPasses(b *testing.B, name string, pass func(*Stepper) error) {
	s := benchStepper(b, name, nil)
	for range 2 {
		if err := pass(s); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	for b.Loop() {
		if err := pass(s); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*s.Batch*s.Seq)/b.Elapsed().Seconds(), "tok/s")
}

// benchStepper is a Stepper for configs/bench/NAME.yaml with sets applied,
// on the library blas.Init picks, closed when the benchmark ends.
func benchStepper(b testing.TB, name string, sets []string) *Stepper {
	return configStepper(b, "../configs/bench/"+name+".yaml", sets)
}

// configStepper is benchStepper for the config at path.
func configStepper(b testing.TB, path string, sets []string) *Stepper {
	cfg, err := configs.Load(path, sets)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := blas.Init(); err != nil {
		b.Fatal(err)
	}
	if f := flag.Lookup("test.cpuprofile"); f != nil && f.Value.String() != "" {
		blas.SetDirectCalls(false) // so that the profile names the products' callers
	}
	s, err := NewStepper(cfg, 0, 0, 1)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	return s
}

// BenchmarkStepSci times training steps of the science yardsticks, the
// twin of BenchmarkForward for profiles of where a step's time goes next to
// a forward pass's.
func BenchmarkStepSci(b *testing.B) {
	for _, name := range []string{"sci-dense", "sci-moe"} {
		b.Run(name, func(b *testing.B) { benchStep(b, name) })
	}
}

func BenchmarkStepDense(b *testing.B)       { benchStep(b, "dense-small") }
func BenchmarkStepDeepSeekMoE(b *testing.B) { benchStep(b, "moe-small") }
func BenchmarkStepGShard(b *testing.B)      { benchStep(b, "gshard-small") }
func BenchmarkStepSwitch(b *testing.B)      { benchStep(b, "switch-small") }

// BenchmarkStepRatio alternates training steps of DeepSeekMoE and GShard
// in one process, so load changes on a shared machine hit both alike, and
// reports the median step of each (wall and CPU time, the latter steadier
// under load), their ratios (the goal: DeepSeekMoE ≤ 1.05× GShard at equal
// activated size), the ratio of the two models' fastest steps and the
// median phases of the DeepSeekMoE step. Sub-benchmarks: "bench" is
// moe-small against gshard-small; "sci" is sci-moe against the same model
// with GShard's 16 experts of width 344, top-2 (gshardSci: the same expert
// parameters); "sci-activated" against GShard at sci-moe's activated size
// (gshardSciActivated, width 352). Run with e.g.
//
//	go test ./bench -run '^$' -bench 'StepRatio$' -benchtime 8x
//
// ('StepRatio' alone also matches BenchmarkStepRatioOps.)
func BenchmarkStepRatio(b *testing.B) {
	b.Run("bench", func(b *testing.B) { stepRatio(b, "moe-small", nil, "gshard-small", nil) })
	b.Run("sci", func(b *testing.B) { stepRatio(b, "sci-moe", nil, "sci-moe", gshardSci) })
	b.Run("sci-activated", func(b *testing.B) { stepRatio(b, "sci-moe", nil, "sci-moe", gshardSciActivated) })
}

// BenchmarkStepRatioOps alternates DeepSeekMoE and GShard steps at equal
// activated size with per-op timing on and logs, per op, each model's time
// per step and the difference, largest first: where the DeepSeekMoE step's
// extra time goes. "sci" is the pair of BenchmarkStepRatio/sci; "regime"
// is configs/regime's deepseekmoe.yaml and gshard.yaml (d = 64, the
// science runs' own models). Per-op timing adds its own overhead, so the
// step times are for these tables only. Run with e.g.
//
//	go test ./bench -run '^$' -bench StepRatioOps/sci -benchtime 30x -v
func BenchmarkStepRatioOps(b *testing.B) {
	b.Run("sci", func(b *testing.B) {
		stepRatioOps(b, [2]*Stepper{benchStepper(b, "sci-moe", nil), benchStepper(b, "sci-moe", gshardSci)})
	})
	b.Run("regime", func(b *testing.B) {
		stepRatioOps(b, [2]*Stepper{configStepper(b, "../configs/regime/deepseekmoe.yaml", nil), configStepper(b, "../configs/regime/gshard.yaml", nil)})
	})
}

func stepRatioOps(b *testing.B, steppers [2]*Stepper) {
	for range 2 {
		for _, s := range steppers {
			if _, err := s.Step(); err != nil {
				b.Fatal(err)
			}
		}
	}
	var perOp [2]map[string]time.Duration
	var wall [2]time.Duration
	for k := range perOp {
		perOp[k] = map[string]time.Duration{}
	}
	defer ops.SetProfiling(false)
	n := 0
	for i := 0; b.Loop(); i++ { // b.Loop: the table below is made once
		n++
		for j := range steppers {
			k := (i + j) % 2 // alternate which model goes first
			ops.ResetProfile()
			ops.SetProfiling(true)
			t0 := time.Now()
			if _, err := steppers[k].Step(); err != nil {
				b.Fatal(err)
			}
			wall[k] += time.Since(t0)
			ops.SetProfiling(false)
			for name, st := range ops.Profile() {
				perOp[k][name] += st.Time
			}
		}
	}
	ms := func(d time.Duration) float64 { return d.Seconds() * 1e3 / float64(n) }
	names := map[string]bool{}
	for _, m := range perOp {
		for name := range m {
			names[name] = true
		}
	}
	rows := slices.Collect(maps.Keys(names))
	diff := func(name string) time.Duration { return perOp[0][name] - perOp[1][name] }
	slices.SortFunc(rows, func(a, c string) int { return cmp.Compare(diff(c), diff(a)) })
	b.Logf("ms per step, %d alternated steps each: DeepSeekMoE %.2f, GShard %.2f", n, ms(wall[0]), ms(wall[1]))
	for _, name := range rows {
		b.Logf("%-36s DeepSeekMoE %7.2f  GShard %7.2f  difference %+7.2f", name, ms(perOp[0][name]), ms(perOp[1][name]), ms(diff(name)))
	}
	var sum [2]time.Duration
	for k := range perOp {
		for name, t := range perOp[k] {
			if !strings.Contains(name, ops.PartSep) { // parts are in their op's time
				sum[k] += t
			}
		}
	}
	b.Logf("%-36s DeepSeekMoE %7.2f  GShard %7.2f  difference %+7.2f", "(outside ops: optimizer, dispatch)", ms(wall[0]-sum[0]), ms(wall[1]-sum[1]), ms(wall[0]-sum[0]-wall[1]+sum[1]))
	b.ReportMetric(ms(wall[0]), "moe-ms")
	b.ReportMetric(ms(wall[1]), "gshard-ms")
}

// gshardSci turns configs/bench/sci-moe.yaml into its GShard twin with the
// same expert parameters, total and activated: 16 experts of width 344,
// top-2 (the paper's split, 4 × 86 = 344). Its router has 16 columns to
// DeepSeekMoE's 63, so it has 1.7% fewer activated parameters in all
// (DESIGN.md §7.1's count, routers included) and 1.6% fewer FLOPs a token.
var gshardSci = []string{"model.ffn=gshard", "model.shared_experts=0", "model.routed_experts=16", "model.active_routed=2", "model.expert_width=344"}

// gshardSciActivated is the GShard twin at sci-moe's activated size by
// that count: experts of width 352 make up the routers' difference
// (within 0.04%, TestGShardTwins).
var gshardSciActivated = []string{"model.ffn=gshard", "model.shared_experts=0", "model.routed_experts=16", "model.active_routed=2", "model.expert_width=352"}

// TestGShardTwins checks what the science GShard twins are said to be
// against sci-moe, by DESIGN.md §7.1's count (model.Count): gshardSci has
// the same expert parameters, total and activated, and fewer activated
// parameters in all (the routers); gshardSciActivated has the same
// activated parameters within 0.04%.
func TestGShardTwins(t *testing.T) {
	load := func(sets []string) configs.Model {
		cfg, err := configs.Load("../configs/bench/sci-moe.yaml", sets)
		if err != nil {
			t.Fatal(err)
		}
		return cfg.Model
	}
	ds, gs, gsAct := load(nil), load(gshardSci), load(gshardSciActivated)
	experts := func(m configs.Model) (total, active int) {
		per := 3 * m.Hidden * m.ExpertWidth
		return (m.SharedExperts + m.RoutedExperts) * per, (m.SharedExperts + m.ActiveRouted) * per
	}
	dsTotal, dsActive := experts(ds)
	gsTotal, gsActive := experts(gs)
	if dsTotal != gsTotal || dsActive != gsActive {
		t.Errorf("expert parameters: DeepSeekMoE %d total, %d activated; gshardSci %d, %d", dsTotal, dsActive, gsTotal, gsActive)
	}
	a, g, ga := model.Count(ds).Activated, model.Count(gs).Activated, model.Count(gsAct).Activated
	if g >= a {
		t.Errorf("gshardSci has %d activated parameters, DeepSeekMoE %d: want fewer (its router is smaller)", g, a)
	}
	if d := math.Abs(float64(ga-a)) / float64(a); d > 0.0004 {
		t.Errorf("gshardSciActivated has %d activated parameters, DeepSeekMoE %d: %.3f%% apart, want ≤ 0.04%%", ga, a, 100*d)
	}
}

func stepRatio(b *testing.B, moeName string, moeSets []string, gsName string, gsSets []string) {
	steppers := [2]*Stepper{benchStepper(b, moeName, moeSets), benchStepper(b, gsName, gsSets)}
	step := func(s *Stepper) (wall, cpu float64) {
		c0, t0 := cputime.Process().Seconds(), time.Now()
		if _, err := s.Step(); err != nil {
			b.Fatal(err)
		}
		return time.Since(t0).Seconds(), cputime.Process().Seconds() - c0
	}
	for range 2 {
		for _, s := range steppers {
			step(s)
		}
	}
	var times, cpus [2][]float64
	var phases []Phases
	b.ResetTimer()
	for i := range b.N {
		for j := range steppers {
			k := (i + j) % 2 // alternate which model goes first
			w, c := step(steppers[k])
			times[k], cpus[k] = append(times[k], w), append(cpus[k], c)
			if k == 0 {
				phases = append(phases, steppers[k].last)
			}
		}
	}
	moe, gs := stats.Median(times[0]), stats.Median(times[1])
	moeCPU, gsCPU := stats.Median(cpus[0]), stats.Median(cpus[1])
	ph := medianPhases(phases)
	b.ReportMetric(moe*1e3, "moe-ms")
	b.ReportMetric(gs*1e3, "gshard-ms")
	b.ReportMetric(moe/gs, "ratio")
	// The fastest steps' ratio: a busy host only ever adds time, so on a
	// shared machine it is the steadier reading (the goal is on medians).
	b.ReportMetric(slices.Min(times[0])/slices.Min(times[1]), "min-ratio")
	b.ReportMetric(moeCPU*1e3, "moe-cpu-ms")
	b.ReportMetric(gsCPU*1e3, "gshard-cpu-ms")
	b.ReportMetric(moeCPU/gsCPU, "cpu-ratio")
	b.ReportMetric(ph.GraphS*1e3, "moe-graph-ms")
	b.ReportMetric((ph.CopyS+ph.ClipS+ph.AdamS)*1e3, "moe-optim-ms")
}

// BenchmarkProductsRatio alternates training steps and forward passes with
// float32 and bfloat16 products (train.products) in one process, each
// precision on its own copy of the same model, switching the mode before
// every step or pass, and reports the median of each and the speed-ups
// (float32 time over bfloat16 time). It skips where the machine has no
// bfloat16 products. Run with e.g.
//
//	go test ./bench -run '^$' -bench ProductsRatio -benchtime 20x
func BenchmarkProductsRatio(b *testing.B) {
	for _, name := range []string{"sci-dense", "sci-moe", "dense-small", "moe-small"} {
		b.Run(name, func(b *testing.B) {
			if err := blas.SetBF16Products(true); errors.Is(err, blas.ErrNoBF16) {
				b.Skip(err)
			}
			defer blas.SetBF16Products(false)
			alternateModes(b, name, [2]string{"fp32", "bf16"}, blas.SetBF16Products)
		})
	}
}

// BenchmarkCallPathRatio alternates training steps and forward passes with
// the library's products made on their own stacks, holding the
// goroutine's P, and made through runtime.cgocall (blas.SetDirectCalls),
// as BenchmarkProductsRatio alternates precisions. Run with e.g.
//
//	go test ./bench -run '^$' -bench CallPathRatio -benchtime 20x
//
// (MOETRAIN_BLAS=openblas for OpenBLAS's products).
func BenchmarkCallPathRatio(b *testing.B) {
	for _, name := range []string{"sci-dense", "sci-moe", "dense-small", "moe-small", "gshard-small"} {
		b.Run(name, func(b *testing.B) {
			if info, err := blas.Init(); err != nil || info.Library == "" {
				b.Skip("products are pure Go here")
			}
			defer blas.SetDirectCalls(true)
			alternateModes(b, name, [2]string{"cgocall", "direct"}, func(direct bool) error {
				blas.SetDirectCalls(direct)
				return nil
			})
		})
	}
}

// alternateModes times training steps and forward passes of
// configs/bench/NAME.yaml in two modes, each on its own copy of the model,
// calling setMode(false) or setMode(true) before every step or pass and
// alternating which mode goes first. It reports each mode's median step
// (named by modes) and the speed-ups of the second mode (first mode's
// median time over the second's).
func alternateModes(b *testing.B, name string, modes [2]string, setMode func(second bool) error) {
	alternateSteppers(b, [2]*Stepper{benchStepper(b, name, nil), benchStepper(b, name, nil)}, modes, setMode)
}

// alternateSteppers is alternateModes on two given copies of a model.
func alternateSteppers(b *testing.B, steppers [2]*Stepper, modes [2]string, setMode func(second bool) error) {
	var steps, passes [2][]float64
	timed := func(second bool, fn func() error) float64 {
		if err := setMode(second); err != nil {
			b.Fatal(err)
		}
		t0 := time.Now()
		if err := fn(); err != nil {
			b.Fatal(err)
		}
		return time.Since(t0).Seconds()
	}
	for range 2 { // warm up both copies, graphs included
		for j, s := range steppers {
			timed(j == 1, func() error { _, err := s.Step(); return err })
			timed(j == 1, func() error { _, err := s.Forward(); return err })
		}
	}
	for i := range b.N {
		for j := range steppers {
			k := (i + j) % 2 // alternate which mode goes first
			s := steppers[k]
			steps[k] = append(steps[k], timed(k == 1, func() error { _, err := s.Step(); return err }))
			passes[k] = append(passes[k], timed(k == 1, func() error { _, err := s.Forward(); return err }))
		}
	}
	b.ReportMetric(stats.Median(steps[0])*1e3, modes[0]+"-step-ms")
	b.ReportMetric(stats.Median(steps[1])*1e3, modes[1]+"-step-ms")
	b.ReportMetric(stats.Median(steps[0])/stats.Median(steps[1]), "step-speedup")
	b.ReportMetric(stats.Median(passes[0])/stats.Median(passes[1]), "forward-speedup")
}

// BenchmarkAddInPlaceRatio alternates training steps and forward passes of
// two copies of each model, one whose residual sums write a buffer of
// their own and one whose sums go over the branch they add
// (model.SetAddsInPlace, set before each copy builds its graphs). Run
// with e.g.
//
//	go test ./bench -run '^$' -bench AddInPlaceRatio -benchtime 20x
func BenchmarkAddInPlaceRatio(b *testing.B) {
	for _, name := range []string{"sci-dense", "sci-moe", "dense-small", "moe-small"} {
		b.Run(name, func(b *testing.B) {
			defer model.SetAddsInPlace(true)
			model.SetAddsInPlace(false)
			own := benchStepper(b, name, nil)
			model.SetAddsInPlace(true)
			alternateSteppers(b, [2]*Stepper{own, benchStepper(b, name, nil)}, [2]string{"own", "inplace"}, func(inPlace bool) error {
				model.SetAddsInPlace(inPlace)
				return nil
			})
		})
	}
}
