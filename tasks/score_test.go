package tasks

import (
	"errors"
	"math"
	"strings"
	"testing"
)

// byteTok is a tokenizer with one token per byte.
type byteTok struct{}

func (byteTok) Encode(s string) []int {
	out := make([]int, len(s))
	for i := range len(s) {
		out[i] = int(s[i])
	}
	return out
}

func (byteTok) Decode(ids []int) string {
	b := make([]byte, len(ids))
	for i, id := range ids {
		b[i] = byte(id)
	}
	return string(b)
}

// fakeLM scores a continuation by a table keyed by its text and "generates"
// a fixed text per prompt; it records the contexts it was given.
type fakeLM struct {
	ctx    int
	ll     map[string]float64
	gen    map[string]string
	seen   []string
	calls  int
	tokens int // tokens generated in all
}

func (f *fakeLM) Context() int { return f.ctx }

func (f *fakeLM) LogLikelihoods(ctx []int, conts [][]int) ([]float64, error) {
	f.seen = append(f.seen, byteTok{}.Decode(ctx))
	out := make([]float64, len(conts))
	for i, c := range conts {
		v, ok := f.ll[byteTok{}.Decode(c)]
		if !ok {
			return nil, errors.New("unexpected continuation " + byteTok{}.Decode(c))
		}
		out[i] = v
	}
	return out, nil
}

func (f *fakeLM) Greedy(prompt []int, maxTokens int, stop func([]int) bool) ([]int, error) {
	f.calls++
	p := byteTok{}.Decode(prompt)
	f.seen = append(f.seen, p)
	var gen []int
	for _, id := range (byteTok{}).Encode(f.gen[p]) {
		if len(gen) == maxTokens {
			break
		}
		gen = append(gen, id)
		f.tokens++
		if stop(gen) {
			break
		}
	}
	return gen, nil
}

// acc takes the largest total log-likelihood, acc_norm the largest per
// byte; the contexts carry the prefix and the few-shot preamble.
func TestMultipleChoiceMetrics(t *testing.T) {
	tk := parse(t, `{"fewshot": 1, "separator": "|"}
{"context": "Q0", "choices": [" x", " y"], "gold": 1}
{"context": "Q1", "choices": [" a", " bbbbbbb"], "gold": 1}
{"context": "Q2", "choices": [" a", " bbbbbbb"], "gold": 0}
{"context": "Q3", "choices": [" cc", " a", " dd"], "gold": 2}
{"context": "Q4", "choices": [" cc", " dd"], "gold": 0}`)
	// " a": -2 total, -1 per byte; " bbbbbbb": -3 total, -0.375 per byte;
	// " cc" and " dd" tie: the first wins.
	lm := &fakeLM{ctx: 100, ll: map[string]float64{" a": -2, " bbbbbbb": -3, " cc": -6, " dd": -6}}
	p, err := Prepare(tk, byteTok{}, Options{Prefix: []int{0}, Context: 100})
	if err != nil {
		t.Fatal(err)
	}
	res, err := p.Evaluate(lm)
	if err != nil {
		t.Fatal(err)
	}
	// acc: Q1 " a" (wrong), Q2 " a" (right), Q3 " cc" (wrong), Q4 " cc" (right).
	// acc_norm: Q1 " bbbbbbb" (right), Q2 (wrong), Q3 " a" -2/2=-1 vs -2 (wrong), Q4 right.
	if acc, _ := res.Get("acc"); acc != 0.5 {
		t.Errorf("acc %g, want 0.5", acc)
	}
	if an, _ := res.Get("acc_norm"); an != 0.5 {
		t.Errorf("acc_norm %g, want 0.5", an)
	}
	if res.Examples != 4 || math.Abs(res.Chance-(0.5+0.5+1.0/3+0.5)/4) > 1e-12 {
		t.Errorf("examples %d, chance %g", res.Examples, res.Chance)
	}
	if want := "\x00Q0 y|Q1"; lm.seen[0] != want {
		t.Errorf("first context %q, want %q", lm.seen[0], want)
	}
	p, _ = Prepare(tk, byteTok{}, Options{Context: 100, Limit: 2})
	if p.Examples() != 2 {
		t.Errorf("limit 2 prepared %d examples", p.Examples())
	}
}

// Exact match cuts the output at the first newline and trims both sides;
// decoding stops at the newline or a stop token.
func TestGenerateMetric(t *testing.T) {
	tk := parse(t, `{"prompt": "A:", "answers": ["4"]}
{"prompt": "B:", "answers": ["x", " 7 "]}
{"prompt": "C:", "answers": ["yes"]}
{"prompt": "D:", "answers": ["no"]}`)
	lm := &fakeLM{ctx: 100, gen: map[string]string{
		"A:": " 4 \nignored after the newline",
		"B:": "7",
		"C:": "yes!",
		"D:": "n\x01o", // \x01 is a stop token: "n" is the answer
	}}
	p, err := Prepare(tk, byteTok{}, Options{Context: 100, StopTokens: []int{1}})
	if err != nil {
		t.Fatal(err)
	}
	res, err := p.Evaluate(lm)
	if err != nil {
		t.Fatal(err)
	}
	if em, _ := res.Get("exact_match"); em != 0.5 {
		t.Errorf("exact_match %g, want 0.5", em)
	}
	// A stops at the newline (4 tokens), B 1, C 4, D at the stop token (2).
	if lm.tokens != 4+1+4+2 {
		t.Errorf("generated %d tokens, want 11: decoding did not stop at the newline or stop token", lm.tokens)
	}
	if !Match("  yes\t", []string{"no", " yes"}) || Match("ye", []string{"yes"}) {
		t.Error("Match")
	}
}

// An example longer than the context is an error naming its line.
func TestContextTooLong(t *testing.T) {
	tk := parse(t, `{"context": "short", "choices": [" a", " b"], "gold": 0}
{"context": "`+strings.Repeat("long ", 10)+`", "choices": [" a", " b"], "gold": 0}`)
	_, err := Prepare(tk, byteTok{}, Options{Prefix: []int{0}, Context: 20})
	var te *Error
	if !errors.As(err, &te) || te.Line != 2 || !strings.Contains(err.Error(), "demo.jsonl:2") || !strings.Contains(err.Error(), "context of 20") {
		t.Fatalf("got %v, want an error at demo.jsonl:2", err)
	}
	// With Truncate the long context loses its left end, down to what fits.
	p, err := Prepare(tk, byteTok{}, Options{Prefix: []int{0}, Context: 20, Truncate: true})
	if err != nil || p.Truncated != 1 {
		t.Fatalf("truncate: %v, %d truncated", err, p.Truncated)
	}
	lm := &fakeLM{ctx: 20, ll: map[string]float64{" a": -1, " b": -2}}
	if _, err := p.Evaluate(lm); err != nil {
		t.Fatal(err)
	}
	if got, want := lm.seen[1], strings.Repeat("long ", 10)[50-19:]; got != want {
		t.Errorf("truncated context %q, want the last 19 bytes %q", got, want)
	}
	wide := parse(t, `{"context": "x", "choices": ["`+strings.Repeat("c", 21)+`", " b"], "gold": 0}`)
	if _, err := Prepare(wide, byteTok{}, Options{Context: 20, Truncate: true}); err == nil {
		t.Error("a choice longer than the context: no error with Truncate")
	}
	// Beside examples that fit, such an example is left out and counted.
	mixed := parse(t, `{"context": "x", "choices": ["`+strings.Repeat("c", 21)+`", " b"], "gold": 0}
{"context": "short", "choices": [" a", " b"], "gold": 0}`)
	p, err = Prepare(mixed, byteTok{}, Options{Prefix: []int{0}, Context: 20, Truncate: true})
	if err != nil || p.Skipped != 1 || p.Examples() != 1 {
		t.Errorf("mixed: %v, %d skipped, %d examples; want 1 skipped, 1 kept", err, p.Skipped, p.Examples())
	}
	if _, err := Prepare(mixed, byteTok{}, Options{Prefix: []int{0}, Context: 20}); err == nil {
		t.Error("mixed without Truncate: no error")
	}
	// 1 prefix + 5 context + 2 choice tokens, minus the last: 7 positions.
	tk = parse(t, `{"context": "short", "choices": [" a", " b"], "gold": 0}`)
	if _, err := Prepare(tk, byteTok{}, Options{Prefix: []int{0}, Context: 7}); err != nil {
		t.Errorf("an example that fits exactly: %v", err)
	}
	if _, err := Prepare(tk, byteTok{}, Options{Prefix: []int{0}, Context: 6}); err == nil {
		t.Error("one position short: no error")
	}
	g := parse(t, `{"prompt": "`+strings.Repeat("p", 30)+`", "answers": ["abc"]}`)
	if _, err := Prepare(g, byteTok{}, Options{Context: 31}); err == nil || !strings.Contains(err.Error(), "demo.jsonl:1") {
		t.Errorf("a prompt with no room for the answer: %v", err)
	}
	if _, err := Prepare(g, byteTok{}, Options{Context: 32}); err != nil {
		t.Errorf("a prompt with room for the answer: %v", err)
	}
}
