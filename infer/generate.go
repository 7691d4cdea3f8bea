package infer

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sort"
)

// Sampler picks the next token from logits: greedily (Temperature 0), or
// from softmax(logits/Temperature) restricted to the smallest set of most
// probable tokens whose probabilities sum to at least TopP (nucleus
// sampling; TopP 1 or 0 keeps every token).
type Sampler struct {
	Temperature float64
	TopP        float64
	rng         *rand.Rand
	probs       []float64
	order       []int
}

// NewSampler checks the settings; seed fixes the draws.
func NewSampler(temperature, topP float64, seed uint64) (*Sampler, error) {
	if math.IsNaN(temperature) || temperature < 0 {
		return nil, fmt.Errorf("temperature %g: want >= 0 (0 is greedy)", temperature)
	}
	if math.IsNaN(topP) || topP < 0 || topP > 1 {
		return nil, fmt.Errorf("top-p %g: want a value in (0, 1] (0 means 1)", topP)
	}
	if topP == 0 {
		topP = 1
	}
	return &Sampler{Temperature: temperature, TopP: topP, rng: rand.New(rand.NewPCG(seed, 0x67656e))}, nil
}

// Argmax returns the index of the largest logit; ties go to the lowest
// index and NaN never wins (0 when every logit is NaN).
func Argmax(logits []float32) int {
	best := 0
	for i, v := range logits {
		if v > logits[best] || math.IsNaN(float64(logits[best])) && !math.IsNaN(float64(v)) {
			best = i
		}
	}
	return best
}

// Pick returns the next token for logits.
func (s *Sampler) Pick(logits []float32) int {
	if s.Temperature == 0 {
		return Argmax(logits)
	}
	v := len(logits)
	if cap(s.probs) < v {
		s.probs, s.order = make([]float64, v), make([]int, v)
	}
	p, order := s.probs[:v], s.order[:v]
	m := float64(logits[Argmax(logits)])
	var sum float64
	for i, l := range logits {
		x := math.Exp((float64(l) - m) / s.Temperature)
		if math.IsNaN(x) {
			x = 0
		}
		p[i] = x
		sum += x
	}
	for i := range order {
		order[i] = i
	}
	// Most probable first; equal probabilities in id order, so the draw
	// depends only on the seed.
	sort.SliceStable(order, func(a, b int) bool { return p[order[a]] > p[order[b]] })
	keep, mass := v, 0.0
	if s.TopP < 1 {
		for i, id := range order {
			mass += p[id] / sum
			if mass >= s.TopP {
				keep = i + 1
				break
			}
		}
	}
	var kept float64
	for _, id := range order[:keep] {
		kept += p[id]
	}
	u := s.rng.Float64() * kept
	for _, id := range order[:keep] {
		u -= p[id]
		if u < 0 {
			return id
		}
	}
	return order[keep-1]
}

// GenerateOptions configure Generate.
type GenerateOptions struct {
	MaxTokens int // the most tokens generated
	Sampler   *Sampler
	// Stop ids end generation; the stop token is returned and emitted.
	Stop []int
}

// Generate empties the cache, feeds prompt and generates up to MaxTokens
// tokens, calling emit (when non-nil) with each as soon as it is chosen;
// emit returning false stops. It also stops after a Stop id and when the
// cache is full (not an error: the tokens so far are the result). It
// returns the generated tokens.
func (d *Decoder) Generate(prompt []int, o GenerateOptions, emit func(id int) bool) ([]int, error) {
	if len(prompt) == 0 {
		return nil, errors.New("infer: empty prompt")
	}
	if o.Sampler == nil {
		return nil, errors.New("infer: no sampler")
	}
	d.Reset()
	if err := d.Feed(prompt); err != nil {
		return nil, err
	}
	var out []int
	for len(out) < o.MaxTokens {
		id := o.Sampler.Pick(d.Logits())
		out = append(out, id)
		if emit != nil && !emit(id) || slices.Contains(o.Stop, id) || len(out) == o.MaxTokens || d.n == d.capacity {
			break
		}
		if err := d.Feed([]int{id}); err != nil {
			return out, err
		}
	}
	return out, nil
}

// LM scores and decodes with a Decoder: the tasks package's model.
type LM struct {
	D *Decoder
}

// Context is the decoder's capacity.
func (l *LM) Context() int { return l.D.capacity }

// LogLikelihoods feeds the context once and each continuation after it
// (truncating the cache back to the context in between), and sums each
// continuation's token log-probabilities.
func (l *LM) LogLikelihoods(ctx []int, conts [][]int) ([]float64, error) {
	if len(ctx) == 0 {
		return nil, errors.New("infer: log-likelihood with an empty context")
	}
	d := l.D
	d.Reset()
	if len(ctx) > 1 {
		if err := d.Feed(ctx[:len(ctx)-1]); err != nil {
			return nil, err
		}
	}
	base := d.Len()
	out := make([]float64, len(conts))
	for i, c := range conts {
		if len(c) == 0 {
			return nil, fmt.Errorf("infer: continuation %d is empty", i)
		}
		d.Truncate(base)
		// The context's last token predicts the continuation's first.
		in := append([]int{ctx[len(ctx)-1]}, c[:len(c)-1]...)
		if err := d.Feed(in); err != nil {
			return nil, err
		}
		lp, err := d.LogProbs(c)
		if err != nil {
			return nil, err
		}
		for _, x := range lp {
			out[i] += x
		}
	}
	return out, nil
}

// Greedy decodes greedily after prompt until stop says so, maxTokens
// tokens, or the context is full.
func (l *LM) Greedy(prompt []int, maxTokens int, stop func([]int) bool) ([]int, error) {
	var gen []int
	s := &Sampler{}
	return l.D.Generate(prompt, GenerateOptions{MaxTokens: maxTokens, Sampler: s}, func(id int) bool {
		gen = append(gen, id)
		return stop == nil || !stop(gen)
	})
}
