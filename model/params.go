package model

import (
	"fmt"

	"github.com/moetrain/moetrain/configs"
)

// Param describes one stored parameter tensor without allocating it.
//
// Names are the public DeepSeek Hugging Face keys (DESIGN.md §8). Routed experts
// of one layer are stored stacked, [E, out, in], under a name with "*" in
// place of the expert index ("model.layers.1.mlp.experts.*.gate_proj.weight");
// HFName expands it. Shared experts are stored merged, as the HF layout has
// them (one SwiGLU of width shared_experts·expert_width).
type Param struct {
	Name    string
	Shape   []int
	Experts int    // > 0: a stack of this many routed experts along dim 0
	Decay   bool   // AdamW weight decay applies (every matrix; not norm weights)
	Kind    string // embed, norm, attn, dense, router, experts, shared, head, hash
	Layer   int    // -1 outside the decoder layers
	Int     bool   // an integer tensor stored with the weights (hash table), not trained
	// Buffer marks a float tensor that is model state but not trained by
	// the optimizer: the router's selection bias of auxiliary-loss-free
	// balancing, moved by the trainer after each step (PyTorch's buffers).
	Buffer bool
}

// Trained reports whether the optimizer trains p (it has a gradient).
func (p Param) Trained() bool { return !p.Int && !p.Buffer }

// Size is the number of elements.
func (p Param) Size() int64 {
	n := int64(1)
	for _, s := range p.Shape {
		n *= int64(s)
	}
	return n
}

// HFName is the HF key of expert e of a stacked tensor (or the name itself).
func (p Param) HFName(e int) string {
	if p.Experts == 0 {
		return p.Name
	}
	return replaceStar(p.Name, e)
}

func replaceStar(name string, e int) string {
	for i := 0; i < len(name); i++ {
		if name[i] == '*' {
			return name[:i] + fmt.Sprint(e) + name[i+1:]
		}
	}
	return name
}

// Layout lists every parameter of the model, in a fixed order.
func Layout(m configs.Model) []Param {
	d, v := m.Hidden, m.VocabSize
	ps := []Param{{Name: "model.embed_tokens.weight", Shape: []int{v, d}, Decay: true, Kind: "embed", Layer: -1}}
	for i := 0; i < m.Layers; i++ {
		pre := fmt.Sprintf("model.layers.%d.", i)
		ps = append(ps,
			Param{Name: pre + "input_layernorm.weight", Shape: []int{d}, Kind: "norm", Layer: i},
			Param{Name: pre + "self_attn.q_proj.weight", Shape: []int{d, d}, Decay: true, Kind: "attn", Layer: i},
			Param{Name: pre + "self_attn.k_proj.weight", Shape: []int{d, d}, Decay: true, Kind: "attn", Layer: i},
			Param{Name: pre + "self_attn.v_proj.weight", Shape: []int{d, d}, Decay: true, Kind: "attn", Layer: i},
			Param{Name: pre + "self_attn.o_proj.weight", Shape: []int{d, d}, Decay: true, Kind: "attn", Layer: i},
			Param{Name: pre + "post_attention_layernorm.weight", Shape: []int{d}, Kind: "norm", Layer: i},
		)
		if !m.IsMoELayer(i) {
			f := m.DenseWidth
			ps = append(ps,
				Param{Name: pre + "mlp.gate_proj.weight", Shape: []int{f, d}, Decay: true, Kind: "dense", Layer: i},
				Param{Name: pre + "mlp.up_proj.weight", Shape: []int{f, d}, Decay: true, Kind: "dense", Layer: i},
				Param{Name: pre + "mlp.down_proj.weight", Shape: []int{d, f}, Decay: true, Kind: "dense", Layer: i},
			)
			continue
		}
		e, w := m.RoutedExperts, m.ExpertWidth
		if m.FFN == configs.FFNHash {
			ps = append(ps, Param{Name: pre + "mlp.hash_table", Shape: []int{v}, Kind: "hash", Layer: i, Int: true})
		} else {
			ps = append(ps, Param{Name: pre + "mlp.gate.weight", Shape: []int{e, d}, Decay: true, Kind: "router", Layer: i})
			if m.Router.BiasRate > 0 {
				// DeepSeek-V3's HF key for the same tensor.
				ps = append(ps, Param{Name: pre + BiasSuffix, Shape: []int{e}, Kind: "bias", Layer: i, Buffer: true})
			}
		}
		ps = append(ps,
			Param{Name: pre + "mlp.experts.*.gate_proj.weight", Shape: []int{e, w, d}, Experts: e, Decay: true, Kind: "experts", Layer: i},
			Param{Name: pre + "mlp.experts.*.up_proj.weight", Shape: []int{e, w, d}, Experts: e, Decay: true, Kind: "experts", Layer: i},
			Param{Name: pre + "mlp.experts.*.down_proj.weight", Shape: []int{e, d, w}, Experts: e, Decay: true, Kind: "experts", Layer: i},
		)
		if s := m.SharedExperts; s > 0 {
			ps = append(ps,
				Param{Name: pre + "mlp.shared_experts.gate_proj.weight", Shape: []int{s * w, d}, Decay: true, Kind: "shared", Layer: i},
				Param{Name: pre + "mlp.shared_experts.up_proj.weight", Shape: []int{s * w, d}, Decay: true, Kind: "shared", Layer: i},
				Param{Name: pre + "mlp.shared_experts.down_proj.weight", Shape: []int{d, s * w}, Decay: true, Kind: "shared", Layer: i},
			)
		}
	}
	ps = append(ps,
		Param{Name: "model.norm.weight", Shape: []int{d}, Kind: "norm", Layer: -1},
		Param{Name: "lm_head.weight", Shape: []int{v, d}, Decay: true, Kind: "head", Layer: -1},
	)
	return ps
}

// BiasSuffix ends the name of a layer's router selection bias
// ("model.layers.L." + BiasSuffix).
const BiasSuffix = "mlp.gate.e_score_correction_bias"

// Counts are parameter counts under DESIGN.md §7.1's convention: totals count
// everything (embedding, untied lm_head, norms, routers, all experts);
// activated counts only the shared plus the active routed experts of each
// MoE layer. The hash table and the router bias are not parameters.
type Counts struct {
	Total            int64 `json:"total"`
	Activated        int64 `json:"activated"`
	TotalNoEmbed     int64 `json:"total_no_embed"`
	ActivatedNoEmbed int64 `json:"activated_no_embed"`
}

// Count returns the parameter counts of m.
func Count(m configs.Model) Counts {
	var c Counts
	for _, p := range Layout(m) {
		if !p.Trained() {
			continue
		}
		n := p.Size()
		act := n
		if p.Experts > 0 {
			act = n / int64(p.Experts) * int64(m.ActiveRouted)
		}
		c.Total += n
		c.Activated += act
		if p.Kind != "embed" && p.Kind != "head" {
			c.TotalNoEmbed += n
			c.ActivatedNoEmbed += act
		}
	}
	return c
}

// FLOPsPerToken is DESIGN.md §7.3's one convention, used by bench, training
// metrics and compare tables: 6·(activated − V·d) + 12·L·seq·d, i.e. six
// times the activated parameters except the input-embedding lookup, plus
// full (non-causal) attention score and value products.
func FLOPsPerToken(m configs.Model, seq int) float64 {
	c := Count(m)
	return 6*float64(c.Activated-int64(m.VocabSize)*int64(m.Hidden)) + 12*float64(m.Layers)*float64(seq)*float64(m.Hidden)
}
