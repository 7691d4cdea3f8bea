package hf

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"gorgonia.org/tensor"

	"github.com/moetrain/moetrain/checkpoints"
	"github.com/moetrain/moetrain/configs"
	"github.com/moetrain/moetrain/model"
	"github.com/moetrain/moetrain/rundir"
)

// ErrRunExists is wrapped when Import's run directory is already a run.
var ErrRunExists = rundir.ErrRunExists

// ReadWeights reads the safetensors weights of an HF model directory and
// returns them sorted by name, with the files read. It looks for, in order:
// model.safetensors.index.json (every shard it names; a tensor a shard
// holds but the index does not map to it, or the reverse, is an error),
// model.safetensors, or the one *.safetensors file in dir (e.g. what
// `torchref.py init --out` wrote). Errors name the file.
func ReadWeights(dir string) ([]checkpoints.Tensor, []string, error) {
	idxPath := filepath.Join(dir, IndexFile)
	raw, err := os.ReadFile(idxPath)
	switch {
	case err == nil:
		return readSharded(dir, idxPath, raw)
	case !errors.Is(err, os.ErrNotExist):
		return nil, nil, fmt.Errorf("read %s: %w", idxPath, err)
	}
	single := filepath.Join(dir, WeightsFile)
	if _, err := os.Stat(single); err != nil {
		all, _ := filepath.Glob(filepath.Join(dir, "*.safetensors"))
		switch len(all) {
		case 0:
			hint := ""
			if _, err := os.Stat(filepath.Join(dir, "pytorch_model.bin")); err == nil {
				hint = " (pytorch_model.bin is not read: save the model with safe_serialization=True)"
			}
			return nil, nil, fmt.Errorf("no weights in %s: want %s, %s or one *.safetensors file%s", dir, WeightsFile, IndexFile, hint)
		case 1:
			single = all[0]
		default:
			names := make([]string, len(all))
			for i, p := range all {
				names[i] = filepath.Base(p)
			}
			return nil, nil, fmt.Errorf("%s holds %d *.safetensors files (%s) but no %s saying how they fit together", dir, len(all), strings.Join(names, ", "), IndexFile)
		}
	}
	ts, err := readFile(single)
	if err != nil {
		return nil, nil, err
	}
	return ts, []string{single}, nil
}

func readFile(path string) ([]checkpoints.Tensor, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read weights: %w", err)
	}
	ts, _, err := checkpoints.ReadSafetensors(b)
	if err != nil {
		return nil, fmt.Errorf("read weights %s: %w", path, err)
	}
	return ts, nil
}

func readSharded(dir, idxPath string, raw []byte) ([]checkpoints.Tensor, []string, error) {
	var idx struct {
		WeightMap map[string]string `json:"weight_map"`
	}
	if err := json.Unmarshal(raw, &idx); err != nil {
		return nil, nil, fmt.Errorf("read %s: %w", idxPath, err)
	}
	if len(idx.WeightMap) == 0 {
		return nil, nil, fmt.Errorf("read %s: no weight_map entries", idxPath)
	}
	seen := map[string]bool{}
	var files []string
	for _, f := range idx.WeightMap {
		// Shards live beside the index; a path elsewhere is refused.
		if f == "" || f != filepath.Base(f) || f == "." || f == ".." {
			return nil, nil, fmt.Errorf("read %s: shard name %q is not a file name in %s", idxPath, f, dir)
		}
		if !seen[f] {
			seen[f] = true
			files = append(files, f)
		}
	}
	sort.Strings(files)
	var all []checkpoints.Tensor
	var bad []string
	found := map[string]string{}
	var paths []string
	for _, f := range files {
		p := filepath.Join(dir, f)
		ts, err := readFile(p)
		if err != nil {
			return nil, nil, err
		}
		paths = append(paths, p)
		for _, t := range ts {
			if prev, dup := found[t.Name]; dup {
				bad = append(bad, fmt.Sprintf("%s is in both %s and %s", t.Name, prev, f))
				continue
			}
			found[t.Name] = f
			if want, ok := idx.WeightMap[t.Name]; !ok {
				bad = append(bad, fmt.Sprintf("%s is in %s but not in the index", t.Name, f))
			} else if want != f {
				bad = append(bad, fmt.Sprintf("%s is in %s but the index maps it to %s", t.Name, f, want))
			}
			all = append(all, t)
		}
	}
	for name, f := range idx.WeightMap {
		if _, ok := found[name]; !ok {
			bad = append(bad, fmt.Sprintf("the index maps %s to %s, which does not hold it", name, f))
		}
	}
	if len(bad) > 0 {
		sort.Strings(bad)
		return nil, nil, fmt.Errorf("read %s: %d problem(s):\n  %s", idxPath, len(bad), strings.Join(bad, "\n  "))
	}
	sort.Slice(all, func(a, b int) bool { return all[a].Name < all[b].Name })
	return all, paths, nil
}

// Loaded is a model read from an HF directory.
type Loaded struct {
	Model  *model.Model  // float32
	Config model.HFModel // what config.json said
	Files  []string      // weight files read
}

// Load reads an HF DeepseekForCausalLM directory (config.json plus
// safetensors weights, one file or sharded) into a float32 model. Missing,
// unexpected and mis-shaped tensors are all listed in one error; rotary
// inv_freq buffers, which older exports stored though they follow from
// rope_theta, are skipped.
func Load(dir string) (*Loaded, error) {
	cfgPath := filepath.Join(dir, ConfigFile)
	raw, err := os.ReadFile(cfgPath)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	hc, err := model.ParseHFConfig(raw)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", cfgPath, err)
	}
	ts, files, err := ReadWeights(dir)
	if err != nil {
		return nil, err
	}
	m, err := model.New(hc.Model, tensor.Float32)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", cfgPath, err)
	}
	kept := ts[:0:0]
	for _, t := range ts {
		// Rotary buffers are recomputed, never learned.
		if !strings.HasSuffix(t.Name, ".rotary_emb.inv_freq") {
			kept = append(kept, t)
		}
	}
	if err := m.LoadHF(kept); err != nil {
		return nil, fmt.Errorf("%s (config %s): %w", strings.Join(files, ", "), cfgPath, err)
	}
	if !m.Finite() {
		return nil, fmt.Errorf("%s: weights are not finite", strings.Join(files, ", "))
	}
	return &Loaded{Model: m, Config: hc, Files: files}, nil
}

// ImportOptions configure Import.
type ImportOptions struct {
	RunDir string
	// Sets are "key=value" overrides applied to the written config.yaml
	// (e.g. data.path). Keys that fix the weights' layout or the model's
	// function come from config.json and may not be overridden.
	Sets []string
}

// ImportResult describes a finished import.
type ImportResult struct {
	Config     configs.Config // as written to RUN_DIR/config.yaml
	Checkpoint string         // the checkpoint directory (tokens 0)
	Files      []string       // weight files read
	Tensors    int
	MoELayers  int
	Experts    int // routed experts over all MoE layers
}

// overridable model keys: they change training, not what the weights
// compute.
var overridable = []string{"model.balance.", "model.init_std", "model.init_seed"}

// Import reads an HF directory (see Load) into a new moetrain run
// directory: RUN_DIR/config.yaml (configs.Default with the model mapped from
// config.json, train.seq_len = max_position_embeddings when given, then
// opt.Sets) and a checkpoint at 0 tokens that holds the weights and no
// optimizer state, so `moetrain train` continues it (AdamW from zero
// moments) and `moetrain eval` scores it. Config mistakes are returned as
// *configs.Error; a run directory that already holds a run wraps
// ErrRunExists.
func Import(dir string, opt ImportOptions) (res ImportResult, err error) {
	if opt.RunDir == "" {
		return res, errors.New("import: no run directory")
	}
	for _, p := range []string{"config.yaml", "checkpoints"} {
		if _, err := os.Stat(filepath.Join(opt.RunDir, p)); err == nil {
			return res, fmt.Errorf("import: %w: %s exists; pick a new run directory", ErrRunExists, filepath.Join(opt.RunDir, p))
		}
	}
	l, err := Load(dir)
	if err != nil {
		return res, fmt.Errorf("import: %w", err)
	}
	base := configs.Default()
	base.Model = l.Config.Model
	if l.Config.MaxPositions > 0 {
		base.Train.SeqLen = l.Config.MaxPositions
	}
	cfg, err := configs.Parse([]byte(base.YAML()), opt.Sets)
	if err != nil {
		return res, err
	}
	var fixed []string
	now, was := cfg.Flat(), base.Flat()
	for k, v := range now {
		if strings.HasPrefix(k, "model.") && fmt.Sprint(v) != fmt.Sprint(was[k]) && !isOverridable(k) {
			fixed = append(fixed, fmt.Sprintf("%s: comes from %s (%v); only model.balance.*, model.init_std and model.init_seed may be set", k, ConfigFile, was[k]))
		}
	}
	if len(fixed) > 0 {
		sort.Strings(fixed)
		return res, &configs.Error{Source: "--set", Fields: fixed}
	}

	ck, err := rundir.NewRun(opt.RunDir, cfg, l.Model)
	if err != nil {
		return res, fmt.Errorf("import: %w", err)
	}
	res = ImportResult{Config: cfg, Checkpoint: ck, Files: l.Files, Tensors: len(l.Model.HFTensors())}
	for _, p := range l.Model.Layout {
		if p.Experts > 0 && strings.HasSuffix(p.Name, ".gate_proj.weight") {
			res.MoELayers++
			res.Experts += p.Experts
		}
	}
	return res, nil
}

func isOverridable(key string) bool {
	for _, o := range overridable {
		if key == o || (strings.HasSuffix(o, ".") && strings.HasPrefix(key, o)) {
			return true
		}
	}
	return false
}
