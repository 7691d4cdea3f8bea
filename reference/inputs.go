package reference

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"gorgonia.org/tensor"

	"github.com/moetrain/moetrain/checkpoints"
	"github.com/moetrain/moetrain/configs"
	"github.com/moetrain/moetrain/data"
	"github.com/moetrain/moetrain/model"
)

// The files WriteInputs writes into its directory.
const (
	ConfigFile  = "config.json"      // the resolved config (configs.Config as JSON)
	InitFile    = "init.safetensors" // initial weights, moetrain's (HF) names, float32; hash tables int32
	BatchesFile = "batches.i32"      // train windows: int32 little-endian, T+1 ids each, train.batch_size per step
	HeldOutFile = "heldout.i32"      // validation windows as evaluation scores them, same layout
)

// Inputs says what WriteInputs wrote.
type Inputs struct {
	Steps          int   `json:"steps"`
	BatchWindows   int   `json:"batch_windows"`   // windows per step (train.batch_size)
	HeldOutWindows int   `json:"heldout_windows"` // 0 when the dataset has no validation split
	HeldOutTokens  int64 `json:"heldout_tokens"`  // predicted tokens in them
}

// WriteInputs writes, into dir, the config, the initial weights (drawn as
// moetrain draws them from model.init_seed) and the train batches of the
// first steps optimizer steps of a run of cfg (0: every step of
// train.tokens). The held-out windows are the first eval.tokens predicted
// tokens of the validation split, whole micro-batches, in the order
// moetrain's held-out evaluation reads them (0: the whole split).
func WriteInputs(cfg configs.Config, dir string, steps int) (Inputs, error) {
	var in Inputs
	if err := cfg.Validate(); err != nil {
		return in, err
	}
	stepTokens := int64(cfg.Train.BatchSize) * int64(cfg.Train.SeqLen)
	all := int((cfg.Train.Tokens + stepTokens - 1) / stepTokens)
	if steps <= 0 || steps > all {
		steps = all
	}
	if err := WriteConfig(cfg, dir); err != nil {
		return in, err
	}
	m, err := model.New(cfg.Model, tensor.Float32)
	if err != nil {
		return in, err
	}
	if err := WriteWeights(filepath.Join(dir, InitFile), m); err != nil {
		return in, err
	}

	micro := cfg.Train.MicroBatch()
	train, err := data.Open(data.StreamConfig{Dir: cfg.Data.Path, Split: "train", SeqLen: cfg.Train.SeqLen,
		Batch: micro, Seed: cfg.Data.Seed, Weights: cfg.Data.Weights, Vocab: cfg.Model.VocabSize}, data.Cursor{})
	if err != nil {
		return in, fmt.Errorf("open training data (data.path %s): %w", cfg.Data.Path, err)
	}
	defer train.Close()
	var buf bytes.Buffer
	for s := 0; s < steps; s++ {
		for mb := 0; mb < cfg.Train.BatchSize/micro; mb++ {
			b, err := train.Next()
			if err != nil {
				return in, fmt.Errorf("read training data: %w", err)
			}
			binary.Write(&buf, binary.LittleEndian, b.Tokens)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, BatchesFile), buf.Bytes(), 0o644); err != nil {
		return in, err
	}
	in.Steps, in.BatchWindows = steps, cfg.Train.BatchSize

	buf.Reset()
	val, err := data.Open(data.StreamConfig{Dir: cfg.Data.Path, Split: "validation", SeqLen: cfg.Train.SeqLen,
		Batch: micro, Epochs: 1, Vocab: cfg.Model.VocabSize}, data.Cursor{})
	if err == nil {
		defer val.Close()
		for cfg.Eval.Tokens == 0 || in.HeldOutTokens < cfg.Eval.Tokens {
			b, err := val.Next()
			if b.B > 0 {
				binary.Write(&buf, binary.LittleEndian, b.Tokens)
				in.HeldOutWindows += b.B
				in.HeldOutTokens += int64(b.B * b.T)
			}
			if errors.Is(err, io.EOF) || b.B == 0 {
				break
			}
			if err != nil {
				return in, fmt.Errorf("read validation data: %w", err)
			}
		}
	}
	return in, os.WriteFile(filepath.Join(dir, HeldOutFile), buf.Bytes(), 0o644)
}

// WriteConfig writes only the config (ConfigFile) into dir: enough for the
// reference's bench mode, which draws its own weights and tokens.
func WriteConfig(cfg configs.Config, dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	raw, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, ConfigFile), append(raw, '\n'), 0o644)
}

// WriteWeights writes m's weights as the reference reads them: float32
// under their HF names, routed experts one tensor each, hash tables int32.
func WriteWeights(path string, m *model.Model) error {
	// HFTensors gives float32 (or float64) weights and int32 hash tables.
	ts := m.HFTensors()
	for i, t := range ts {
		if t.F64 != nil {
			t.DType, t.F32, t.F64 = checkpoints.F32, make([]float32, len(t.F64)), nil
			for j, v := range ts[i].F64 {
				t.F32[j] = float32(v)
			}
			ts[i] = t
		}
	}
	var buf bytes.Buffer
	if err := checkpoints.WriteSafetensors(&buf, ts, nil); err != nil {
		return err
	}
	return os.WriteFile(path, buf.Bytes(), 0o644)
}
