package model

import (
	"errors"
	"fmt"
	"sync/atomic"

	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"

	"github.com/moetrain/moetrain/configs"
	"github.com/moetrain/moetrain/model/ops"
)

// Shapes in this file (llm.c's legend; docs/DESIGN.md has the config keys):
//
//	B  sequences per Run (GraphOptions.Batch)   T  positions per sequence (Seq)
//	N  = B·T, the token rows every op works on   d  hidden width
//	H  heads, dh = d/H                           V  vocabulary
//	f  dense FFN width                           w  one expert's width
//	E  routed experts                            k  routed experts per token
//	Ks shared experts (stored merged, width Ks·w)
//
// Activations are row-major [N, d]: token t of sequence b is row b·T+t.
// Attention alone regroups them per sequence and head inside its op.

// GraphOptions fixes the geometry and the outputs of a graph.
type GraphOptions struct {
	Batch, Seq int  // B sequences of T positions per run
	Backward   bool // build gradient nodes (training)
	// Training marks a graph that trains (or gathers counts for training):
	// only such graphs drop tokens over an expert's capacity
	// (model.router.capacity_factor); evaluation never does.
	Training bool
	Logits   bool // also output the full [N, V] logits (reference comparisons, generation)
	// ActiveRouted, when > 0, evaluates MoE layers with fewer (or more)
	// activated routed experts than trained (expert analyses).
	ActiveRouted int
	// DisableTop, when > 0, zeroes each token's DisableTop most probable
	// routed experts before top-k, so the next K are chosen with their raw
	// probabilities as gates (the redundancy test, DESIGN.md §4.1; ops.DropTop).
	// Balance losses and RouterProbs still see the undropped probabilities.
	DisableTop int
	// ExpertComm, when non-nil and of more than one rank, builds routed MoE
	// layers expert-parallel over its ranks (ops.MoEExpertParallel): this
	// graph computes only experts [r·E/R, (r+1)·E/R) of each layer, for
	// the tokens of every rank, and its tokens' other experts run on the
	// other ranks. The expert weights' nodes are views of that slice of the
	// model's stacked tensors (ExpertShard), so Grad of an expert parameter
	// has E/R experts. Every rank must run its graph in lockstep.
	ExpertComm ops.EPComm
	// KeepGates makes each layer's RouteRecord also keep the gates
	// (analyses); training graphs leave it off and copy only the experts.
	KeepGates bool
}

// ExpertShard returns the element range [lo, hi) of a stacked expert
// parameter (Param.Experts > 0) that rank of size expert-parallel ranks
// holds; the whole tensor for other parameters or size 1.
func ExpertShard(p Param, rank, size int) (lo, hi int) {
	n := int(p.Size())
	if p.Experts == 0 || size <= 1 {
		return 0, n
	}
	per := n / size
	return rank * per, (rank + 1) * per
}

// BalanceLoss is one auxiliary-loss node: DESIGN.md §3.1 (expert), §3.2
// (device) or the router z-loss (z).
type BalanceLoss struct {
	Layer int
	Kind  string // "expert", "device" or "z"
	// Counts, when filled (Tokens > 0), makes a batch-level loss
	// (balance.per_sequence false) use routing counts gathered over a whole
	// batch of several micro-batches; see ops.BatchCounts. Nil for the
	// z-loss, which needs no counts.
	Counts *ops.BatchCounts
	node   *G.Node
}

// RouterGating is how the routed MoE layers of c, activating k experts,
// turn router scores into gates: GShard renormalises its top-2 softmax
// probabilities, sigmoid scores are always normalised over the chosen
// experts (DeepSeek-V3; both skipped at k = 1), and every gate is scaled by
// model.router.scale.
func RouterGating(c configs.Model, k int) ops.Gating {
	return ops.Gating{K: k, Renorm: c.FFN == configs.FFNGShard || c.Router.Sigmoid(), Scale: c.Router.Scale}
}

// Graph is a compiled graph over a Model's weights for one geometry.
type Graph struct {
	m       *Model
	opt     GraphOptions
	g       *G.ExprGraph
	vm      G.VM
	ids     *G.Node // Int [N]: input tokens
	targets *G.Node // Int [N]: next tokens
	weights []*G.Node
	lm      *G.Node // mean cross-entropy
	total   *G.Node // lm + Σ balance
	logits  *G.Node
	// Balance holds the auxiliary losses of a graph that trains (Backward
	// or Training); an evaluation graph builds none: nothing reads them
	// there, and they took 3% of a science MoE's forward pass (2.6 of 81
	// ms, docs/BENCHMARKS.md round 9).
	Balance []BalanceLoss
	// Routes holds, per MoE layer (in layer order), the routing record the
	// layer's op fills on every forward pass.
	Routes  []*ops.RouteRecord
	RouteOf []int     // layer index of each entry of Routes
	probs   []*G.Node // router probabilities per entry of Routes (nil: hash layer)
	// stepLoads sums, per entry of Routes, every Run's Load since the last
	// ResetStepLoads (see StepLoads).
	stepLoads [][]float64
	// stepDropped and stepSlots sum, per entry of Routes, the dropped and
	// all (token, slot) pairs of those Runs.
	stepDropped, stepSlots []int
	idsBuf                 []int
	tgtBuf                 []int
	inPlaceAdds            int // Add nodes summing over an input (ops.AddInPlace)
}

// Result is what one run of a graph produced.
type Result struct {
	Loss    float64   // mean cross-entropy over the B·T predicted tokens
	Balance []float64 // parallel to Graph.Balance (empty for an evaluation graph)
	Total   float64   // Loss + Σ Balance
}

// addsApart, when set, keeps graphs built after it from summing residuals
// in place (SetAddsInPlace).
var addsApart atomic.Bool

// SetAddsInPlace sets whether graphs built from now on write residual sums
// over the branch they add (ops.AddInPlace; on by default), and returns
// the previous setting: for comparisons of the two and for tests.
func SetAddsInPlace(on bool) bool { return !addsApart.Swap(!on) }

// Build constructs the graph. Construction errors (impossible shapes) are
// returned as errors, never panics.
func (m *Model) Build(opt GraphOptions) (gr *Graph, err error) {
	if opt.Batch <= 0 || opt.Seq <= 0 {
		return nil, fmt.Errorf("model: batch %d and seq %d must be positive", opt.Batch, opt.Seq)
	}
	defer func() {
		// gorgonia's builders panic on some malformed inputs; the model API
		// returns errors instead.
		if r := recover(); r != nil {
			gr, err = nil, fmt.Errorf("model: build graph: %v", r)
		}
	}()
	c := m.Cfg
	n := opt.Batch * opt.Seq
	gr = &Graph{m: m, opt: opt, g: G.NewGraph(), idsBuf: make([]int, n), tgtBuf: make([]int, n)}
	g := gr.g
	gr.ids = G.NewTensor(g, tensor.Int, 1, G.WithShape(n), G.WithName("ids"), G.WithValue(tensor.New(tensor.WithShape(n), tensor.WithBacking(gr.idsBuf))))
	gr.targets = G.NewTensor(g, tensor.Int, 1, G.WithShape(n), G.WithName("targets"), G.WithValue(tensor.New(tensor.WithShape(n), tensor.WithBacking(gr.tgtBuf))))
	gr.weights = make([]*G.Node, len(m.Layout))
	ep := opt.ExpertComm != nil && opt.ExpertComm.Size() > 1
	if ep && m.Dtype != tensor.Float32 {
		return nil, fmt.Errorf("model: expert parallelism needs a float32 model, not %v", m.Dtype)
	}
	if ep && (c.FFN == configs.FFNHash || c.RoutedExperts%opt.ExpertComm.Size() != 0) {
		return nil, fmt.Errorf("model: %d routed %s experts cannot be partitioned over %d ranks", c.RoutedExperts, c.FFN, opt.ExpertComm.Size())
	}
	if m.Sharded() && (!ep || opt.ExpertComm.Rank() != m.ShardRank || opt.ExpertComm.Size() != m.ShardSize) {
		return nil, fmt.Errorf("model: holds expert shard %d of %d only; build it with the ExpertComm of that rank", m.ShardRank, m.ShardSize)
	}
	for i, p := range m.Layout {
		v := m.Values[i]
		if ep && p.Experts > 0 {
			// This rank's experts: its slice of the stack (all a sharded
			// model holds, else a view).
			shape := append([]int{p.Experts / opt.ExpertComm.Size()}, p.Shape[1:]...)
			if !m.Sharded() {
				lo, hi := ExpertShard(p, opt.ExpertComm.Rank(), opt.ExpertComm.Size())
				v = tensor.New(tensor.WithShape(shape...), tensor.WithBacking(v.Data().([]float32)[lo:hi]))
			}
			gr.weights[i] = G.NewTensor(g, v.Dtype(), len(shape), G.WithShape(shape...), G.WithName(p.Name), G.WithValue(v))
			continue
		}
		gr.weights[i] = G.NewTensor(g, v.Dtype(), len(p.Shape), G.WithShape(p.Shape...), G.WithName(p.Name), G.WithValue(v))
	}
	w := func(name string) *G.Node {
		i := m.Index(name)
		if i < 0 {
			panic("model: no parameter " + name)
		}
		return gr.weights[i]
	}
	must := func(x *G.Node, err error) *G.Node {
		if err != nil {
			panic(err)
		}
		return x
	}
	k := c.ActiveRouted
	if opt.ActiveRouted > 0 {
		k = opt.ActiveRouted
	}
	h := must(ops.Embed(gr.ids, w("model.embed_tokens.weight"))) // [N] ids × [V, d] → h [N, d]
	emb := h                                                     // [N, d]: what router.input=embedding routes on
	var balance []*G.Node
	for l := 0; l < c.Layers; l++ {
		pre := fmt.Sprintf("model.layers.%d.", l)
		// Attention block: h + o_proj(Attention(RMSNorm(h))), DESIGN.md §1.
		a := must(ops.RMSNorm(h, w(pre+"input_layernorm.weight"), c.NormEps)) // [N, d]
		// q, k, v [N, d] = [N, H·dh] each, side by side in one product: [N, 3d].
		qkv := must(ops.LinearStacked(a, w(pre+"self_attn.q_proj.weight"), w(pre+"self_attn.k_proj.weight"), w(pre+"self_attn.v_proj.weight")))
		o := must(ops.AttentionPacked(qkv, opt.Batch, opt.Seq, c.Heads, c.RopeTheta)) // [N, d]: RoPE, causal softmax per sequence and head
		h = must(ops.Add(h, must(ops.Linear(o, w(pre+"self_attn.o_proj.weight")))))   // [N, d]
		// FFN block: h + FFN(RMSNorm(h)), a dense SwiGLU or an MoE layer.
		u := must(ops.RMSNorm(h, w(pre+"post_attention_layernorm.weight"), c.NormEps)) // [N, d]
		var f *G.Node
		switch {
		case !c.IsMoELayer(l):
			// gate, up [f, d]; down [d, f] → f [N, d]
			f = must(ops.SwiGLU(u, w(pre+"mlp.gate_proj.weight"), w(pre+"mlp.up_proj.weight"), w(pre+"mlp.down_proj.weight")))
		default:
			// Ks shared experts as one SwiGLU: gate, up [Ks·w, d]; down [d, Ks·w].
			var sg, su, sd *G.Node // nil without shared experts
			if c.SharedExperts > 0 {
				sg, su, sd = w(pre+"mlp.shared_experts.gate_proj.weight"), w(pre+"mlp.shared_experts.up_proj.weight"), w(pre+"mlp.shared_experts.down_proj.weight")
			}
			sharedApart := sg != nil // the shared experts still to add, where the routed op does not take them
			// Routed experts, stacked: gate, up [E, w, d]; down [E, d, w].
			eg, eu, ed := w(pre+"mlp.experts.*.gate_proj.weight"), w(pre+"mlp.experts.*.up_proj.weight"), w(pre+"mlp.experts.*.down_proj.weight")
			rec := &ops.RouteRecord{KeepGates: opt.KeepGates}
			gr.Routes = append(gr.Routes, rec)
			gr.RouteOf = append(gr.RouteOf, l)
			if c.FFN == configs.FFNHash {
				gr.probs = append(gr.probs, nil)
				// hash_table [V] ints: token id → its one expert, gate 1. f [N, d]
				f = must(ops.HashMoEWithRecord(u, gr.ids, w(pre+"mlp.hash_table"), eg, eu, ed, rec))
			} else {
				in := u // [N, d]
				if c.Router.Input == configs.RouterInputEmbedding {
					in = emb // the token's own embedding: routing a function of the id
				}
				logits := must(ops.Linear(in, w(pre+"mlp.gate.weight"))) // router [E, d] → [N, E]
				var probs *G.Node
				if c.Router.Sigmoid() {
					probs = must(ops.Sigmoid(logits))
				} else {
					probs = must(ops.Softmax(logits))
				}
				var bias *G.Node
				if c.Router.BiasRate > 0 {
					bias = w(pre + BiasSuffix)
				}
				gating := RouterGating(c, k)
				if c.Router.ExpertChoice {
					if ep {
						return nil, fmt.Errorf("model: expert-choice routing is not expert-parallel")
					}
					// Every graph, evaluation included, routes as trained.
					gating.ExpertChoice, gating.Seq = true, opt.Seq
					gating.Capacity = min(opt.Seq, ops.CapacityOf(k, opt.Seq, c.RoutedExperts, 1))
				}
				if f := c.Router.CapacityFactor; f > 0 && opt.Training {
					if ep {
						return nil, fmt.Errorf("model: capacity-factor token dropping is not expert-parallel; set model.router.capacity_factor to 0 or model.expert_parallel to 1")
					}
					gating.Capacity, gating.Seq = ops.CapacityOf(k, opt.Seq, c.RoutedExperts, f), opt.Seq
				}
				gr.probs = append(gr.probs, probs) // [N, E] scores s
				routed := probs
				if opt.DisableTop > 0 {
					if opt.DisableTop+k > c.RoutedExperts {
						return nil, fmt.Errorf("model: cannot disable %d of %d routed experts and still activate %d", opt.DisableTop, c.RoutedExperts, k)
					}
					routed = must(ops.DropTop(probs, opt.DisableTop))
				}
				// Top-k of the scores per row, each token through its k
				// experts, outputs summed with their gates: f [N, d].
				// The MoE op and the balance losses below select the same
				// top-k from the same scores: once per run (ops.SharedTopK).
				var selecting []*G.Node
				if ep {
					f = must(ops.MoEExpertParallelGated(u, routed, eg, eu, ed, bias, gating, opt.ExpertComm, rec))
				} else {
					// The shared experts run in the routed op: their output
					// is where each token's sum starts (DESIGN.md §2.4).
					f = must(ops.MoEGatedShared(u, routed, eg, eu, ed, bias, sg, su, sd, gating, rec))
					sharedApart = false
					selecting = append(selecting, f)
				}
				auxiliary := opt.Backward || opt.Training
				if a := c.Router.ZLoss; a > 0 && auxiliary {
					b := must(ops.ZLoss(logits, a))
					gr.Balance = append(gr.Balance, BalanceLoss{Layer: l, Kind: "z", node: b})
					balance = append(balance, b)
				}
				if a := c.Balance.ExpertAlpha; a > 0 && auxiliary {
					counts := &ops.BatchCounts{}
					b := must(ops.ExpertBalanceWithCounts(probs, bias, opt.Batch, opt.Seq, k, a, c.Balance.PerSequence, counts))
					gr.Balance = append(gr.Balance, BalanceLoss{Layer: l, Kind: "expert", Counts: counts, node: b})
					balance = append(balance, b)
					selecting = append(selecting, b)
				}
				if a := c.Balance.DeviceAlpha; a > 0 && auxiliary {
					counts := &ops.BatchCounts{}
					b := must(ops.DeviceBalanceWithCounts(probs, bias, opt.Batch, opt.Seq, k, c.Balance.DeviceGroups, a, c.Balance.PerSequence, counts))
					gr.Balance = append(gr.Balance, BalanceLoss{Layer: l, Kind: "device", Counts: counts, node: b})
					balance = append(balance, b)
					selecting = append(selecting, b)
				}
				if len(selecting) > 1 {
					if err := ops.ShareTopK(&ops.SharedTopK{}, selecting...); err != nil {
						return nil, err
					}
				}
			}
			if sharedApart {
				f = must(ops.Add(f, must(ops.SwiGLU(u, sg, su, sd)))) // [N, d]
			}
		}
		h = must(ops.Add(h, f)) // [N, d]
	}
	final := must(ops.RMSNorm(h, w("model.norm.weight"), c.NormEps)) // [N, d]
	head := w("lm_head.weight")                                      // [V, d], untied
	// Mean over the N targets of −log softmax(final·headᵀ): a scalar; the
	// [N, V] logits are formed in row chunks inside the op, never whole.
	gr.lm = must(ops.LMHeadCrossEntropy(final, head, gr.targets))
	gr.total = gr.lm
	for _, b := range balance {
		gr.total = must(ops.Add(gr.total, b))
	}
	if opt.Logits {
		gr.logits = must(ops.Linear(final, head)) // [N, V]
	}
	if opt.Backward {
		var wrt G.Nodes
		for i, p := range m.Layout {
			if p.Trained() {
				wrt = append(wrt, gr.weights[i])
			}
		}
		if _, err := G.Grad(gr.total, wrt...); err != nil {
			return nil, fmt.Errorf("model: gradients: %w", err)
		}
	}
	// Residual sums over the branch they add, where nothing else reads it
	// (ops.AddInPlace); the nodes read after a run keep their values.
	if !addsApart.Load() {
		keep := append([]*G.Node{gr.lm, gr.total, gr.logits}, gr.probs...)
		for _, b := range gr.Balance {
			keep = append(keep, b.node)
		}
		gr.inPlaceAdds = ops.AddInPlace(g, keep...)
	}
	// The ops' engine: gorgonia's sums of a node's gradients run on every
	// worker instead of one (ops.Engine).
	gr.vm = G.NewTapeMachine(g, G.WithEngine(ops.Engine))
	return gr, nil
}

// StepLoads returns, per entry of Routes, the (token, slot) pairs routed to
// each expert summed over every Run since the last ResetStepLoads: with a
// reset before each optimizer step, the step's micro-batches on this
// process. The slices are the graph's own; valid until the next Run.
func (gr *Graph) StepLoads() [][]float64 {
	if gr.stepLoads == nil {
		gr.stepLoads = make([][]float64, len(gr.Routes))
		for j := range gr.Routes {
			gr.stepLoads[j] = make([]float64, gr.m.Cfg.RoutedExperts)
		}
	}
	return gr.stepLoads
}

// StepDropped returns, for entry j of Routes, the fraction of the (token,
// slot) pairs of the Runs since the last ResetStepLoads that were dropped
// for capacity (model.router.capacity_factor).
func (gr *Graph) StepDropped(j int) float64 {
	if gr.stepSlots == nil || gr.stepSlots[j] == 0 {
		return 0
	}
	return float64(gr.stepDropped[j]) / float64(gr.stepSlots[j])
}

// ResetStepLoads zeroes the sums of StepLoads and StepDropped.
func (gr *Graph) ResetStepLoads() {
	for _, l := range gr.stepLoads {
		clear(l)
	}
	clear(gr.stepDropped)
	clear(gr.stepSlots)
}

// BatchCounted reports whether a loss of the graph is batch-level
// (balance.per_sequence false) and so can use counts gathered over a whole
// batch (BalanceLoss.Counts).
func (gr *Graph) BatchCounted() bool {
	for _, b := range gr.Balance {
		if b.Counts != nil && !gr.m.Cfg.Balance.PerSequence {
			return true
		}
	}
	return false
}

// Close releases the graph's machine.
func (gr *Graph) Close() error { return gr.vm.Close() }

// Options returns the options the graph was built with.
func (gr *Graph) Options() GraphOptions { return gr.opt }

// Run sets the tokens (B rows of T+1 ids, row-major: inputs are the first T,
// targets the last T of each row), runs forward (and backward when built
// with Backward) and returns the losses.
func (gr *Graph) Run(tokens []int32) (Result, error) {
	B, T, V := gr.opt.Batch, gr.opt.Seq, gr.m.Cfg.VocabSize
	if len(tokens) != B*(T+1) {
		return Result{}, fmt.Errorf("model: got %d tokens, want %d×%d", len(tokens), B, T+1)
	}
	for b := 0; b < B; b++ {
		row := tokens[b*(T+1) : (b+1)*(T+1)]
		for t := 0; t < T; t++ {
			in, tg := int(row[t]), int(row[t+1])
			if in < 0 || in >= V || tg < 0 || tg >= V {
				return Result{}, fmt.Errorf("model: token id %d or %d outside the vocabulary [0, %d)", in, tg, V)
			}
			gr.idsBuf[b*T+t], gr.tgtBuf[b*T+t] = in, tg
		}
	}
	gr.vm.Reset()
	if err := gr.vm.RunAll(); err != nil {
		return Result{}, fmt.Errorf("model: run graph: %w", err)
	}
	if gr.stepLoads == nil {
		gr.stepLoads = make([][]float64, len(gr.Routes))
	}
	if gr.stepDropped == nil {
		gr.stepDropped, gr.stepSlots = make([]int, len(gr.Routes)), make([]int, len(gr.Routes))
	}
	for j, rec := range gr.Routes {
		gr.stepDropped[j] += rec.Dropped
		gr.stepSlots[j] += rec.N * rec.K
		if gr.stepLoads[j] == nil {
			gr.stepLoads[j] = make([]float64, rec.E)
		}
		for e, l := range rec.Load {
			gr.stepLoads[j][e] += float64(l)
		}
	}
	res := Result{Loss: ops.ScalarValue(gr.lm.Value()), Total: ops.ScalarValue(gr.total.Value())}
	for _, b := range gr.Balance {
		res.Balance = append(res.Balance, ops.ScalarValue(b.node.Value()))
	}
	return res, nil
}

// Grad returns the gradient of the total loss with respect to weight i of
// the Layout, valid until the next Run. It is nil for integer tensors and
// buffers (Param.Trained).
func (gr *Graph) Grad(i int) (*tensor.Dense, error) {
	if !gr.m.Layout[i].Trained() {
		return nil, nil
	}
	if !gr.opt.Backward {
		return nil, errors.New("model: graph built without Backward has no gradients")
	}
	v, err := gr.weights[i].Grad()
	if err != nil {
		return nil, fmt.Errorf("model: gradient of %s: %w", gr.m.Layout[i].Name, err)
	}
	t, ok := v.(*tensor.Dense)
	if !ok {
		return nil, fmt.Errorf("model: gradient of %s is %T", gr.m.Layout[i].Name, v)
	}
	return t, nil
}

// RouterProbs returns the router's softmax [N, E] of MoE layer entry j of
// Routes in the last Run, or nil for a hash layer.
func (gr *Graph) RouterProbs(j int) *tensor.Dense {
	if gr.probs[j] == nil {
		return nil
	}
	t, _ := gr.probs[j].Value().(*tensor.Dense)
	return t
}

// Logits returns the [N, V] logits of the last Run (GraphOptions.Logits).
func (gr *Graph) Logits() (*tensor.Dense, error) {
	if gr.logits == nil {
		return nil, errors.New("model: graph built without Logits")
	}
	t, ok := gr.logits.Value().(*tensor.Dense)
	if !ok {
		return nil, fmt.Errorf("model: logits are %T", gr.logits.Value())
	}
	return t, nil
}
