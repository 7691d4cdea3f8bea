package model

import (
	"path/filepath"
	"testing"

	"github.com/moetrain/moetrain/configs"
)

// The integers below are docs/DESIGN.md's (§4.1, §4.4, §7.2): the paper's
// rounded figures, derived by hand from its configs, not outputs of this code.
func TestPaperConfigCounts(t *testing.T) {
	tests := []struct {
		file             string
		total, activated int64
		flops            float64 // per 2K tokens (validation) or per 4K tokens (16B, 7B), in T
		flopsTokens      int
		// DESIGN.md rounds: 2 decimals for the validation models, 1 for 16B and 7B.
	}{
		{"validation-dense.yaml", 197931520, 197931520, 2.88, 2048},
		{"validation-hash.yaml", 1967230720, 197931520, 2.88, 2048},
		{"validation-switch.yaml", 1967415040, 198115840, 2.89, 2048},
		{"validation-gshard.yaml", 1967415040, 316069120, 4.33, 2048},
		{"validation-deepseekmoe.yaml", 1967403520, 316541440, 4.34, 2048},
		{"deepseekmoe-16b.yaml", 16375728128, 2828650496, 75.9, 4096},
		{"deepseekmoe-145b.yaml", 144620638208, 22195195904, 0, 0},
		{"deepseek-7b.yaml", 6910365696, 6910365696, 184.3, 4096},
	}
	for _, tc := range tests {
		t.Run(tc.file, func(t *testing.T) {
			cfg, err := configs.Load(filepath.Join("..", "configs", "paper", tc.file), nil)
			if err != nil {
				t.Fatal(err)
			}
			c := Count(cfg.Model)
			if c.Total != tc.total || c.Activated != tc.activated {
				t.Errorf("got total %d activated %d, want %d / %d", c.Total, c.Activated, tc.total, tc.activated)
			}
			if tc.flopsTokens > 0 {
				got := FLOPsPerToken(cfg.Model, cfg.Train.SeqLen) * float64(tc.flopsTokens) / 1e12
				half := 0.005
				if tc.flopsTokens == 4096 {
					half = 0.05
				}
				if got < tc.flops-half || got > tc.flops+half {
					t.Errorf("FLOPs per %d tokens: got %.3fT, want %.2fT", tc.flopsTokens, got, tc.flops)
				}
			}
		})
	}
}

// DESIGN.md §7.2: 16B without embedding and lm_head, and the per-layer pieces.
func TestDeepSeekMoE16BBreakdown(t *testing.T) {
	cfg, err := configs.Load("../configs/paper/deepseekmoe-16b.yaml", nil)
	if err != nil {
		t.Fatal(err)
	}
	c := Count(cfg.Model)
	if c.TotalNoEmbed != 15956297728 || c.ActivatedNoEmbed != 2409220096 {
		t.Errorf("no-embed counts %d / %d, want 15956297728 / 2409220096", c.TotalNoEmbed, c.ActivatedNoEmbed)
	}
	var layer1, router, shared int64
	for _, p := range Layout(cfg.Model) {
		if p.Layer == 1 {
			layer1 += p.Size()
		}
		if p.Layer == 1 && p.Kind == "router" {
			router = p.Size()
		}
		if p.Layer == 1 && p.Kind == "shared" {
			shared += p.Size()
		}
	}
	if layer1 != 587862016 || router != 131072 || shared != 17301504 {
		t.Errorf("layer 1 total %d router %d shared %d, want 587862016 / 131072 / 17301504", layer1, router, shared)
	}
}
