package train

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/moetrain/moetrain/checkpoints"
	"github.com/moetrain/moetrain/configs"
	"github.com/moetrain/moetrain/data"
	"github.com/moetrain/moetrain/model"
	"github.com/moetrain/moetrain/optim"
)

// stateVersion is the version of state.json's layout.
const stateVersion = 1

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
// checkpoint written outside Run (moetrain import) stores so that Run
// continues it and LoadModel reads it.
func NewState(cfg configs.Config) State {
	return State{Version: stateVersion, Config: cfg}
}

// ModelTensors converts the model's weights to checkpoint tensors under
// their HF names (hash tables as int32).
func ModelTensors(m *model.Model) []checkpoints.Tensor {
	var out []checkpoints.Tensor
	for _, h := range m.HFTensors() {
		t := checkpoints.Tensor{Name: h.Name, Shape: h.Shape}
		switch {
		case h.F32 != nil:
			t.DType, t.F32 = checkpoints.F32, h.F32
		case h.F64 != nil:
			t.DType, t.F64 = checkpoints.F64, h.F64
		default:
			t.DType = checkpoints.I32
			t.I32 = make([]int32, len(h.Ints))
			for i, v := range h.Ints {
				t.I32[i] = int32(v)
			}
		}
		out = append(out, t)
	}
	return out
}

// LoadModelTensors sets the model's weights from checkpoint tensors.
func LoadModelTensors(m *model.Model, ts []checkpoints.Tensor) error {
	hs := make([]model.HFTensor, 0, len(ts))
	for _, t := range ts {
		h := model.HFTensor{Name: t.Name, Shape: t.Shape}
		switch {
		case t.F32 != nil:
			h.F32 = t.F32
		case t.F64 != nil:
			h.F64 = t.F64
		case t.I32 != nil:
			h.Ints = make([]int, len(t.I32))
			for i, v := range t.I32 {
				h.Ints[i] = int(v)
			}
		case t.I64 != nil:
			h.Ints = make([]int, len(t.I64))
			for i, v := range t.I64 {
				h.Ints[i] = int(v)
			}
		}
		hs = append(hs, h)
	}
	return m.LoadHF(hs)
}

// optimizerTensors stores AdamW's moments, one tensor per moment.
func optimizerTensors(s optim.State) []checkpoints.Tensor {
	out := make([]checkpoints.Tensor, 0, len(s.Slices))
	for _, ns := range s.Slices {
		out = append(out, checkpoints.Tensor{Name: ns.Name, DType: checkpoints.F32, Shape: []int{len(ns.Data)}, F32: ns.Data})
	}
	return out
}

func optimizerState(step int64, ts []checkpoints.Tensor) (optim.State, error) {
	s := optim.State{Step: step}
	for _, t := range ts {
		if t.DType != checkpoints.F32 {
			return s, fmt.Errorf("optimizer tensor %s: dtype %v, want F32", t.Name, t.DType)
		}
		s.Slices = append(s.Slices, optim.NamedSlice{Name: t.Name, Data: t.F32})
	}
	return s, nil
}

// safeKeys may differ between a run's stored config and a resume's: they
// change when and how often things happen, never what is computed.
var safeKeys = []string{"checkpoint.", "eval.", "log.", "train.tokens", "train.non_finite", "model.expert_parallel"}

func isSafe(key string) bool {
	for _, s := range safeKeys {
		if key == s || (strings.HasSuffix(s, ".") && strings.HasPrefix(key, s)) {
			return true
		}
	}
	return false
}

// changedKeys lists the keys whose values differ and are not safe to change.
func changedKeys(stored, now configs.Config) []string {
	a, b := stored.Flat(), now.Flat()
	var out []string
	seen := map[string]bool{}
	for k := range a {
		seen[k] = true
	}
	for k := range b {
		seen[k] = true
	}
	for k := range seen {
		if isSafe(k) {
			continue
		}
		if fmt.Sprint(a[k]) != fmt.Sprint(b[k]) {
			out = append(out, fmt.Sprintf("%s: %v → %v", k, a[k], b[k]))
		}
	}
	sortStrings(out)
	return out
}

func sortStrings(s []string) {
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j] < s[j-1]; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
}

func marshalState(s State) (json.RawMessage, error) {
	return json.MarshalIndent(s, "", "  ")
}
