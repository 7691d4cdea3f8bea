package planner

import (
	"math"
	"testing"

	"github.com/moetrain/moetrain/configs"
	"github.com/moetrain/moetrain/internal/tol"
	"github.com/moetrain/moetrain/model"
)

func load(t *testing.T, name string) configs.Config {
	t.Helper()
	cfg, err := configs.Load("../configs/"+name, nil)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// The ZeRO paper (Rajbhandari et al. 2020, Figure 1): a 7.5B-parameter model
// on 64 data-parallel devices with mixed-precision Adam needs 120 GB per
// device, 31.4 GB with optimizer states sharded and 16.6 GB with gradients
// sharded too.
func TestZeROPaperFigures(t *testing.T) {
	for stage, gb := range []float64{120, 31.4, 16.6} {
		o := Options{Precision: BF16, ZeRO: stage, Recompute: RecomputeNone}
		m := States(7.5e9, 0, 64, 1, o)
		if got := float64(m.Total) / 1e9; math.Abs(got-gb) > 0.05 {
			t.Errorf("ZeRO-%d: %.3f GB per device, the paper has %.1f", stage, got, gb)
		}
	}
}

// Under expert parallelism an expert shard's states shard over the DP ranks
// holding it, the rest over all ranks.
func TestExpertStatesShardWithinGroup(t *testing.T) {
	const po, pe = 1200, 6400
	o := Options{Precision: BF16, ZeRO: 2, Recompute: RecomputeNone}
	m := States(po, pe, 4, 8, o)
	if want := int64(2 * (po + pe/8)); m.Weights != want {
		t.Errorf("weights %d, want %d", m.Weights, want)
	}
	if want := int64(math.Round(2 * (po/32.0 + pe/8/4.0))); m.Gradients != want {
		t.Errorf("gradients %d, want %d", m.Gradients, want)
	}
	if want := int64(math.Round(12 * (po/32.0 + pe/8/4.0))); m.Optimizer != want {
		t.Errorf("optimizer %d, want %d", m.Optimizer, want)
	}
}

// With moetrain's own options one process is model.EstimateMemory.
func TestDefaultIsMoetrain(t *testing.T) {
	cfg := load(t, "small/deepseekmoe.yaml")
	cfg.Train.BatchSize = 4
	rows, err := Plan(cfg, Cluster{Devices: 1, MemBytes: 1 << 40, TFLOPS: 1, BandwidthGBs: 1}, Options{Precision: FP32, Recompute: RecomputeNone, MicroBatch: 2})
	if err != nil {
		t.Fatal(err)
	}
	want := model.EstimateMemory(cfg.Model, 2, cfg.Train.SeqLen)
	r := rows[0]
	if got := (model.Memory{Weights: r.Weights, Gradients: r.Gradients, Optimizer: r.Optimizer, Activations: r.Activations, Total: r.Total}); got != want {
		t.Errorf("plan %+v\nmodel.EstimateMemory %+v", got, want)
	}
}

func TestRecomputationAndTiledAttention(t *testing.T) {
	m := load(t, "paper/deepseekmoe-16b.yaml").Model
	const b, seq = 2, 4096
	at := func(r Recompute, flash bool) int64 {
		return ActivationBytes(m, b, seq, Options{Precision: FP32, Recompute: r, FlashAttention: flash})
	}
	none, sel, full, flash := at(RecomputeNone, false), at(RecomputeSelective, false), at(RecomputeFull, false), at(RecomputeNone, true)
	a := model.CountActivations(m, seq)
	if scores := 4 * a.Scores * b * int64(m.Layers); none-flash != scores || sel != flash {
		t.Errorf("none %d − tiled %d is not the %d bytes of scores; selective %d", none, flash, scores, sel)
	}
	if !(full < sel) || at(RecomputeFull, true) >= full {
		t.Errorf("full recomputation %d not below selective %d, or tiled attention does not lower it", full, sel)
	}
	if bf := ActivationBytes(m, b, seq, Options{Precision: BF16, Recompute: RecomputeNone}); 2*bf != none {
		t.Errorf("bf16 activations %d are not half of fp32's %d", bf, none)
	}
}

// The question: DeepSeekMoE 16B on 64 GPUs of 80 GiB. As moetrain
// trains on CPUs nothing fits; with GPU-typical choices layouts do.
func TestDeepSeekMoE16BOn64GPUs(t *testing.T) {
	cfg := load(t, "paper/deepseekmoe-16b.yaml")
	gpus := Cluster{Devices: 64, MemBytes: 80 << 30, TFLOPS: 300, BandwidthGBs: 25}
	rows, err := Plan(cfg, gpus, Default())
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rows {
		if r.Fits {
			t.Errorf("fp32 without sharding fits at DP %d × EP %d (%d bytes)", r.DP, r.EP, r.Total)
		}
	}
	gpu := Options{Precision: BF16, ZeRO: 1, Recompute: RecomputeSelective, FlashAttention: true, MicroBatch: 1}
	rows, err = Plan(cfg, gpus, gpu)
	if err != nil {
		t.Fatal(err)
	}
	ranked := Rank(rows)
	if !ranked[0].Fits {
		t.Fatalf("no layout fits: %+v", ranked)
	}
	for i := 1; i < len(ranked) && ranked[i].Fits; i++ {
		if ranked[i].TokensPerS > ranked[i-1].TokensPerS {
			t.Errorf("fitting layouts not ranked by tokens/s: %v after %v", ranked[i].TokensPerS, ranked[i-1].TokensPerS)
		}
	}
}

func TestPlanTimes(t *testing.T) {
	cfg := load(t, "paper/deepseekmoe-16b.yaml")
	c := Cluster{Devices: 16, MemBytes: 80 << 30, TFLOPS: 100, BandwidthGBs: 25}
	o := Options{Precision: FP32, Recompute: RecomputeNone, MicroBatch: 1}
	rows, err := Plan(cfg, c, o)
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 5 { // EP ∈ {1, 2, 4, 8, 16} divide the 64 routed experts
		t.Fatalf("%d layouts, want 5", len(rows))
	}
	tokens := float64(cfg.Train.BatchSize*cfg.Train.SeqLen) / 16
	for i, r := range rows {
		if r.DP*r.EP != 16 {
			t.Errorf("layout %d×%d does not use 16 devices", r.DP, r.EP)
		}
		if i > 0 && !(r.Total < rows[i-1].Total) {
			t.Errorf("EP %d needs no less memory than EP %d", r.EP, rows[i-1].EP)
		}
		if !tol.Float64.Close(r.ComputeS, model.FLOPsPerToken(cfg.Model, cfg.Train.SeqLen)*tokens/100e12) {
			t.Errorf("EP %d: compute %g s", r.EP, r.ComputeS)
		}
		if (r.EP == 1) != (r.AllToAllS == 0) {
			t.Errorf("EP %d: all-to-all %g s", r.EP, r.AllToAllS)
		}
		if !tol.Float64.Close(r.TokensPerS*r.StepS, tokens*16) {
			t.Errorf("EP %d: tokens/s %g × step %g s is not the batch", r.EP, r.TokensPerS, r.StepS)
		}
	}
	// Twice the bandwidth halves every communication time; full overlap
	// hides the reduction.
	c.BandwidthGBs = 50
	fast, _ := Plan(cfg, c, o)
	c.BandwidthGBs, c.Overlap = 25, 1
	hidden, _ := Plan(cfg, c, o)
	for i := range rows {
		if !tol.Float64.Close(2*fast[i].AllReduceS, rows[i].AllReduceS) || !tol.Float64.Close(2*fast[i].AllToAllS, rows[i].AllToAllS) {
			t.Errorf("EP %d: communication does not scale with bandwidth", rows[i].EP)
		}
		if hidden[i].AllReduceS != 0 || hidden[i].AllToAllS != rows[i].AllToAllS {
			t.Errorf("EP %d: overlap 1 leaves %g s of all-reduce", rows[i].EP, hidden[i].AllReduceS)
		}
	}
	// A per-device overhead adds to every layout's total and nothing else.
	c.Overlap, c.OverheadBytes = 0, 3<<30
	heavy, _ := Plan(cfg, c, o)
	for i := range rows {
		if heavy[i].Total != rows[i].Total+3<<30 || heavy[i].StepS != rows[i].StepS {
			t.Errorf("EP %d: overhead 3 GiB gives total %d (was %d), step %g s (was %g)", rows[i].EP, heavy[i].Total, rows[i].Total, heavy[i].StepS, rows[i].StepS)
		}
	}
	if _, err := Plan(cfg, Cluster{Devices: 7, MemBytes: 1, TFLOPS: 1, BandwidthGBs: 1}, o); err == nil {
		t.Error("7 devices for a batch of 4608 did not fail")
	}
	o.EP = 3
	if _, err := Plan(cfg, c, o); err == nil {
		t.Error("EP 3 of 64 experts did not fail")
	}
}
