package bench

import (
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"time"

	"gorgonia.org/tensor"

	"github.com/moetrain/moetrain/configs"
	"github.com/moetrain/moetrain/internal/blas"
	"github.com/moetrain/moetrain/internal/cputime"
	"github.com/moetrain/moetrain/internal/parallel"
	"github.com/moetrain/moetrain/internal/stats"
	"github.com/moetrain/moetrain/model"
	"github.com/moetrain/moetrain/model/ops"
	"github.com/moetrain/moetrain/optim"
	"github.com/moetrain/moetrain/train/step"
)

// Options controls a benchmark run.
type Options struct {
	Steps  int // timed steps (default 10)
	Warmup int // untimed steps first (default 2: the first steps pay page faults and GC warm-up)
	// Batch and Seq override the config's micro-batch and sequence length
	// when positive.
	Batch, Seq int
	// NoPeak skips the peak (tests); MFU is then 0.
	NoPeak bool
	// MeasurePeak measures the machine peak again instead of taking the
	// cached figure (blas.MachinePeak); the cache keeps the better one.
	MeasurePeak bool
	// Breakdown times every custom op (ops.SetProfiling) during one extra
	// step after the timed ones, so the timing switch never touches the
	// figures above.
	Breakdown bool
	// Forward also times forward-only passes through an evaluation graph
	// (no gradients, as the held-out evaluation runs the model), after the
	// training steps and the peak-RSS reading, alternating with as many
	// further training steps: Result.ForwardTokensPerS and ForwardRatio.
	Forward bool
	Seed    uint64 // random tokens; 0 means 1
}

// OpTime is the time one kind of op spent in Do during the breakdown step,
// or, with Part set, one stretch of its Do (ops.PartSep), already counted
// in the op's own row, which it follows.
type OpTime struct {
	Op      string  `json:"op"`
	Part    string  `json:"part,omitempty"`
	Calls   int     `json:"calls"`
	Seconds float64 `json:"seconds"`
	Share   float64 `json:"share"` // of the breakdown step's wall time
	// CPUSeconds is the process's CPU time (all threads) during the op's
	// calls, so CPUSeconds/Seconds is how many cores it kept busy; 0 for
	// the optimizer phases and the remainder, which are not timed in CPU.
	CPUSeconds float64 `json:"cpu_seconds,omitempty"`
}

// Result is one benchmark's figures.
type Result struct {
	Config        string       `json:"config"`
	FFN           string       `json:"ffn"`
	Batch         int          `json:"batch"`
	Seq           int          `json:"seq"`
	Steps         int          `json:"steps"`
	Threads       int          `json:"threads"`
	Kernel        string       `json:"blas_kernel"`
	Products      string       `json:"products"`        // train.products: fp32, or bf16 (MFU still against the float32 peak)
	TokensPerS    float64      `json:"tokens_per_s"`    // B·T / median step time
	StepS         float64      `json:"step_s"`          // median step time
	StepTimes     []float64    `json:"step_times_s"`    // every timed step, in order
	FLOPsPerToken float64      `json:"flops_per_token"` // DESIGN.md §7.3
	GFLOPS        float64      `json:"achieved_gflops"`
	SgemmGFLOPS   float64      `json:"sgemm_gflops"` // the peak MFU is quoted against (blas.MachinePeak); 0 with pure Go
	PeakSource    string       `json:"peak_source"`  // where that peak came from (cached or measured now, or why there is none)
	PeakKey       string       `json:"peak_key"`     // CPU model, cores and BLAS kernel the peak belongs to
	MFU           float64      `json:"mfu"`          // GFLOPS / SgemmGFLOPS; 0 without a peak
	PeakRSS       int64        `json:"peak_rss_bytes"`
	Estimated     int64        `json:"estimated_bytes"` // model.EstimateMemory total
	Memory        model.Memory `json:"estimated_memory"`
	AllocBytes    float64      `json:"alloc_bytes_per_step"`
	Allocs        float64      `json:"allocs_per_step"`
	GCPerStep     float64      `json:"gc_per_step"`
	Loss          float64      `json:"loss"` // of the last timed step (≈ ln V on random tokens)
	Ops           []OpTime     `json:"ops,omitempty"`
	OpsStep       Profiled     `json:"ops_step"` // the breakdown step as a whole
	Phases        Phases       `json:"phases"`   // median split of a timed step
	// ForwardTokensPerS is B·T over the median forward-only pass
	// (Options.Forward); ForwardRatio is the median training step over the
	// median forward pass, both from the steps and passes timed in
	// alternation (so its training half is ForwardStepS, not StepS).
	ForwardTokensPerS float64 `json:"forward_tokens_per_s,omitempty"`
	ForwardRatio      float64 `json:"forward_ratio,omitempty"`
	ForwardStepS      float64 `json:"forward_step_s,omitempty"`
	// CPUPerStep and ForwardCPUPerPass are the process's CPU time (user +
	// system, all threads) per timed training step and per forward-only
	// pass: on a machine shared with other jobs they follow the work done
	// far more than wall times do. ForwardCPURatio is the ratio of the
	// alternated steps' CPU time to the passes'.
	CPUPerStep        float64 `json:"cpu_s_per_step"`
	ForwardCPUPerPass float64 `json:"forward_cpu_s_per_pass,omitempty"`
	ForwardCPURatio   float64 `json:"forward_cpu_ratio,omitempty"`
	// ForwardOps is the per-op breakdown of one forward-only pass (with
	// Breakdown and Forward), ForwardOpsPass that pass as a whole: where
	// evaluation's time goes, beside the step's Ops.
	ForwardOps     []OpTime `json:"forward_ops,omitempty"`
	ForwardOpsPass Profiled `json:"forward_ops_pass"`
}

// Phases splits the median step into the graph run (forward + backward),
// the gradient copy, clipping (the global norm) and the AdamW update (with
// the clipping factor applied).
type Phases struct {
	GraphS float64 `json:"graph_s"`
	CopyS  float64 `json:"copy_s"`
	ClipS  float64 `json:"clip_s"`
	AdamS  float64 `json:"adamw_s"`
}

// Stepper is one model with its training graph, gradients and AdamW: a
// training step without data loading, checkpoints or metrics.
type Stepper struct {
	cfg    configs.Config
	m      *model.Model
	g      *model.Graph
	fwd    *model.Graph // forward-only graph (Forward), nil until used
	step   *step.Step
	tokens []int32
	rng    *rand.Rand
	Batch  int
	Seq    int
	last   Phases
}

// NewStepper builds a float32 model from cfg (batch and seq when positive
// override the config's micro-batch and sequence length).
func NewStepper(cfg configs.Config, batch, seq int, seed uint64) (*Stepper, error) {
	if batch <= 0 {
		batch = cfg.Train.MicroBatch()
	}
	if seq <= 0 {
		seq = cfg.Train.SeqLen
	}
	if seed == 0 {
		seed = 1
	}
	m, err := model.New(cfg.Model, tensor.Float32)
	if err != nil {
		return nil, err
	}
	g, err := m.Build(model.GraphOptions{Batch: batch, Seq: seq, Backward: true, Training: true})
	if err != nil {
		return nil, err
	}
	st, err := step.New(m, g, optim.AdamWConfig{Beta1: cfg.Optim.Beta1, Beta2: cfg.Optim.Beta2, Eps: cfg.Optim.Eps, WeightDecay: cfg.Optim.WeightDecay}, cfg.Optim.Clip, 1)
	if err != nil {
		g.Close()
		return nil, err
	}
	return &Stepper{cfg: cfg, m: m, g: g, step: st, Batch: batch, Seq: seq, tokens: make([]int32, batch*(seq+1)), rng: rand.New(rand.NewPCG(seed, 0xbe4c))}, nil
}

// Close releases the graphs.
func (s *Stepper) Close() error {
	if s.fwd != nil {
		s.fwd.Close()
	}
	return s.g.Close()
}

// Forward runs the model forward only, through an evaluation graph built
// on first use (no gradient nodes, as the held-out evaluation builds it),
// on fresh random tokens.
func (s *Stepper) Forward() (model.Result, error) {
	if s.fwd == nil {
		g, err := s.m.Build(model.GraphOptions{Batch: s.Batch, Seq: s.Seq})
		if err != nil {
			return model.Result{}, err
		}
		s.fwd = g
	}
	s.randomTokens()
	return s.fwd.Run(s.tokens)
}

func (s *Stepper) randomTokens() {
	V := s.cfg.Model.VocabSize
	for i := range s.tokens {
		s.tokens[i] = int32(s.rng.IntN(V))
	}
}

// Step runs one training step (train/step, as train runs it with one
// micro-batch) on fresh random tokens at a fixed learning rate.
func (s *Stepper) Step() (step.Result, error) {
	s.randomTokens()
	res, err := s.step.Run([][]int32{s.tokens}, 1e-4)
	if err != nil {
		return res, err
	}
	p := res.Phases
	s.last = Phases{GraphS: p.Graph.Seconds(), CopyS: p.Accumulate.Seconds(), ClipS: p.Norm.Seconds(), AdamS: p.Update.Seconds()}
	return res, nil
}

// Run benchmarks cfg. It loads the BLAS library (blas.Init) first.
func Run(cfg configs.Config, name string, opt Options) (Result, error) {
	if opt.Steps <= 0 {
		opt.Steps = 10
	}
	if opt.Warmup < 0 {
		opt.Warmup = 0
	} else if opt.Warmup == 0 {
		opt.Warmup = 2
	}
	info, err := blas.Init()
	if err != nil {
		return Result{}, fmt.Errorf("load BLAS: %w", err)
	}
	if err := blas.SetBF16Products(cfg.Train.BF16Products()); err != nil {
		return Result{}, fmt.Errorf("train.products: %w", err)
	}
	r := Result{Config: name, FFN: cfg.Model.FFN, Steps: opt.Steps, Threads: parallel.Workers, Kernel: info.Kernel, Products: cfg.Train.Products}
	if !opt.NoPeak {
		p := blas.MachinePeak(opt.MeasurePeak)
		r.SgemmGFLOPS, r.PeakSource, r.PeakKey = p.GFLOPS, p.Source, p.Key
	}
	s, err := NewStepper(cfg, opt.Batch, opt.Seq, opt.Seed)
	if err != nil {
		return Result{}, err
	}
	defer s.Close()
	r.Batch, r.Seq = s.Batch, s.Seq
	r.FLOPsPerToken = model.FLOPsPerToken(cfg.Model, s.Seq)
	r.Memory = model.EstimateMemory(cfg.Model, s.Batch, s.Seq)
	r.Estimated = r.Memory.Total
	for range opt.Warmup {
		if _, err := s.Step(); err != nil {
			return Result{}, err
		}
	}
	var ms0, ms1 runtime.MemStats
	runtime.ReadMemStats(&ms0)
	cpu0 := cputime.Process().Seconds()
	phases := make([]Phases, 0, opt.Steps)
	for range opt.Steps {
		t0 := time.Now()
		res, err := s.Step()
		if err != nil {
			return Result{}, err
		}
		r.StepTimes = append(r.StepTimes, time.Since(t0).Seconds())
		phases = append(phases, s.last)
		r.Loss = res.Loss
	}
	r.CPUPerStep = (cputime.Process().Seconds() - cpu0) / float64(opt.Steps)
	runtime.ReadMemStats(&ms1)
	n := float64(opt.Steps)
	r.AllocBytes = float64(ms1.TotalAlloc-ms0.TotalAlloc) / n
	r.Allocs = float64(ms1.Mallocs-ms0.Mallocs) / n
	r.GCPerStep = float64(ms1.NumGC-ms0.NumGC) / n
	r.StepS = stats.Median(r.StepTimes)
	r.TokensPerS = float64(s.Batch*s.Seq) / r.StepS
	r.GFLOPS = r.TokensPerS * r.FLOPsPerToken / 1e9
	if r.SgemmGFLOPS > 0 {
		r.MFU = r.GFLOPS / r.SgemmGFLOPS
	}
	r.Phases = medianPhases(phases)
	if opt.Breakdown {
		p, err := profiled(func() error { _, err := s.Step(); return err })
		if err != nil {
			return Result{}, err
		}
		r.OpsStep = p
		r.Ops = breakdown(p.ops, p.WallS, &s.last)
	}
	r.PeakRSS = PeakRSS()
	if opt.Forward {
		if err := timeForward(s, opt, &r); err != nil {
			return Result{}, err
		}
	}
	return r, nil
}

// timeForward fills r's forward-only figures. The forward passes alternate
// with training steps, opt.Steps of each after one untimed pass that
// builds the evaluation graph, and the ratios compare the two halves of
// those pairs: load that drifts on a shared machine then slows both alike,
// where timing all the passes after all the steps let a drift between the
// two phases decide the ratio. r's training figures stay those of the
// main loop, before the evaluation graph existed.
func timeForward(s *Stepper, opt Options, r *Result) error {
	if _, err := s.Forward(); err != nil {
		return err
	}
	var steps, passes []float64
	var stepCPU, passCPU float64
	timed := func(fn func() error, ts *[]float64, cpu *float64) error {
		t0, c0 := time.Now(), cputime.Process().Seconds()
		if err := fn(); err != nil {
			return err
		}
		*ts = append(*ts, time.Since(t0).Seconds())
		*cpu += cputime.Process().Seconds() - c0
		return nil
	}
	for range opt.Steps {
		if err := timed(func() error { _, err := s.Step(); return err }, &steps, &stepCPU); err != nil {
			return err
		}
		if err := timed(func() error { _, err := s.Forward(); return err }, &passes, &passCPU); err != nil {
			return err
		}
	}
	if opt.Breakdown {
		p, err := profiled(func() error { _, err := s.Forward(); return err })
		if err != nil {
			return err
		}
		r.ForwardOpsPass = p
		r.ForwardOps = breakdown(p.ops, p.WallS, nil)
	}
	r.ForwardTokensPerS = float64(s.Batch*s.Seq) / stats.Median(passes)
	r.ForwardStepS = stats.Median(steps)
	r.ForwardRatio = r.ForwardStepS / stats.Median(passes)
	r.ForwardCPUPerPass = passCPU / float64(opt.Steps)
	if passCPU > 0 {
		r.ForwardCPURatio = stepCPU / passCPU
	}
	return nil
}

// Profiled is one step or pass run with per-op timing on: its wall and CPU
// time, and the share of the wall time the helper cores spent running
// loop chunks (parallel.CountHelperWork; 0 without helpers).
type Profiled struct {
	WallS      float64 `json:"wall_s,omitempty"`
	CPUS       float64 `json:"cpu_s,omitempty"`
	HelperBusy float64 `json:"helper_busy,omitempty"`
	ops        map[string]ops.OpStat
}

// profiled runs fn once with the ops profile and the helper tally on.
func profiled(fn func() error) (Profiled, error) {
	ops.ResetProfile()
	ops.SetProfiling(true)
	parallel.CountHelperWork(true)
	t0, c0 := time.Now(), cputime.Process()
	err := fn()
	wall, cpu := time.Since(t0), cputime.Process()-c0
	parallel.CountHelperWork(false)
	ops.SetProfiling(false)
	p := Profiled{WallS: wall.Seconds(), CPUS: cpu.Seconds(), ops: ops.Profile()}
	if h := parallel.Helpers(); h > 0 {
		p.HelperBusy = parallel.HelperWork().Seconds() / (float64(h) * p.WallS)
	}
	return p, err
}

// breakdown turns the ops profile into rows sorted by time, adding the
// remainder so the rows add up to the whole: for a training step (ph not
// nil) the optimizer phases and gorgonia's own gradient sums and dispatch,
// for a forward pass the dispatch. An op's parts follow its row, longest
// first, and count in no sum.
func breakdown(p map[string]ops.OpStat, step float64, ph *Phases) []OpTime {
	var out []OpTime
	var sum float64
	parts := map[string][]OpTime{}
	for name, st := range p {
		sec := st.Time.Seconds()
		row := OpTime{Op: name, Calls: st.Calls, Seconds: sec, Share: sec / step, CPUSeconds: st.CPU.Seconds()}
		if op, part, ok := strings.Cut(name, ops.PartSep); ok {
			row.Op, row.Part = op, part
			parts[op] = append(parts[op], row)
			continue
		}
		sum += sec
		out = append(out, row)
	}
	if ph != nil {
		out = append(out,
			OpTime{Op: "(gradient copy)", Calls: 1, Seconds: ph.CopyS},
			OpTime{Op: "(clip)", Calls: 1, Seconds: ph.ClipS},
			OpTime{Op: "(adamw)", Calls: 1, Seconds: ph.AdamS},
			OpTime{Op: "(other: graph dispatch, gorgonia gradient sums)", Calls: 1, Seconds: ph.GraphS - sum})
	} else {
		out = append(out, OpTime{Op: "(other: graph dispatch)", Calls: 1, Seconds: step - sum})
	}
	for i := range out {
		out[i].Share = out[i].Seconds / step
	}
	longest := func(rows []OpTime) {
		sort.Slice(rows, func(i, j int) bool { return rows[i].Seconds > rows[j].Seconds })
	}
	longest(out)
	var withParts []OpTime
	for _, row := range out {
		withParts = append(withParts, row)
		longest(parts[row.Op])
		withParts = append(withParts, parts[row.Op]...)
	}
	return withParts
}

func medianPhases(ps []Phases) Phases {
	col := func(f func(Phases) float64) float64 {
		xs := make([]float64, len(ps))
		for i, p := range ps {
			xs[i] = f(p)
		}
		return stats.Median(xs)
	}
	return Phases{
		GraphS: col(func(p Phases) float64 { return p.GraphS }),
		CopyS:  col(func(p Phases) float64 { return p.CopyS }),
		ClipS:  col(func(p Phases) float64 { return p.ClipS }),
		AdamS:  col(func(p Phases) float64 { return p.AdamS }),
	}
}

// PeakRSS returns the process's peak resident set (VmHWM in
// /proc/self/status) in bytes, or 0 where that file does not exist.
func PeakRSS() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			f := strings.Fields(rest)
			if len(f) >= 1 {
				kb, err := strconv.ParseInt(f[0], 10, 64)
				if err == nil {
					return kb * 1024
				}
			}
		}
	}
	return 0
}
