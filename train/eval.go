package train

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"path/filepath"
	"sort"

	"github.com/moetrain/moetrain/configs"
	"github.com/moetrain/moetrain/data"
	"github.com/moetrain/moetrain/data/tokenizer"
	"github.com/moetrain/moetrain/infer"
	"github.com/moetrain/moetrain/internal/units"
	"github.com/moetrain/moetrain/model"
	"github.com/moetrain/moetrain/tasks"
)

// EvalResult is a held-out evaluation.
type EvalResult struct {
	Loss   float64 `json:"loss"`          // mean cross-entropy per token (nats)
	BPB    float64 `json:"bits_per_byte"` // loss·tokens / (bytes·ln 2), tokenizer-independent
	Tokens int64   `json:"tokens"`        // predicted tokens scored
	Bytes  int64   `json:"bytes"`         // their bytes (end-of-document tokens count 0)
	// Domains holds the same scores for each domain's validation text alone.
	Domains map[string]EvalResult `json:"domains,omitempty"`
}

// BitsPerByte converts a total loss in nats over text of the given bytes.
func BitsPerByte(nats float64, bytes int64) float64 {
	if bytes <= 0 {
		return 0
	}
	return nats / (float64(bytes) * math.Ln2)
}

// EvalOptions select what an Evaluator scores.
type EvalOptions struct {
	// Data is the prepared dataset (default: the config's data.path).
	Data string
	// Tasks names the task files to score; empty scores every one found in
	// DATA/tasks. A name no file provides is an error (tasks.ErrNoTask).
	Tasks []string
	// NoTasks skips the task files.
	NoTasks bool
	// TaskLimit scores at most this many examples per task (0 = all).
	TaskLimit int
	// Truncate cuts task contexts longer than train.seq_len from the left
	// (lm-eval's rule) instead of failing; Notes says how many.
	Truncate bool
}

// Evaluator scores a model on a dataset's validation split (forward-only
// graphs that share the model's weights) and on its task files (a KV-cache
// decoder over the same weights). During training the weights change
// between evaluations and both see the change.
type Evaluator struct {
	m        *model.Model
	cfg      configs.Config
	dir      string
	man      *data.Manifest
	tok      *tokenizer.Tokenizer
	graphs   map[int]*model.Graph // by batch size (the last batch may be short)
	prepared []*tasks.Prepared
	lm       *infer.LM
	// heldOutErr says why there is no held-out evaluation (nil: there is).
	heldOutErr error
	notes      []string
	warned     bool
}

// The trainer's name for it.
type evaluator = Evaluator

// errTaskSetup marks task problems that must stop a training run at start
// rather than silently disable evaluation.
var errTaskSetup = errors.New("evaluation tasks")

// NewEvaluator loads the dataset's manifest and tokenizer and prepares the
// task files (tokenized and checked against the context train.seq_len, so
// that a bad file fails now, naming its line, not in the middle of a run).
// A dataset without a validation split still scores tasks; with neither,
// NewEvaluator fails.
func NewEvaluator(m *model.Model, cfg configs.Config, o EvalOptions) (*Evaluator, error) {
	dir := o.Data
	if dir == "" {
		dir = cfg.Data.Path
	}
	man, err := data.LoadManifest(dir)
	if err != nil {
		return nil, err
	}
	if err := man.CheckVocab(cfg.Model.VocabSize); err != nil {
		return nil, fmt.Errorf("dataset %s: %w", dir, err)
	}
	tok, err := data.LoadTokenizer(dir, man)
	if err != nil {
		return nil, err
	}
	e := &Evaluator{m: m, cfg: cfg, dir: dir, man: man, tok: tok, graphs: map[int]*model.Graph{}}
	if man.Splits["validation"].Tokens <= int64(cfg.Train.SeqLen) {
		e.heldOutErr = fmt.Errorf("the dataset %s has no validation window of %d tokens", dir, cfg.Train.SeqLen+1)
	} else if err := data.VerifySplit(dir, man, data.Validation); err != nil {
		return nil, err
	}
	if !o.NoTasks && cfg.Model.Router.ExpertChoice {
		e.notes = append(e.notes, "tasks not scored: "+infer.ErrExpertChoice.Error())
	} else if !o.NoTasks {
		ts, err := tasks.LoadDir(filepath.Join(dir, "tasks"), o.Tasks)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", errTaskSetup, err)
		}
		eos := man.Tokenizer.EOS
		for _, t := range ts {
			p, err := tasks.Prepare(t, tok, tasks.Options{Prefix: []int{eos}, StopTokens: []int{eos}, Context: cfg.Train.SeqLen, Limit: o.TaskLimit, Truncate: o.Truncate})
			if err != nil {
				return nil, fmt.Errorf("%w: %w", errTaskSetup, err)
			}
			if p.Truncated > 0 {
				e.notes = append(e.notes, fmt.Sprintf("task %s: %d of %d examples do not fit the context of %d tokens; their contexts are cut from the left",
					t.Name, p.Truncated, p.Examples(), cfg.Train.SeqLen))
			}
			if p.Skipped > 0 {
				e.notes = append(e.notes, fmt.Sprintf("task %s: %d examples left out: a choice or answer alone is longer than the context of %d tokens",
					t.Name, p.Skipped, cfg.Train.SeqLen))
			}
			e.prepared = append(e.prepared, p)
		}
		if len(e.prepared) > 0 {
			d, err := infer.New(m, cfg.Train.SeqLen)
			if err != nil {
				return nil, err
			}
			e.lm = &infer.LM{D: d}
		}
	}
	if e.heldOutErr != nil && len(e.prepared) == 0 {
		return nil, e.heldOutErr
	}
	return e, nil
}

// newEvaluator is the trainer's evaluator: the config's dataset and tasks.
// Task contexts longer than train.seq_len are cut (and logged): built-in
// tasks are made without knowing the model, and a run should not refuse to
// start over them.
func newEvaluator(m *model.Model, cfg configs.Config) (*Evaluator, error) {
	return NewEvaluator(m, cfg, EvalOptions{Tasks: cfg.Eval.Tasks, Truncate: true})
}

// evalSetupFatal reports whether newEvaluator's error must stop the run (a
// bad task file or an unknown task name) rather than only disable
// evaluation.
func evalSetupFatal(err error) bool {
	return errors.Is(err, errTaskSetup) || errors.Is(err, data.ErrTokenizerMismatch) || errors.Is(err, data.ErrCorruptShard)
}

// Dir is the dataset evaluated on.
func (e *Evaluator) Dir() string { return e.dir }

// Manifest is the dataset's manifest.
func (e *Evaluator) Manifest() *data.Manifest { return e.man }

// HasHeldOut reports whether the dataset has a validation split to score;
// the error says why not.
func (e *Evaluator) HasHeldOut() (bool, error) { return e.heldOutErr == nil, e.heldOutErr }

// Notes are remarks on the prepared tasks (contexts cut to fit).
func (e *Evaluator) Notes() []string { return e.notes }

// Tasks lists the prepared tasks in scoring order.
func (e *Evaluator) Tasks() []*tasks.Prepared { return e.prepared }

func (e *Evaluator) graph(b int) (*model.Graph, error) {
	if g, ok := e.graphs[b]; ok {
		return g, nil
	}
	g, err := e.m.Build(model.GraphOptions{Batch: b, Seq: e.cfg.Train.SeqLen})
	if err != nil {
		return nil, err
	}
	e.graphs[b] = g
	return g, nil
}

// Close releases the graphs.
func (e *Evaluator) Close() {
	for _, g := range e.graphs {
		g.Close()
	}
	e.graphs = map[int]*model.Graph{}
}

func (e *Evaluator) close() { e.Close() }

// HeldOut scores up to maxTokens predicted tokens of the validation split
// (0 = the whole split), always the same windows in the same order. With
// domains, each domain's validation text is also scored alone, up to
// maxTokens/len(domains) tokens each.
func (e *Evaluator) HeldOut(maxTokens int64, domains bool) (EvalResult, error) {
	if e.heldOutErr != nil {
		return EvalResult{}, e.heldOutErr
	}
	res, err := e.score(nil, maxTokens)
	if err != nil || !domains || len(e.man.Domains) < 2 {
		return res, err
	}
	var doms []string
	for _, d := range e.man.Domains {
		if e.man.Splits["validation"].Domains[d].Tokens > int64(e.cfg.Train.SeqLen) {
			doms = append(doms, d)
		}
	}
	sort.Strings(doms)
	per := maxTokens
	if per > 0 && len(doms) > 0 {
		per = max(1, maxTokens/int64(len(doms)))
	}
	res.Domains = map[string]EvalResult{}
	for _, d := range doms {
		r, err := e.score(map[string]float64{d: 1}, per)
		if err != nil {
			return res, fmt.Errorf("domain %s: %w", d, err)
		}
		res.Domains[d] = r
	}
	return res, nil
}

// score streams the validation split (one domain when weights names one).
func (e *Evaluator) score(weights map[string]float64, maxTokens int64) (EvalResult, error) {
	var res EvalResult
	T := e.cfg.Train.SeqLen
	s, err := data.Open(data.StreamConfig{Dir: e.dir, Split: "validation", SeqLen: T, Weights: weights,
		Batch: e.cfg.Train.MicroBatch(), Epochs: 1, Vocab: e.cfg.Model.VocabSize}, data.Cursor{})
	if err != nil {
		return res, err
	}
	defer s.Close()
	var nats float64
	for maxTokens == 0 || res.Tokens < maxTokens {
		b, err := s.Next()
		if errors.Is(err, io.EOF) && b.B == 0 {
			break
		}
		if err != nil && !errors.Is(err, io.EOF) {
			return res, err
		}
		if b.B == 0 {
			break
		}
		g, gerr := e.graph(b.B)
		if gerr != nil {
			return res, gerr
		}
		r, rerr := g.Run(b.Tokens)
		if rerr != nil {
			return res, rerr
		}
		n := int64(b.B * b.T)
		nats += r.Loss * float64(n)
		res.Tokens += n
		for row := 0; row < b.B; row++ {
			res.Bytes += e.targetBytes(b.Tokens[row*(T+1)+1 : (row+1)*(T+1)])
		}
		if errors.Is(err, io.EOF) {
			break
		}
	}
	if res.Tokens == 0 {
		return res, fmt.Errorf("the validation split of %s has no window of %d tokens", e.dir, T+1)
	}
	res.Loss = nats / float64(res.Tokens)
	res.BPB = BitsPerByte(nats, res.Bytes)
	return res, nil
}

// targetBytes is the text length of predicted tokens: special tokens (the
// end of a document) stand for no text.
func (e *Evaluator) targetBytes(ids []int32) int64 {
	var n int64
	for _, id := range ids {
		if !e.tok.IsSpecial(int(id)) {
			n += int64(len(e.tok.TokenBytes(int(id))))
		}
	}
	return n
}

// ScoreTasks scores every prepared task, calling done (when non-nil) after
// each.
func (e *Evaluator) ScoreTasks(done func(tasks.Result)) ([]tasks.Result, error) {
	var out []tasks.Result
	for _, p := range e.prepared {
		r, err := p.Evaluate(e.lm)
		if err != nil {
			return out, err
		}
		if done != nil {
			done(r)
		}
		out = append(out, r)
	}
	return out, nil
}

// evaluate scores the held-out split and the tasks at the current token
// count, appends the results to the metrics and logs them. It runs every
// eval.every_tokens and at the end of training.
func (t *trainer) evaluate() (EvalResult, error) {
	e := t.eval
	if !e.warned {
		if e.heldOutErr != nil {
			t.logf("warning: no held-out evaluation: %v", e.heldOutErr)
		}
		for _, n := range e.notes {
			t.logf("note: %s", n)
		}
		e.warned = true
	}
	write := func(task, metric string, v float64) error {
		m := Metrics{Kind: "eval", Tokens: t.state.Tokens, Step: t.state.Step, Task: task, Metric: metric, Value: &v}
		if math.IsNaN(v) || math.IsInf(v, 0) {
			// JSON has no NaN: a diverged model's score is a line without a value.
			t.logf("warning: %s %s is not finite (%g)", task, metric, v)
			m.Value = nil
		}
		return t.metrics.write(m)
	}
	var ev EvalResult
	if e.heldOutErr == nil {
		var err error
		ev, err = e.HeldOut(t.cfg.Eval.Tokens, true)
		if err != nil {
			return ev, fmt.Errorf("evaluate: %w", err)
		}
		if err := write("heldout", "loss", ev.Loss); err != nil {
			return ev, err
		}
		if err := write("heldout", "bits_per_byte", ev.BPB); err != nil {
			return ev, err
		}
		doms := make([]string, 0, len(ev.Domains))
		for d := range ev.Domains {
			doms = append(doms, d)
		}
		sort.Strings(doms)
		line := fmt.Sprintf("eval at %s tokens: held-out loss %.4f, %.4f bits/byte (%s tokens)", units.Commas(t.state.Tokens), ev.Loss, ev.BPB, units.Commas(ev.Tokens))
		for _, d := range doms {
			r := ev.Domains[d]
			if err := write("heldout/"+d, "loss", r.Loss); err != nil {
				return ev, err
			}
			if err := write("heldout/"+d, "bits_per_byte", r.BPB); err != nil {
				return ev, err
			}
			line += fmt.Sprintf("; %s %.4f", d, r.Loss)
		}
		t.logf("%s", line)
	}
	res, err := e.ScoreTasks(nil)
	if err != nil {
		return ev, fmt.Errorf("evaluate: %w", err)
	}
	for _, r := range res {
		line := fmt.Sprintf("eval at %s tokens: task %s (%d examples):", units.Commas(t.state.Tokens), r.Task, r.Examples)
		for _, m := range r.Metrics {
			if err := write(r.Task, m.Name, m.Value); err != nil {
				return ev, err
			}
			line += fmt.Sprintf(" %s %.4f", m.Name, m.Value)
		}
		if r.Chance > 0 {
			// Logged so that figures can draw the chance line.
			if err := write(r.Task, "chance", r.Chance); err != nil {
				return ev, err
			}
			line += fmt.Sprintf(" (chance %.4f)", r.Chance)
		}
		t.logf("%s", line)
	}
	return ev, nil
}

func jsonUnmarshal(raw []byte, v any) error { return json.Unmarshal(raw, v) }
