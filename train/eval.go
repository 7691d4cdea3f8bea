package train

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"path/filepath"

	"github.com/moetrain/moetrain/configs"
	"github.com/moetrain/moetrain/data"
	"github.com/moetrain/moetrain/data/tokenizer"
	"github.com/moetrain/moetrain/model"
)

// EvalResult is a held-out evaluation.
type EvalResult struct {
	Loss       float64            `json:"loss"`          // mean cross-entropy per token (nats)
	BPB        float64            `json:"bits_per_byte"` // loss·tokens / (bytes·ln 2), tokenizer-independent
	Tokens     int64              `json:"tokens"`
	Bytes      int64              `json:"bytes"`
	DomainLoss map[string]float64 `json:"domain_loss,omitempty"`
}

// evaluator scores the validation split with forward-only graphs that share
// the model's weights.
type evaluator struct {
	m      *model.Model
	cfg    configs.Config
	tok    *tokenizer.Tokenizer
	graphs map[int]*model.Graph // by batch size (the last batch may be short)
}

func newEvaluator(m *model.Model, cfg configs.Config) (*evaluator, error) {
	man, err := data.LoadManifest(cfg.Data.Path)
	if err != nil {
		return nil, err
	}
	if man.Splits["validation"].Tokens == 0 {
		return nil, errors.New("the dataset has no validation split")
	}
	tok, err := tokenizer.Load(filepath.Join(cfg.Data.Path, man.Tokenizer.File))
	if err != nil {
		return nil, err
	}
	return &evaluator{m: m, cfg: cfg, tok: tok, graphs: map[int]*model.Graph{}}, nil
}

func (e *evaluator) graph(b int) (*model.Graph, error) {
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

func (e *evaluator) close() {
	for _, g := range e.graphs {
		g.Close()
	}
}

// heldOut scores up to maxTokens predicted tokens of the validation split,
// always the same windows in the same order (0 = the whole split).
func (e *evaluator) heldOut(maxTokens int64) (EvalResult, error) {
	var res EvalResult
	T := e.cfg.Train.SeqLen
	s, err := data.Open(data.StreamConfig{Dir: e.cfg.Data.Path, Split: "validation", SeqLen: T,
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
			for _, id := range b.Tokens[row*(T+1)+1 : (row+1)*(T+1)] {
				res.Bytes += int64(len(e.tok.TokenBytes(int(id))))
			}
		}
		if errors.Is(err, io.EOF) {
			break
		}
	}
	if res.Tokens == 0 {
		return res, fmt.Errorf("the validation split of %s has no window of %d tokens", e.cfg.Data.Path, T+1)
	}
	res.Loss = nats / float64(res.Tokens)
	if res.Bytes > 0 {
		res.BPB = nats / (float64(res.Bytes) * math.Ln2)
	}
	return res, nil
}

// evaluate scores the held-out split at the current token count, appends the
// results to the metrics and logs them. It runs every eval.every_tokens and
// at the end of training.
func (t *trainer) evaluate() (EvalResult, error) {
	ev, err := t.eval.heldOut(t.cfg.Eval.Tokens)
	if err != nil {
		return ev, fmt.Errorf("evaluate: %w", err)
	}
	for _, m := range []struct {
		name string
		v    float64
	}{{"loss", ev.Loss}, {"bits_per_byte", ev.BPB}} {
		v := m.v
		if err := t.metrics.write(Metrics{Kind: "eval", Tokens: t.state.Tokens, Step: t.state.Step, Task: "heldout", Metric: m.name, Value: &v}); err != nil {
			return ev, err
		}
	}
	for dom, l := range ev.DomainLoss {
		v := l
		if err := t.metrics.write(Metrics{Kind: "eval", Tokens: t.state.Tokens, Step: t.state.Step, Task: "heldout/" + dom, Metric: "loss", Value: &v}); err != nil {
			return ev, err
		}
	}
	t.logf("eval at %s tokens: held-out loss %.4f, %.4f bits/byte (%s tokens)", commas(t.state.Tokens), ev.Loss, ev.BPB, commas(ev.Tokens))
	return ev, nil
}

func jsonUnmarshal(raw []byte, v any) error { return json.Unmarshal(raw, v) }
