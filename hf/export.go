package hf

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"

	"github.com/moetrain/moetrain/checkpoints"
	"github.com/moetrain/moetrain/data/tokenizer"
	"github.com/moetrain/moetrain/internal/atomicfile"
	"github.com/moetrain/moetrain/internal/scratch"
	"github.com/moetrain/moetrain/model"
)

// File names of an HF model directory.
const (
	ConfigFile           = "config.json"
	GenerationConfigFile = "generation_config.json"
	WeightsFile          = "model.safetensors"
	IndexFile            = "model.safetensors.index.json"
	TokenizerFile        = "tokenizer.json"
	TokenizerConfigFile  = "tokenizer_config.json"
)

// DefaultShardSize is the most tensor bytes Export puts in one file, the
// default of transformers' save_pretrained ("5GB").
const DefaultShardSize = 5_000_000_000

// ErrUnsupported is wrapped when a model has no DeepseekForCausalLM form.
var ErrUnsupported = errors.New("hf: not representable as DeepseekForCausalLM")

// ErrExists is wrapped when an output directory already holds files.
var ErrExists = errors.New("hf: output directory is not empty")

// ExportOptions configure Export.
type ExportOptions struct {
	Out string // directory to create; it must not exist or be empty
	// DType of the weights: Float32 (the zero value) or BFloat16.
	DType DType
	// ShardSize is the most tensor bytes per safetensors file (0:
	// DefaultShardSize). Above it the weights are split into
	// model-0000i-of-0000n.safetensors plus model.safetensors.index.json.
	// A tensor larger than ShardSize gets a file of its own.
	ShardSize int64
	// MaxPositions is config.json's max_position_embeddings: the training
	// sequence length (RoPE has no learned positions, so longer inputs
	// still run).
	MaxPositions int
	// Tokenizer is the tokenizer.json to copy beside the weights; its
	// <|endoftext|> is both bos and eos. Empty: no tokenizer, null ids.
	Tokenizer string
}

// ExportResult describes a finished export.
type ExportResult struct {
	Dir       string
	Files     []string // weight files, in order
	Tensors   int      // tensors written (routed experts one key per matrix)
	MoELayers int
	Experts   int   // routed experts over all MoE layers, each verified
	Bytes     int64 // tensor data bytes
}

// Export writes m as a DeepseekForCausalLM directory: config.json,
// generation_config.json, the weights and, when opt.Tokenizer is set,
// tokenizer.json and tokenizer_config.json. Everything is written into a
// temporary directory beside opt.Out, read back and compared with the model
// (every tensor, every routed expert, bit for bit after the dtype's
// rounding), then renamed into place: a failed export leaves nothing at Out.
func Export(m *model.Model, opt ExportOptions) (res ExportResult, err error) {
	if opt.DType == "" {
		opt.DType = Float32
	}
	if opt.DType != Float32 && opt.DType != BFloat16 {
		return res, fmt.Errorf("export: dtype %q: want %s or %s", opt.DType, Float32, BFloat16)
	}
	if opt.ShardSize == 0 {
		opt.ShardSize = DefaultShardSize
	}
	if opt.ShardSize < 0 {
		return res, fmt.Errorf("export: shard size %d must be positive", opt.ShardSize)
	}
	if opt.Out == "" {
		return res, errors.New("export: no output directory")
	}
	opt.Out = filepath.Clean(opt.Out)
	if opt.MaxPositions <= 0 {
		return res, fmt.Errorf("export: max positions %d must be positive (the training sequence length)", opt.MaxPositions)
	}
	var bos, eos *int
	var tokRaw []byte
	var eosText string
	if opt.Tokenizer != "" {
		tok, err := tokenizer.Load(opt.Tokenizer)
		if err != nil {
			return res, fmt.Errorf("export: %w", err)
		}
		if tok.VocabSize() > m.Cfg.VocabSize {
			return res, fmt.Errorf("export: tokenizer %s has %d tokens, more than the model's vocab_size %d: not the run's tokenizer", opt.Tokenizer, tok.VocabSize(), m.Cfg.VocabSize)
		}
		if tokRaw, err = os.ReadFile(opt.Tokenizer); err != nil {
			return res, fmt.Errorf("export: read tokenizer: %w", err)
		}
		e := tok.EOS()
		bos, eos, eosText = &e, &e, string(tok.TokenBytes(e))
	}
	hc, err := model.HFConfig(m.Cfg, opt.MaxPositions)
	if err != nil {
		return res, fmt.Errorf("export: %w: %v", ErrUnsupported, err)
	}
	hc["torch_dtype"] = string(opt.DType)
	hc["bos_token_id"], hc["eos_token_id"] = bos, eos
	if err := checkOut(opt.Out); err != nil {
		return res, err
	}

	ts, err := exportTensors(m, opt.DType)
	if err != nil {
		return res, fmt.Errorf("export: %w", err)
	}
	for _, p := range m.Layout {
		if p.Experts > 0 && strings.HasSuffix(p.Name, ".gate_proj.weight") {
			res.MoELayers++
			res.Experts += p.Experts
		}
	}
	shards := planShards(ts, opt.ShardSize)

	parent := filepath.Dir(opt.Out)
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return res, fmt.Errorf("export: %w", err)
	}
	// Leftovers of a killed export of the same --out go first.
	if _, err := scratch.Sweep(opt.Out); err != nil {
		return res, fmt.Errorf("export: %w", err)
	}
	tmp := scratch.Tmp(opt.Out)
	if err := os.RemoveAll(tmp); err != nil {
		return res, fmt.Errorf("export: %w", err)
	}
	if err := os.Mkdir(tmp, 0o755); err != nil {
		return res, fmt.Errorf("export: %w", err)
	}
	defer func() {
		if err != nil {
			os.RemoveAll(tmp)
		}
	}()

	weightMap := map[string]string{}
	for i, sh := range shards {
		name := WeightsFile
		if len(shards) > 1 {
			name = fmt.Sprintf("model-%05d-of-%05d.safetensors", i+1, len(shards))
		}
		if err := writeSafetensors(filepath.Join(tmp, name), sh); err != nil {
			return res, fmt.Errorf("export: %w", err)
		}
		for _, t := range sh {
			weightMap[t.Name] = name
			res.Bytes += tensorBytes(t)
		}
		res.Files = append(res.Files, name)
	}
	res.Tensors = len(ts)
	if len(shards) > 1 {
		idx := map[string]any{"metadata": map[string]any{"total_size": res.Bytes}, "weight_map": weightMap}
		if err := writeJSON(filepath.Join(tmp, IndexFile), idx); err != nil {
			return res, fmt.Errorf("export: %w", err)
		}
	}
	if err := writeJSON(filepath.Join(tmp, ConfigFile), hc); err != nil {
		return res, fmt.Errorf("export: %w", err)
	}
	if err := writeJSON(filepath.Join(tmp, GenerationConfigFile), map[string]any{"bos_token_id": bos, "eos_token_id": eos}); err != nil {
		return res, fmt.Errorf("export: %w", err)
	}
	if tokRaw != nil {
		if err := atomicfile.WriteFile(filepath.Join(tmp, TokenizerFile), tokRaw, 0o644); err != nil {
			return res, fmt.Errorf("export: %w", err)
		}
		// Without it, AutoTokenizer cannot tell which class reads tokenizer.json.
		tc := map[string]any{"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": eosText, "eos_token": eosText,
			"model_max_length": opt.MaxPositions, "clean_up_tokenization_spaces": false}
		if err := writeJSON(filepath.Join(tmp, TokenizerConfigFile), tc); err != nil {
			return res, fmt.Errorf("export: %w", err)
		}
	}

	// Prove that nothing was lost: read the directory back the way Load
	// does and compare every tensor with what was meant to be written.
	if err := verify(tmp, ts); err != nil {
		return res, fmt.Errorf("export: verify %s: %w", tmp, err)
	}
	if err := os.Remove(opt.Out); err != nil && !errors.Is(err, os.ErrNotExist) {
		return res, fmt.Errorf("export: %w", err)
	}
	if err := os.Rename(tmp, opt.Out); err != nil {
		return res, fmt.Errorf("export: %w", err)
	}
	if err := atomicfile.SyncDir(filepath.Dir(opt.Out)); err != nil {
		return res, fmt.Errorf("export: %w", err)
	}
	res.Dir = opt.Out
	return res, nil
}

// checkOut refuses an output path that is a file or a non-empty directory.
func checkOut(out string) error {
	st, err := os.Stat(out)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("export: %w", err)
	}
	if !st.IsDir() {
		return fmt.Errorf("export: %w: %s is a file", ErrExists, out)
	}
	ents, err := os.ReadDir(out)
	if err != nil {
		return fmt.Errorf("export: %w", err)
	}
	if len(ents) > 0 {
		return fmt.Errorf("export: %w: %s holds %d entries; pick a new directory", ErrExists, out, len(ents))
	}
	return nil
}

// exportTensors lists the weights in model order (embedding, layer by layer,
// final norm, head; experts by index) in the export dtype. Float32 tensors
// alias the model's storage.
func exportTensors(m *model.Model, dt DType) ([]checkpoints.Tensor, error) {
	byName := map[string]checkpoints.Tensor{}
	for _, h := range m.HFTensors() {
		byName[h.Name] = h
	}
	st := checkpoints.F32
	if dt == BFloat16 {
		st = checkpoints.BF16
	}
	var out []checkpoints.Tensor
	for _, p := range m.Layout {
		parts := max(p.Experts, 1)
		for e := 0; e < parts; e++ {
			t, ok := byName[p.HFName(e)]
			if !ok {
				panic("hf: HFTensors lacks " + p.HFName(e)) // model invariant
			}
			switch {
			case t.F32 != nil:
			case t.F64 != nil:
				t.F32 = make([]float32, len(t.F64))
				for i, v := range t.F64 {
					t.F32[i] = float32(v)
				}
				t.F64 = nil
			default:
				return nil, fmt.Errorf("%w: integer tensor %s", ErrUnsupported, t.Name)
			}
			t.DType = st
			out = append(out, t)
		}
	}
	return out, nil
}

// planShards cuts ts, in order, into files of at most limit tensor bytes,
// the way transformers' shard_checkpoint does.
func planShards(ts []checkpoints.Tensor, limit int64) [][]checkpoints.Tensor {
	var shards [][]checkpoints.Tensor
	var cur []checkpoints.Tensor
	var size int64
	for _, t := range ts {
		b := tensorBytes(t)
		if len(cur) > 0 && size+b > limit {
			shards = append(shards, cur)
			cur, size = nil, 0
		}
		cur = append(cur, t)
		size += b
	}
	if len(cur) > 0 || len(shards) == 0 {
		shards = append(shards, cur)
	}
	return shards
}

func tensorBytes(t checkpoints.Tensor) int64 {
	n := int64(1)
	for _, d := range t.Shape {
		n *= int64(d)
	}
	if t.DType == checkpoints.BF16 || t.DType == checkpoints.F16 {
		return 2 * n
	}
	return 4 * n
}

func writeSafetensors(path string, ts []checkpoints.Tensor) error {
	return atomicfile.Write(path, 0o644, func(w io.Writer) error {
		// transformers refuses safetensors files whose metadata lacks format "pt".
		return checkpoints.WriteSafetensors(w, ts, map[string]string{"format": "pt"})
	})
}

func writeJSON(path string, v any) error {
	raw, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("encode %s: %w", filepath.Base(path), err)
	}
	return atomicfile.WriteFile(path, append(raw, '\n'), 0o644)
}

// verify reads dir's weights back and checks that they are exactly want:
// the same names (so every routed expert is there), dtypes, shapes and
// values (bf16: the round-to-nearest-even of the model's float32 value).
func verify(dir string, want []checkpoints.Tensor) error {
	got, _, err := ReadWeights(dir)
	if err != nil {
		return err
	}
	byName := map[string]checkpoints.Tensor{}
	for _, t := range got {
		byName[t.Name] = t
	}
	var bad []string
	for _, w := range want {
		g, ok := byName[w.Name]
		if !ok {
			bad = append(bad, "missing "+w.Name)
			continue
		}
		delete(byName, w.Name)
		if g.DType != w.DType || fmt.Sprint(g.Shape) != fmt.Sprint(w.Shape) || len(g.F32) != len(w.F32) {
			bad = append(bad, fmt.Sprintf("%s: %v %v, want %v %v", w.Name, g.DType, g.Shape, w.DType, w.Shape))
			continue
		}
		for i, v := range w.F32 {
			if w.DType == checkpoints.BF16 {
				v = roundBF16(v)
			}
			if math.Float32bits(g.F32[i]) != math.Float32bits(v) {
				bad = append(bad, fmt.Sprintf("%s[%d]: read back %v, wrote %v", w.Name, i, g.F32[i], v))
				break
			}
		}
	}
	for name := range byName {
		bad = append(bad, "unexpected "+name)
	}
	if len(bad) > 0 {
		return fmt.Errorf("%d problem(s):\n  %s", len(bad), strings.Join(bad, "\n  "))
	}
	return nil
}

// roundBF16 rounds a finite float32 to the nearest bfloat16 (ties to even),
// written independently of checkpoints' encoder so that each checks the other.
func roundBF16(f float32) float32 {
	b := math.Float32bits(f)
	lsb := (b >> 16) & 1
	b += 0x7fff + lsb
	return math.Float32frombits(b &^ 0xffff)
}
