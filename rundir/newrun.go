package rundir

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"

	"github.com/moetrain/moetrain/checkpoints"
	"github.com/moetrain/moetrain/configs"
	"github.com/moetrain/moetrain/internal/atomicfile"
	"github.com/moetrain/moetrain/internal/blas"
	"github.com/moetrain/moetrain/model"
	"github.com/moetrain/moetrain/model/ops"
)

// ErrRunExists is wrapped by NewRun when its directory already holds a run.
var ErrRunExists = errors.New("run directory already holds a run")

// NewRun writes a run that has trained no tokens from a model made outside
// the trainer (moetrain import, moetrain upcycle): dir/config.yaml and a checkpoint
// at 0 tokens holding m's weights and no optimizer state, so that the
// trainer continues it (AdamW from zero moments) and LoadModel reads it. It returns
// the checkpoint directory.
func NewRun(dir string, cfg configs.Config, m *model.Model) (string, error) {
	for _, p := range []string{"config.yaml", "checkpoints"} {
		if _, err := os.Stat(filepath.Join(dir, p)); err == nil {
			return "", fmt.Errorf("%w: %s exists; pick a new run directory", ErrRunExists, filepath.Join(dir, p))
		}
	}
	st := NewState(cfg)
	// Record this machine's kernel, as the trainer does, so that continuing the
	// run does not warn about a kernel change that never happened.
	if info, err := blas.Init(); err == nil {
		st.Kernel, st.Threads = ops.BitsKernel(info.Kernel, cfg.Model.FFN != configs.FFNDense, cfg.Train.BF16Products()), runtime.GOMAXPROCS(0)
	}
	state, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return "", fmt.Errorf("encode state: %w", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("create run directory: %w", err)
	}
	if err := WriteConfig(dir, cfg); err != nil {
		return "", fmt.Errorf("write config: %w", err)
	}
	ck, err := checkpoints.Save(dir, checkpoints.Checkpoint{Tokens: 0, Model: m.HFTensors(), State: state},
		checkpoints.Policy{KeepLast: cfg.Checkpoint.KeepLast, KeepEveryTokens: cfg.Checkpoint.KeepEveryTokens})
	if err != nil && ck == "" {
		return "", fmt.Errorf("save checkpoint: %w", err)
	}
	return ck, nil
}

// WriteConfig writes the run's resolved config as RUN/config.yaml, crash
// safe (internal/atomicfile).
func WriteConfig(dir string, cfg configs.Config) error {
	return atomicfile.WriteFile(filepath.Join(dir, "config.yaml"), []byte(cfg.YAML()), 0o644)
}
