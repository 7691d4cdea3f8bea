package model

import (
	"fmt"
	"sort"
	"strings"

	"github.com/moetrain/moetrain/configs"
)

// HFTensor is one tensor under its Hugging Face key (DESIGN.md §8): routed
// experts one key each, in PyTorch [out, in] layout. Exactly one of F32,
// F64 or Ints is set. F32/F64 alias the model's storage: copy before
// changing them.
type HFTensor struct {
	Name  string
	Shape []int
	F32   []float32
	F64   []float64
	Ints  []int
}

// HFTensors lists every weight under its HF key, experts expanded, sorted by
// name. Hash tables are included (model-specific key mlp.hash_table).
func (m *Model) HFTensors() []HFTensor {
	var out []HFTensor
	for i, p := range m.Layout {
		v := m.Values[i]
		if p.Int {
			out = append(out, HFTensor{Name: p.Name, Shape: append([]int(nil), p.Shape...), Ints: v.Data().([]int)})
			continue
		}
		n := 1
		for _, s := range p.Shape {
			n *= s
		}
		parts, shape := 1, p.Shape
		if p.Experts > 0 {
			parts, shape = p.Experts, p.Shape[1:]
		}
		per := n / parts
		for e := 0; e < parts; e++ {
			t := HFTensor{Name: p.HFName(e), Shape: append([]int(nil), shape...)}
			switch d := v.Data().(type) {
			case []float32:
				t.F32 = d[e*per : (e+1)*per]
			case []float64:
				t.F64 = d[e*per : (e+1)*per]
			}
			out = append(out, t)
		}
	}
	sort.Slice(out, func(a, b int) bool { return out[a].Name < out[b].Name })
	return out
}

// LoadHF sets every weight from tensors keyed by HF name (values converted
// to the model's dtype). Missing keys, unexpected keys and shape mismatches
// are all reported in one error.
func (m *Model) LoadHF(ts []HFTensor) error {
	byName := map[string]HFTensor{}
	for _, t := range ts {
		byName[t.Name] = t
	}
	want := map[string]bool{}
	var problems []string
	for _, dst := range m.HFTensors() {
		want[dst.Name] = true
		src, ok := byName[dst.Name]
		if !ok {
			problems = append(problems, "missing "+dst.Name)
			continue
		}
		if fmt.Sprint(src.Shape) != fmt.Sprint(dst.Shape) {
			problems = append(problems, fmt.Sprintf("%s: shape %v, want %v", dst.Name, src.Shape, dst.Shape))
			continue
		}
		switch {
		case dst.Ints != nil:
			if len(src.Ints) != len(dst.Ints) {
				problems = append(problems, dst.Name+": want an integer tensor")
				continue
			}
			for j, x := range src.Ints {
				if x < 0 || x >= m.Cfg.RoutedExperts {
					problems = append(problems, fmt.Sprintf("%s: expert %d out of range [0, %d)", dst.Name, x, m.Cfg.RoutedExperts))
					break
				}
				dst.Ints[j] = x
			}
		case dst.F32 != nil:
			if err := copyFloats(dst.F32, src); err != nil {
				problems = append(problems, dst.Name+": "+err.Error())
			}
		case dst.F64 != nil:
			if err := copyFloats(dst.F64, src); err != nil {
				problems = append(problems, dst.Name+": "+err.Error())
			}
		}
	}
	var extra []string
	for name := range byName {
		if !want[name] {
			extra = append(extra, "unexpected "+name)
		}
	}
	sort.Strings(extra)
	problems = append(problems, extra...)
	if len(problems) > 0 {
		return fmt.Errorf("load weights: %d problem(s):\n  %s", len(problems), strings.Join(problems, "\n  "))
	}
	return nil
}

func copyFloats[F float32 | float64](dst []F, src HFTensor) error {
	switch {
	case src.F32 != nil && len(src.F32) == len(dst):
		for i, v := range src.F32 {
			dst[i] = F(v)
		}
	case src.F64 != nil && len(src.F64) == len(dst):
		for i, v := range src.F64 {
			dst[i] = F(v)
		}
	default:
		return fmt.Errorf("want %d floating-point values", len(dst))
	}
	return nil
}

// HFConfig returns the DeepseekForCausalLM config.json fields for cfg
// (DESIGN.md §8), with maxPositions as max_position_embeddings. Hash models have
// no HF equivalent and return an error.
// hfInexpressible names the model.router settings DeepseekForCausalLM
// cannot express ("" when it can). The z-loss only shapes training: a model
// trained with it exports as usual.
func hfInexpressible(r configs.Router) string {
	var what []string
	if r.Sigmoid() {
		what = append(what, "sigmoid router scores (model.router.score)")
	}
	if r.Scale != 1 {
		what = append(what, fmt.Sprintf("routed gates scaled by %g (model.router.scale)", r.Scale))
	}
	if r.BiasRate > 0 {
		what = append(what, "a router selection bias (model.router.bias_rate, auxiliary-loss-free balancing)")
	}
	if r.ExpertChoice {
		what = append(what, "expert-choice routing (model.router.expert_choice)")
	}
	if len(what) == 0 {
		return ""
	}
	return "this model has " + strings.Join(what, ", ")
}

func HFConfig(cfg configs.Model, maxPositions int) (map[string]any, error) {
	if cfg.FFN == configs.FFNHash {
		return nil, fmt.Errorf("hash routing has no Hugging Face equivalent (the DeepSeek code has no hash router); export a dense or learned-router model")
	}
	if why := hfInexpressible(cfg.Router); why != "" {
		return nil, fmt.Errorf("%s; DeepseekForCausalLM's router is a softmax top-k with unscaled gates and no selection bias, so the model would not compute what was trained", why)
	}
	c := map[string]any{
		"architectures": []string{"DeepseekForCausalLM"},
		"model_type":    "deepseek",
		"auto_map": map[string]string{
			"AutoConfig":           "configuration_deepseek.DeepseekConfig",
			"AutoModel":            "modeling_deepseek.DeepseekModel",
			"AutoModelForCausalLM": "modeling_deepseek.DeepseekForCausalLM",
		},
		"vocab_size":              cfg.VocabSize,
		"hidden_size":             cfg.Hidden,
		"intermediate_size":       cfg.DenseWidth,
		"num_hidden_layers":       cfg.Layers,
		"num_attention_heads":     cfg.Heads,
		"num_key_value_heads":     cfg.Heads,
		"hidden_act":              "silu",
		"max_position_embeddings": maxPositions,
		"rms_norm_eps":            cfg.NormEps,
		"rope_theta":              cfg.RopeTheta,
		"rope_scaling":            nil,
		"attention_bias":          false,
		"attention_dropout":       0.0,
		"initializer_range":       cfg.InitStd,
		"pretraining_tp":          1,
		"tie_word_embeddings":     false,
		"use_cache":               true,
		"torch_dtype":             "float32",
		"scoring_func":            "softmax",
		"aux_loss_alpha":          cfg.Balance.ExpertAlpha,
		"seq_aux":                 cfg.Balance.PerSequence,
		"first_k_dense_replace":   cfg.FirstDenseLayers,
		"moe_layer_freq":          cfg.MoELayerFreq,
		"norm_topk_prob":          cfg.FFN == configs.FFNGShard,
		"n_shared_experts":        nil,
		"n_routed_experts":        nil,
		"num_experts_per_tok":     nil,
		"moe_intermediate_size":   cfg.DenseWidth,
	}
	if cfg.FFN != configs.FFNDense {
		c["n_routed_experts"] = cfg.RoutedExperts
		c["num_experts_per_tok"] = cfg.ActiveRouted
		c["moe_intermediate_size"] = cfg.ExpertWidth
		if cfg.SharedExperts > 0 {
			c["n_shared_experts"] = cfg.SharedExperts
		}
	}
	return c, nil
}
