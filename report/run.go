package report

import (
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/moetrain/moetrain/configs"
	"github.com/moetrain/moetrain/model"
	"github.com/moetrain/moetrain/rundir"
)

// ErrNotRun is wrapped when a path is not a run directory (missing, or
// without config.yaml or metrics.jsonl): a mistake in the command line.
var ErrNotRun = errors.New("report: not a run directory")

// ErrNoEval is wrapped when a run has no eval lines to compare.
var ErrNoEval = errors.New("report: no eval metrics")

// ErrUnknownTask is wrapped when a task named by the user (KeepTasks) is
// in no run.
var ErrUnknownTask = errors.New("report: unknown task")

// HeldOut is the task name of the held-out loss lines train writes.
const HeldOut = "heldout"

// Run is one run directory: its config and metrics.
type Run struct {
	Dir     string // as given
	Name    string // column and legend label (the directory's base name, made unique)
	Config  configs.Config
	Metrics []rundir.Metrics
}

// LoadRun reads dir/config.yaml and dir/metrics.jsonl of a run with
// evaluations (ErrNoEval otherwise).
func LoadRun(dir string) (*Run, error) {
	r, err := ReadRun(dir)
	if err != nil {
		return nil, err
	}
	for _, m := range r.Metrics {
		if m.Kind == "eval" && m.Value != nil {
			return r, nil
		}
	}
	return nil, fmt.Errorf("%w in run %s: %s has %d lines but none of kind \"eval\" (set eval.every_tokens, or evaluate the run)",
		ErrNoEval, dir, filepath.Join(dir, "metrics.jsonl"), len(r.Metrics))
}

// ReadRun reads dir/config.yaml and dir/metrics.jsonl, whatever lines the
// metrics have so far (a run still training).
func ReadRun(dir string) (*Run, error) {
	st, err := os.Stat(dir)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("%w: %s does not exist", ErrNotRun, dir)
		}
		return nil, fmt.Errorf("run %s: %w", dir, err)
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("%w: %s is a file, not a run directory", ErrNotRun, dir)
	}
	cfgPath := filepath.Join(dir, "config.yaml")
	raw, err := os.ReadFile(cfgPath)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s has no config.yaml (is it a directory made by 'moetrain train --run-dir'?)", ErrNotRun, dir)
	}
	if err != nil {
		return nil, fmt.Errorf("run %s: read config: %w", dir, err)
	}
	cfg, err := configs.Parse(raw, nil)
	if err != nil {
		return nil, fmt.Errorf("run %s: %s: %w", dir, cfgPath, err)
	}
	mPath := filepath.Join(dir, "metrics.jsonl")
	if _, err := os.Stat(mPath); errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s has no metrics.jsonl (has the run started?)", ErrNotRun, dir)
	}
	ms, err := rundir.ReadMetrics(mPath)
	if err != nil {
		return nil, fmt.Errorf("run %s: %w", dir, err)
	}
	return &Run{Dir: dir, Name: filepath.Base(filepath.Clean(dir)), Config: cfg, Metrics: ms}, nil
}

// LoadRuns loads every directory and gives each run a unique Name: the
// base name, or the path as given when base names collide.
func LoadRuns(dirs []string) ([]*Run, error) {
	if len(dirs) == 0 {
		return nil, errors.New("report: no run directories given")
	}
	var runs []*Run
	var errs []error
	for _, d := range dirs {
		r, err := LoadRun(d)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		runs = append(runs, r)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	count := map[string]int{}
	for _, r := range runs {
		count[r.Name]++
	}
	for _, r := range runs {
		if count[r.Name] > 1 {
			r.Name = filepath.Clean(r.Dir)
		}
	}
	return runs, nil
}

// Point is one evaluation of a metric.
type Point struct {
	Tokens int64
	Value  float64
}

// Series returns the eval values of (task, metric) in token order; of
// several lines at one token count the last one in the file wins.
func (r *Run) Series(task, metric string) []Point {
	at := map[int64]float64{}
	for _, m := range r.Metrics {
		if m.Kind == "eval" && m.Task == task && m.Metric == metric && m.Value != nil {
			at[m.Tokens] = *m.Value
		}
	}
	out := make([]Point, 0, len(at))
	for tok, v := range at {
		out = append(out, Point{tok, v})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Tokens < out[j].Tokens })
	return out
}

// Last returns the last eval value of (task, metric) in file order, and
// false when there is none.
func (r *Run) Last(task, metric string) (float64, bool) {
	for i := len(r.Metrics) - 1; i >= 0; i-- {
		m := r.Metrics[i]
		if m.Kind == "eval" && m.Task == task && m.Metric == metric && m.Value != nil {
			return *m.Value, true
		}
	}
	return math.NaN(), false
}

// Tasks returns the benchmark tasks the run has eval lines for (every task
// but the held-out loss ones), sorted.
func (r *Run) Tasks() []string {
	seen := map[string]bool{}
	var out []string
	for _, m := range r.Metrics {
		if m.Kind != "eval" || !IsBenchmark(m.Task) || seen[m.Task] {
			continue
		}
		if MainMetric(r, m.Task) == "" {
			continue
		}
		seen[m.Task] = true
		out = append(out, m.Task)
	}
	sort.Strings(out)
	return out
}

// MainMetrics lists the metrics that score a task, by preference: accuracy
// (multiple choice), then exact match (generation).
var MainMetrics = []string{"acc", "exact_match"}

// MainMetric returns the metric a task is scored by in this run, or "".
func MainMetric(r *Run, task string) string {
	have := map[string]bool{}
	for _, m := range r.Metrics {
		if m.Kind == "eval" && m.Task == task && m.Value != nil {
			have[m.Metric] = true
		}
	}
	for _, name := range MainMetrics {
		if have[name] {
			return name
		}
	}
	return ""
}

// TokensTrained is the largest token count in the metrics.
func (r *Run) TokensTrained() int64 {
	var n int64
	for _, m := range r.Metrics {
		n = max(n, m.Tokens)
	}
	return n
}

// FLOPsPerToken is model.FLOPsPerToken at the run's sequence length.
func (r *Run) FLOPsPerToken() float64 {
	return model.FLOPsPerToken(r.Config.Model, r.Config.Train.SeqLen)
}

// IsMoE reports whether the run's model has MoE layers.
func (r *Run) IsMoE() bool { return r.Config.Model.FFN != configs.FFNDense }

// Variant names the FFN kind and expert layout: "Dense",
// "DeepSeekMoE 1+7/63" (shared + active routed / routed), "GShard 2/16".
func Variant(m configs.Model) string {
	names := map[string]string{
		configs.FFNDense: "Dense", configs.FFNDeepSeekMoE: "DeepSeekMoE", configs.FFNGShard: "GShard",
		configs.FFNSwitch: "Switch", configs.FFNHash: "Hash",
	}
	name, ok := names[m.FFN]
	if !ok {
		name = m.FFN
	}
	if m.FFN == configs.FFNDense {
		return name
	}
	if m.SharedExperts > 0 {
		return fmt.Sprintf("%s %d+%d/%d", name, m.SharedExperts, m.ActiveRouted, m.RoutedExperts)
	}
	return fmt.Sprintf("%s %d/%d", name, m.ActiveRouted, m.RoutedExperts)
}

// CommonTasks returns the tasks every run has, sorted.
func CommonTasks(runs []*Run) []string {
	count := map[string]int{}
	for _, r := range runs {
		for _, t := range r.Tasks() {
			count[t]++
		}
	}
	var out []string
	for t, c := range count {
		if c == len(runs) {
			out = append(out, t)
		}
	}
	sort.Strings(out)
	return out
}

// AllTasks returns the tasks any run has, sorted.
func AllTasks(runs []*Run) []string {
	seen := map[string]bool{}
	var out []string
	for _, r := range runs {
		for _, t := range r.Tasks() {
			if !seen[t] {
				seen[t] = true
				out = append(out, t)
			}
		}
	}
	sort.Strings(out)
	return out
}

// KeepTasks drops the eval lines of every benchmark task not in tasks (the
// held-out loss lines stay), so that tables and figures, averages included,
// cover only those tasks: e.g. the tasks with headroom at a model size. A
// task no run has is an error naming it.
func KeepTasks(runs []*Run, tasks []string) error {
	keep := map[string]bool{}
	for _, t := range tasks {
		keep[t] = true
	}
	seen := map[string]bool{}
	for _, r := range runs {
		for _, t := range r.Tasks() {
			seen[t] = true
		}
	}
	var missing []string
	for _, t := range tasks {
		if !seen[t] {
			missing = append(missing, t)
		}
	}
	if len(missing) > 0 {
		var have []string
		for t := range seen {
			have = append(have, t)
		}
		sort.Strings(have)
		return fmt.Errorf("%w %s: no run has it (they have: %s)", ErrUnknownTask, strings.Join(missing, ", "), strings.Join(have, ", "))
	}
	for _, r := range runs {
		kept := r.Metrics[:0:0]
		for _, m := range r.Metrics {
			if m.Kind == "eval" && IsBenchmark(m.Task) && !keep[m.Task] {
				continue
			}
			kept = append(kept, m)
		}
		r.Metrics = kept
	}
	return nil
}

// IsBenchmark reports whether an eval line's task is a benchmark task, not
// the held-out loss (overall or per domain).
func IsBenchmark(task string) bool {
	return task != "" && task != HeldOut && !strings.HasPrefix(task, HeldOut+"/")
}
