package train

import (
	"errors"
	"fmt"
	"math"
	"sort"

	"github.com/moetrain/moetrain/configs"
	"github.com/moetrain/moetrain/data"
	"github.com/moetrain/moetrain/evaluate"
	"github.com/moetrain/moetrain/internal/units"
	"github.com/moetrain/moetrain/model"
	"github.com/moetrain/moetrain/model/ops"
	"github.com/moetrain/moetrain/rundir"
)

// newEvaluator is the trainer's evaluator: the config's dataset and tasks.
// Task contexts longer than train.seq_len are cut (and logged): built-in
// tasks are made without knowing the model, and a run should not refuse to
// start over them. A sharded model evaluates over its group's comm.
func newEvaluator(m *model.Model, cfg configs.Config, comm ops.EPComm) (*evaluate.Evaluator, error) {
	return evaluate.New(m, cfg, evaluate.Options{Tasks: cfg.Eval.Tasks, Truncate: true, ExpertComm: comm})
}

// evalSetupFatal reports whether newEvaluator's error must stop the run (a
// bad task file, an unknown task name, a swapped tokenizer or a damaged
// validation shard) rather than only disable
// evaluation.
func evalSetupFatal(err error) bool {
	return errors.Is(err, evaluate.ErrTaskSetup) || errors.Is(err, data.ErrTokenizerMismatch) || errors.Is(err, data.ErrCorruptShard)
}

// evaluate scores the held-out split and the tasks at the current token
// count, appends the results to the metrics and logs them. It runs every
// eval.every_tokens and at the end of training.
func (t *trainer) evaluate() (evaluate.Result, error) {
	e := t.eval
	heldOut, why := e.HasHeldOut()
	if !t.evalWarned {
		if !heldOut {
			t.logf("warning: no held-out evaluation: %v", why)
		}
		for _, n := range e.Notes() {
			t.logf("note: %s", n)
		}
		t.evalWarned = true
	}
	write := func(task, metric string, v float64) error {
		m := rundir.Metrics{Kind: "eval", Tokens: t.state.Tokens, Step: t.state.Step, Task: task, Metric: metric, Value: &v}
		if math.IsNaN(v) || math.IsInf(v, 0) {
			// JSON has no NaN: a diverged model's score is a line without a value.
			t.logf("warning: %s %s is not finite (%g)", task, metric, v)
			m.Value = nil
		}
		return t.metrics.Write(m)
	}
	var ev evaluate.Result
	if heldOut {
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
