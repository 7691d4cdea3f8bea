package train

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"gorgonia.org/tensor"

	"github.com/moetrain/moetrain/checkpoints"
	"github.com/moetrain/moetrain/model"
)

// Loaded is a trained model read back from a run directory or checkpoint.
type Loaded struct {
	Model *model.Model
	State State  // state.json: config, tokens, step, data cursor
	Dir   string // the checkpoint directory read
}

// ErrNoCheckpoint is wrapped by LoadModel when path is neither a run
// directory with a checkpoint nor a checkpoint directory: a mistaken
// argument rather than a damaged run.
var ErrNoCheckpoint = errors.New("no checkpoint")

// LoadModel reads the model of a run directory's newest valid checkpoint, or
// of one checkpoint directory (RUN/checkpoints/tokens-N), in float32. It is
// how eval, generate and export find their model.
func LoadModel(path string) (*Loaded, error) {
	var ck *checkpoints.Checkpoint
	dir := path
	if _, err := os.Stat(filepath.Join(path, "manifest.json")); err == nil {
		c, err := checkpoints.Load(path)
		if err != nil {
			return nil, err
		}
		ck = c
	} else {
		c, d, warnings, err := checkpoints.LoadLatest(path)
		for _, w := range warnings {
			fmt.Fprintf(os.Stderr, "warning: %s\n", w)
		}
		if err != nil {
			return nil, err
		}
		if c == nil {
			return nil, fmt.Errorf("%w: %s holds no checkpoint (want a run directory with checkpoints/tokens-N, or a checkpoint directory)", ErrNoCheckpoint, path)
		}
		ck, dir = c, d
	}
	var st State
	if err := jsonUnmarshal(ck.State, &st); err != nil {
		return nil, fmt.Errorf("checkpoint %s: state.json: %w", dir, err)
	}
	if st.Version != stateVersion {
		return nil, fmt.Errorf("checkpoint %s: state version %d, this moetrain reads %d", dir, st.Version, stateVersion)
	}
	m, err := model.New(st.Config.Model, tensor.Float32)
	if err != nil {
		return nil, fmt.Errorf("checkpoint %s: %w", dir, err)
	}
	if err := LoadModelTensors(m, ck.Model); err != nil {
		return nil, fmt.Errorf("checkpoint %s: %w", dir, err)
	}
	if !m.Finite() {
		return nil, errors.New("checkpoint " + dir + ": weights are not finite")
	}
	return &Loaded{Model: m, State: st, Dir: dir}, nil
}
