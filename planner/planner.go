package planner

import (
	"fmt"
	"math"
	"sort"

	"github.com/moetrain/moetrain/configs"
	"github.com/moetrain/moetrain/internal/intmath"
	"github.com/moetrain/moetrain/internal/units"
	"github.com/moetrain/moetrain/model"
)

// Precision is how weights, gradients and activations are stored.
type Precision string

const (
	// FP32 is moetrain's CPU training: float32 weights and activations,
	// the graph's gradient plus the trainer's float32 accumulator, AdamW's
	// two float32 moments.
	FP32 Precision = "fp32"
	// BF16 is mixed precision: bf16 weights, gradients and activations,
	// and an fp32 master copy of the weights next to AdamW's two fp32
	// moments (12 bytes of optimizer state per parameter).
	BF16 Precision = "bf16"
)

// Recompute is what the backward pass recomputes instead of storing.
type Recompute string

const (
	// RecomputeNone stores every activation.
	RecomputeNone Recompute = "none"
	// RecomputeSelective recomputes the attention scores and probabilities
	// (the T×T part) in the backward pass and stores the rest.
	RecomputeSelective Recompute = "selective"
	// RecomputeFull stores only each layer's input and reruns the layer's
	// forward pass during backward, one layer at a time.
	RecomputeFull Recompute = "full"
)

// Options are the training choices a plan is made for. The zero value is
// not valid; Default returns moetrain's own.
type Options struct {
	Precision Precision
	// ZeRO is the optimizer-state sharding stage over data-parallel ranks:
	// 0 none, 1 optimizer states, 2 optimizer states and gradients.
	// Non-expert states shard over all ranks; an expert shard's states
	// over the DP ranks that hold the same experts.
	ZeRO      int
	Recompute Recompute
	// FlashAttention computes attention in tiles without materialising
	// the T×T scores (their memory is gone; the backward recomputes them).
	FlashAttention bool
	// MicroBatch is the sequences per micro-batch on a rank; as in
	// moetrain's trainer a rank uses gcd(MicroBatch, its share of the
	// batch). 0 picks the largest divisor of the share that fits.
	MicroBatch int
	// EP fixes the expert-parallel degree (DP = devices/EP); 0 tries every
	// EP that divides both the devices and the routed experts.
	EP int
}

// Default is how moetrain trains on CPUs.
func Default() Options {
	return Options{Precision: FP32, Recompute: RecomputeNone}
}

// Cluster is the hardware a plan is made for, and the assumptions about it.
type Cluster struct {
	Devices  int
	MemBytes int64
	// TFLOPS is the sustained TFLOP/s per device on the model's matrix
	// products.
	TFLOPS float64
	// BandwidthGBs is each device's network bandwidth in GB/s, for both
	// gradient reduction and the experts' all-to-alls.
	BandwidthGBs float64
	// Overlap is the fraction of the gradient reduction hidden behind the
	// backward pass (0: none, moetrain's case; 1: all). All-to-alls are
	// never overlapped: the next layer waits for them.
	Overlap float64
	// OverheadBytes is each device's memory outside the model's state and
	// activations: the process's runtime and libraries (for moetrain on a
	// CPU, what a run of a tiny model peaks at), a GPU's CUDA context.
	OverheadBytes int64
}

// Layout is one data-parallel × expert-parallel layout's estimate, per rank.
type Layout struct {
	DP          int     `json:"dp"`
	EP          int     `json:"ep"`
	MicroBatch  int     `json:"micro_batch"`
	Weights     int64   `json:"weights_bytes"`
	Gradients   int64   `json:"gradients_bytes"`
	Optimizer   int64   `json:"optimizer_bytes"`
	Activations int64   `json:"activations_bytes"`
	Overhead    int64   `json:"overhead_bytes"`
	Total       int64   `json:"total_bytes"`
	Fits        bool    `json:"fits"`
	ComputeS    float64 `json:"compute_s"`
	AllReduceS  float64 `json:"all_reduce_s"` // exposed (not overlapped) gradient reduction
	AllToAllS   float64 `json:"all_to_all_s"`
	StepS       float64 `json:"step_s"`
	TokensPerS  float64 `json:"tokens_per_s"`
}

// bytes per parameter or activation value at a precision.
type bytesPer struct {
	weights      float64 // the working copy every rank holds
	gradsFull    float64 // gradient every rank holds whole (not sharded by ZeRO-2)
	gradsSharded float64 // gradient (or accumulator) ZeRO-2 shards
	optimizer    float64 // ZeRO-1 and 2 shard it
	activation   float64
	reduce       float64 // bytes per gradient value on the wire
}

func (p Precision) bytes() bytesPer {
	if p == BF16 {
		return bytesPer{weights: 2, gradsSharded: 2, optimizer: 12, activation: 2, reduce: 2}
	}
	return bytesPer{weights: 4, gradsFull: 4, gradsSharded: 4, optimizer: 8, activation: 4, reduce: 4}
}

// Validate reports the first invalid option, naming it.
func (o Options) Validate() error {
	switch {
	case o.Precision != FP32 && o.Precision != BF16:
		return fmt.Errorf("precision %q: want fp32 or bf16", o.Precision)
	case o.ZeRO < 0 || o.ZeRO > 2:
		return fmt.Errorf("zero %d: want 0, 1 or 2", o.ZeRO)
	case o.Recompute != RecomputeNone && o.Recompute != RecomputeSelective && o.Recompute != RecomputeFull:
		return fmt.Errorf("recompute %q: want none, selective or full", o.Recompute)
	case o.MicroBatch < 0:
		return fmt.Errorf("micro-batch %d: want >= 0", o.MicroBatch)
	case o.EP < 0:
		return fmt.Errorf("ep %d: want >= 0", o.EP)
	}
	return nil
}

// Validate reports the first invalid hardware figure, naming it.
func (c Cluster) Validate() error {
	pos := func(v float64) bool { return v > 0 && !math.IsInf(v, 0) }
	switch {
	case c.Devices < 1:
		return fmt.Errorf("devices %d: want at least 1", c.Devices)
	case c.MemBytes <= 0:
		return fmt.Errorf("memory %d bytes: want > 0", c.MemBytes)
	case !pos(c.TFLOPS):
		return fmt.Errorf("tflops %v: want a positive number (sustained TFLOP/s per device)", c.TFLOPS)
	case !pos(c.BandwidthGBs):
		return fmt.Errorf("bandwidth %v: want a positive number of GB/s per device", c.BandwidthGBs)
	case !(c.Overlap >= 0 && c.Overlap <= 1):
		return fmt.Errorf("overlap %v: want a fraction in [0, 1]", c.Overlap)
	case c.OverheadBytes < 0:
		return fmt.Errorf("overhead %d bytes: want >= 0", c.OverheadBytes)
	}
	return nil
}

// States is the memory of weights, gradients and optimizer state on one
// rank of a DP × EP layout, for nonExpert replicated parameters and expert
// routed-expert parameters (all experts; each rank holds expert/EP).
// Non-expert states shard over all DP·EP ranks, expert states over the DP
// ranks holding the same experts.
func States(nonExpert, expert int64, dp, ep int, o Options) model.Memory {
	b := o.Precision.bytes()
	po, pe := float64(nonExpert), float64(expert)/float64(ep)
	shard := func(stage int) (so, se float64) { // divisors at a ZeRO stage
		if o.ZeRO >= stage {
			return float64(dp * ep), float64(dp)
		}
		return 1, 1
	}
	g1, g2 := shard(2)
	o1, o2 := shard(1)
	m := model.Memory{
		Weights:   int64(math.Round(b.weights * (po + pe))),
		Gradients: int64(math.Round(b.gradsFull*(po+pe) + b.gradsSharded*(po/g1+pe/g2))),
		Optimizer: int64(math.Round(b.optimizer * (po/o1 + pe/o2))),
	}
	m.Total = m.Weights + m.Gradients + m.Optimizer
	return m
}

// ActivationBytes is the activation memory of one micro-batch of batch
// sequences of seq tokens under o's precision, recomputation and attention.
func ActivationBytes(m configs.Model, batch, seq int, o Options) int64 {
	a := model.CountActivations(m, seq)
	tokens := int64(batch) * int64(seq)
	scores := a.Scores * int64(batch) // one layer's
	if o.FlashAttention || o.Recompute == RecomputeSelective {
		scores = 0
	}
	var n int64
	switch o.Recompute {
	case RecomputeFull:
		// Every layer's input, plus the one layer being recomputed.
		var widest int64
		for _, v := range a.Layer {
			widest = max(widest, v)
		}
		n = (int64(len(a.Layer))*a.LayerInput+a.Outside+widest)*tokens + scores + a.Head
	default:
		n = a.PerToken()*tokens + scores*int64(len(a.Layer)) + a.Head
	}
	return int64(math.Round(float64(n) * o.Precision.bytes().activation))
}

// Split counts the parameters of routed experts (all MoE layers) and the
// rest, which every rank replicates.
func Split(m configs.Model) (nonExpert, expert int64) {
	for _, p := range model.Layout(m) {
		if p.Int {
			continue
		}
		if p.Experts > 0 {
			expert += p.Size()
		} else {
			nonExpert += p.Size()
		}
	}
	return nonExpert, expert
}

func moeLayers(m configs.Model) int {
	n := 0
	for l := 0; l < m.Layers; l++ {
		if m.IsMoELayer(l) {
			n++
		}
	}
	return n
}

// Plan estimates every layout DP·EP = devices whose EP divides the routed
// experts (EP = 1 only for dense models; only o.EP when set), in increasing
// EP. train.batch_size must be divisible by the devices.
func Plan(cfg configs.Config, c Cluster, o Options) ([]Layout, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	if err := o.Validate(); err != nil {
		return nil, err
	}
	m, t := cfg.Model, cfg.Train
	if t.BatchSize%c.Devices != 0 {
		return nil, fmt.Errorf("train.batch_size %d is not divisible by %d devices: every rank trains on an equal share of each batch", t.BatchSize, c.Devices)
	}
	po, pr := Split(m)
	local := t.BatchSize / c.Devices
	b := o.Precision.bytes()
	tokensRank := float64(local) * float64(t.SeqLen)
	fpt := model.FLOPsPerToken(m, t.SeqLen)
	// Recomputation adds forward FLOPs: a whole forward pass (a third of
	// forward plus backward) for full; the attention score and value
	// products (4·L·T·d per token) for selective or tiled attention.
	extra := 0.0
	switch {
	case o.Recompute == RecomputeFull:
		extra = fpt / 3
	case o.Recompute == RecomputeSelective || o.FlashAttention:
		extra = 4 * float64(m.Layers) * float64(t.SeqLen) * float64(m.Hidden)
	}
	bw := c.BandwidthGBs * 1e9
	ring := func(bytes float64, p int) float64 { // ring all-reduce (or reduce-scatter + all-gather)
		if p <= 1 {
			return 0
		}
		return 2 * float64(p-1) / float64(p) * bytes / bw
	}
	var rows []Layout
	for ep := 1; ep <= c.Devices; ep++ {
		if c.Devices%ep != 0 || (ep > 1 && (m.RoutedExperts == 0 || m.RoutedExperts%ep != 0)) || (o.EP > 0 && ep != o.EP) {
			continue
		}
		dp := c.Devices / ep
		st := States(po, pr, dp, ep, o)
		r := Layout{DP: dp, EP: ep, Weights: st.Weights, Gradients: st.Gradients, Optimizer: st.Optimizer, Overhead: c.OverheadBytes}
		for mb := local; mb >= 1; mb-- {
			if local%mb != 0 || (o.MicroBatch > 0 && mb != intmath.GCD(o.MicroBatch, local)) {
				continue
			}
			r.MicroBatch, r.Activations = mb, ActivationBytes(m, mb, t.SeqLen, o)
			r.Total = st.Total + r.Activations + r.Overhead
			if r.Total <= c.MemBytes || o.MicroBatch > 0 {
				break
			}
		}
		r.Fits = r.Total <= c.MemBytes
		r.ComputeS = (fpt + extra) * tokensRank / (c.TFLOPS * 1e12)
		r.AllReduceS = (1 - c.Overlap) * (ring(b.reduce*float64(po), c.Devices) + ring(b.reduce*float64(pr)/float64(ep), dp))
		if ep > 1 {
			// Dispatch and combine, forward and backward (and forward
			// again under full recomputation); a share (EP-1)/EP of each
			// token's K routed copies leaves the rank.
			passes := 4.0
			if o.Recompute == RecomputeFull {
				passes = 6
			}
			perToken := float64(m.ActiveRouted) * float64(m.Hidden) * b.activation * float64(ep-1) / float64(ep)
			r.AllToAllS = passes * float64(moeLayers(m)) * tokensRank * perToken / bw
		}
		r.StepS = r.ComputeS + r.AllReduceS + r.AllToAllS
		r.TokensPerS = float64(t.BatchSize) * float64(t.SeqLen) / r.StepS
		rows = append(rows, r)
	}
	if len(rows) == 0 {
		return nil, fmt.Errorf("ep %d does not divide both the %d devices and the %d routed experts", o.EP, c.Devices, m.RoutedExperts)
	}
	return rows, nil
}

// Rank orders layouts for a reader: those that fit by decreasing tokens/s,
// then those that do not by increasing memory.
func Rank(rows []Layout) []Layout {
	out := append([]Layout(nil), rows...)
	sort.SliceStable(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.Fits != b.Fits {
			return a.Fits
		}
		if a.Fits {
			return a.TokensPerS > b.TokensPerS
		}
		return a.Total < b.Total
	})
	return out
}

// Assumptions are the plan's premises in words, printed with every plan.
func Assumptions(c Cluster, o Options) []string {
	prec := "fp32: float32 weights, the graph's gradient plus a float32 accumulator, AdamW's two float32 moments (20 bytes per parameter), float32 activations"
	if o.Precision == BF16 {
		prec = "bf16 mixed precision: bf16 weights and gradients, fp32 master weights and AdamW moments (16 bytes per parameter), bf16 activations"
	}
	zero := [...]string{"no optimizer-state sharding (ZeRO-0)",
		"ZeRO-1: optimizer states sharded over data-parallel ranks (non-expert over all ranks, an expert shard's over the ranks holding it)",
		"ZeRO-2: optimizer states and gradients sharded over data-parallel ranks (non-expert over all ranks, an expert shard's over the ranks holding it)"}[o.ZeRO]
	attn := "attention scores materialised (H·T² per layer and sequence, and their gradient)"
	if o.FlashAttention {
		attn = "attention computed in tiles: no T×T scores stored, recomputed in the backward pass"
	}
	rec := map[Recompute]string{
		RecomputeNone:      "no activation recomputation",
		RecomputeSelective: "selective recomputation: attention scores and probabilities recomputed in the backward pass",
		RecomputeFull:      "full recomputation: each layer's input stored, its forward rerun in the backward pass (+1/3 compute, +2 all-to-alls per MoE layer)",
	}[o.Recompute]
	return []string{
		prec, zero, rec, attn,
		"activations: every saved value and one gradient of each (an upper bound of the live set); the loss in 256-token chunks of logits",
		fmt.Sprintf("%.4g TFLOP/s sustained per device on 6·(activated − V·d) + 12·L·T·d FLOPs per token, plus recomputation", c.TFLOPS),
		fmt.Sprintf("%.4g GB/s per device for ring all-reduce (ZeRO's reduce-scatter + all-gather move the same bytes) and for all-to-all; balanced routing", c.BandwidthGBs),
		fmt.Sprintf("%.0f%% of the gradient reduction overlapped with the backward pass; all-to-alls and compute not overlapped", 100*c.Overlap),
		fmt.Sprintf("%s per device outside the model's state and activations (runtime, libraries, CUDA context)", units.Bytes(c.OverheadBytes)),
	}
}
