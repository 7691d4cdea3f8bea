package configs

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"

	"github.com/go-viper/mapstructure/v2"
	"github.com/spf13/viper"
	"gopkg.in/yaml.v3"
)

// FFN kinds.
const (
	FFNDense       = "dense"
	FFNDeepSeekMoE = "deepseekmoe"
	FFNGShard      = "gshard"
	FFNSwitch      = "switch"
	FFNHash        = "hash"
)

// Config is the whole configuration of a run.
type Config struct {
	Model      Model      `mapstructure:"model" yaml:"model" json:"model"`
	Data       Data       `mapstructure:"data" yaml:"data" json:"data"`
	Optim      Optim      `mapstructure:"optim" yaml:"optim" json:"optim"`
	Schedule   Schedule   `mapstructure:"schedule" yaml:"schedule" json:"schedule"`
	Train      Train      `mapstructure:"train" yaml:"train" json:"train"`
	Checkpoint Checkpoint `mapstructure:"checkpoint" yaml:"checkpoint" json:"checkpoint"`
	Eval       Eval       `mapstructure:"eval" yaml:"eval" json:"eval"`
	Log        Log        `mapstructure:"log" yaml:"log" json:"log"`
}

// Model is the architecture. Layer i is an MoE layer iff ffn is not dense,
// i >= first_dense_layers and i % moe_layer_freq == 0; other layers are dense
// SwiGLU FFNs of width dense_width.
type Model struct {
	// V: must equal the dataset tokenizer's ids; 8192 is the paper's validation BPE.
	VocabSize int `mapstructure:"vocab_size" yaml:"vocab_size" json:"vocab_size"`
	// d, the residual width; every projection is d wide.
	Hidden int `mapstructure:"hidden" yaml:"hidden" json:"hidden"`
	// L, decoder blocks (attention + FFN each).
	Layers int `mapstructure:"layers" yaml:"layers" json:"layers"`
	// H: d/H is the head dim, which RoPE needs even.
	Heads int `mapstructure:"heads" yaml:"heads" json:"heads"`
	// f, the standard SwiGLU width that expert sizes are fractions of (the paper infers ≈8d/3).
	DenseWidth int `mapstructure:"dense_width" yaml:"dense_width" json:"dense_width"`
	// The FFN kind: dense, or the router of the MoE layers: deepseekmoe, gshard, switch or hash (DESIGN.md §3.4).
	FFN string `mapstructure:"ffn" yaml:"ffn" json:"ffn"`
	// Ks, experts every token passes (deepseekmoe): common knowledge kept out of the routed ones.
	SharedExperts int `mapstructure:"shared_experts" yaml:"shared_experts" json:"shared_experts"`
	// E, routed experts per MoE layer.
	RoutedExperts int `mapstructure:"routed_experts" yaml:"routed_experts" json:"routed_experts"`
	// k of top-k: routed experts per token, which sets activated parameters and FLOPs.
	ActiveRouted int `mapstructure:"active_routed" yaml:"active_routed" json:"active_routed"`
	// One expert's width; floor(f/m) for granularity m (DESIGN.md §4.1).
	ExpertWidth int `mapstructure:"expert_width" yaml:"expert_width" json:"expert_width"`
	// Leading layers kept dense (16B: 1, because layer 0's routing balances slowly).
	FirstDenseLayers int `mapstructure:"first_dense_layers" yaml:"first_dense_layers" json:"first_dense_layers"`
	// Every n-th layer is MoE (the HF moe_layer_freq); 1 makes all eligible layers MoE.
	MoELayerFreq int `mapstructure:"moe_layer_freq" yaml:"moe_layer_freq" json:"moe_layer_freq"`
	// Auxiliary balance losses, against routing collapse.
	Balance Balance `mapstructure:"balance" yaml:"balance" json:"balance"`
	// Routing variants beyond the paper's; the defaults are the paper's routers.
	Router Router `mapstructure:"router" yaml:"router" json:"router"`
	// RoPE base; 10000 as in the HF release, so exports load unchanged.
	RopeTheta float64 `mapstructure:"rope_theta" yaml:"rope_theta" json:"rope_theta"`
	// RMSNorm epsilon, 1e-6 as in the HF release.
	NormEps float64 `mapstructure:"norm_eps" yaml:"norm_eps" json:"norm_eps"`
	// Every matrix starts ~ N(0, init_std²); 0.006 at every paper scale.
	InitStd float64 `mapstructure:"init_std" yaml:"init_std" json:"init_std"`
	// Seed of the weights and the hash table, apart from data.seed so seeds vary the model, not the data.
	InitSeed uint64 `mapstructure:"init_seed" yaml:"init_seed" json:"init_seed"`

	// ExpertParallel is R, the ranks the routed experts of every MoE layer
	// are partitioned over (docs/DISTRIBUTED.md); 1 keeps them all on
	// every rank. A property of the launch, not of the model: it may change
	// on resume.
	ExpertParallel int `mapstructure:"expert_parallel" yaml:"expert_parallel" json:"expert_parallel"`
}

// ExpertRanks is ExpertParallel, with 0 (a Model built in code without the
// key) meaning 1.
func (m Model) ExpertRanks() int {
	if m.ExpertParallel < 1 {
		return 1
	}
	return m.ExpertParallel
}

// Balance holds the balance-loss coefficients (DESIGN.md §3). A coefficient of 0
// builds no loss nodes.
type Balance struct {
	// Α1 of the expert-level loss (DESIGN.md §3.1); small, only against collapse.
	ExpertAlpha float64 `mapstructure:"expert_alpha" yaml:"expert_alpha" json:"expert_alpha"`
	// Α2 of the device-level loss (DESIGN.md §3.2): balance groups of experts, not experts.
	DeviceAlpha float64 `mapstructure:"device_alpha" yaml:"device_alpha" json:"device_alpha"`
	// D, contiguous groups of routed experts the device-level loss balances (a device each).
	DeviceGroups int `mapstructure:"device_groups" yaml:"device_groups" json:"device_groups"`
	// Compute the losses per sequence and average (HF seq_aux), or once over the batch.
	PerSequence bool `mapstructure:"per_sequence" yaml:"per_sequence" json:"per_sequence"`
}

// Score functions of the router (Router.Score).
const (
	ScoreSoftmax = "softmax"
	ScoreSigmoid = "sigmoid"
)

// Router holds the routing and balancing variants of the routed MoE layers
// beyond the paper's (docs/CONFIG.md gives each formula and its source).
// The defaults reproduce the paper's routers exactly and add no tensors.
type Router struct {
	// Score is softmax (the paper) or sigmoid (DeepSeek-V3: s = σ(u·e),
	// the chosen scores normalised to sum 1 when k > 1).
	Score string `mapstructure:"score" yaml:"score" json:"score"`
	// Scale multiplies every routed gate (DeepSeek-V3's routed scaling
	// factor); 1 leaves them as they are.
	Scale float64 `mapstructure:"scale" yaml:"scale" json:"scale"`
	// ZLoss is α_z of the router z-loss (ST-MoE): α_z · mean_t
	// logsumexp(logits_t)²; 0 builds no loss node.
	ZLoss float64 `mapstructure:"z_loss" yaml:"z_loss" json:"z_loss"`
	// BiasRate is γ of auxiliary-loss-free balancing (DeepSeek-V3): each
	// layer gets a per-expert bias added to the scores for the top-k
	// choice only, moved by γ·sign(mean load − load) after every optimizer
	// step; 0 keeps no bias.
	BiasRate float64 `mapstructure:"bias_rate" yaml:"bias_rate" json:"bias_rate"`
	// CapacityFactor, when > 0, caps every expert at
	// ⌈k · seq_len · factor / E⌉ (token, slot) pairs per sequence in
	// training (GShard, Switch); the slots over it, smallest gates first,
	// skip the expert and the residual carries them. 0 drops nothing.
	CapacityFactor float64 `mapstructure:"capacity_factor" yaml:"capacity_factor" json:"capacity_factor"`
	// ExpertChoice routes the other way round (Zhou et al. 2022): within
	// each sequence every expert takes the ⌈seq_len·k/E⌉ tokens it scores
	// highest. The choice sees future tokens, so a causal LM's loss is not
	// comparable with the token-choice routers', and generation cannot
	// route as in training: generate and task scoring refuse such models.
	ExpertChoice bool `mapstructure:"expert_choice" yaml:"expert_choice" json:"expert_choice"`
	// Input is what the router reads: the layer's normed hidden state
	// (hidden, the paper) or the input token's embedding (embedding), which
	// makes the routing a learned function of the token id alone, as
	// StableMoE's distilled router is and Hash's table is. "" (a Router
	// built in code without it) means hidden.
	Input string `mapstructure:"input" yaml:"input" json:"input"`
	// FreezeAfterTokens, when > 0, stops training the router weights once
	// this many training tokens have been seen (StableMoE's second stage):
	// from then on a token's expert moves only as the router's input does.
	// 0 trains the router throughout.
	FreezeAfterTokens int64 `mapstructure:"freeze_after_tokens" yaml:"freeze_after_tokens" json:"freeze_after_tokens"`
}

// Router inputs (Router.Input).
const (
	RouterInputHidden    = "hidden"
	RouterInputEmbedding = "embedding"
)

// Sigmoid reports whether the router scores are sigmoids.
func (r Router) Sigmoid() bool { return r.Score == ScoreSigmoid }

// Data selects the prepared dataset and the order it is read in.
type Data struct {
	// a directory moetrain prepare wrote.
	Path string `mapstructure:"path" yaml:"path" json:"path"`
	// Order of the training windows: the same seed reads the same tokens in the same order.
	Seed uint64 `mapstructure:"seed" yaml:"seed" json:"seed"`
	// Domain → mixture weight ("*" for every domain not named); nil reads the natural proportions.
	Weights map[string]float64 `mapstructure:"weights" yaml:"weights" json:"weights"`
}

// Optim is AdamW with global-norm clipping.
type Optim struct {
	// AdamW first-moment decay, the paper's 0.9.
	Beta1 float64 `mapstructure:"beta1" yaml:"beta1" json:"beta1"`
	// AdamW second-moment decay, the paper's 0.95 (steadier than 0.999 at large LR).
	Beta2 float64 `mapstructure:"beta2" yaml:"beta2" json:"beta2"`
	// AdamW denominator floor; 1e-8 (not stated by the paper).
	Eps float64 `mapstructure:"eps" yaml:"eps" json:"eps"`
	// Decoupled decay on every matrix, never on RMSNorm weights; the paper's 0.1.
	WeightDecay float64 `mapstructure:"weight_decay" yaml:"weight_decay" json:"weight_decay"`
	// Global gradient-norm clip, the paper's 1.0; 0 disables.
	Clip float64 `mapstructure:"clip" yaml:"clip" json:"clip"`
}

// Schedule is the learning rate as a function of training tokens.
type Schedule struct {
	// Step (the paper's: ×0.316 at 80% and 90%), cosine or constant.
	Kind string `mapstructure:"kind" yaml:"kind" json:"kind"`
	// Peak learning rate after warmup; 1.08e-3 is the paper's 2B value.
	MaxLR float64 `mapstructure:"max_lr" yaml:"max_lr" json:"max_lr"`
	// Linear warmup from 0; in tokens so a changed batch size keeps the curve.
	WarmupTokens int64 `mapstructure:"warmup_tokens" yaml:"warmup_tokens" json:"warmup_tokens"`
	// The schedule's horizon, fixed at launch so extending train.tokens does not move the decay; 0 means train.tokens.
	TotalTokens int64 `mapstructure:"total_tokens" yaml:"total_tokens" json:"total_tokens"`
	// Cosine only: the final LR as a fraction of max_lr.
	MinLRRatio float64 `mapstructure:"min_lr_ratio" yaml:"min_lr_ratio" json:"min_lr_ratio"`
}

// Train is the token budget and batch geometry.
type Train struct {
	// The budget: training stops after this many tokens (raising it extends a run).
	Tokens int64 `mapstructure:"tokens" yaml:"tokens" json:"tokens"`
	// Sequences per optimizer step.
	BatchSize int `mapstructure:"batch_size" yaml:"batch_size" json:"batch_size"`
	// Sequences per forward/backward, to fit memory; gradients accumulate to batch_size. 0 means batch_size.
	MicroBatchSize int `mapstructure:"micro_batch_size" yaml:"micro_batch_size" json:"micro_batch_size"`
	// T, tokens per sequence (each example reads T+1).
	SeqLen int `mapstructure:"seq_len" yaml:"seq_len" json:"seq_len"`
	// a NaN/Inf loss or gradient: stop the run, or skip the step and go on.
	NonFinite string `mapstructure:"non_finite" yaml:"non_finite" json:"non_finite"`
	// Matrix-product inputs: fp32, or bf16 (rounded to bfloat16, float32 sums) for 1.5-2.2× faster products (a 1.08-1.43× step) on CPUs with a bfloat16 kernel.
	Products string `mapstructure:"products" yaml:"products" json:"products"`
}

// Products values: float32 products (the default, which the PyTorch
// reference agreement covers) or products of operands rounded to bfloat16.
const (
	ProductsFP32 = "fp32"
	ProductsBF16 = "bf16"
)

// BF16Products reports whether products run on bfloat16 operands
// (train.products: bf16; a config stored before the key reads as fp32).
func (t Train) BF16Products() bool { return t.Products == ProductsBF16 }

// Checkpoint sets how often checkpoints are written and which are kept.
type Checkpoint struct {
	// Checkpoint interval (and always at the end): how much work a crash can cost.
	EveryTokens int64 `mapstructure:"every_tokens" yaml:"every_tokens" json:"every_tokens"`
	// Newest checkpoints kept; more than 1 survives a corrupt newest one.
	KeepLast int `mapstructure:"keep_last" yaml:"keep_last" json:"keep_last"`
	// Also keep checkpoints at multiples of this, for later analyses; 0 keeps none extra.
	KeepEveryTokens int64 `mapstructure:"keep_every_tokens" yaml:"keep_every_tokens" json:"keep_every_tokens"`
}

// Eval sets evaluation during training.
type Eval struct {
	// Held-out evaluation interval; 0 disables.
	EveryTokens int64 `mapstructure:"every_tokens" yaml:"every_tokens" json:"every_tokens"`
	// Held-out tokens per evaluation: a fixed slice, so evaluations compare.
	Tokens int64 `mapstructure:"tokens" yaml:"tokens" json:"tokens"`
	// Tasks names the task files (DATASET/tasks/*.jsonl, docs/TASKS.md)
	// Scored at each evaluation; empty scores every one found.
	Tasks []string `mapstructure:"tasks" yaml:"tasks" json:"tasks"`
}

// Log sets how often metrics are written.
type Log struct {
	// Metrics line interval.
	EveryTokens int64 `mapstructure:"every_tokens" yaml:"every_tokens" json:"every_tokens"`
}

// Default returns the defaults of every key (docs/CONFIG.md lists them).
func Default() Config {
	return Config{
		Model: Model{
			VocabSize: 8192, Hidden: 256, Layers: 4, Heads: 4, DenseWidth: 1024, FFN: FFNDense,
			MoELayerFreq: 1, Balance: Balance{DeviceGroups: 1, PerSequence: true}, ExpertParallel: 1,
			Router:    Router{Score: ScoreSoftmax, Scale: 1, Input: RouterInputHidden},
			RopeTheta: 10000, NormEps: 1e-6, InitStd: 0.006, InitSeed: 1,
		},
		Data:       Data{Path: "datasets/kjv", Seed: 1234},
		Optim:      Optim{Beta1: 0.9, Beta2: 0.95, Eps: 1e-8, WeightDecay: 0.1, Clip: 1.0},
		Schedule:   Schedule{Kind: "step", MaxLR: 1.08e-3, MinLRRatio: 0.1},
		Train:      Train{Tokens: 1 << 20, BatchSize: 8, SeqLen: 256, NonFinite: "stop", Products: ProductsFP32},
		Checkpoint: Checkpoint{EveryTokens: 1 << 18, KeepLast: 2},
		Eval:       Eval{EveryTokens: 1 << 18, Tokens: 1 << 16},
		Log:        Log{EveryTokens: 1 << 14},
	}
}

// Error lists every invalid field of a config, one per line, by YAML key.
type Error struct {
	Source string
	Fields []string
}

func (e *Error) Error() string {
	src := ""
	if e.Source != "" {
		src = e.Source + ": "
	}
	return fmt.Sprintf("%sinvalid config:\n  %s", src, strings.Join(e.Fields, "\n  "))
}

// Load reads the YAML file at path, resolves its base chain (a top-level
// "base: other.yaml", relative to the file, whose keys the file overrides),
// applies overrides ("key=value", values parsed as YAML: a scalar, a list,
// {…} to replace a map or null to remove the key so its default applies),
// decodes strictly and validates. Config mistakes are returned as *Error.
func Load(path string, overrides []string) (Config, error) {
	tree, err := readTree(path, nil)
	if err != nil {
		return Config{}, err
	}
	cfg, err := build(tree, overrides)
	var ce *Error
	if errors.As(err, &ce) {
		ce.Source = path
	}
	return cfg, err
}

// Parse is Load on the YAML bytes of one resolved config, such as a run
// directory's config.yaml: a base key is refused, since there is no file
// for its path to be relative to.
func Parse(raw []byte, overrides []string) (Config, error) {
	tree, err := parseTree(raw)
	if err != nil {
		return Config{}, err
	}
	if _, ok := tree[BaseKey]; ok {
		return Config{}, &Error{Fields: []string{BaseKey + ": only a config file read with configs.Load can name a base"}}
	}
	return build(tree, overrides)
}

// BaseKey is the top-level key naming the config a file inherits from.
const BaseKey = "base"

// readTree reads path and the chain of bases under it into one tree, each
// file's keys overriding its base's. seen holds the files already on the
// chain, to refuse a cycle.
func readTree(path string, seen []string) (map[string]any, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		if len(seen) == 0 {
			return nil, fmt.Errorf("read config: %w", err)
		}
		return nil, &Error{Source: seen[len(seen)-1], Fields: []string{fmt.Sprintf("%s: %v", BaseKey, err)}}
	}
	tree, err := parseTree(raw)
	if err != nil {
		var ce *Error
		if errors.As(err, &ce) {
			ce.Source = path
		}
		return nil, err
	}
	b, ok := tree[BaseKey]
	if !ok {
		return tree, nil
	}
	delete(tree, BaseKey)
	name, _ := b.(string)
	if name == "" {
		return nil, &Error{Source: path, Fields: []string{fmt.Sprintf("%s: want the path of another config file, got %v", BaseKey, b)}}
	}
	if !filepath.IsAbs(name) {
		name = filepath.Join(filepath.Dir(path), name)
	}
	abs, _ := filepath.Abs(path)
	seen = append(seen, abs)
	if babs, _ := filepath.Abs(name); slices.Contains(seen, babs) {
		return nil, &Error{Source: path, Fields: []string{fmt.Sprintf("%s: %s is already on the chain of bases (a cycle)", BaseKey, name)}}
	}
	base, err := readTree(name, seen)
	if err != nil {
		return nil, err
	}
	merge(base, tree, "")
	return base, nil
}

// parseTree decodes one YAML document into nested maps with lower-case keys
// (viper's convention: keys, domain names included, are case-insensitive).
func parseTree(raw []byte) (map[string]any, error) {
	var doc any
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		return nil, &Error{Fields: []string{fmt.Sprintf("yaml: %v", err)}}
	}
	if doc == nil {
		return map[string]any{}, nil
	}
	tree, ok := normalize(doc).(map[string]any)
	if !ok {
		return nil, &Error{Fields: []string{fmt.Sprintf("yaml: the top level must be a mapping of sections, got %T", doc)}}
	}
	return tree, nil
}

// normalize turns every mapping into map[string]any with lower-case keys.
func normalize(v any) any {
	switch x := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[strings.ToLower(k)] = normalize(e)
		}
		return out
	case map[any]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[strings.ToLower(fmt.Sprint(k))] = normalize(e)
		}
		return out
	case []any:
		for i := range x {
			x[i] = normalize(x[i])
		}
	}
	return v
}

// leafMap reports whether the map at dotted key p is one value (its keys
// are data, not config keys): an override replaces it whole.
func leafMap(p string) bool { return p == "data.weights" }

// merge writes src over dst: a null in src removes the key (its default
// applies), a section merges key by key, anything else replaces.
func merge(dst, src map[string]any, prefix string) {
	for k, v := range src {
		p := prefix + k
		sub, isMap := v.(map[string]any)
		old, oldMap := dst[k].(map[string]any)
		switch {
		case v == nil:
			delete(dst, k)
		case isMap && oldMap && !leafMap(p):
			merge(old, sub, p+".")
		default:
			dst[k] = v
		}
	}
}

// dropNulls removes null values left in a tree (an empty section such as
// "data:" with nothing under it reads as null): absent means default.
func dropNulls(m map[string]any) {
	for k, v := range m {
		switch x := v.(type) {
		case nil:
			delete(m, k)
		case map[string]any:
			dropNulls(x)
		}
	}
}

// override applies one --set to tree: key=null removes the key, key={…}
// replaces the map there, anything else sets the value.
func override(tree map[string]any, key string, val any) {
	parts := strings.Split(key, ".")
	m := tree
	for _, k := range parts[:len(parts)-1] {
		sub, ok := m[k].(map[string]any)
		if !ok {
			sub = map[string]any{}
			m[k] = sub
		}
		m = sub
	}
	last := parts[len(parts)-1]
	if val == nil {
		delete(m, last)
		return
	}
	m[last] = val
}

// build applies overrides to tree, decodes it over the defaults strictly
// and validates the result.
func build(tree map[string]any, overrides []string) (Config, error) {
	var bad []string
	for _, o := range overrides {
		key, val, ok := strings.Cut(o, "=")
		key = strings.ToLower(strings.TrimSpace(key))
		if !ok || key == "" {
			bad = append(bad, fmt.Sprintf("--set %q: want key=value", o))
			continue
		}
		if strings.TrimSpace(val) == "" {
			// YAML reads nothing as null, which would silently restore the
			// default: say so instead.
			bad = append(bad, fmt.Sprintf("%s: --set with an empty value (write %s=null for the default, or %s='' for an empty string)", key, key, key))
			continue
		}
		var x any
		if err := yaml.Unmarshal([]byte(val), &x); err != nil {
			bad = append(bad, fmt.Sprintf("%s: --set value %q is not valid YAML: %v", key, val, err))
			continue
		}
		if !IsKey(key) {
			bad = append(bad, fmt.Sprintf("%s: unknown key (from --set)", key))
			continue
		}
		override(tree, key, normalize(x))
	}
	if len(bad) > 0 {
		return Config{}, &Error{Fields: bad}
	}
	dropNulls(tree)
	cfg, bad := decode(tree, true)
	if len(bad) == 0 {
		if err := cfg.Validate(); err != nil {
			return Config{}, err
		}
		return cfg, nil
	}
	// Report every mistake at once: validate what decodes, with the keys
	// that failed to decode at their defaults (an unknown key is ignored).
	failed := map[string]bool{}
	for _, b := range bad {
		k, _, _ := strings.Cut(b, ":")
		failed[k] = true
		if IsKey(k) {
			override(tree, k, nil)
		}
	}
	if cfg, more := decode(tree, false); len(more) == 0 {
		var ce *Error
		if errors.As(cfg.Validate(), &ce) {
			for _, f := range ce.Fields {
				if k, _, _ := strings.Cut(f, ":"); !failed[k] {
					bad = append(bad, f)
				}
			}
		}
	}
	return Config{}, &Error{Fields: bad}
}

// decode decodes tree over the defaults; strict refuses unknown keys. It
// returns the config-mistake lines, if any.
func decode(tree map[string]any, strict bool) (Config, []string) {
	raw, err := yaml.Marshal(tree)
	if err != nil {
		return Config{}, []string{fmt.Sprintf("yaml: %v", err)}
	}
	v := viper.New()
	v.SetConfigType("yaml")
	setDefaults(v, "", Default())
	if err := v.ReadConfig(bytes.NewReader(raw)); err != nil {
		return Config{}, []string{fmt.Sprintf("yaml: %v", err)}
	}
	var cfg Config
	err = v.Unmarshal(&cfg, func(dc *mapstructure.DecoderConfig) {
		dc.WeaklyTypedInput = false
		dc.ErrorUnused = strict
		dc.DecodeHook = wholeNumbers
	})
	if err != nil {
		return Config{}, decodeErrors(err)
	}
	if len(cfg.Data.Weights) == 0 {
		cfg.Data.Weights = nil // {} and absent both mean the natural mixture
	}
	return cfg, nil
}

// wholeNumbers refuses to decode a fraction, or a number beyond the
// integer's range, into an integer key (mapstructure would truncate 64.5
// to 64 and wrap 1e20 around to a negative number).
func wholeNumbers(from, to reflect.Type, data any) (any, error) {
	if from.Kind() != reflect.Float64 && from.Kind() != reflect.Float32 {
		return data, nil
	}
	f := reflect.ValueOf(data).Float()
	var lo, hi float64
	switch to.Kind() {
	case reflect.Int, reflect.Int64:
		lo, hi = math.MinInt64, math.MaxInt64
	case reflect.Int32:
		lo, hi = math.MinInt32, math.MaxInt32
	case reflect.Uint, reflect.Uint64:
		lo, hi = 0, math.MaxUint64
	default:
		return data, nil
	}
	switch {
	case f != math.Trunc(f):
		return nil, fmt.Errorf("must be a whole number, got %v", f)
	case f < lo || f >= hi:
		return nil, fmt.Errorf("%v is out of range", f)
	}
	if to.Kind() == reflect.Uint || to.Kind() == reflect.Uint64 {
		return uint64(f), nil
	}
	return int64(f), nil
}

// decodeErrors splits mapstructure's joined error into one line per field.
func decodeErrors(err error) []string {
	var out []string
	for _, line := range strings.Split(err.Error(), "\n") {
		line = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(line), "*"))
		if line == "" || strings.HasPrefix(line, "decoding failed") || strings.HasSuffix(line, "error(s):") || strings.HasSuffix(line, "error(s) decoding:") {
			continue
		}
		if prefix, keys, ok := strings.Cut(line, "has invalid keys: "); ok {
			prefix = strings.Trim(strings.TrimSpace(prefix), "':")
			for _, k := range strings.Split(keys, ",") {
				k = strings.TrimSpace(k)
				if prefix != "" {
					k = prefix + "." + k
				}
				out = append(out, k+": unknown key")
			}
			continue
		}
		if strings.HasPrefix(line, "'") {
			// "'model.heads' expected type 'int', got ..." → "model.heads: expected ..."
			if k, rest, ok := strings.Cut(line[1:], "'"); ok {
				line = k + ":" + rest
			}
		}
		out = append(out, line)
	}
	if len(out) == 0 {
		out = []string{err.Error()}
	}
	sort.Strings(out)
	return out
}

// setDefaults registers every leaf of cfg as a viper default, so that all
// keys are known and --set can address them.
func setDefaults(v *viper.Viper, prefix string, cfg Config) {
	for k, val := range flatten(cfg) {
		v.SetDefault(prefix+k, val)
	}
}

// flatten returns cfg as dotted-key → value, through its YAML encoding.
func flatten(cfg Config) map[string]any {
	raw, err := yaml.Marshal(cfg)
	if err != nil {
		panic(fmt.Sprintf("configs: marshal defaults: %v", err))
	}
	var m map[string]any
	if err := yaml.Unmarshal(raw, &m); err != nil {
		panic(fmt.Sprintf("configs: unmarshal defaults: %v", err))
	}
	out := map[string]any{}
	var walk func(string, map[string]any)
	walk = func(p string, m map[string]any) {
		for k, v := range m {
			if sub, ok := v.(map[string]any); ok && p+k != "data.weights" {
				walk(p+k+".", sub)
				continue
			}
			out[p+k] = v
		}
	}
	walk("", m)
	return out
}

// Keys returns every known dotted key, sorted.
func Keys() []string {
	var ks []string
	for k := range flatten(Default()) {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// IsKey reports whether key can be set: a known leaf key, a section (its
// keys as a map), or one domain of data.weights.
func IsKey(key string) bool {
	if strings.HasPrefix(key, "data.weights.") && len(key) > len("data.weights.") {
		return true
	}
	for _, k := range Keys() {
		if k == key || strings.HasPrefix(k, key+".") {
			return true
		}
	}
	return false
}

// Flat returns the config as dotted-key → value (used to diff configs on resume).
func (c Config) Flat() map[string]any {
	out := flatten(c)
	if w, ok := out["data.weights"].(map[string]any); ok {
		delete(out, "data.weights")
		for k, v := range w {
			out["data.weights."+k] = v
		}
	}
	return out
}

// YAML returns the resolved config as YAML.
func (c Config) YAML() string {
	raw, err := yaml.Marshal(c)
	if err != nil {
		panic(fmt.Sprintf("configs: marshal: %v", err))
	}
	return string(raw)
}

// IsMoELayer reports whether layer i has an MoE FFN.
func (m Model) IsMoELayer(i int) bool {
	return m.FFN != FFNDense && m.RoutedExperts > 0 && i >= m.FirstDenseLayers && i%m.MoELayerFreq == 0
}

// HeadDim is hidden / heads.
func (m Model) HeadDim() int { return m.Hidden / m.Heads }

// Validate reports every invalid model field by its YAML key.
func (m Model) Validate() []string {
	var bad []string
	add := func(key, format string, args ...any) {
		bad = append(bad, "model."+key+": "+fmt.Sprintf(format, args...))
	}
	positive := map[string]int{"vocab_size": m.VocabSize, "hidden": m.Hidden, "layers": m.Layers, "heads": m.Heads, "moe_layer_freq": m.MoELayerFreq}
	for _, k := range []string{"vocab_size", "hidden", "layers", "heads", "moe_layer_freq"} {
		if positive[k] <= 0 {
			add(k, "must be positive, got %d", positive[k])
		}
	}
	if m.Heads > 0 && m.Hidden > 0 {
		if m.Hidden%m.Heads != 0 {
			add("heads", "%d does not divide hidden %d", m.Heads, m.Hidden)
		} else if (m.Hidden/m.Heads)%2 != 0 {
			add("heads", "head dim hidden/heads = %d must be even (RoPE rotates pairs)", m.Hidden/m.Heads)
		}
	}
	if m.FirstDenseLayers < 0 {
		add("first_dense_layers", "must be >= 0, got %d", m.FirstDenseLayers)
	}
	for _, f := range []struct {
		key string
		v   float64
	}{{"rope_theta", m.RopeTheta}, {"norm_eps", m.NormEps}, {"init_std", m.InitStd}} {
		if !(f.v > 0) || math.IsInf(f.v, 0) {
			add(f.key, "must be positive and finite, got %g", f.v)
		}
	}
	if m.Balance.ExpertAlpha < 0 || math.IsNaN(m.Balance.ExpertAlpha) || math.IsInf(m.Balance.ExpertAlpha, 0) {
		add("balance.expert_alpha", "must be >= 0 and finite, got %g", m.Balance.ExpertAlpha)
	}
	if m.Balance.DeviceAlpha < 0 || math.IsNaN(m.Balance.DeviceAlpha) || math.IsInf(m.Balance.DeviceAlpha, 0) {
		add("balance.device_alpha", "must be >= 0 and finite, got %g", m.Balance.DeviceAlpha)
	}
	bad = append(bad, m.validateRouter()...)
	if m.ExpertParallel < 0 {
		add("expert_parallel", "must be >= 1, got %d", m.ExpertParallel)
	} else if m.ExpertParallel > 1 && m.FFN == FFNDense {
		add("expert_parallel", "a dense model has no experts to partition; set it to 1")
	}
	needDense := m.FFN == FFNDense || m.FirstDenseLayers > 0 || m.MoELayerFreq > 1
	if needDense && m.DenseWidth <= 0 {
		add("dense_width", "must be positive for dense layers, got %d", m.DenseWidth)
	}
	switch m.FFN {
	case FFNDense:
		if m.RoutedExperts != 0 || m.SharedExperts != 0 {
			add("ffn", "dense takes no experts (routed_experts %d, shared_experts %d); use deepseekmoe, gshard, switch or hash", m.RoutedExperts, m.SharedExperts)
		}
	case FFNDeepSeekMoE, FFNGShard, FFNSwitch, FFNHash:
		if m.RoutedExperts <= 0 {
			add("routed_experts", "must be positive for ffn %s, got %d", m.FFN, m.RoutedExperts)
		}
		if m.ExpertWidth <= 0 {
			add("expert_width", "must be positive for ffn %s, got %d", m.FFN, m.ExpertWidth)
		}
		if m.SharedExperts < 0 {
			add("shared_experts", "must be >= 0, got %d", m.SharedExperts)
		}
		want := map[string]int{FFNGShard: 2, FFNSwitch: 1, FFNHash: 1}
		if k, ok := want[m.FFN]; ok && m.ActiveRouted != k {
			add("active_routed", "%s routes to exactly %d expert(s), got %d", m.FFN, k, m.ActiveRouted)
		}
		if m.FFN != FFNDeepSeekMoE && m.SharedExperts != 0 {
			add("shared_experts", "%s has no shared experts (got %d); use ffn deepseekmoe", m.FFN, m.SharedExperts)
		}
		if m.ActiveRouted <= 0 {
			add("active_routed", "must be positive, got %d", m.ActiveRouted)
		} else if m.RoutedExperts > 0 && m.ActiveRouted > m.RoutedExperts {
			add("active_routed", "top-k %d exceeds routed_experts %d", m.ActiveRouted, m.RoutedExperts)
		}
		if m.Balance.DeviceAlpha > 0 {
			if m.Balance.DeviceGroups <= 0 {
				add("balance.device_groups", "must be positive, got %d", m.Balance.DeviceGroups)
			} else if m.RoutedExperts > 0 && m.RoutedExperts%m.Balance.DeviceGroups != 0 {
				add("balance.device_groups", "%d does not divide routed_experts %d", m.Balance.DeviceGroups, m.RoutedExperts)
			}
		}
		if m.ExpertParallel > 1 {
			switch {
			case m.FFN == FFNHash:
				add("expert_parallel", "hash layers are not expert-parallel; set it to 1")
			case m.RoutedExperts > 0 && m.RoutedExperts%m.ExpertParallel != 0:
				add("expert_parallel", "%d does not divide routed_experts %d", m.ExpertParallel, m.RoutedExperts)
			case m.Balance.DeviceAlpha > 0 && m.Balance.DeviceGroups != m.ExpertParallel:
				add("balance.device_groups", "must equal expert_parallel %d when device_alpha > 0 (the device-level loss balances the real partition), got %d", m.ExpertParallel, m.Balance.DeviceGroups)
			}
		}
		if m.FFN == FFNHash && (m.Balance.ExpertAlpha != 0 || m.Balance.DeviceAlpha != 0) {
			add("balance", "hash routing has no router and no balance loss; set expert_alpha and device_alpha to 0")
		}
	default:
		add("ffn", "unknown kind %q (want dense, deepseekmoe, gshard, switch or hash)", m.FFN)
	}
	return bad
}

// validateRouter reports every invalid model.router field.
func (m Model) validateRouter() []string {
	var bad []string
	add := func(key, format string, args ...any) {
		bad = append(bad, "model.router."+key+": "+fmt.Sprintf(format, args...))
	}
	r := m.Router
	if r.Score != ScoreSoftmax && r.Score != ScoreSigmoid {
		add("score", "unknown score %q (want softmax or sigmoid)", r.Score)
	}
	if !(r.Scale > 0) || math.IsInf(r.Scale, 0) {
		add("scale", "must be positive and finite, got %g", r.Scale)
	}
	for _, f := range []struct {
		key string
		v   float64
	}{{"z_loss", r.ZLoss}, {"bias_rate", r.BiasRate}, {"capacity_factor", r.CapacityFactor}} {
		if f.v < 0 || math.IsNaN(f.v) || math.IsInf(f.v, 0) {
			add(f.key, "must be >= 0 and finite, got %g", f.v)
		}
	}
	if r.Input != "" && r.Input != RouterInputHidden && r.Input != RouterInputEmbedding {
		add("input", "unknown input %q (want hidden or embedding)", r.Input)
	}
	if r.FreezeAfterTokens < 0 {
		add("freeze_after_tokens", "must be >= 0, got %d", r.FreezeAfterTokens)
	}
	routed := m.FFN == FFNDeepSeekMoE || m.FFN == FFNGShard || m.FFN == FFNSwitch
	changed := r.Score != ScoreSoftmax || r.Scale != 1 || r.ZLoss != 0 || r.BiasRate != 0 || r.CapacityFactor != 0 || r.ExpertChoice ||
		r.Input == RouterInputEmbedding || r.FreezeAfterTokens != 0
	if changed && !routed {
		add("score", "ffn %s has no learned router: leave model.router at its defaults (score softmax, scale 1, z_loss 0, bias_rate 0, input hidden, freeze_after_tokens 0)", m.FFN)
	}
	if r.FreezeAfterTokens > 0 && r.BiasRate > 0 {
		add("freeze_after_tokens", "a frozen router's selection bias would still move every step (bias_rate %g): set one of them to 0", r.BiasRate)
	}

	if r.CapacityFactor > 0 {
		switch {
		case m.FFN != FFNGShard && m.FFN != FFNSwitch:
			add("capacity_factor", "token dropping is GShard's and Switch's; ffn %s drops nothing (set it to 0)", m.FFN)
		case m.ExpertParallel > 1:
			add("capacity_factor", "token dropping is not expert-parallel (model.expert_parallel %d): set capacity_factor to 0 or model.expert_parallel to 1", m.ExpertParallel)
		}
	}
	if r.ExpertChoice {
		var clash []string
		if m.Balance.ExpertAlpha > 0 || m.Balance.DeviceAlpha > 0 {
			clash = append(clash, "balance losses (balance.expert_alpha, balance.device_alpha)")
		}
		if r.BiasRate > 0 {
			clash = append(clash, "bias_rate")
		}
		if r.CapacityFactor > 0 {
			clash = append(clash, "capacity_factor")
		}
		if len(clash) > 0 {
			add("expert_choice", "every expert takes a fixed number of tokens, so it is balanced by construction; drop %s", strings.Join(clash, ", "))
		}
		if m.ExpertParallel > 1 {
			add("expert_choice", "expert-choice routing is not expert-parallel (model.expert_parallel %d): set model.expert_parallel to 1 or expert_choice to false", m.ExpertParallel)
		}
	}
	if r.Sigmoid() && (m.Balance.ExpertAlpha > 0 || m.Balance.DeviceAlpha > 0) {
		add("score", "sigmoid scores with a balance loss are not implemented (the loss expects probabilities); use bias_rate for balance, or set balance.expert_alpha and balance.device_alpha to 0")
	}
	return bad
}

// Validate reports every invalid field of the whole config as one *Error.
func (c Config) Validate() error {
	bad := c.Model.Validate()
	add := func(key, format string, args ...any) { bad = append(bad, key+": "+fmt.Sprintf(format, args...)) }
	if c.Optim.Beta1 < 0 || c.Optim.Beta1 >= 1 {
		add("optim.beta1", "must be in [0, 1), got %g", c.Optim.Beta1)
	}
	if c.Optim.Beta2 < 0 || c.Optim.Beta2 >= 1 {
		add("optim.beta2", "must be in [0, 1), got %g", c.Optim.Beta2)
	}
	if !(c.Optim.Eps > 0) {
		add("optim.eps", "must be positive, got %g", c.Optim.Eps)
	}
	if c.Optim.WeightDecay < 0 {
		add("optim.weight_decay", "must be >= 0, got %g", c.Optim.WeightDecay)
	}
	if c.Optim.Clip < 0 {
		add("optim.clip", "must be >= 0 (0 disables clipping), got %g", c.Optim.Clip)
	}
	switch c.Schedule.Kind {
	case "step", "cosine", "constant":
	default:
		add("schedule.kind", "unknown kind %q (want step, cosine or constant)", c.Schedule.Kind)
	}
	if !(c.Schedule.MaxLR > 0) {
		add("schedule.max_lr", "must be positive, got %g", c.Schedule.MaxLR)
	}
	if c.Schedule.WarmupTokens < 0 {
		add("schedule.warmup_tokens", "must be >= 0, got %d", c.Schedule.WarmupTokens)
	}
	if c.Schedule.TotalTokens < 0 {
		add("schedule.total_tokens", "must be >= 0 (0 means train.tokens), got %d", c.Schedule.TotalTokens)
	}
	if c.Schedule.WarmupTokens > 0 && c.ScheduleTotal() > 0 && c.Schedule.WarmupTokens >= c.ScheduleTotal() {
		add("schedule.warmup_tokens", "%d must be below the schedule's total tokens %d (schedule.total_tokens, or train.tokens when unset)", c.Schedule.WarmupTokens, c.ScheduleTotal())
	}
	if c.Schedule.MinLRRatio < 0 || c.Schedule.MinLRRatio > 1 {
		add("schedule.min_lr_ratio", "must be in [0, 1], got %g", c.Schedule.MinLRRatio)
	}
	if c.Train.Tokens <= 0 {
		add("train.tokens", "must be positive, got %d", c.Train.Tokens)
	}
	if c.Train.BatchSize <= 0 {
		add("train.batch_size", "must be positive, got %d", c.Train.BatchSize)
	}
	if c.Train.MicroBatchSize < 0 {
		add("train.micro_batch_size", "must be >= 0 (0 means batch_size), got %d", c.Train.MicroBatchSize)
	} else if c.Train.MicroBatchSize > 0 && c.Train.BatchSize > 0 && c.Train.BatchSize%c.Train.MicroBatchSize != 0 {
		add("train.micro_batch_size", "%d does not divide batch_size %d", c.Train.MicroBatchSize, c.Train.BatchSize)
	}
	if c.Train.SeqLen <= 0 {
		add("train.seq_len", "must be positive, got %d", c.Train.SeqLen)
	}
	if c.Train.Products != ProductsFP32 && c.Train.Products != ProductsBF16 {
		add("train.products", "want %s or %s, got %q", ProductsFP32, ProductsBF16, c.Train.Products)
	}
	if c.Train.NonFinite != "stop" && c.Train.NonFinite != "skip" {
		add("train.non_finite", "want stop or skip, got %q", c.Train.NonFinite)
	}
	if c.Checkpoint.EveryTokens < 0 {
		add("checkpoint.every_tokens", "must be >= 0 (0: only at the end), got %d", c.Checkpoint.EveryTokens)
	}
	if c.Checkpoint.KeepLast < 1 {
		add("checkpoint.keep_last", "must be >= 1, got %d", c.Checkpoint.KeepLast)
	}
	if c.Checkpoint.KeepEveryTokens < 0 {
		add("checkpoint.keep_every_tokens", "must be >= 0, got %d", c.Checkpoint.KeepEveryTokens)
	}
	if c.Eval.EveryTokens < 0 {
		add("eval.every_tokens", "must be >= 0 (0 disables), got %d", c.Eval.EveryTokens)
	}
	if c.Eval.Tokens < 0 {
		add("eval.tokens", "must be >= 0, got %d", c.Eval.Tokens)
	}
	seenTask := map[string]bool{}
	for _, name := range c.Eval.Tasks {
		switch {
		case name == "" || strings.ContainsAny(name, " \t\n,"):
			add("eval.tasks", "task name %q: want a non-empty name without spaces or commas", name)
		case seenTask[name]:
			add("eval.tasks", "task %q is listed twice", name)
		}
		seenTask[name] = true
	}
	if c.Log.EveryTokens <= 0 {
		add("log.every_tokens", "must be positive, got %d", c.Log.EveryTokens)
	}
	for k, w := range c.Data.Weights {
		if w < 0 || math.IsNaN(w) || math.IsInf(w, 0) {
			add("data.weights."+k, "must be >= 0 and finite, got %g", w)
		}
	}
	if len(bad) == 0 {
		return nil
	}
	sort.Strings(bad)
	return &Error{Fields: bad}
}

// MicroBatch returns the micro-batch size (batch_size when unset).
func (t Train) MicroBatch() int {
	if t.MicroBatchSize == 0 {
		return t.BatchSize
	}
	return t.MicroBatchSize
}

// ScheduleTotal returns schedule.total_tokens, or train.tokens when unset.
func (c Config) ScheduleTotal() int64 {
	if c.Schedule.TotalTokens > 0 {
		return c.Schedule.TotalTokens
	}
	return c.Train.Tokens
}
