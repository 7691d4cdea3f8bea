package model

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"strings"

	"github.com/moetrain/moetrain/checkpoints"
	"github.com/moetrain/moetrain/configs"
)

// hfView is one weight under its Hugging Face key (DESIGN.md §8): routed
// experts one key each, in PyTorch [out, in] layout. Exactly one of f32,
// f64 or ints is set, aliasing the model's storage, except for an expert
// another shard holds (param, expert ≥ 0; listed only on request).
type hfView struct {
	name   string
	shape  []int
	f32    []float32
	f64    []float64
	ints   []int
	param  int // index in Layout
	expert int // the routed expert of a stack, -1 otherwise
}

// hfViews lists every weight m holds under its HF key, experts expanded,
// sorted by name. Hash tables are included (model-specific key
// mlp.hash_table). A sharded model (NewSharded) lists only its own experts,
// unless others is set: then the other shards' experts are listed too,
// without values.
func (m *Model) hfViews(others bool) []hfView {
	var out []hfView
	for i, p := range m.Layout {
		v := m.Values[i]
		if p.Int {
			out = append(out, hfView{name: p.Name, shape: append([]int(nil), p.Shape...), ints: v.Data().([]int), param: i, expert: -1})
			continue
		}
		if p.Experts == 0 {
			t := hfView{name: p.Name, shape: append([]int(nil), p.Shape...), param: i, expert: -1}
			switch d := v.Data().(type) {
			case []float32:
				t.f32 = d
			case []float64:
				t.f64 = d
			}
			out = append(out, t)
			continue
		}
		per := int(p.Size()) / p.Experts
		lo, hi := m.Own(i)
		for e := 0; e < p.Experts; e++ {
			t := hfView{name: p.HFName(e), shape: append([]int(nil), p.Shape[1:]...), param: i, expert: e}
			own := e*per >= lo && (e+1)*per <= hi
			if !own && !others {
				continue
			}
			if own {
				switch d := v.Data().(type) {
				case []float32:
					t.f32 = d[e*per-lo : (e+1)*per-lo]
				case []float64:
					t.f64 = d[e*per-lo : (e+1)*per-lo]
				}
			}
			out = append(out, t)
		}
	}
	sort.Slice(out, func(a, b int) bool { return out[a].name < out[b].name })
	return out
}

// HFTensors lists every weight as a tensor under its HF key, sorted by
// name: the layout of checkpoints and of Hugging Face exports. Float
// tensors alias the model's storage (copy before changing them); hash
// tables are copied as int32. A sharded model lists only its own experts.
func (m *Model) HFTensors() []checkpoints.Tensor {
	return m.hfTensors(m.hfViews(false), nil)
}

// HFTensorsFrom is HFTensors of a sharded model that lists every expert,
// as an unsharded model does: each expert another shard holds is a
// tensor whose values are streamed, when a writer reaches it, from
// fetch(i, e), expert e of Layout[i]. So a checkpoint of the whole model
// is written while this process holds only its shard plus one expert.
func (m *Model) HFTensorsFrom(fetch func(i, e int) ([]float32, error)) []checkpoints.Tensor {
	return m.hfTensors(m.hfViews(true), fetch)
}

// HFForeign reports whether name is the HF key of an expert that another
// shard holds (always false for an unsharded model): what a sharded
// model's load leaves out.
func (m *Model) HFForeign() func(name string) bool {
	foreign := map[string]bool{}
	for _, v := range m.hfViews(true) {
		if v.expert >= 0 && v.f32 == nil && v.f64 == nil {
			foreign[v.name] = true
		}
	}
	return func(name string) bool { return foreign[name] }
}

func (m *Model) hfTensors(views []hfView, fetch func(i, e int) ([]float32, error)) []checkpoints.Tensor {
	out := make([]checkpoints.Tensor, 0, len(views))
	for _, v := range views {
		t := checkpoints.Tensor{Name: v.name, Shape: v.shape}
		switch {
		case v.expert >= 0 && v.f32 == nil && v.f64 == nil:
			i, e := v.param, v.expert
			t.DType = checkpoints.F32
			t.Stream = func(put func([]float32) error) error {
				vals, err := fetch(i, e)
				if err != nil {
					return err
				}
				return put(vals)
			}
		case v.f32 != nil:
			t.DType, t.F32 = checkpoints.F32, v.f32
		case v.f64 != nil:
			t.DType, t.F64 = checkpoints.F64, v.f64
		default:
			t.DType = checkpoints.I32
			t.I32 = make([]int32, len(v.ints))
			for i, x := range v.ints {
				t.I32[i] = int32(x)
			}
		}
		out = append(out, t)
	}
	return out
}

// LoadHF sets every weight from tensors keyed by HF name (floating-point
// values converted to the model's dtype). Missing keys, unexpected keys and
// shape mismatches are all reported in one error.
func (m *Model) LoadHF(ts []checkpoints.Tensor) error {
	byName := map[string]checkpoints.Tensor{}
	for _, t := range ts {
		byName[t.Name] = t
	}
	want := map[string]bool{}
	var problems []string
	for _, dst := range m.hfViews(false) {
		want[dst.name] = true
		src, ok := byName[dst.name]
		if !ok {
			problems = append(problems, "missing "+dst.name)
			continue
		}
		if fmt.Sprint(src.Shape) != fmt.Sprint(dst.shape) {
			problems = append(problems, fmt.Sprintf("%s: shape %v, want %v", dst.name, src.Shape, dst.shape))
			continue
		}
		switch {
		case dst.ints != nil:
			ints, ok := intValues(src)
			if !ok || len(ints) != len(dst.ints) {
				problems = append(problems, dst.name+": want an integer tensor")
				continue
			}
			for j, x := range ints {
				if x < 0 || x >= int64(m.Cfg.RoutedExperts) {
					problems = append(problems, fmt.Sprintf("%s: expert %d out of range [0, %d)", dst.name, x, m.Cfg.RoutedExperts))
					break
				}
				dst.ints[j] = int(x)
			}
		case dst.f32 != nil:
			if err := copyFloats(dst.f32, src); err != nil {
				problems = append(problems, dst.name+": "+err.Error())
			}
		case dst.f64 != nil:
			if err := copyFloats(dst.f64, src); err != nil {
				problems = append(problems, dst.name+": "+err.Error())
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

// intValues returns an integer tensor's values.
func intValues(t checkpoints.Tensor) ([]int64, bool) {
	switch {
	case t.I32 != nil:
		out := make([]int64, len(t.I32))
		for i, v := range t.I32 {
			out[i] = int64(v)
		}
		return out, true
	case t.I64 != nil:
		return t.I64, true
	}
	return nil, false
}

func copyFloats[F float32 | float64](dst []F, src checkpoints.Tensor) error {
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

// hfInexpressible names the model.router settings DeepseekForCausalLM
// cannot express ("" when it can). The z-loss and a router frozen late in
// training only shape training: a model trained with them exports as usual.
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
	if r.Input == configs.RouterInputEmbedding {
		what = append(what, "a router reading the token embedding (model.router.input)")
	}
	if len(what) == 0 {
		return ""
	}
	return "this model has " + strings.Join(what, ", ")
}

// HFConfig returns the DeepseekForCausalLM config.json fields for cfg
// (DESIGN.md §8), with maxPositions as max_position_embeddings. Hash models have
// no HF equivalent and return an error.
//
// The model kinds map as follows (both ways):
//
//	moetrain ffn   n_shared_experts  num_experts_per_tok  norm_topk_prob  n_routed_experts
//	dense          null              null                 false           null
//	deepseekmoe    Ks (null if 0)    K'                   false           N'
//	gshard         null              2                    true            N
//	switch         null              1                    false           N
//	hash           refused: the DeepSeek code has no hash router
//
// ParseHFConfig reads n_shared_experts 0 and null alike. A top-1 model imports as
// switch whatever its norm_topk_prob (renormalising one gate is a no-op in
// the HF code); top-2 with norm_topk_prob and no shared experts as gshard;
// any other routed model as deepseekmoe. Fields moetrain cannot compute
// (rope_scaling, attention_bias, tied embeddings, grouped-query attention, a
// non-softmax router, a non-SiLU activation) are refused, never ignored.
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

// HFModel is what moetrain takes from a DeepseekForCausalLM config.json.
type HFModel struct {
	Model configs.Model
	// MaxPositions is max_position_embeddings (0 when absent). moetrain
	// exports its training sequence length there.
	MaxPositions int
	// BOS and EOS are bos_token_id and eos_token_id (nil when absent).
	BOS, EOS *int
}

// hfConfig lists the config.json fields moetrain reads. Pointers tell an
// absent or null field from a zero one.
type hfConfig struct {
	ModelType             *string         `json:"model_type"`
	VocabSize             *int            `json:"vocab_size"`
	HiddenSize            *int            `json:"hidden_size"`
	IntermediateSize      *int            `json:"intermediate_size"`
	MoEIntermediateSize   *int            `json:"moe_intermediate_size"`
	NumHiddenLayers       *int            `json:"num_hidden_layers"`
	NumAttentionHeads     *int            `json:"num_attention_heads"`
	NumKeyValueHeads      *int            `json:"num_key_value_heads"`
	NSharedExperts        *int            `json:"n_shared_experts"`
	NRoutedExperts        *int            `json:"n_routed_experts"`
	NumExpertsPerTok      *int            `json:"num_experts_per_tok"`
	FirstKDenseReplace    *int            `json:"first_k_dense_replace"`
	MoELayerFreq          *int            `json:"moe_layer_freq"`
	NormTopKProb          *bool           `json:"norm_topk_prob"`
	ScoringFunc           *string         `json:"scoring_func"`
	AuxLossAlpha          *float64        `json:"aux_loss_alpha"`
	SeqAux                *bool           `json:"seq_aux"`
	HiddenAct             *string         `json:"hidden_act"`
	MaxPositionEmbeddings *int            `json:"max_position_embeddings"`
	RMSNormEps            *float64        `json:"rms_norm_eps"`
	RopeTheta             *float64        `json:"rope_theta"`
	RopeScaling           json.RawMessage `json:"rope_scaling"`
	AttentionBias         *bool           `json:"attention_bias"`
	TieWordEmbeddings     *bool           `json:"tie_word_embeddings"`
	InitializerRange      *float64        `json:"initializer_range"`
	BOSTokenID            *int            `json:"bos_token_id"`
	EOSTokenID            *int            `json:"eos_token_id"`
}

// ParseHFConfig maps the bytes of a DeepseekForCausalLM config.json onto a
// moetrain model section, the inverse of HFConfig (mapping above).
// Fields the DeepSeek code defaults (moe_layer_freq 1, first_k_dense_replace
// 0, norm_topk_prob false, aux_loss_alpha 0.001, seq_aux true, rms_norm_eps
// 1e-6, rope_theta 10000, initializer_range 0.02) may be absent; the sizes
// must be present. Every problem is reported in one error.
func ParseHFConfig(raw []byte) (HFModel, error) {
	var h hfConfig
	dec := json.NewDecoder(bytes.NewReader(raw))
	if err := dec.Decode(&h); err != nil {
		return HFModel{}, fmt.Errorf("decode json: %w", err)
	}
	var bad []string
	add := func(format string, args ...any) { bad = append(bad, fmt.Sprintf(format, args...)) }
	switch {
	case h.ModelType == nil:
		add("model_type: missing (want \"deepseek\", DeepseekForCausalLM)")
	case *h.ModelType != "deepseek":
		add("model_type: unknown model type %q (moetrain reads \"deepseek\", DeepseekForCausalLM)", *h.ModelType)
	}
	need := func(name string, p *int) int {
		if p == nil {
			add("%s: missing", name)
			return 0
		}
		return *p
	}
	orInt := func(p *int, def int) int {
		if p == nil {
			return def
		}
		return *p
	}
	orFloat := func(p *float64, def float64) float64 {
		if p == nil {
			return def
		}
		return *p
	}
	m := configs.Default().Model
	m.VocabSize = need("vocab_size", h.VocabSize)
	m.Hidden = need("hidden_size", h.HiddenSize)
	m.Layers = need("num_hidden_layers", h.NumHiddenLayers)
	m.Heads = need("num_attention_heads", h.NumAttentionHeads)
	if h.NumKeyValueHeads != nil && h.NumAttentionHeads != nil && *h.NumKeyValueHeads != *h.NumAttentionHeads {
		add("num_key_value_heads: %d differs from num_attention_heads %d (grouped-query attention is not supported)", *h.NumKeyValueHeads, *h.NumAttentionHeads)
	}
	m.FirstDenseLayers = orInt(h.FirstKDenseReplace, 0)
	m.MoELayerFreq = orInt(h.MoELayerFreq, 1)
	m.NormEps = orFloat(h.RMSNormEps, 1e-6)
	m.RopeTheta = orFloat(h.RopeTheta, 10000)
	m.InitStd = orFloat(h.InitializerRange, 0.02)
	m.Balance = configs.Balance{ExpertAlpha: orFloat(h.AuxLossAlpha, 0.001), DeviceGroups: 1, PerSequence: true}
	if h.SeqAux != nil {
		m.Balance.PerSequence = *h.SeqAux
	}
	if h.HiddenAct != nil && *h.HiddenAct != "silu" {
		add("hidden_act: %q is not supported (moetrain's FFNs are SwiGLU, \"silu\")", *h.HiddenAct)
	}
	if s := bytes.TrimSpace(h.RopeScaling); len(s) > 0 && !bytes.Equal(s, []byte("null")) {
		add("rope_scaling: %s is not supported (want null)", s)
	}
	if h.AttentionBias != nil && *h.AttentionBias {
		add("attention_bias: true is not supported (moetrain's attention has no biases)")
	}
	if h.TieWordEmbeddings != nil && *h.TieWordEmbeddings {
		add("tie_word_embeddings: true is not supported (moetrain's lm_head is untied)")
	}
	routed := orInt(h.NRoutedExperts, 0)
	if h.IntermediateSize != nil {
		m.DenseWidth = *h.IntermediateSize
	}
	if routed == 0 {
		m.FFN = configs.FFNDense
		m.Balance.ExpertAlpha = 0
		if h.IntermediateSize == nil {
			add("intermediate_size: missing (a dense model needs it)")
		}
	} else {
		if h.ScoringFunc != nil && *h.ScoringFunc != "softmax" {
			add("scoring_func: %q is not supported (want \"softmax\")", *h.ScoringFunc)
		}
		m.RoutedExperts = routed
		m.SharedExperts = orInt(h.NSharedExperts, 0) // 0 and null mean the same
		m.ActiveRouted = need("num_experts_per_tok", h.NumExpertsPerTok)
		m.ExpertWidth = need("moe_intermediate_size", h.MoEIntermediateSize)
		norm := h.NormTopKProb != nil && *h.NormTopKProb
		switch {
		case m.SharedExperts == 0 && m.ActiveRouted == 1:
			m.FFN = configs.FFNSwitch
		case m.SharedExperts == 0 && m.ActiveRouted == 2 && norm:
			m.FFN = configs.FFNGShard
		case norm:
			add("norm_topk_prob: true with %d shared experts and top-%d routing has no moetrain equivalent (only GShard, top-2 without shared experts, renormalises its gates)", m.SharedExperts, m.ActiveRouted)
		default:
			m.FFN = configs.FFNDeepSeekMoE
		}
		if m.FirstDenseLayers > 0 || m.MoELayerFreq > 1 {
			if h.IntermediateSize == nil {
				add("intermediate_size: missing (layers before first_k_dense_replace or off moe_layer_freq are dense)")
			}
		}
	}
	for _, f := range []struct {
		name string
		v    float64
	}{{"rms_norm_eps", m.NormEps}, {"rope_theta", m.RopeTheta}, {"initializer_range", m.InitStd}, {"aux_loss_alpha", m.Balance.ExpertAlpha}} {
		if math.IsNaN(f.v) || math.IsInf(f.v, 0) {
			add("%s: %v is not finite", f.name, f.v)
		}
	}
	if len(bad) == 0 {
		// The model section's own rules (heads divide hidden, top-k within
		// the experts, ...), reported under the HF names where they differ.
		for _, b := range m.Validate() {
			add("%s", hfName(b))
		}
	}
	if len(bad) > 0 {
		return HFModel{}, fmt.Errorf("%d problem(s):\n  %s", len(bad), strings.Join(bad, "\n  "))
	}
	c := HFModel{Model: m, BOS: h.BOSTokenID, EOS: h.EOSTokenID}
	if h.MaxPositionEmbeddings != nil {
		c.MaxPositions = *h.MaxPositionEmbeddings
	}
	return c, nil
}

// hfNames maps moetrain's model keys to the config.json fields they come from.
var hfNames = map[string]string{
	"model.vocab_size": "vocab_size", "model.hidden": "hidden_size", "model.layers": "num_hidden_layers",
	"model.heads": "num_attention_heads", "model.dense_width": "intermediate_size",
	"model.shared_experts": "n_shared_experts", "model.routed_experts": "n_routed_experts",
	"model.active_routed": "num_experts_per_tok", "model.expert_width": "moe_intermediate_size",
	"model.first_dense_layers": "first_k_dense_replace", "model.moe_layer_freq": "moe_layer_freq",
	"model.rope_theta": "rope_theta", "model.norm_eps": "rms_norm_eps", "model.init_std": "initializer_range",
	"model.balance.expert_alpha": "aux_loss_alpha",
}

func hfName(problem string) string {
	key, rest, ok := strings.Cut(problem, ":")
	if !ok {
		return problem
	}
	if n, ok := hfNames[key]; ok {
		return n + " (model." + strings.TrimPrefix(key, "model.") + "):" + rest
	}
	return problem
}
