package rundir

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"gorgonia.org/tensor"

	"github.com/moetrain/moetrain/checkpoints"
	"github.com/moetrain/moetrain/data"
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
var ErrNoCheckpoint = errors.New("holds no checkpoint")

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
			return nil, fmt.Errorf("%s %w (want a run directory with checkpoints/tokens-N, or a checkpoint directory)", path, ErrNoCheckpoint)
		}
		ck, dir = c, d
	}
	st, err := DecodeState(ck.State, dir)
	if err != nil {
		return nil, err
	}
	m, err := model.New(st.Config.Model, tensor.Float32)
	if err != nil {
		return nil, fmt.Errorf("checkpoint %s: %w", dir, err)
	}
	if err := m.LoadHF(ck.Model); err != nil {
		return nil, fmt.Errorf("checkpoint %s: %w", dir, err)
	}
	if !m.Finite() {
		return nil, errors.New("checkpoint " + dir + ": weights are not finite")
	}
	return &Loaded{Model: m, State: st, Dir: dir}, nil
}

// Run is the run directory of the loaded checkpoint (Dir is
// RUN/checkpoints/tokens-N).
func (l *Loaded) Run() string { return filepath.Dir(filepath.Dir(l.Dir)) }

// Dataset finds the prepared dataset of a loaded run: its config's
// data.path as written, or relative to the run directory or its parent
// (runs are often launched from the repository root).
func (l *Loaded) Dataset() (string, error) {
	p := l.State.Config.Data.Path
	cands := []string{p}
	if !filepath.IsAbs(p) {
		run := l.Run()
		cands = append(cands, filepath.Join(run, p), filepath.Join(filepath.Dir(run), p))
	}
	var firstErr error
	for _, dir := range cands {
		if _, err := data.LoadManifest(dir); err != nil {
			if firstErr == nil {
				firstErr = err
			}
			continue
		}
		return dir, nil
	}
	return "", fmt.Errorf("find the run's dataset (data.path %s): %w", p, firstErr)
}
