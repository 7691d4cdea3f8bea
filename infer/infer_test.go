package infer

import (
	"errors"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"gorgonia.org/tensor"

	"github.com/moetrain/moetrain/configs"
	"github.com/moetrain/moetrain/internal/tol"
	"github.com/moetrain/moetrain/model"
)

var kinds = []string{configs.FFNDense, configs.FFNDeepSeekMoE, configs.FFNGShard, configs.FFNSwitch, configs.FFNHash}

// v3Kind is tinyModel's DeepSeekMoE with DeepSeek-V3's routing: sigmoid
// scores, a gate scale and a selection bias (set to distinct values).
const v3Kind = "deepseekmoe-v3"

// tinyModel is a random float32 model of the given FFN kind. The weights are
// drawn wider than the training init so that logits and router
// probabilities are far apart compared with float32 rounding (greedy and
// top-k choices are then not decided by summation order).
func tinyModel(t *testing.T, ffn string) *model.Model {
	t.Helper()
	c := configs.Default().Model
	v3 := ffn == v3Kind
	if v3 {
		ffn = configs.FFNDeepSeekMoE
		c.Router = configs.Router{Score: configs.ScoreSigmoid, Scale: 2.5, BiasRate: 0.001}
	}
	c.VocabSize, c.Hidden, c.Layers, c.Heads, c.DenseWidth, c.FFN = 97, 32, 3, 4, 48, ffn
	c.InitStd, c.InitSeed = 0.15, 7
	switch ffn {
	case configs.FFNDeepSeekMoE:
		c.SharedExperts, c.RoutedExperts, c.ActiveRouted, c.ExpertWidth, c.FirstDenseLayers = 1, 6, 2, 16, 1
	case configs.FFNGShard:
		c.RoutedExperts, c.ActiveRouted, c.ExpertWidth = 4, 2, 24
	case configs.FFNSwitch:
		c.RoutedExperts, c.ActiveRouted, c.ExpertWidth = 4, 1, 24
	case configs.FFNHash:
		c.RoutedExperts, c.ActiveRouted, c.ExpertWidth = 4, 1, 24
	}
	m, err := model.New(c, tensor.Float32)
	if err != nil {
		t.Fatal(err)
	}
	// Norm weights away from 1, so a mix-up of the norms shows.
	r := rand.New(rand.NewPCG(3, 4))
	for i, p := range m.Layout {
		if p.Buffer {
			for j, d := 0, m.Values[i].Data().([]float32); j < len(d); j++ {
				d[j] = float32(0.2 * r.Float64())
			}
		}
		if p.Kind == "norm" {
			for j, d := 0, m.Values[i].Data().([]float32); j < len(d); j++ {
				d[j] = float32(0.5 + r.Float64())
			}
		}
	}
	return m
}

// graphLogits runs the training graph on tokens (T inputs; the targets are
// irrelevant) and returns its [T, V] logits as float64.
func graphLogits(t *testing.T, m *model.Model, tokens []int) []float64 {
	t.Helper()
	T := len(tokens)
	g, err := m.Build(model.GraphOptions{Batch: 1, Seq: T, Logits: true})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	in := make([]int32, T+1)
	for i, id := range tokens {
		in[i] = int32(id)
	}
	if _, err := g.Run(in); err != nil {
		t.Fatal(err)
	}
	lg, err := g.Logits()
	if err != nil {
		t.Fatal(err)
	}
	return f64(lg.Data().([]float32))
}

func f64(x []float32) []float64 {
	out := make([]float64, len(x))
	for i, v := range x {
		out[i] = float64(v)
	}
	return out
}

func randomTokens(seed uint64, n, v int) []int {
	r := rand.New(rand.NewPCG(seed, 1))
	out := make([]int, n)
	for i := range out {
		out[i] = r.IntN(v)
	}
	return out
}

// float32 agreement: the cache path and the graph sum in different orders
// (attention row by row against a whole-sequence op, float64 vs float32
// sigmoid), so logits of magnitude ~1-10 differ by ~1e-5.
var logitTol = 2e-4

// The cache gives the graph's logits whether the prompt is fed at once,
// token by token, or in uneven chunks.
func TestLogitsMatchGraph(t *testing.T) {
	for _, kind := range append(slices.Clone(kinds), v3Kind) {
		t.Run(kind, func(t *testing.T) {
			m := tinyModel(t, kind)
			V := m.Cfg.VocabSize
			toks := randomTokens(11, 19, V)
			want := graphLogits(t, m, toks)
			for _, chunks := range [][]int{{19}, slices.Repeat([]int{1}, 19), {5, 1, 9, 4}} {
				d, err := New(m, 19)
				if err != nil {
					t.Fatal(err)
				}
				var got []float64
				pos := 0
				for _, c := range chunks {
					if err := d.Feed(toks[pos : pos+c]); err != nil {
						t.Fatal(err)
					}
					all, err := d.AllLogits()
					if err != nil {
						t.Fatal(err)
					}
					got = append(got, f64(all)...)
					if err := tol.CheckScaled("Logits against AllLogits", f64(d.Logits()), got[len(got)-V:], 1e-5); err != nil {
						t.Fatalf("chunks %v: %v", chunks, err)
					}
					pos += c
				}
				if err := tol.CheckScaled("logits", got, want, logitTol); err != nil {
					t.Errorf("chunks %v: %v", chunks, err)
				}
			}
		})
	}
}

// Greedy decoding with the cache picks the same tokens as re-running the
// whole graph on the growing prefix and taking the argmax of its last row.
func TestGreedyMatchesGraph(t *testing.T) {
	const prompt, steps = 5, 12
	for _, kind := range kinds {
		t.Run(kind, func(t *testing.T) {
			m := tinyModel(t, kind)
			V := m.Cfg.VocabSize
			seq := randomTokens(21, prompt, V)
			var want []int
			for range steps {
				lg := graphLogits(t, m, seq)
				last := make([]float32, V)
				for i := range last {
					last[i] = float32(lg[len(lg)-V+i])
				}
				id := Argmax(last)
				want = append(want, id)
				seq = append(seq, id)
			}
			d, err := New(m, prompt+steps)
			if err != nil {
				t.Fatal(err)
			}
			s, _ := NewSampler(0, 1, 0)
			got, err := d.Generate(seq[:prompt], GenerateOptions{MaxTokens: steps, Sampler: s}, nil)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, want) {
				t.Fatalf("cache %v, graph %v", got, want)
			}
			if len(slices.Compact(slices.Clone(want))) < 3 {
				t.Logf("note: the greedy sequence is nearly constant: %v", want)
			}
		})
	}
}

// LogLikelihoods equals the sum of the continuation's log-softmax entries of
// the graph's logits over the whole sequence (float64 log-softmax here).
func TestLogLikelihoodMatchesGraph(t *testing.T) {
	for _, kind := range []string{configs.FFNDense, configs.FFNDeepSeekMoE, configs.FFNHash} {
		t.Run(kind, func(t *testing.T) {
			m := tinyModel(t, kind)
			V := m.Cfg.VocabSize
			ctx := randomTokens(31, 7, V)
			conts := [][]int{randomTokens(32, 1, V), randomTokens(33, 4, V), randomTokens(34, 9, V)}
			d, err := New(m, 16)
			if err != nil {
				t.Fatal(err)
			}
			lm := &LM{D: d}
			got, err := lm.LogLikelihoods(ctx, conts)
			if err != nil {
				t.Fatal(err)
			}
			for i, c := range conts {
				all := append(slices.Clone(ctx), c...)
				lg := graphLogits(t, m, all[:len(all)-1])
				var want float64
				for j, id := range c {
					row := lg[(len(ctx)-1+j)*V : (len(ctx)+j)*V]
					want += row[id] - logSumExp(row)
				}
				if !(tol.Tol{Abs: 1e-4, Rel: 1e-5}).Close(got[i], want) {
					t.Errorf("continuation %d: got %.7f, want %.7f", i, got[i], want)
				}
			}
		})
	}
}

func logSumExp(x []float64) float64 {
	m := slices.Max(x)
	var s float64
	for _, v := range x {
		s += math.Exp(v - m)
	}
	return m + math.Log(s)
}

func TestFeedErrors(t *testing.T) {
	m := tinyModel(t, configs.FFNDense)
	d, err := New(m, 4)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Feed([]int{1, 2, 3, 4, 5}); err == nil {
		t.Error("feeding past the capacity: no error")
	}
	if err := d.Feed([]int{1, m.Cfg.VocabSize}); err == nil {
		t.Error("an id outside the vocabulary: no error")
	}
	if err := d.Feed(nil); err == nil {
		t.Error("feeding nothing: no error")
	}
	if d.Len() != 0 {
		t.Errorf("failed feeds left %d positions cached", d.Len())
	}
	if _, err := d.LogProbs([]int{1}); err == nil {
		t.Error("log-probs without a feed: no error")
	}
	if _, err := New(m, 0); err == nil {
		t.Error("capacity 0: no error")
	}
	m64, err := model.New(m.Cfg, tensor.Float64)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := New(m64, 4); err == nil {
		t.Error("a float64 model: no error")
	}
}

// Generation stops at the capacity without an error, and at a stop id.
func TestGenerateStops(t *testing.T) {
	m := tinyModel(t, configs.FFNSwitch)
	d, _ := New(m, 6)
	s, _ := NewSampler(0, 1, 0)
	got, err := d.Generate([]int{1, 2, 3}, GenerateOptions{MaxTokens: 50, Sampler: s}, nil)
	if err != nil {
		t.Fatal(err)
	}
	// 3 prompt positions + 3 fed generated tokens fill 6; a 4th is chosen
	// from the last position's logits.
	if len(got) != 4 {
		t.Fatalf("generated %d tokens with room for 6 positions after 3, want 4", len(got))
	}
	got2, err := d.Generate([]int{1, 2, 3}, GenerateOptions{MaxTokens: 50, Sampler: s, Stop: []int{got[1]}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got2, got[:2]) {
		t.Fatalf("with stop id %d: got %v, want %v", got[1], got2, got[:2])
	}
}

// Sampling: temperature 0 is the argmax; a fixed seed repeats; top-p close
// to 0 keeps only the most probable token; the empirical frequencies at
// temperature 1 follow the softmax.
func TestSampler(t *testing.T) {
	logits := []float32{0.5, 2, -1, 2, 1}
	g, _ := NewSampler(0, 1, 1)
	if id := g.Pick(logits); id != 1 {
		t.Errorf("greedy picked %d, want 1 (first of the tied maxima)", id)
	}
	a, _ := NewSampler(1, 1, 9)
	b, _ := NewSampler(1, 1, 9)
	counts := make([]float64, len(logits))
	const n = 20000
	for range n {
		x, y := a.Pick(logits), b.Pick(logits)
		if x != y {
			t.Fatal("the same seed drew different tokens")
		}
		counts[x]++
	}
	var z float64
	for _, l := range logits {
		z += math.Exp(float64(l))
	}
	for i, l := range logits {
		p := math.Exp(float64(l)) / z
		// 5 standard deviations of a binomial frequency.
		if sd := math.Sqrt(p * (1 - p) / n); math.Abs(counts[i]/n-p) > 5*sd {
			t.Errorf("token %d drawn %.4f of the time, want %.4f", i, counts[i]/n, p)
		}
	}
	top, _ := NewSampler(1, 0.01, 3)
	for range 100 {
		if id := top.Pick(logits); id != 1 && id != 3 {
			t.Fatalf("top-p 0.01 picked %d, want the most probable token", id)
		}
	}
	for _, bad := range [][2]float64{{-1, 1}, {1, 1.5}, {math.NaN(), 1}} {
		if _, err := NewSampler(bad[0], bad[1], 0); err == nil {
			t.Errorf("NewSampler(%g, %g): no error", bad[0], bad[1])
		}
	}
}

// An expert-choice model cannot be decoded token by token: New refuses it,
// saying why.
func TestExpertChoiceIsRefused(t *testing.T) {
	c := tinyModel(t, configs.FFNGShard).Cfg
	c.Router.ExpertChoice = true
	m, err := model.New(c, tensor.Float32)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := New(m, 16); !errors.Is(err, ErrExpertChoice) || !strings.Contains(err.Error(), "future tokens") {
		t.Errorf("got %v, want ErrExpertChoice", err)
	}
}
