package hf

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"strings"

	"github.com/moetrain/moetrain/configs"
)

// DType is the element type of exported weights, named as config.json's
// torch_dtype names it.
type DType string

// Export dtypes. Float32 keeps every bit; BFloat16 rounds to nearest-even
// (the dtype the public DeepSeek checkpoints use) and halves the size.
const (
	Float32  DType = "float32"
	BFloat16 DType = "bfloat16"
)

// ParseDType accepts fp32, f32, float32, bf16 and bfloat16.
func ParseDType(s string) (DType, error) {
	switch strings.ToLower(s) {
	case "fp32", "f32", "float32":
		return Float32, nil
	case "bf16", "bfloat16":
		return BFloat16, nil
	}
	return "", fmt.Errorf("dtype %q: want fp32 or bf16", s)
}

// Config is what moetrain takes from a DeepseekForCausalLM config.json.
type Config struct {
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

// ParseConfig maps the bytes of a DeepseekForCausalLM config.json onto a
// moetrain model section (see the package documentation for the mapping).
// Fields the DeepSeek code defaults (moe_layer_freq 1, first_k_dense_replace
// 0, norm_topk_prob false, aux_loss_alpha 0.001, seq_aux true, rms_norm_eps
// 1e-6, rope_theta 10000, initializer_range 0.02) may be absent; the sizes
// must be present. Every problem is reported in one error.
func ParseConfig(raw []byte) (Config, error) {
	var h hfConfig
	dec := json.NewDecoder(bytes.NewReader(raw))
	if err := dec.Decode(&h); err != nil {
		return Config{}, fmt.Errorf("decode json: %w", err)
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
		return Config{}, fmt.Errorf("%d problem(s):\n  %s", len(bad), strings.Join(bad, "\n  "))
	}
	c := Config{Model: m, BOS: h.BOSTokenID, EOS: h.EOSTokenID}
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
