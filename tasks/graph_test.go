package tasks_test

import (
	"encoding/json"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"gorgonia.org/tensor"

	"github.com/moetrain/moetrain/configs"
	"github.com/moetrain/moetrain/infer"
	"github.com/moetrain/moetrain/model"
	"github.com/moetrain/moetrain/tasks"
)

type bytes1 struct{}

func (bytes1) Encode(s string) []int {
	out := make([]int, len(s))
	for i := range len(s) {
		out[i] = int(s[i])
	}
	return out
}

func (bytes1) Decode(ids []int) string {
	b := make([]byte, len(ids))
	for i, id := range ids {
		b[i] = byte(id)
	}
	return string(b)
}

// The task scores of a real model through the KV cache equal those computed
// from the training graph's logits: for every example, each choice's
// log-likelihood is the direct sum of its tokens' log-softmax entries of
// the graph run on prefix + preamble + context + choice.
func TestScoresMatchGraph(t *testing.T) {
	c := configs.Default().Model
	c.VocabSize, c.Hidden, c.Layers, c.Heads, c.DenseWidth = 256, 32, 2, 2, 48
	c.FFN, c.SharedExperts, c.RoutedExperts, c.ActiveRouted, c.ExpertWidth = configs.FFNDeepSeekMoE, 1, 6, 2, 16
	c.InitStd = 0.1
	m, err := model.New(c, tensor.Float32)
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(5, 5))
	word := func() string {
		n := 1 + r.IntN(6)
		var b strings.Builder
		b.WriteByte(' ')
		for range n {
			b.WriteByte(byte('a' + r.IntN(26)))
		}
		return b.String()
	}
	var lines []string
	lines = append(lines, `{"fewshot": 2, "separator": "\n"}`)
	for range 14 {
		ex := map[string]any{"context": "Q:" + word() + word(), "choices": []string{word(), word(), word()}, "gold": r.IntN(3)}
		b, _ := json.Marshal(ex)
		lines = append(lines, string(b))
	}
	tk, err := tasks.Parse(strings.NewReader(strings.Join(lines, "\n")), "graph.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	const prefix = 0
	ctxLen := 64
	p, err := tasks.Prepare(tk, bytes1{}, tasks.Options{Prefix: []int{prefix}, Context: ctxLen})
	if err != nil {
		t.Fatal(err)
	}
	d, err := infer.New(m, ctxLen)
	if err != nil {
		t.Fatal(err)
	}
	res, err := p.Evaluate(&infer.LM{D: d})
	if err != nil {
		t.Fatal(err)
	}

	var acc, norm float64
	pre := tk.Preamble()
	for _, ex := range tk.Scored() {
		ctx := append([]int{prefix}, bytes1{}.Encode(pre+ex.Context)...)
		var best, bestNorm int
		bv, bn := math.Inf(-1), math.Inf(-1)
		for i, ch := range ex.Choices {
			all := append(append([]int(nil), ctx...), bytes1{}.Encode(ch)...)
			ll := graphSum(t, m, all, len(ctx))
			if ll > bv {
				best, bv = i, ll
			}
			if ll/float64(len(ch)) > bn {
				bestNorm, bn = i, ll/float64(len(ch))
			}
		}
		if best == ex.Gold {
			acc++
		}
		if bestNorm == ex.Gold {
			norm++
		}
	}
	n := float64(len(tk.Scored()))
	if got, _ := res.Get("acc"); got != acc/n {
		t.Errorf("acc %g, graph %g", got, acc/n)
	}
	if got, _ := res.Get("acc_norm"); got != norm/n {
		t.Errorf("acc_norm %g, graph %g", got, norm/n)
	}
	t.Logf("acc %g acc_norm %g over %d examples", acc/n, norm/n, int(n))
}

// graphSum runs the graph on all but the last token and sums
// log softmax(logits)[next] over the positions from ctxLen on.
func graphSum(t *testing.T, m *model.Model, all []int, ctxLen int) float64 {
	t.Helper()
	T := len(all) - 1
	g, err := m.Build(model.GraphOptions{Batch: 1, Seq: T, Logits: true})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	in := make([]int32, T+1)
	for i, id := range all {
		in[i] = int32(id)
	}
	if _, err := g.Run(in); err != nil {
		t.Fatal(err)
	}
	lt, err := g.Logits()
	if err != nil {
		t.Fatal(err)
	}
	lg, V := lt.Data().([]float32), m.Cfg.VocabSize
	var sum float64
	for pos := ctxLen - 1; pos < T; pos++ {
		row := lg[pos*V : (pos+1)*V]
		mx := math.Inf(-1)
		for _, v := range row {
			mx = math.Max(mx, float64(v))
		}
		var z float64
		for _, v := range row {
			z += math.Exp(float64(v) - mx)
		}
		sum += float64(row[all[pos+1]]) - mx - math.Log(z)
	}
	return sum
}
