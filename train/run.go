package train

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"gorgonia.org/tensor"

	"github.com/moetrain/moetrain/checkpoints"
	"github.com/moetrain/moetrain/configs"
	"github.com/moetrain/moetrain/data"
	"github.com/moetrain/moetrain/dist"
	"github.com/moetrain/moetrain/evaluate"
	"github.com/moetrain/moetrain/internal/blas"
	"github.com/moetrain/moetrain/internal/runlock"
	"github.com/moetrain/moetrain/internal/units"
	"github.com/moetrain/moetrain/model"
	"github.com/moetrain/moetrain/model/ops"
	"github.com/moetrain/moetrain/optim"
	"github.com/moetrain/moetrain/rundir"
	"github.com/moetrain/moetrain/tasks"
	"github.com/moetrain/moetrain/train/step"
)

// ErrConfigChanged is wrapped by Run when a resume's config differs from
// the run's in keys that are not safe to change.
var ErrConfigChanged = errors.New("train: config differs from the run's")

// ErrMemory is wrapped by Run when the model cannot fit in memory.
var ErrMemory = errors.New("train: not enough memory")

// Options configure one invocation of Run.
type Options struct {
	Config configs.Config
	RunDir string
	// Out receives the human-readable log (and train.log gets a copy).
	Out io.Writer
	// Live shows a progress bar on Out; without it a plain progress line
	// is printed when no log line came for a while. Either way every log
	// interval prints a loss line to Out and train.log.
	Live bool
	// Stop, when non-nil, is polled at every step boundary: when it returns
	// true the run saves a checkpoint and returns with Summary.Interrupted.
	Stop func() bool
	// AvailableMemory overrides the memory the guard compares against (tests).
	AvailableMemory int64
	// ResumeCommand is printed when the run is interrupted.
	ResumeCommand string
	// Comm is the communicator of a data-parallel run; nil means
	// dist.World(): MPI when launched by mpirun, else a single process.
	Comm *dist.Comm
	// Restart allows starting again from zero tokens when the run has
	// checkpoints but every one is damaged; without it Run stops with an
	// error wrapping checkpoints.ErrNoIntact.
	Restart bool
}

// Summary is what a run reports at its end.
type Summary struct {
	Tokens      int64   `json:"tokens"`
	Steps       int64   `json:"steps"`
	TrainLoss   float64 `json:"train_loss"`
	ValLoss     float64 `json:"val_loss"`
	ValBPB      float64 `json:"val_bits_per_byte"`
	Total       int64   `json:"total_params"`
	Activated   int64   `json:"activated_params"`
	TokensPerS  float64 `json:"tokens_per_s"`
	MFU         float64 `json:"mfu"`
	Checkpoint  string  `json:"checkpoint"`
	Interrupted bool    `json:"interrupted"`
	// Complete: the run had already reached train.tokens; nothing was
	// trained, saved or evaluated.
	Complete bool `json:"complete"`
	Resumed  bool `json:"resumed"`
}

// trainer holds one run's live state.
type trainer struct {
	opt        Options
	cfg        configs.Config
	out        io.Writer
	logFile    *os.File
	m          *model.Model // the model trained here (under expert parallelism this rank's shard)
	g          *model.Graph
	fwd        *model.Graph // forward-only twin of g: gathers batch-level routing counts
	step       *step.Step   // the graph g's parameters, gradients and AdamW
	batch      []int32      // the last global batch read (reused)
	sched      optim.Schedule
	stream     *data.Stream
	metrics    *rundir.MetricsWriter
	eval       *evaluate.Evaluator
	evalWarned bool // the evaluator's warnings and notes were logged
	state      rundir.State
	peak       float64 // GFLOP/s
	fpt        float64 // FLOPs per token
	kernel     string
	started    time.Time
	prog       progress
	dist       distState // data parallelism (dist.go)
}

func (t *trainer) logf(format string, args ...any) {
	line := fmt.Sprintf(format, args...)
	if t.prog != nil {
		t.prog.println(line)
	} else {
		fmt.Fprintln(t.out, line)
	}
	if t.logFile != nil {
		fmt.Fprintf(t.logFile, "%s %s\n", time.Now().UTC().Format(time.RFC3339), line)
	}
}

// Run trains to cfg.Train.Tokens, resuming from the newest valid checkpoint
// in RunDir when there is one.
func Run(ctx context.Context, opt Options) (sum Summary, err error) {
	t := &trainer{opt: opt, cfg: opt.Config, out: opt.Out, started: time.Now()}
	if t.out == nil {
		t.out = io.Discard
	}
	if err := t.cfg.Validate(); err != nil {
		return sum, err
	}
	if err := t.initDist(); err != nil {
		return sum, err
	}
	defer t.freeComms()
	defer limitGarbage()()
	if !t.root() {
		t.out = io.Discard
	}
	// The schedule's horizon is fixed at launch, so raising train.tokens on
	// a resume extends the run without changing its learning rates.
	if t.cfg.Schedule.TotalTokens == 0 {
		t.cfg.Schedule.TotalTokens = t.cfg.Train.Tokens
	}
	if err := os.MkdirAll(filepath.Join(opt.RunDir, "checkpoints"), 0o755); err != nil {
		return sum, fmt.Errorf("create run directory: %w", err)
	}
	if t.root() {
		// One trainer per run directory; under MPI rank 0 writes for all.
		lock, err := runlock.Acquire(opt.RunDir)
		if err := t.agree(err); err != nil {
			return sum, err
		}
		defer lock.Release()
	} else if err := t.agree(nil); err != nil {
		return sum, err
	}
	if t.root() {
		t.logFile, err = os.OpenFile(filepath.Join(opt.RunDir, "train.log"), os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
		if err != nil {
			return sum, t.agree(fmt.Errorf("open train.log: %w", err))
		}
		defer t.logFile.Close()
		err = t.checkConfig()
	}
	if err := t.agree(err); err != nil {
		return sum, err
	}
	if err := t.shareConfig(); err != nil {
		return sum, err
	}
	if err := t.setup(); err != nil {
		return sum, err
	}
	defer t.close()
	return t.loop(ctx)
}

// checkConfig compares the config with the run's stored one (a resume) or
// stores it (a new run). The stored config is RUN/config.yaml; when that is
// missing, the newest checkpoint's (every checkpoint carries the config it
// was written with), and config.yaml is written again from it.
func (t *trainer) checkConfig() error {
	path := filepath.Join(t.opt.RunDir, "config.yaml")
	infos, err := checkpoints.List(t.opt.RunDir)
	if err != nil {
		return err
	}
	// A run directory without a checkpoint has trained nothing yet (a
	// launch that failed early): its stored config does not bind.
	if len(infos) == 0 {
		return rundir.WriteConfig(t.opt.RunDir, t.cfg)
	}
	var stored configs.Config
	raw, err := os.ReadFile(path)
	switch {
	case err == nil:
		if stored, err = configs.Parse(raw, nil); err != nil {
			return fmt.Errorf("read the run's config %s: %w", path, err)
		}
	case errors.Is(err, os.ErrNotExist):
		st, dir, err := newestState(infos)
		if err != nil {
			return fmt.Errorf("%s is missing and no checkpoint's state.json can be read to replace it: %w", path, err)
		}
		stored = st.Config
		t.logf("warning: %s is missing: comparing against the config of %s and writing it back", path, dir)
		defer func() {
			if err := rundir.WriteConfig(t.opt.RunDir, stored); err != nil {
				t.logf("warning: restore %s: %v", path, err)
			}
		}()
	default:
		return fmt.Errorf("read the run's config: %w", err)
	}
	return t.compareConfig(stored, t.opt.RunDir)
}

// compareConfig takes the schedule's horizon from the stored config (unless
// this launch sets schedule.total_tokens) and refuses keys that must not
// change on resume. where names the stored config in the message.
func (t *trainer) compareConfig(stored configs.Config, where string) error {
	if stored.Schedule.TotalTokens == 0 {
		stored.Schedule.TotalTokens = stored.Train.Tokens
	}
	// The schedule's horizon is the launch's, whatever train.tokens says now.
	if t.opt.Config.Schedule.TotalTokens == 0 {
		t.cfg.Schedule.TotalTokens = stored.Schedule.TotalTokens
	}
	return configDiff(stored, t.cfg, where)
}

// configDiff refuses keys that differ between a stored config and this
// launch's and must not change on resume.
func configDiff(stored, now configs.Config, where string) error {
	if stored.Schedule.TotalTokens == 0 {
		stored.Schedule.TotalTokens = stored.Train.Tokens
	}
	if stored.Train.Products == "" { // a state.json from before the key: float32 products
		stored.Train.Products = configs.ProductsFP32
	}
	if diff := changedKeys(stored, now); len(diff) > 0 {
		return fmt.Errorf("%w in %s (only checkpoint.*, eval.*, log.*, train.tokens, train.non_finite and model.expert_parallel may change on resume, and data.weights to weights that give the same mixture):\n  %s\nStart a new run directory to change them.",
			ErrConfigChanged, where, strings.Join(diff, "\n  "))
	}
	return nil
}

// newestState reads the state of the newest checkpoint whose state.json is
// intact (only that file is verified).
func newestState(infos []checkpoints.Info) (rundir.State, string, error) {
	var errs []error
	for i := len(infos) - 1; i >= 0; i-- {
		raw, err := checkpoints.LoadState(infos[i].Dir)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		var st rundir.State
		if err := json.Unmarshal(raw, &st); err != nil {
			errs = append(errs, fmt.Errorf("%s: state.json: %w", infos[i].Dir, err))
			continue
		}
		return st, infos[i].Dir, nil
	}
	return rundir.State{}, "", errors.Join(errs...)
}

// mfu is the model FLOPs utilisation at tps tokens/s, 0 without a peak
// (pure-Go kernel).
func (t *trainer) mfu(tps float64) float64 {
	if t.peak <= 0 {
		return 0
	}
	return tps * t.fpt / (t.peak * 1e9)
}

func (t *trainer) setup() error {
	c := t.cfg
	// Guard: refuse before allocating a model that cannot fit.
	mem := model.EstimateMemory(c.Model, c.Train.MicroBatch(), c.Train.SeqLen)
	avail := t.opt.AvailableMemory
	if avail == 0 {
		avail = availableMemory()
	}
	if avail > 0 && mem.Total > avail {
		return fmt.Errorf("%w: the model needs about %s (weights %s, gradients %s, AdamW %s, activations %s at micro-batch %d × %d) but %s is available; lower train.micro_batch_size or train.seq_len, or pick a smaller model",
			ErrMemory, units.Bytes(mem.Total), units.Bytes(mem.Weights), units.Bytes(mem.Gradients), units.Bytes(mem.Optimizer), units.Bytes(mem.Activations),
			c.Train.MicroBatch(), c.Train.SeqLen, units.Bytes(avail))
	}
	info, err := blas.Init()
	if err != nil {
		return fmt.Errorf("load BLAS: %w", err)
	}
	if err := blas.SetBF16Products(c.Train.BF16Products()); err != nil {
		return fmt.Errorf("train.products: %w", err)
	}
	t.kernel = ops.BitsKernel(info.Kernel, c.Model.FFN != configs.FFNDense, c.Train.BF16Products())
	t.logf("moetrain: run %s", t.opt.RunDir)
	t.logf("BLAS: %s", info)
	if blas.BF16Products() {
		t.logf("products: bf16 (operands rounded to bfloat16, float32 sums; MFU against the float32 peak)")
	}
	peak := blas.MachinePeak(false)
	t.peak = peak.GFLOPS
	t.logf("MFU against peak: %s", peak)
	t.logf("resolved config:\n%s", indent(c.YAML()))

	// Data first: a wrong dataset should fail before the model is allocated.
	// Under expert parallelism every rank, 0 included, allocates only its
	// own experts.
	if ep := t.dist.ep; ep != nil {
		t.m, err = model.NewSharded(c.Model, ep.rank, ep.R)
	} else {
		t.m, err = model.New(c.Model, tensor.Float32)
	}
	if err != nil {
		return err
	}
	counts := model.Count(c.Model)
	t.fpt = model.FLOPsPerToken(c.Model, c.Train.SeqLen)
	t.logf("parameters: %s total, %s activated; %.3g FLOPs/token; estimated memory %s", units.Commas(counts.Total), units.Commas(counts.Activated), t.fpt, units.Bytes(mem.Total))

	// Resume from the newest valid checkpoint.
	t.state = rundir.State{Version: rundir.StateVersion, Config: t.cfg, Kernel: t.kernel, Threads: runtime.GOMAXPROCS(0)}
	optState, dir, err := t.resume()
	if err := t.agree(err); err != nil {
		return err
	}
	if err := t.shareState(); err != nil {
		return err
	}
	if t.dist.ep != nil {
		// Every rank reads its own part of the checkpoint rank 0 chose.
		os, err := t.loadShard(dir)
		if err := t.agree(err); err != nil {
			return err
		}
		if !t.root() {
			optState = os
		}
	}

	t.stream, err = data.Open(data.StreamConfig{Dir: c.Data.Path, Split: "train", SeqLen: c.Train.SeqLen,
		Batch: c.Train.MicroBatch(), Seed: c.Data.Seed, Weights: c.Data.Weights, Vocab: c.Model.VocabSize}, t.state.Cursor)
	if errors.Is(err, data.ErrWeights) {
		return &configs.Error{Fields: []string{fmt.Sprintf("data.weights: %v (data.path %s)", err, c.Data.Path)}}
	}
	if err != nil {
		return fmt.Errorf("open training data (data.path %s): %w", c.Data.Path, err)
	}
	id := t.stream.Manifest().ID()
	if t.state.DataID != "" && t.state.DataID != id {
		return fmt.Errorf("the dataset at %s is not the one this run started on (manifest id %.12s, the run's %.12s): resuming would not continue the same token stream; point data.path at the original dataset, or start a new run directory",
			c.Data.Path, id, t.state.DataID)
	}
	t.state.DataID = id
	t.g, err = t.m.Build(model.GraphOptions{Batch: t.localMicroBatch(), Seq: c.Train.SeqLen, Backward: true, Training: true, ExpertComm: t.expertComm()})
	if err != nil {
		return err
	}
	// A batch-level balance loss over several micro-batches needs the whole
	// batch's routing counts before any backward pass: a forward-only pass
	// over the micro-batches gathers them (one extra forward per step, only
	// in this configuration).
	// Under data parallelism the batch is spread over ranks: always.
	if (c.Train.MicroBatch() < c.Train.BatchSize || t.distributed()) && t.g.BatchCounted() {
		t.fwd, err = t.m.Build(model.GraphOptions{Batch: t.localMicroBatch(), Seq: c.Train.SeqLen, Training: true, ExpertComm: t.expertComm()})
		if err != nil {
			return err
		}
	}
	t.step, err = step.New(t.m, t.g, optim.AdamWConfig{Beta1: c.Optim.Beta1, Beta2: c.Optim.Beta2, Eps: c.Optim.Eps, WeightDecay: c.Optim.WeightDecay},
		c.Optim.Clip, c.Train.BatchSize/t.localMicroBatch())
	if err != nil {
		return err
	}
	// A checkpoint without optimizer state (an imported model) starts AdamW
	// from zero moments. The moments read are adopted, not copied: AdamW
	// has not allocated its own yet, so they are never held twice.
	if optState != nil && len(optState.Slices) > 0 {
		if err := t.step.Adam.AdoptState(*optState); err != nil {
			return fmt.Errorf("checkpoint %s: optimizer: %w", dir, err)
		}
	}
	if err := t.shareWeights(); err != nil {
		return err
	}
	if t.distributed() {
		t.step.Reducer = &reducer{t: t}
	}
	t.sched = optim.Schedule{Kind: c.Schedule.Kind, MaxLR: c.Schedule.MaxLR, WarmupTokens: c.Schedule.WarmupTokens,
		TotalTokens: c.Schedule.TotalTokens, MinLRRatio: c.Schedule.MinLRRatio}
	if err := t.sched.Validate(); err != nil {
		return fmt.Errorf("schedule: %w", err)
	}
	// Rank 0 writes the metrics; a nil writer discards them.
	if t.root() {
		if t.metrics, err = rundir.OpenMetrics(filepath.Join(t.opt.RunDir, "metrics.jsonl"), t.state.Tokens); err != nil {
			return err
		}
	}
	// Rank 0 evaluates for the run, under expert parallelism together with
	// the other ranks of its group.
	err = nil
	if t.evaluates() {
		t.eval, err = newEvaluator(t.m, c, t.evalComm())
		if errors.Is(err, tasks.ErrNoTask) {
			// A task name the dataset lacks is a config mistake.
			err = &configs.Error{Fields: []string{"eval.tasks: " + err.Error()}}
		} else if err != nil && !evalSetupFatal(err) {
			t.logf("warning: no held-out evaluation: %v", err)
			t.eval, err = nil, nil
		}
	}
	if err := t.agree(err); err != nil {
		return err
	}
	return t.shareEval()
}

// resume loads the newest valid checkpoint of the run directory into the
// model and t.state and returns its optimizer state (nil for a new run).
// Under data parallelism only rank 0 reads it; shareState and shareWeights
// give it to the others. Under expert parallelism rank 0 reads only its
// part and the others read theirs (loadShard).
func (t *trainer) resume() (*optim.State, string, error) {
	if !t.root() {
		return nil, "", nil
	}
	// This process holds the run's lock: it alone cleans up after
	// interrupted saves (readers such as eval leave them alone).
	notes, err := checkpoints.Recover(t.opt.RunDir)
	for _, n := range notes {
		t.logf("note: %s", n)
	}
	if err != nil {
		return nil, "", err
	}
	ck, dir, warnings, err := checkpoints.LoadLatestPart(t.opt.RunDir, t.checkpointPart())
	for _, w := range warnings {
		t.logf("warning: %s", w)
	}
	if errors.Is(err, checkpoints.ErrNoIntact) {
		if !t.opt.Restart {
			return nil, "", fmt.Errorf("%w. Stopping rather than training again from zero: restore an intact checkpoint, or run again with --restart to start from zero tokens (the damaged checkpoints are replaced as training reaches them)", err)
		}
		t.logf("warning: %v; --restart: training again from zero tokens", err)
		return nil, "", nil
	}
	if err != nil {
		return nil, dir, fmt.Errorf("load checkpoint: %w", err)
	}
	if ck == nil {
		return nil, dir, nil
	}
	st, err := rundir.DecodeState(ck.State, dir)
	if err != nil {
		return nil, dir, err
	}
	if err := t.m.LoadHF(ck.Model); err != nil {
		return nil, dir, fmt.Errorf("checkpoint %s: %w", dir, err)
	}
	os, err := rundir.OptimizerState(st.OptimizerStep, ck.Optimizer)
	if err != nil {
		return nil, dir, fmt.Errorf("checkpoint %s: %w", dir, err)
	}
	optState := &os
	// The checkpoint's own config binds too (config.yaml may have been
	// edited); checkConfig settled the horizon, which must agree as well.
	if err := configDiff(st.Config, t.cfg, dir); err != nil {
		return nil, dir, err
	}
	if st.Kernel != t.kernel || st.Threads != runtime.GOMAXPROCS(0) {
		t.logf("warning: the checkpoint was written with kernels %q and %d threads, this process has %q and %d: the run continues, but no longer bit for bit as an uninterrupted run would",
			st.Kernel, st.Threads, t.kernel, runtime.GOMAXPROCS(0))
	}
	st.Config, st.Kernel, st.Threads = t.cfg, t.kernel, runtime.GOMAXPROCS(0)
	t.state = st
	t.logf("resumed from %s at %s tokens (step %d)", dir, units.Commas(st.Tokens), st.Step)
	return optState, dir, nil
}

func (t *trainer) close() {
	if t.prog != nil {
		t.prog.finish()
	}
	if t.stream != nil {
		t.stream.Close()
	}
	if t.g != nil {
		t.g.Close()
	}
	if t.fwd != nil {
		t.fwd.Close()
	}
	if t.eval != nil {
		t.eval.Close()
	}
	if t.metrics != nil {
		t.metrics.Close()
	}
}

// loop runs steps until the budget is reached or Stop says so.
func (t *trainer) loop(ctx context.Context) (Summary, error) {
	c := t.cfg
	stepTokens := int64(c.Train.BatchSize) * int64(c.Train.SeqLen)
	counts := model.Count(c.Model)
	sum := Summary{Total: counts.Total, Activated: counts.Activated, Resumed: t.state.Tokens > 0}
	if sum.Resumed && t.state.Tokens >= c.Train.Tokens {
		// Running a finished run again changes nothing: no checkpoint is
		// re-saved and no evaluation appended twice.
		sum.Complete, sum.Tokens, sum.Steps = true, t.state.Tokens, t.state.Step
		if infos, err := checkpoints.List(t.opt.RunDir); err == nil && len(infos) > 0 {
			sum.Checkpoint = infos[len(infos)-1].Dir
		}
		t.logf("the run is complete: %s tokens trained, train.tokens is %s; raise train.tokens to train further",
			units.Commas(t.state.Tokens), units.Commas(c.Train.Tokens))
		return sum, nil
	}
	if r := c.Train.Tokens % stepTokens; r != 0 {
		steps := (c.Train.Tokens + stepTokens - 1) / stepTokens
		t.logf("note: train.tokens %s is not a multiple of one step's %s tokens (train.batch_size × train.seq_len): the run trains %d steps, %s tokens",
			units.Commas(c.Train.Tokens), units.Commas(stepTokens), steps, units.Commas(steps*stepTokens))
	}
	if t.opt.Live {
		t.prog = newBar(t.out, c.Train.Tokens, t.state.Tokens)
	} else {
		t.prog = newTicker(t.out, c.Train.Tokens)
	}
	var (
		logLoss    float64
		logSteps   int
		logSkipped int
		logTime    time.Duration // step time since the last log line: evaluations and checkpoints in between do not count
		logTokens  = t.state.Tokens
		trainTime  time.Duration
		trained    int64
	)
	for t.state.Tokens < c.Train.Tokens {
		stop, err := t.stopAgreed(t.opt.Stop != nil && t.opt.Stop() || ctx.Err() != nil)
		if err != nil {
			return sum, err
		}
		if stop {
			dir, err := t.save()
			if err != nil {
				return sum, err
			}
			sum.Interrupted, sum.Checkpoint = true, dir
			t.logf("interrupted: saved %s at %s tokens", dir, units.Commas(t.state.Tokens))
			if t.opt.ResumeCommand != "" {
				t.logf("resume with: %s", t.opt.ResumeCommand)
			}
			return t.finish(sum, trained, trainTime), nil
		}
		t0 := time.Now()
		t.g.ResetStepLoads()
		lr := t.sched.LR(t.state.Tokens + stepTokens)
		res, err := t.trainStep(lr)
		if err != nil {
			return sum, err
		}
		loss, norm := res.Loss, res.Norm
		if !res.Updated {
			// The norm is computed only for a finite loss.
			what := fmt.Sprintf("non-finite loss (%g)", loss)
			if !math.IsNaN(loss) && !math.IsInf(loss, 0) {
				what = fmt.Sprintf("non-finite gradient norm (%g)", norm)
			}
			if c.Train.NonFinite == "stop" {
				return sum, fmt.Errorf("step %d (%s tokens): %s; the weights were not updated, %s. Lower schedule.max_lr, or set train.non_finite: skip to skip such steps",
					t.state.Step+1, units.Commas(t.state.Tokens), what, t.newestCheckpoint())
			}
			t.state.SkippedSteps++
			t.logf("warning: step %d skipped: %s", t.state.Step+1, what)
		} else if err := t.updateBias(); err != nil {
			return sum, err
		}
		t.state.Step++
		t.state.Tokens += stepTokens
		t.state.OptimizerStep = t.step.Adam.Steps()
		dt := time.Since(t0)
		trainTime += dt
		logTime += dt
		trained += stepTokens
		// A skipped step's loss is not part of the run: it stays out of the
		// averages and out of metrics.jsonl (JSON has no NaN).
		if res.Updated {
			logLoss += loss
			logSteps++
			sum.TrainLoss = loss
		} else {
			logSkipped++
		}
		if t.prog != nil {
			t.prog.update(t.state.Tokens, float64(trained)/trainTime.Seconds(), loss)
		}
		prev := t.state.Tokens - stepTokens
		if c.Log.EveryTokens <= 0 || crossed(prev, t.state.Tokens, c.Log.EveryTokens) || t.state.Tokens >= c.Train.Tokens {
			tps := float64(t.state.Tokens-logTokens) / logTime.Seconds()
			etaText := eta(c.Train.Tokens-t.state.Tokens, float64(trained)/trainTime.Seconds())
			if logSteps == 0 {
				t.logf("tokens %s/%s  step %d  all %d steps since the last line skipped (non-finite)  ETA %s",
					units.Commas(t.state.Tokens), units.Commas(c.Train.Tokens), t.state.Step, logSkipped, etaText)
			} else {
				mt := rundir.Metrics{Kind: "train", Tokens: t.state.Tokens, Step: t.state.Step, LR: lr, Loss: logLoss / float64(logSteps),
					TokensPerS: tps, MFU: t.mfu(tps), Elapsed: time.Since(t.started).Seconds()}
				if res.Updated { // the last step's own statistics, finite only then
					mt.GradNorm, mt.Balance, mt.MoE, mt.EPLoad = norm, t.balanceLosses(res.Balance), t.routeStats(), t.epLoad()
				}
				if err := t.metrics.Write(mt); err != nil {
					return sum, fmt.Errorf("write metrics: %w", err)
				}
				skipped := ""
				if logSkipped > 0 {
					skipped = fmt.Sprintf("  (%d steps skipped)", logSkipped)
				}
				// Every log interval gets a line, bar or not: train.log is
				// what `tail -f` and later readers see.
				t.logf("tokens %s/%s  step %d  loss %.4f  lr %.3g  grad norm %.3f  %.0f tok/s  MFU %.1f%%  ETA %s%s",
					units.Commas(t.state.Tokens), units.Commas(c.Train.Tokens), t.state.Step, mt.Loss, lr, norm, tps, 100*mt.MFU, etaText, skipped)
			}
			logLoss, logSteps, logSkipped, logTime, logTokens = 0, 0, 0, 0, t.state.Tokens
		}
		if t.eval != nil && crossed(prev, t.state.Tokens, c.Eval.EveryTokens) && t.state.Tokens < c.Train.Tokens {
			if _, err := t.evaluate(); err != nil {
				return sum, err
			}
		}
		if crossed(prev, t.state.Tokens, c.Checkpoint.EveryTokens) && t.state.Tokens < c.Train.Tokens {
			if _, err := t.save(); err != nil {
				return sum, err
			}
		}
	}
	dir, err := t.save()
	if err != nil {
		return sum, err
	}
	sum.Checkpoint = dir
	if t.eval != nil {
		ev, err := t.evaluate()
		if err != nil {
			return sum, err
		}
		sum.ValLoss, sum.ValBPB = ev.Loss, ev.BPB
	}
	return t.finish(sum, trained, trainTime), nil
}

// newestCheckpoint says where the run would resume from, for messages.
func (t *trainer) newestCheckpoint() string {
	infos, err := checkpoints.List(t.opt.RunDir)
	if err != nil || len(infos) == 0 {
		return "and no checkpoint has been written yet (a new launch starts from zero tokens)"
	}
	last := infos[len(infos)-1]
	return fmt.Sprintf("the newest checkpoint is %s (%s tokens)", last.Dir, units.Commas(last.Tokens))
}

func (t *trainer) finish(sum Summary, trained int64, d time.Duration) Summary {
	sum.Tokens, sum.Steps = t.state.Tokens, t.state.Step
	if d > 0 {
		sum.TokensPerS = float64(trained) / d.Seconds()
		sum.MFU = t.mfu(sum.TokensPerS)
	}
	if t.prog != nil {
		t.prog.finish()
		t.prog = nil
	}
	t.logDist(d)
	return sum
}

// trainStep reads the next batch and trains one optimizer step on this
// rank's share of it (train/step).
func (t *trainer) trainStep(lr float64) (step.Result, error) {
	micro, err := t.nextBatch()
	if err != nil {
		return step.Result{}, err
	}
	if t.fwd != nil {
		if err := t.gatherBatchCounts(micro); err != nil {
			return step.Result{}, err
		}
	}
	t.freezeRouters()
	return t.step.Run(micro, lr)
}

// freezeRouters stops training the router weights once
// model.router.freeze_after_tokens training tokens have been seen
// (StableMoE's second stage). It depends only on the token count, so a
// resumed run freezes at the same step as an uninterrupted one.
func (t *trainer) freezeRouters() {
	at := t.cfg.Model.Router.FreezeAfterTokens
	if at <= 0 || t.state.Tokens < at {
		return
	}
	froze := false
	for j, i := range t.step.Layout {
		if t.m.Layout[i].Kind == "router" && !t.step.Params[j].Frozen {
			t.step.Params[j].Frozen, froze = true, true
		}
	}
	if froze {
		t.logf("router weights frozen from %s tokens on (model.router.freeze_after_tokens %s)", units.Commas(t.state.Tokens), units.Commas(at))
	}
}

// nextBatch reads the next train.batch_size sequences from the stream (the
// same on every rank) and returns this rank's rows of them in micro-batches
// of the training graph's size.
func (t *trainer) nextBatch() ([][]int32, error) {
	row := t.cfg.Train.SeqLen + 1
	global := t.batch[:0]
	for range t.cfg.Train.BatchSize / t.cfg.Train.MicroBatch() {
		b, err := t.stream.Next()
		if err != nil {
			return nil, fmt.Errorf("read training data: %w", err)
		}
		global = append(global, b.Tokens...)
		t.state.Cursor = b.Cursor
	}
	t.batch = global
	rows, rank := t.cfg.Train.BatchSize, 0
	if t.distributed() {
		rows, rank = t.dist.local, t.dist.comm.Rank()
	}
	mine := global[rank*rows*row : (rank+1)*rows*row]
	n := t.localMicroBatch() * row
	micro := make([][]int32, 0, len(mine)/n)
	for lo := 0; lo < len(mine); lo += n {
		micro = append(micro, mine[lo:lo+n:lo+n])
	}
	return micro, nil
}

// balanceLosses names the step's balance losses for the metrics.
func (t *trainer) balanceLosses(values []float64) map[string]float64 {
	out := map[string]float64{}
	for i, bl := range t.g.Balance {
		out[fmt.Sprintf("layer%d.%s", bl.Layer, bl.Kind)] += values[i]
	}
	return out
}

// gatherBatchCounts runs the forward-only graph over a step's micro-batches
// and gives every balance loss of the training graph its layer's routing
// counts over the whole batch.
func (t *trainer) gatherBatchCounts(micro [][]int32) error {
	for _, bl := range t.g.Balance {
		if bl.Counts != nil {
			bl.Counts.Tokens = 0
			bl.Counts.Load = bl.Counts.Load[:0]
		}
	}
	loads := make([][]float64, len(t.fwd.Routes))
	tokens := 0
	T := t.cfg.Train.SeqLen
	for _, tok := range micro {
		if _, err := t.fwd.Run(tok); err != nil {
			return err
		}
		tokens += len(tok) / (T + 1) * T
		for j, rec := range t.fwd.Routes {
			if loads[j] == nil {
				loads[j] = make([]float64, rec.E)
			}
			for e, l := range rec.Load {
				loads[j][e] += float64(l)
			}
		}
	}
	if err := t.reduceCounts(loads, &tokens); err != nil {
		return err
	}
	for _, bl := range t.g.Balance {
		for j, layer := range t.fwd.RouteOf {
			if layer == bl.Layer && bl.Counts != nil {
				bl.Counts.Load = append(bl.Counts.Load[:0], loads[j]...)
				bl.Counts.Tokens = tokens
			}
		}
	}
	return nil
}

// save writes a checkpoint of the current state. Under data parallelism it
// is collective: the replicas are checked (beforeSave), rank 0 writes the
// single-process format, and every rank learns its directory or the
// failure.
func (t *trainer) save() (string, error) {
	if !t.distributed() {
		return t.saveFiles()
	}
	if err := t.beforeSave(); err != nil {
		return "", err
	}
	var dir string
	var err error
	switch {
	case t.root():
		dir, err = t.saveFiles()
		if t.dist.ep != nil {
			err = errors.Join(err, t.endFetches())
		}
	case t.servesExperts():
		err = t.serveExperts()
	}
	if err := t.agree(err); err != nil {
		return "", err
	}
	raw, err := t.dist.comm.BcastBytes([]byte(dir), 0)
	return string(raw), err
}

// saveFiles writes a checkpoint of the current state (see save).
func (t *trainer) saveFiles() (string, error) {
	st, err := rundir.EncodeState(t.state)
	if err != nil {
		return "", err
	}
	dir, err := checkpoints.Save(t.opt.RunDir, checkpoints.Checkpoint{
		Tokens: t.state.Tokens, Model: t.modelTensors(), Optimizer: t.optimizerTensors(), State: st,
	}, checkpoints.Policy{KeepLast: t.cfg.Checkpoint.KeepLast, KeepEveryTokens: t.cfg.Checkpoint.KeepEveryTokens})
	if err != nil {
		if dir != "" {
			t.logf("warning: checkpoint %s saved, but pruning old ones failed: %v", dir, err)
			return dir, nil
		}
		return "", fmt.Errorf("save checkpoint: %w", err)
	}
	t.logf("checkpoint %s", dir)
	return dir, nil
}

func indent(s string) string {
	return "  " + strings.ReplaceAll(strings.TrimRight(s, "\n"), "\n", "\n  ")
}

// availableMemory reads MemAvailable from /proc/meminfo (0 when unknown).
func availableMemory() int64 {
	raw, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if strings.HasPrefix(line, "MemAvailable:") {
			var kb int64
			fmt.Sscanf(strings.TrimPrefix(line, "MemAvailable:"), "%d", &kb)
			return kb * 1024
		}
	}
	return 0
}

// crossed reports whether a step from prev to now tokens passed a multiple
// of every (never for every ≤ 0). Log lines, evaluations and checkpoints
// fire at these multiples, so a run resumed from any token count logs and
// evaluates at the same token counts as one that never stopped (the first
// log line after a resume averages only the steps trained since it).
func crossed(prev, now, every int64) bool {
	return every > 0 && now/every > prev/every
}
