package infer

import (
	"errors"
	"fmt"
	"math"

	"gonum.org/v1/gonum/blas/gonum"
	"gorgonia.org/tensor"

	"github.com/moetrain/moetrain/configs"
	"github.com/moetrain/moetrain/internal/blas"
	"github.com/moetrain/moetrain/internal/parallel"
	"github.com/moetrain/moetrain/model"
	"github.com/moetrain/moetrain/model/ops"
)

// Shape legend: n new tokens in one Feed, D hidden size, H heads, dh = D/H,
// V vocabulary, E routed experts, K experts per token, W expert width,
// f dense (or merged shared-expert) width, P cached positions.

// Decoder holds a model's KV cache. It reads the model's weight slices in
// place (training may keep updating them between uses) and is not safe for
// concurrent use.
type Decoder struct {
	cfg        configs.Model
	capacity   int // most positions the cache holds
	n          int // positions cached
	d, h, dh   int
	vocab      int
	embed      []float32 // [V, D]
	finalNorm  []float32 // [D]
	head       []float32 // [V, D]
	layers     []layer
	final      []float32 // [rows, D]: final normed hidden states of the last Feed
	rows       int       // tokens of the last Feed (0: none, or invalidated)
	lastLogits []float32 // [V]
}

type layer struct {
	inNorm, postNorm []float32 // [D]
	wq, wk, wv, wo   []float32 // [D, D]
	kc, vc           []float32 // [capacity, D]: rotated keys, values
	dense            *swiglu   // dense FFN layers
	moe              *moe      // MoE layers
}

// swiglu is one SwiGLU FFN: gate and up [f, D], down [D, f].
type swiglu struct {
	g, u, dn []float32
	f        int
}

// moe is one MoE FFN: a router (or a hash table), stacked experts and
// optional shared experts.
type moe struct {
	router     []float32 // [E, D]; nil for a hash layer
	table      []int     // [V] token id → expert (hash layer)
	eg, eu, ed []float32 // [E, W, D], [E, W, D], [E, D, W]
	e, w, k    int
	gating     ops.Gating
	sigmoid    bool      // router scores σ(logits) instead of softmax
	bias       []float32 // [E] selection bias, or nil
	shared     *swiglu
}

// ErrExpertChoice is returned by New for an expert-choice model: its
// experts pick tokens from the whole sequence, future ones included, so a
// decoder that sees one token at a time cannot route as in training.
var ErrExpertChoice = errors.New("expert-choice routing (model.router.expert_choice) chooses tokens from the whole sequence, future tokens included, so the model cannot generate or score continuations token by token as it was trained; evaluate it with held-out loss on whole sequences (moetrain eval)")

// New returns a decoder over m's weights with room for capacity positions
// (the prompt and everything generated, except the last generated token,
// which is never read back). m must be float32.
func New(m *model.Model, capacity int) (*Decoder, error) {
	if m.Cfg.Router.ExpertChoice {
		return nil, ErrExpertChoice
	}
	if m.Dtype != tensor.Float32 {
		return nil, fmt.Errorf("infer: model dtype %v: want float32", m.Dtype)
	}
	if capacity < 1 {
		return nil, fmt.Errorf("infer: capacity %d: want >= 1", capacity)
	}
	c := m.Cfg
	if c.Heads < 1 || c.Hidden%c.Heads != 0 || (c.Hidden/c.Heads)%2 != 0 {
		return nil, fmt.Errorf("infer: hidden %d and heads %d: want an even head width", c.Hidden, c.Heads)
	}
	var missing []string
	f32 := func(name string) []float32 {
		i := m.Index(name)
		if i < 0 {
			missing = append(missing, name)
			return nil
		}
		d, _ := m.Values[i].Data().([]float32)
		return d
	}
	ints := func(name string) []int {
		i := m.Index(name)
		if i < 0 {
			missing = append(missing, name)
			return nil
		}
		d, _ := m.Values[i].Data().([]int)
		return d
	}
	D := c.Hidden
	dec := &Decoder{cfg: c, capacity: capacity, d: D, h: c.Heads, dh: D / c.Heads, vocab: c.VocabSize,
		embed: f32("model.embed_tokens.weight"), finalNorm: f32("model.norm.weight"), head: f32("lm_head.weight")}
	for l := 0; l < c.Layers; l++ {
		pre := fmt.Sprintf("model.layers.%d.", l)
		ly := layer{
			inNorm: f32(pre + "input_layernorm.weight"), postNorm: f32(pre + "post_attention_layernorm.weight"),
			wq: f32(pre + "self_attn.q_proj.weight"), wk: f32(pre + "self_attn.k_proj.weight"),
			wv: f32(pre + "self_attn.v_proj.weight"), wo: f32(pre + "self_attn.o_proj.weight"),
			kc: make([]float32, capacity*D), vc: make([]float32, capacity*D),
		}
		if !c.IsMoELayer(l) {
			ly.dense = &swiglu{g: f32(pre + "mlp.gate_proj.weight"), u: f32(pre + "mlp.up_proj.weight"), dn: f32(pre + "mlp.down_proj.weight"), f: c.DenseWidth}
		} else {
			k := c.ActiveRouted
			mo := &moe{e: c.RoutedExperts, w: c.ExpertWidth, k: k, gating: model.RouterGating(c, k), sigmoid: c.Router.Sigmoid(),
				eg: f32(pre + "mlp.experts.*.gate_proj.weight"), eu: f32(pre + "mlp.experts.*.up_proj.weight"), ed: f32(pre + "mlp.experts.*.down_proj.weight")}
			if c.FFN == configs.FFNHash {
				mo.table, mo.k = ints(pre+"mlp.hash_table"), 1
				for id, e := range mo.table {
					if e < 0 || e >= mo.e {
						return nil, fmt.Errorf("infer: layer %d: the hash table sends token %d to expert %d of %d", l, id, e, mo.e)
					}
				}
			} else {
				mo.router = f32(pre + "mlp.gate.weight")
				if c.Router.BiasRate > 0 {
					mo.bias = f32(pre + model.BiasSuffix)
				}
			}
			if s := c.SharedExperts; s > 0 {
				mo.shared = &swiglu{g: f32(pre + "mlp.shared_experts.gate_proj.weight"), u: f32(pre + "mlp.shared_experts.up_proj.weight"),
					dn: f32(pre + "mlp.shared_experts.down_proj.weight"), f: s * c.ExpertWidth}
			}
			ly.moe = mo
		}
		dec.layers = append(dec.layers, ly)
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("infer: the model has no tensor %v", missing)
	}
	return dec, nil
}

// Capacity is the most positions the cache holds.
func (d *Decoder) Capacity() int { return d.capacity }

// Len is the number of cached positions.
func (d *Decoder) Len() int { return d.n }

// Vocab is the vocabulary size.
func (d *Decoder) Vocab() int { return d.vocab }

// Reset empties the cache.
func (d *Decoder) Reset() { d.Truncate(0) }

// Truncate drops every cached position from n on, so that the next Feed
// continues after the first n tokens (scoring several continuations of one
// context). It panics if n is outside [0, Len()].
func (d *Decoder) Truncate(n int) {
	if n < 0 || n > d.n {
		panic(fmt.Sprintf("infer: Truncate(%d) of %d cached positions", n, d.n))
	}
	d.n, d.rows = n, 0
}

// Feed runs tokens through the model at the next positions and appends
// their keys and values to the cache. The tokens are processed together
// (matrix products over all of them; attention row by row against the
// cache), so feeding a prompt at once costs about as much as the graph.
func (d *Decoder) Feed(tokens []int) error {
	n, D := len(tokens), d.d
	if n == 0 {
		return errors.New("infer: feed of no tokens")
	}
	if d.n+n > d.capacity {
		return fmt.Errorf("infer: %d cached and %d new positions exceed the context of %d", d.n, n, d.capacity)
	}
	for _, id := range tokens {
		if id < 0 || id >= d.vocab {
			return fmt.Errorf("infer: token id %d outside the vocabulary [0, %d)", id, d.vocab)
		}
	}
	h := make([]float32, n*D) // residual stream
	for i, id := range tokens {
		copy(h[i*D:(i+1)*D], d.embed[id*D:(id+1)*D])
	}
	a, q, k, v, att, o := make([]float32, n*D), make([]float32, n*D), make([]float32, n*D), make([]float32, n*D), make([]float32, n*D), make([]float32, n*D)
	p0, eps, theta := d.n, d.cfg.NormEps, d.cfg.RopeTheta
	for li := range d.layers {
		ly := &d.layers[li]
		rmsNorm(a, h, ly.inNorm, n, D, eps)
		matT(n, D, D, a, ly.wq, q, false)
		matT(n, D, D, a, ly.wk, k, false)
		matT(n, D, D, a, ly.wv, v, false)
		for i := range n {
			ops.ApplyRoPE(q[i*D:(i+1)*D], p0+i, d.h, d.dh, theta)
			ops.ApplyRoPE(k[i*D:(i+1)*D], p0+i, d.h, d.dh, theta)
		}
		copy(ly.kc[p0*D:(p0+n)*D], k)
		copy(ly.vc[p0*D:(p0+n)*D], v)
		parallel.For(n, 1, func(lo, hi int) {
			for i := lo; i < hi; i++ {
				ops.AttendOne(att[i*D:(i+1)*D], q[i*D:(i+1)*D], ly.kc, ly.vc, p0+i+1, d.h, d.dh)
			}
		})
		matT(n, D, D, att, ly.wo, o, false)
		addTo(h, o)
		rmsNorm(a, h, ly.postNorm, n, D, eps)
		var f []float32
		if ly.dense != nil {
			f = ly.dense.forward(a, n, D)
		} else {
			f = ly.moe.forward(a, tokens, n, D)
		}
		addTo(h, f)
	}
	if cap(d.final) < n*D {
		d.final = make([]float32, n*D)
	}
	d.final = d.final[:n*D]
	rmsNorm(d.final, h, d.finalNorm, n, D, eps)
	d.n += n
	d.rows = n
	d.lastLogits = nil
	return nil
}

// Logits returns the logits [V] of the last token fed, valid until the next
// Feed, Truncate or Reset. It panics if nothing was fed since.
func (d *Decoder) Logits() []float32 {
	if d.rows == 0 {
		panic("infer: Logits without a Feed")
	}
	if d.lastLogits == nil {
		d.lastLogits = make([]float32, d.vocab)
		matT(1, d.vocab, d.d, d.final[(d.rows-1)*d.d:d.rows*d.d], d.head, d.lastLogits, false)
	}
	return d.lastLogits
}

// AllLogits returns the logits [n, V] of every token of the last Feed.
func (d *Decoder) AllLogits() ([]float32, error) {
	if d.rows == 0 {
		return nil, errors.New("infer: logits without a Feed")
	}
	out := make([]float32, d.rows*d.vocab)
	ops.LogitsRows(out, d.final, d.head, d.rows, d.d, d.vocab)
	return out, nil
}

// LogProbs returns log p(targets[i] | the cached prefix through token i of
// the last Feed), in nats, with the training loss's own kernel
// (ops.TokenLogProbs). len(targets) must be the number of tokens fed.
func (d *Decoder) LogProbs(targets []int) ([]float64, error) {
	if d.rows == 0 {
		return nil, errors.New("infer: log-probs without a Feed")
	}
	if len(targets) != d.rows {
		return nil, fmt.Errorf("infer: %d targets for %d fed tokens", len(targets), d.rows)
	}
	out := make([]float64, d.rows)
	if err := ops.TokenLogProbs(out, d.final, d.head, targets, d.rows, d.d, d.vocab); err != nil {
		return nil, fmt.Errorf("infer: %w", err)
	}
	return out, nil
}

// matT sets y [n, out] = x [n, in]·wᵀ for w [out, in] (the arguments of
// blas.MatMul(false, true, ...); accumulate must be false). One row is a
// matrix-vector product done here over both cores: through the GEMM kernel
// each costs a library call and a thread hand-off, which made up most of
// the time of a decoding step.
func matT(n, out, in int, x, w, y []float32, accumulate bool) {
	if accumulate {
		panic("infer: matT does not accumulate")
	}
	if n > 1 {
		blas.MatMul(false, true, n, out, in, x, w, y, false)
		return
	}
	x = x[:in]
	parallel.For(out, max(1, 1<<15/in), func(lo, hi int) {
		for o := lo; o < hi; o++ {
			y[o] = gonumImpl.Sdot(in, x, 1, w[o*in:(o+1)*in], 1)
		}
	})
}

// gonumImpl's Sdot is an assembly dot product.
var gonumImpl gonum.Implementation

// rmsNorm is the RMSNorm op's forward: y = w ⊙ x·r with r = 1/sqrt(mean x² + eps)
// accumulated in float64 and rounded once, as model/ops does it.
func rmsNorm(y, x, w []float32, n, d int, eps float64) {
	for i := range n {
		xr, yr := x[i*d:(i+1)*d], y[i*d:(i+1)*d]
		var ss float64
		for _, v := range xr {
			ss += float64(v) * float64(v)
		}
		r := float32(1 / math.Sqrt(ss/float64(d)+eps))
		for j := range xr {
			yr[j] = w[j] * (xr[j] * r)
		}
	}
}

func addTo(dst, x []float32) {
	for i, v := range x {
		dst[i] += v
	}
}

// sigmoid is the overflow-safe logistic function in float64, rounded once.
// (The training kernels use a float32 exp accurate to a few ulp; the
// difference is far below the float32 tolerance of the tests.)
func sigmoid(a float32) float32 {
	x := float64(a)
	if x >= 0 {
		return float32(1 / (1 + math.Exp(-x)))
	}
	e := math.Exp(x)
	return float32(e / (1 + e))
}

// siluGate sets h = silu(g)⊙u in place of g, in the SwiGLU op's order.
func siluGate(g, u []float32) {
	for i, a := range g {
		g[i] = a * sigmoid(a) * u[i]
	}
}

// forward returns (silu(x·gᵀ) ⊙ x·uᵀ)·dnᵀ for x [n, D].
func (s *swiglu) forward(x []float32, n, D int) []float32 {
	g, u, y := make([]float32, n*s.f), make([]float32, n*s.f), make([]float32, n*D)
	matT(n, s.f, D, x, s.g, g, false)
	matT(n, s.f, D, x, s.u, u, false)
	siluGate(g, u)
	matT(n, D, s.f, g, s.dn, y, false)
	return y
}

// forward returns the MoE layer's output for x [n, D]: Σ_j gate·expert(x)
// over each token's routed experts (in slot order, as the MoE op sums
// them), plus the shared experts.
func (m *moe) forward(x []float32, tokens []int, n, D int) []float32 {
	var r ops.Routing
	if m.router != nil {
		probs := make([]float32, n*m.e)
		matT(n, m.e, D, x, m.router, probs, false)
		for i := range n {
			row := probs[i*m.e : (i+1)*m.e]
			if m.sigmoid {
				ops.RowSigmoid(row, row)
			} else {
				ops.RowSoftmax(row, row)
			}
		}
		r = ops.RouteGated(probs, m.bias, n, m.e, m.gating)
	} else {
		r = ops.Routing{N: n, E: m.e, K: 1, Experts: make([]int32, n), Gates: make([]float64, n)}
		for i, id := range tokens {
			r.Experts[i], r.Gates[i] = int32(m.table[id]), 1
		}
	}
	// Each expert's tokens go through three matrix products together.
	k, W := r.K, m.w
	out := make([]float32, n*k*D) // [slot, D]
	for e := range m.e {
		var slots []int
		for s, x := range r.Experts {
			if int(x) == e {
				slots = append(slots, s)
			}
		}
		c := len(slots)
		if c == 0 {
			continue
		}
		xe, g, u, o := make([]float32, c*D), make([]float32, c*W), make([]float32, c*W), make([]float32, c*D)
		for j, s := range slots {
			t := s / k
			copy(xe[j*D:(j+1)*D], x[t*D:(t+1)*D])
		}
		matT(c, W, D, xe, m.eg[e*W*D:(e+1)*W*D], g, false)
		matT(c, W, D, xe, m.eu[e*W*D:(e+1)*W*D], u, false)
		siluGate(g, u)
		matT(c, D, W, g, m.ed[e*D*W:(e+1)*D*W], o, false)
		for j, s := range slots {
			copy(out[s*D:(s+1)*D], o[j*D:(j+1)*D])
		}
	}
	y := make([]float32, n*D)
	for t := range n {
		yr := y[t*D : (t+1)*D]
		for j := range k {
			s := t*k + j
			gt := float32(r.Gates[s])
			for i, v := range out[s*D : (s+1)*D] {
				yr[i] += gt * v
			}
		}
	}
	if m.shared != nil {
		addTo(y, m.shared.forward(x, n, D))
	}
	return y
}
