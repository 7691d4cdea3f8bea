package step

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"gorgonia.org/tensor"

	"github.com/moetrain/moetrain/configs"
	"github.com/moetrain/moetrain/internal/tol"
	"github.com/moetrain/moetrain/model"
	"github.com/moetrain/moetrain/optim"
)

// tinyMoE is a small DeepSeekMoE with per-sequence balance losses (whose
// mean over micro-batches is the whole batch's) and a clipping threshold
// low enough that clipping acts.
func tinyMoE() configs.Config {
	c := configs.Default()
	m := &c.Model
	m.VocabSize, m.Hidden, m.Layers, m.Heads, m.DenseWidth, m.FFN = 64, 16, 2, 2, 32, configs.FFNDeepSeekMoE
	m.SharedExperts, m.RoutedExperts, m.ActiveRouted, m.ExpertWidth = 1, 7, 3, 8
	m.Balance.ExpertAlpha, m.Balance.PerSequence = 0.01, true
	c.Optim.Clip = 0.5
	return c
}

const seq = 8

// newStep builds a Step whose graph takes rows sequences per micro-batch.
func newStep(t *testing.T, c configs.Config, rows, microBatches int) *Step {
	t.Helper()
	m, err := model.New(c.Model, tensor.Float32)
	if err != nil {
		t.Fatal(err)
	}
	g, err := m.Build(model.GraphOptions{Batch: rows, Seq: seq, Backward: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Close() })
	o := c.Optim
	s, err := New(m, g, optim.AdamWConfig{Beta1: o.Beta1, Beta2: o.Beta2, Eps: o.Eps, WeightDecay: o.WeightDecay}, o.Clip, microBatches)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// batches returns n random batches of rows sequences of seq+1 tokens.
func batches(n, rows, vocab int) [][]int32 {
	r := rand.New(rand.NewPCG(7, 16))
	out := make([][]int32, n)
	for i := range out {
		out[i] = make([]int32, rows*(seq+1))
		for k := range out[i] {
			out[i][k] = int32(r.IntN(vocab))
		}
	}
	return out
}

// split cuts a batch into micro-batches of rows sequences.
func split(batch []int32, rows int) [][]int32 {
	var out [][]int32
	for n := rows * (seq + 1); len(batch) > 0; batch = batch[n:] {
		out = append(out, batch[:n])
	}
	return out
}

func f64(xs []float32) []float64 {
	out := make([]float64, len(xs))
	for i, x := range xs {
		out[i] = float64(x)
	}
	return out
}

// compare checks every parameter's gradient (grads) or weights of got
// against want, each within rel of the tensor's largest magnitude.
func compare(got, want *Step, grads bool, rel float64) error {
	for j, p := range want.Params {
		w, g := p.Data, got.Params[j].Data
		if grads {
			w, g = p.Grad, got.Params[j].Grad
		}
		if err := tol.CheckScaled(p.Name, f64(g), f64(w), rel); err != nil {
			return err
		}
	}
	return nil
}

// gradTol and weightTol bound float32 summation-order differences between
// four micro-batches and one batch of four; a wrong accumulation scale is
// off by a factor (TestWrongScaleFails).
const gradTol, weightTol = 1e-5, 1e-5

// Four micro-batches of one sequence give the gradients of one batch of
// four, and five steps (AdamW with clipping) the same weights.
func TestMicroBatchesEqualOneBatch(t *testing.T) {
	c := tinyMoE()
	const B, steps = 4, 5
	whole := newStep(t, c, B, 1)
	micro := newStep(t, c, 1, B)
	for i, b := range batches(steps, B, c.Model.VocabSize) {
		rw, err := whole.Run([][]int32{b}, 3e-3)
		if err != nil {
			t.Fatal(err)
		}
		rm, err := micro.Run(split(b, 1), 3e-3)
		if err != nil {
			t.Fatal(err)
		}
		if !rw.Updated || !rm.Updated {
			t.Fatalf("step %d: not updated (loss %g/%g, norm %g/%g)", i, rw.Loss, rm.Loss, rw.Norm, rm.Norm)
		}
		if i == 0 && !(rw.Norm > c.Optim.Clip) {
			t.Fatalf("global norm %g does not exceed optim.clip %g: clipping is not exercised", rw.Norm, c.Optim.Clip)
		}
		lt := tol.Tol{Abs: 1e-6, Rel: 1e-5}
		if err := lt.CheckSlice(fmt.Sprintf("step %d loss, norm and balance", i),
			append([]float64{rm.Loss, rm.Norm}, rm.Balance...), append([]float64{rw.Loss, rw.Norm}, rw.Balance...)); err != nil {
			t.Error(err)
		}
		if err := compare(micro, whole, true, gradTol); err != nil {
			t.Errorf("step %d: accumulated gradients: %v", i, err)
		}
	}
	if err := compare(micro, whole, false, weightTol); err != nil {
		t.Errorf("weights after %d steps: %v", steps, err)
	}
	for j, p := range whole.Params {
		if fresh := newStep(t, c, 1, 1).Params[j].Data; slices.Equal(p.Data, fresh) {
			t.Errorf("%s unchanged after %d steps", p.Name, steps)
		}
		if j > 2 {
			break
		}
	}
}

// The comparison above fails when micro-batch gradients are accumulated
// with the wrong weight (as a sum of micro-batch means, not their mean).
func TestWrongScaleFails(t *testing.T) {
	c := tinyMoE()
	whole := newStep(t, c, 4, 1)
	wrong := newStep(t, c, 1, 1) // each of 4 micro-batches weighs 1
	b := batches(1, 4, c.Model.VocabSize)[0]
	if _, err := whole.Run([][]int32{b}, 3e-3); err != nil {
		t.Fatal(err)
	}
	if _, err := wrong.Run(split(b, 1), 3e-3); err != nil {
		t.Fatal(err)
	}
	if compare(wrong, whole, true, gradTol) == nil {
		t.Error("gradients summed over micro-batches pass as their mean")
	}
}

// recorder is a Reducer of one rank that records when the step hands it
// each gradient.
type recorder struct {
	s       *Step
	ready   []int
	lastAt0 []float32 // the last parameter's gradient when the first was ready
	reduced bool
	bad     string
}

func (r *recorder) GradReady(j int) {
	if r.reduced {
		r.bad = "GradReady after Reduce"
	}
	if j == 0 {
		r.lastAt0 = slices.Clone(r.s.Params[len(r.s.Params)-1].Grad)
	}
	r.ready = append(r.ready, j)
}

func (r *recorder) Reduce(sums []float64) error { r.reduced = true; return nil }

func (r *recorder) Norm(params []optim.Param) float64 { return optim.GlobalNorm(params) }

// Each gradient is handed to the reducer once, in order, as soon as its
// last micro-batch is in: the first one's reduction can overlap with
// accumulating the last one.
func TestReductionOverlapsAccumulation(t *testing.T) {
	c := tinyMoE()
	s := newStep(t, c, 1, 2)
	r := &recorder{s: s}
	s.Reducer = r
	if _, err := s.Run(split(batches(1, 2, c.Model.VocabSize)[0], 1), 3e-3); err != nil {
		t.Fatal(err)
	}
	if r.bad != "" {
		t.Fatal(r.bad)
	}
	want := make([]int, len(s.Params))
	for j := range want {
		want[j] = j
	}
	if !slices.Equal(r.ready, want) {
		t.Fatalf("GradReady calls %v, want each parameter once in order", r.ready)
	}
	if slices.Equal(r.lastAt0, s.Params[len(s.Params)-1].Grad) {
		t.Error("the last gradient was complete when the first was handed over: no overlap")
	}
}
