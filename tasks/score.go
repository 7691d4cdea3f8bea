package tasks

import (
	"fmt"
	"math"
	"slices"
	"strings"
)

// Tokenizer is what scoring needs from a tokenizer.
type Tokenizer interface {
	Encode(text string) []int
	Decode(ids []int) string
}

// LM is what scoring needs from a model.
type LM interface {
	// Context is the most positions the model is run on at once.
	Context() int
	// LogLikelihoods returns, for each continuation, the sum over its tokens
	// of log p(token | ctx, earlier tokens of the continuation), in nats.
	LogLikelihoods(ctx []int, conts [][]int) ([]float64, error)
	// Greedy decodes up to maxTokens tokens after prompt, always taking the
	// most probable token, and stops early when stop returns true for the
	// tokens generated so far or the context is full.
	Greedy(prompt []int, maxTokens int, stop func(generated []int) bool) ([]int, error)
}

// Options set how a task is tokenized.
type Options struct {
	// Prefix is put before every context or prompt, after tokenization:
	// the dataset's end-of-document id, so that the model sees the start of
	// a document as it did in training.
	Prefix []int
	// StopTokens end generation (the dataset's end-of-document id).
	StopTokens []int
	// Context is the model's context in positions; an example that does not
	// fit is an error naming its line.
	Context int
	// Limit scores only the first Limit scored examples (0 = all).
	Limit int
	// Truncate cuts a context (or prompt) that does not fit from the left,
	// as lm-eval does, instead of failing; Prepared.Truncated counts them.
	// An example whose longest choice (or answer) alone exceeds the context
	// cannot fit at all: it is left out and counted in Prepared.Skipped.
	Truncate bool
}

// Prepared is a task tokenized and checked against a context length.
type Prepared struct {
	Task *Task
	// Truncated counts the examples whose context was cut to fit.
	Truncated int
	// Skipped counts the examples left out because a choice or answer
	// alone is longer than the context (only with Options.Truncate).
	Skipped int
	tok     Tokenizer
	opt     Options
	items   []item
}

type item struct {
	line  int
	ctx   []int   // prefix + preamble + context (or prompt)
	conts [][]int // multiple choice: each choice's tokens
	bytes []int   // multiple choice: each choice's length in bytes
	gold  int
}

// Prepare tokenizes the scored examples of t: each multiple-choice context
// is the prefix, the preamble (description and demonstrations) and the
// example's context, each choice a continuation of it; each generation
// prompt is the prefix, the preamble and the example's prompt. It fails,
// naming the line, when an example does not fit in o.Context positions.
func Prepare(t *Task, tok Tokenizer, o Options) (*Prepared, error) {
	if o.Context < 1 {
		return nil, fmt.Errorf("task %s: context %d: want >= 1", t.Name, o.Context)
	}
	p := &Prepared{Task: t, tok: tok, opt: o}
	pre := t.Preamble()
	ex := t.Scored()
	if o.Limit > 0 && o.Limit < len(ex) {
		ex = ex[:o.Limit]
	}
	for _, e := range ex {
		it := item{line: e.Line, gold: e.Gold}
		if t.Kind == MultipleChoice {
			text := pre + e.Context
			ctx := tok.Encode(text)
			longest := 0
			for _, c := range e.Choices {
				ct := continuation(tok, text, ctx, c)
				if len(ct) == 0 {
					return nil, errAt(t.File, e.Line, "choice %q has no tokens", c)
				}
				it.conts = append(it.conts, ct)
				it.bytes = append(it.bytes, len(c))
				longest = max(longest, len(ct))
			}
			it.ctx = append(slices.Clone(o.Prefix), ctx...)
			// The model reads every token but the last one.
			if n := len(it.ctx) + longest - 1; n > o.Context {
				if o.Truncate && longest > o.Context {
					p.Skipped++
					continue
				}
				if !o.Truncate {
					return nil, errAt(t.File, e.Line, "the example needs %d positions (%d context tokens with the few-shot preamble and the longest choice's %d), more than the model's context of %d%s", n, len(it.ctx), longest, o.Context, truncHint(o))
				}
				it.ctx = it.ctx[n-o.Context:]
				p.Truncated++
			}
			if len(it.ctx) == 0 {
				return nil, errAt(t.File, e.Line, "empty context and no prefix token: nothing to condition the first choice token on")
			}
		} else {
			it.ctx = append(slices.Clone(o.Prefix), tok.Encode(pre+e.Prompt)...)
			longest := 0
			for _, a := range e.Answers {
				longest = max(longest, len(tok.Encode(strings.TrimSpace(a))))
			}
			// Room to generate the longest answer (the last generated token
			// is never read back).
			if n := len(it.ctx) + longest - 1; n > o.Context {
				if o.Truncate && longest > o.Context {
					p.Skipped++
					continue
				}
				if !o.Truncate {
					return nil, errAt(t.File, e.Line, "the prompt needs %d positions (%d prompt tokens with the few-shot preamble, plus %d for the longest answer), more than the model's context of %d%s", n, len(it.ctx), longest, o.Context, truncHint(o))
				}
				it.ctx = it.ctx[n-o.Context:]
				p.Truncated++
			}
			if len(it.ctx) == 0 {
				return nil, errAt(t.File, e.Line, "empty prompt and no prefix token")
			}
		}
		p.items = append(p.items, it)
	}
	if len(p.items) == 0 && p.Skipped > 0 {
		return nil, fmt.Errorf("task %s (%s): none of its %d examples fits the model's context of %d positions", t.Name, t.File, p.Skipped, o.Context)
	}
	return p, nil
}

func truncHint(o Options) string {
	if o.Truncate {
		return ""
	}
	return " (contexts can instead be cut from the left to fit, as moetrain eval does without --strict)"
}

// continuation tokenizes choice c after context text the way lm-eval does:
// the tokens of text+c past the context's own tokens, so that a choice
// starting with a space gets the " word" tokens it would get in running
// text. When the context's tokens are not a prefix of the whole (a merge
// across the boundary), the choice is tokenized on its own.
func continuation(tok Tokenizer, text string, ctx []int, c string) []int {
	whole := tok.Encode(text + c)
	if len(whole) > len(ctx) && slices.Equal(whole[:len(ctx)], ctx) {
		return whole[len(ctx):]
	}
	return tok.Encode(c)
}

// Examples is the number of examples Evaluate scores.
func (p *Prepared) Examples() int { return len(p.items) }

// Metric is one named score of a task.
type Metric struct {
	Name  string  `json:"metric"`
	Value float64 `json:"value"`
}

// Result is a task's scores.
type Result struct {
	Task     string `json:"task"`
	Kind     string `json:"kind"`
	Examples int    `json:"examples"`
	// Chance is the expected accuracy of a uniform guess (multiple choice).
	Chance  float64  `json:"chance,omitempty"`
	Metrics []Metric `json:"metrics"`
}

// Get returns the named metric's value.
func (r Result) Get(name string) (float64, bool) {
	for _, m := range r.Metrics {
		if m.Name == name {
			return m.Value, true
		}
	}
	return 0, false
}

// Evaluate scores the prepared examples with lm.
//
// Multiple choice: "acc" is the share of examples whose gold choice has the
// highest total log-probability, "acc_norm" the same with each total divided
// by the choice's length in bytes (lm-eval's acc_norm). Ties go to the
// first choice. Generation: "exact_match" is the share of examples whose
// greedy output, cut at the first newline and trimmed of white space,
// equals one of the trimmed answers.
func (p *Prepared) Evaluate(lm LM) (Result, error) {
	t := p.Task
	res := Result{Task: t.Name, Kind: t.Kind, Examples: len(p.items)}
	if len(p.items) == 0 {
		return res, fmt.Errorf("task %s: no examples to score", t.Name)
	}
	if c := lm.Context(); c < p.opt.Context {
		return res, fmt.Errorf("task %s: prepared for a context of %d, the model has %d", t.Name, p.opt.Context, c)
	}
	if t.Kind == MultipleChoice {
		var acc, norm, chance float64
		for _, it := range p.items {
			lls, err := lm.LogLikelihoods(it.ctx, it.conts)
			if err != nil {
				return res, fmt.Errorf("task %s line %d: %w", t.Name, it.line, err)
			}
			if argmax(lls, nil) == it.gold {
				acc++
			}
			if argmax(lls, it.bytes) == it.gold {
				norm++
			}
			chance += 1 / float64(len(it.conts))
		}
		n := float64(len(p.items))
		res.Chance = chance / n
		res.Metrics = []Metric{{"acc", acc / n}, {"acc_norm", norm / n}}
		return res, nil
	}
	scored := t.Scored()
	var em float64
	for i, it := range p.items {
		gen, err := lm.Greedy(it.ctx, t.MaxTokens, p.stop)
		if err != nil {
			return res, fmt.Errorf("task %s line %d: %w", t.Name, it.line, err)
		}
		if Match(p.text(gen), scored[i].Answers) {
			em++
		}
	}
	res.Metrics = []Metric{{"exact_match", em / float64(len(p.items))}}
	return res, nil
}

// stop ends generation at a stop token or once the text holds a newline.
func (p *Prepared) stop(gen []int) bool {
	last := gen[len(gen)-1]
	if slices.Contains(p.opt.StopTokens, last) {
		return true
	}
	return strings.Contains(p.tok.Decode(gen[len(gen)-1:]), "\n")
}

// text decodes generated tokens without stop tokens, up to the first newline.
func (p *Prepared) text(gen []int) string {
	var ids []int
	for _, id := range gen {
		if slices.Contains(p.opt.StopTokens, id) {
			break
		}
		ids = append(ids, id)
	}
	s := p.tok.Decode(ids)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	return s
}

// Match reports whether generated text equals one of the answers after
// trimming white space on both.
func Match(text string, answers []string) bool {
	text = strings.TrimSpace(text)
	for _, a := range answers {
		if text == strings.TrimSpace(a) {
			return true
		}
	}
	return false
}

// argmax returns the index of the largest ll[i] (divided by div[i] when div
// is given); ties go to the lowest index, NaN never wins.
func argmax(ll []float64, div []int) int {
	best, bv := 0, math.Inf(-1)
	for i, v := range ll {
		if div != nil {
			v /= float64(div[i])
		}
		if v > bv {
			best, bv = i, v
		}
	}
	return best
}
