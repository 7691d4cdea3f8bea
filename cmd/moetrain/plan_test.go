package main

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/moetrain/moetrain/configs"
	"github.com/moetrain/moetrain/internal/tol"
	"github.com/moetrain/moetrain/model"
)

func TestPlanFormulas(t *testing.T) {
	cfg, err := configs.Load("../../configs/paper/deepseekmoe-16b.yaml", nil)
	if err != nil {
		t.Fatal(err)
	}
	in := PlanInput{GPUs: 16, MemBytes: 80 << 30, TFLOPS: 100, BandwidthGBs: 25, MicroBatch: 1}
	rows, err := planLayouts(cfg, in)
	if err != nil {
		t.Fatal(err)
	}
	// EP ∈ {1, 2, 4, 8, 16} all divide the 64 routed experts.
	if len(rows) != 5 {
		t.Fatalf("%d layouts, want 5", len(rows))
	}
	c := model.Count(cfg.Model)
	pr := routedParams(cfg.Model)
	if pr <= 0 || pr >= c.Total {
		t.Fatalf("routed parameters %d of %d", pr, c.Total)
	}
	tokens := float64(cfg.Train.BatchSize*cfg.Train.SeqLen) / 16
	for i, r := range rows {
		if r.DP*r.EP != 16 {
			t.Errorf("layout %d×%d does not use 16 devices", r.DP, r.EP)
		}
		if want := 4 * (c.Total - pr + pr/int64(r.EP)); r.Weights != want || r.Gradients != 2*want || r.Optimizer != 2*want {
			t.Errorf("EP %d: weights %d, want %d", r.EP, r.Weights, want)
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
	// Twice the bandwidth halves every communication time.
	in.BandwidthGBs = 50
	fast, _ := planLayouts(cfg, in)
	for i := range rows {
		if !tol.Float64.Close(2*fast[i].AllReduceS, rows[i].AllReduceS) || !tol.Float64.Close(2*fast[i].AllToAllS, rows[i].AllToAllS) {
			t.Errorf("EP %d: communication does not scale with bandwidth", rows[i].EP)
		}
	}
	if _, err := planLayouts(cfg, PlanInput{GPUs: 7, MemBytes: 1, TFLOPS: 1, BandwidthGBs: 1}); err == nil {
		t.Error("7 devices for a batch of 4608 did not fail")
	}
}

func TestParseBytes(t *testing.T) {
	for s, want := range map[string]int64{"80GiB": 80 << 30, "40GB": 40e9, "512 MiB": 512 << 20, "1.5TiB": 3 << 39, "1000": 1000} {
		if got, err := parseBytes(s); err != nil || got != want {
			t.Errorf("parseBytes(%q) = %d, %v; want %d", s, got, err, want)
		}
	}
	for _, s := range []string{"", "GiB", "-1GiB", "eightyGiB"} {
		if _, err := parseBytes(s); err == nil {
			t.Errorf("parseBytes(%q) did not fail", s)
		}
	}
}

func TestPlanCLI(t *testing.T) {
	out, err := exec.Command(binary, "plan", "../../configs/paper/deepseekmoe-145b.yaml", "--gpus", "8", "--gpu-mem", "80GiB", "--tflops", "150").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "all-to-all s") {
		t.Fatalf("plan: %v\n%s", err, out)
	}
	cmd := exec.Command(binary, "plan", "../../configs/paper/deepseekmoe-16b.yaml", "--gpus", "8", "--gpu-mem", "lots", "--tflops", "150")
	out, err = cmd.CombinedOutput()
	if cmd.ProcessState.ExitCode() != 2 || !strings.Contains(string(out), "--gpu-mem") {
		t.Fatalf("bad --gpu-mem: exit %d, %v\n%s", cmd.ProcessState.ExitCode(), err, out)
	}
}
