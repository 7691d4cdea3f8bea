package configs

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"
)

func TestShippedConfigsLoad(t *testing.T) {
	files, err := filepath.Glob("*/*.yaml")
	if err != nil || len(files) < 15 {
		t.Fatalf("found %d shipped configs (%v), want at least 15", len(files), err)
	}
	for _, f := range files {
		if strings.HasPrefix(f, "testdata") || strings.HasPrefix(f, "sweeps") { // sweep files, not run configs
			continue
		}
		if _, err := Load(f, nil); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
}

func TestOverridesAreYAMLScalars(t *testing.T) {
	cfg, err := Parse([]byte("model:\n  layers: 2\n"), []string{"model.hidden=128", "model.balance.per_sequence=false", "optim.eps=1e-6", "data.weights.code=2"})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Model.Hidden != 128 || cfg.Model.Layers != 2 || cfg.Model.Balance.PerSequence || cfg.Optim.Eps != 1e-6 || cfg.Data.Weights["code"] != 2 {
		t.Errorf("got %+v", cfg)
	}
	if d := Default(); cfg.Model.VocabSize != d.Model.VocabSize {
		t.Errorf("default vocab_size lost: got %d want %d", cfg.Model.VocabSize, d.Model.VocabSize)
	}
}

// Every bad config is reported by the YAML key at fault.
func TestBadConfigsNameTheKey(t *testing.T) {
	moe := "model:\n  ffn: deepseekmoe\n  shared_experts: 1\n  routed_experts: 8\n  active_routed: 2\n  expert_width: 16\n"
	tests := []struct {
		name, yaml string
		set        []string
		key        string
	}{
		{"unknown top-level key", "foo: 1\n", nil, "foo: unknown key"},
		{"unknown model key", "model:\n  hiden: 3\n", nil, "model.hiden: unknown key"},
		{"string for int", "model:\n  heads: \"4\"\n", nil, "model.heads: expected type 'int'"},
		{"bool for float", "model:\n  balance:\n    expert_alpha: true\n", nil, "model.balance.expert_alpha: expected type 'float64'"},
		{"heads do not divide hidden", "model:\n  heads: 3\n", nil, "model.heads: 3 does not divide hidden"},
		{"odd head dim", "model:\n  hidden: 12\n  heads: 4\n", nil, "model.heads: head dim"},
		{"top-k above experts", moe, []string{"model.active_routed=9"}, "model.active_routed: top-k 9 exceeds"},
		{"negative alpha", moe, []string{"model.balance.expert_alpha=-0.1"}, "model.balance.expert_alpha: must be >= 0"},
		{"unknown ffn", "model:\n  ffn: mixture\n", nil, "model.ffn: unknown kind"},
		{"gshard top-1", "model:\n  ffn: gshard\n  routed_experts: 4\n  active_routed: 1\n  expert_width: 8\n", nil, "model.active_routed: gshard routes to exactly 2"},
		{"device groups do not divide", moe, []string{"model.balance.device_alpha=0.05", "model.balance.device_groups=3"}, "model.balance.device_groups: 3 does not divide"},
		{"expert parallel does not divide", moe, []string{"model.expert_parallel=3"}, "model.expert_parallel: 3 does not divide"},
		{"expert parallel zero", moe, []string{"model.expert_parallel=-1"}, "model.expert_parallel: must be >= 1"},
		{"expert parallel dense", "model:\n  expert_parallel: 2\n", nil, "model.expert_parallel: a dense model"},
		{"expert parallel device groups", moe, []string{"model.expert_parallel=2", "model.balance.device_alpha=0.05", "model.balance.device_groups=4"}, "model.balance.device_groups: must equal expert_parallel 2"},
		{"hash with balance loss", "model:\n  ffn: hash\n  routed_experts: 4\n  active_routed: 1\n  expert_width: 8\n  balance:\n    expert_alpha: 0.01\n", nil, "model.balance: hash routing"},
		{"zero layers", "model:\n  layers: 0\n", nil, "model.layers: must be positive"},
		{"beta2 out of range", "optim:\n  beta2: 1.5\n", nil, "optim.beta2: must be in [0, 1)"},
		{"micro batch does not divide", "train:\n  batch_size: 8\n  micro_batch_size: 3\n", nil, "train.micro_batch_size: 3 does not divide"},
		{"unknown schedule", "schedule:\n  kind: linear\n", nil, "schedule.kind: unknown kind"},
		{"zero max lr", "schedule:\n  max_lr: 0\n", nil, "schedule.max_lr: must be positive"},
		{"keep_last zero", "checkpoint:\n  keep_last: 0\n", nil, "checkpoint.keep_last: must be >= 1"},
		{"negative domain weight", "data:\n  weights:\n    code: -1\n", nil, "data.weights.code: must be >= 0"},
		{"unknown --set key", "", []string{"model.widht=3"}, "model.widht: unknown key"},
		{"--set without =", "", []string{"model.hidden"}, "want key=value"},
		{"bad yaml", "model: [\n", nil, "yaml:"},
		{"non-finite policy", "train:\n  non_finite: ignore\n", nil, "train.non_finite: want stop or skip"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.yaml), tc.set)
			var ce *Error
			if !errors.As(err, &ce) {
				t.Fatalf("got error %v (%T), want *configs.Error", err, err)
			}
			if !strings.Contains(err.Error(), tc.key) {
				t.Errorf("got %q, want it to contain %q", err.Error(), tc.key)
			}
		})
	}
}

func TestAllErrorsReportedAtOnce(t *testing.T) {
	_, err := Parse([]byte("model:\n  heads: 3\n  layers: -1\noptim:\n  beta1: 2\n"), nil)
	var ce *Error
	if !errors.As(err, &ce) || len(ce.Fields) != 3 {
		t.Fatalf("got %v, want three fields", err)
	}
}

func TestIsMoELayerRule(t *testing.T) {
	m := Default().Model
	m.FFN, m.RoutedExperts, m.FirstDenseLayers, m.MoELayerFreq = FFNDeepSeekMoE, 4, 1, 2
	var got []int
	for i := 0; i < 6; i++ {
		if m.IsMoELayer(i) {
			got = append(got, i)
		}
	}
	if len(got) != 2 || got[0] != 2 || got[1] != 4 {
		t.Errorf("MoE layers %v, want [2 4]", got)
	}
}
