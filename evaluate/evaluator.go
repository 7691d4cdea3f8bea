package evaluate

import (
	"errors"
	"fmt"
	"path/filepath"
	"sort"

	"github.com/moetrain/moetrain/configs"
	"github.com/moetrain/moetrain/data"
	"github.com/moetrain/moetrain/data/tokenizer"
	"github.com/moetrain/moetrain/infer"
	"github.com/moetrain/moetrain/model"
	"github.com/moetrain/moetrain/model/ops"
	"github.com/moetrain/moetrain/tasks"
)

// Options select what an Evaluator scores.
type Options struct {
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
	// ExpertComm evaluates a model holding one expert shard (model.NewSharded)
	// together with the other ranks of its expert-parallel group: the
	// held-out graphs are built with it, and every rank of the group must
	// make the same calls (they all score the same windows). The task
	// decoder holds the whole model, so tasks are not scored (Notes says so).
	ExpertComm ops.EPComm
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
	scorer   *Scorer
	prepared []*tasks.Prepared
	lm       *infer.LM
	// heldOutErr says why there is no held-out evaluation (nil: there is).
	heldOutErr error
	notes      []string
}

// ErrTaskSetup marks task problems (a bad task file, an unknown task name)
// that must stop a training run at start rather than silently disable
// evaluation.
var ErrTaskSetup = errors.New("evaluation tasks")

// New loads the dataset's manifest and tokenizer and prepares the
// task files (tokenized and checked against the context train.seq_len, so
// that a bad file fails now, naming its line, not in the middle of a run).
// A dataset without a validation split still scores tasks; with neither,
// New fails.
func New(m *model.Model, cfg configs.Config, o Options) (*Evaluator, error) {
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
	e := &Evaluator{m: m, cfg: cfg, dir: dir, man: man, tok: tok, scorer: NewScorer(m, cfg.Train.SeqLen, model.GraphOptions{ExpertComm: o.ExpertComm})}
	if man.Splits["validation"].Tokens <= int64(cfg.Train.SeqLen) {
		e.heldOutErr = fmt.Errorf("the dataset %s has no validation window of %d tokens", dir, cfg.Train.SeqLen+1)
	} else if err := data.VerifySplit(dir, man, data.Validation); err != nil {
		return nil, err
	}
	switch {
	case o.NoTasks:
	case cfg.Model.Router.ExpertChoice:
		e.notes = append(e.notes, "tasks not scored: "+infer.ErrExpertChoice.Error())
	case m.Sharded():
		// The task names are still checked, so a typo fails at launch.
		if _, err := tasks.LoadDir(filepath.Join(dir, "tasks"), o.Tasks); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrTaskSetup, err)
		}
		e.notes = append(e.notes, "tasks not scored under expert parallelism (each rank holds only its experts); score them on a checkpoint with moetrain eval")
	default:
		ts, err := tasks.LoadDir(filepath.Join(dir, "tasks"), o.Tasks)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrTaskSetup, err)
		}
		eos := man.Tokenizer.EOS
		for _, t := range ts {
			p, err := tasks.Prepare(t, tok, tasks.Options{Prefix: []int{eos}, StopTokens: []int{eos}, Context: cfg.Train.SeqLen, Limit: o.TaskLimit, Truncate: o.Truncate})
			if err != nil {
				return nil, fmt.Errorf("%w: %w", ErrTaskSetup, err)
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

// Close releases the graphs.
func (e *Evaluator) Close() { e.scorer.Close() }

// HeldOut scores up to maxTokens predicted tokens of the validation split
// (0 = the whole split), always the same windows in the same order. With
// domains, each domain's validation text is also scored alone, up to
// maxTokens/len(domains) tokens each.
func (e *Evaluator) HeldOut(maxTokens int64, domains bool) (Result, error) {
	if e.heldOutErr != nil {
		return Result{}, e.heldOutErr
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
	res.Domains = map[string]Result{}
	for _, d := range doms {
		r, err := e.score(map[string]float64{d: 1}, per)
		if err != nil {
			return res, fmt.Errorf("domain %s: %w", d, err)
		}
		res.Domains[d] = r
	}
	return res, nil
}

// score scores the validation split (one domain when weights names one).
func (e *Evaluator) score(weights map[string]float64, maxTokens int64) (Result, error) {
	p, err := e.scorer.Score(Windows{Dir: e.dir, Weights: weights, Batch: e.cfg.Train.MicroBatch(), MaxTokens: maxTokens}, e.targetBytes, false)
	if err != nil {
		return Result{}, err
	}
	return Result{Loss: p.Loss, BPB: BitsPerByte(p.Nats, p.Bytes), Tokens: p.Tokens, Bytes: p.Bytes}, nil
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
