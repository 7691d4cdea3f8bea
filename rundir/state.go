package rundir

import (
	"encoding/json"
	"fmt"

	"github.com/moetrain/moetrain/checkpoints"
	"github.com/moetrain/moetrain/configs"
	"github.com/moetrain/moetrain/data"
	"github.com/moetrain/moetrain/optim"
)

// StateVersion is the version of state.json's layout.
const StateVersion = 1

// State is state.json: everything besides tensors that a resume needs.
type State struct {
	Version       int            `json:"version"`
	Tokens        int64          `json:"tokens"`
	Step          int64          `json:"step"`
	Cursor        data.Cursor    `json:"data_cursor"`
	OptimizerStep int64          `json:"optimizer_step"`
	SkippedSteps  int64          `json:"skipped_steps"`
	Config        configs.Config `json:"config"`
	// DataID identifies the dataset (data.Manifest.ID): a resume on
	// re-prepared data would not continue the same token stream.
	DataID  string `json:"data_id,omitempty"`
	Kernel  string `json:"blas_kernel"`
	Threads int    `json:"threads"`
	// No random number generator runs during training: weights are drawn
	// from model.init_seed at launch, and the data order is a pure function
	// of (data.seed, epoch, position).
}

// NewState returns the state of a run that has trained no tokens: what a
// checkpoint written outside the trainer (moetrain import) stores so that
// the trainer continues it and LoadModel reads it.
func NewState(cfg configs.Config) State {
	return State{Version: StateVersion, Config: cfg}
}

// OptimizerTensors stores AdamW's moments, one tensor per moment.
func OptimizerTensors(s optim.State) []checkpoints.Tensor {
	out := make([]checkpoints.Tensor, 0, len(s.Slices))
	for _, ns := range s.Slices {
		out = append(out, checkpoints.Tensor{Name: ns.Name, DType: checkpoints.F32, Shape: []int{len(ns.Data)}, F32: ns.Data})
	}
	return out
}

// OptimizerState reads AdamW's moments back (step is State.OptimizerStep).
func OptimizerState(step int64, ts []checkpoints.Tensor) (optim.State, error) {
	s := optim.State{Step: step}
	for _, t := range ts {
		if t.DType != checkpoints.F32 {
			return s, fmt.Errorf("optimizer tensor %s: dtype %v, want F32", t.Name, t.DType)
		}
		s.Slices = append(s.Slices, optim.NamedSlice{Name: t.Name, Data: t.F32})
	}
	return s, nil
}

// EncodeState is state.json's bytes.
func EncodeState(s State) (json.RawMessage, error) {
	return json.MarshalIndent(s, "", "  ")
}

// DecodeState reads the state.json of checkpoint dir and checks its
// version.
func DecodeState(raw []byte, dir string) (State, error) {
	// Keys a checkpoint does not carry (written before they existed) mean
	// their defaults, as in a config file: decode over the defaults.
	st := State{Config: configs.Default()}
	if err := json.Unmarshal(raw, &st); err != nil {
		return st, fmt.Errorf("checkpoint %s: state.json: %w", dir, err)
	}
	if st.Version != StateVersion {
		return st, fmt.Errorf("checkpoint %s: state version %d, this moetrain reads %d", dir, st.Version, StateVersion)
	}
	return st, nil
}
