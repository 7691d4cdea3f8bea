package main

import (
	"encoding/json"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/moetrain/moetrain/configs"
	"github.com/moetrain/moetrain/model"
)

func TestPlanCLI(t *testing.T) {
	out, err := exec.Command(binary, "plan", "../../configs/paper/deepseekmoe-145b.yaml", "--gpus", "8", "--gpu-mem", "80GiB", "--tflops", "150").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "all-to-all s") || !strings.Contains(string(out), "No layout fits") {
		t.Fatalf("plan: %v\n%s", err, out)
	}
	// The question, with GPU-typical choices: layouts fit, and the
	// assumptions are printed.
	out, err = exec.Command(binary, "plan", "../../configs/paper/deepseekmoe-16b.yaml", "--gpus", "64", "--gpu-mem", "80GiB", "--tflops", "300",
		"--precision", "bf16", "--zero", "1", "--recompute", "selective", "--flash-attention", "--micro-batch", "1").CombinedOutput()
	if err != nil || !regexp.MustCompile(`\d+ of \d+ layouts fit`).Match(out) || !strings.Contains(string(out), "25 GB/s") || !strings.Contains(string(out), "ZeRO-1") {
		t.Fatalf("plan 16B on 64 GPUs: %v\n%s", err, out)
	}
	for _, bad := range [][]string{{"--gpu-mem", "lots"}, {"--precision", "fp8"}, {"--zero", "3"}, {"--recompute", "some"}, {"--overlap", "2"}} {
		cmd := exec.Command(binary, append([]string{"plan", "../../configs/paper/deepseekmoe-16b.yaml", "--gpus", "8", "--tflops", "150"}, bad...)...)
		out, err = cmd.CombinedOutput()
		if cmd.ProcessState.ExitCode() != 2 || !strings.Contains(string(out), strings.TrimPrefix(bad[0], "--")) {
			t.Errorf("plan %v: exit %d, %v\n%s", bad, cmd.ProcessState.ExitCode(), err, out)
		}
	}
}

// params prices one micro-batch (train.micro_batch_size, else one sequence),
// never the whole global batch at once.
func TestParamsMemoryPerMicroBatch(t *testing.T) {
	const cfgPath = "../../configs/paper/deepseekmoe-16b.yaml"
	cfg, err := configs.Load(cfgPath, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, micro := range []int{1, 3} {
		args := []string{"params", cfgPath, "--json"}
		if micro != 1 {
			args = append(args, "--micro-batch", strconv.Itoa(micro))
		}
		out, err := exec.Command(binary, args...).Output()
		if err != nil {
			t.Fatalf("params %v: %v", args, err)
		}
		var rep struct {
			MicroBatch int          `json:"micro_batch"`
			Memory     model.Memory `json:"memory"`
		}
		if err := json.Unmarshal(out, &rep); err != nil {
			t.Fatal(err)
		}
		if want := model.EstimateMemory(cfg.Model, micro, cfg.Train.SeqLen); rep.MicroBatch != micro || rep.Memory != want {
			t.Errorf("--micro-batch %d: micro-batch %d, memory %+v; want %+v", micro, rep.MicroBatch, rep.Memory, want)
		}
	}
	cmd := exec.Command(binary, "params", cfgPath, "--micro-batch", "0")
	if out, _ := cmd.CombinedOutput(); cmd.ProcessState.ExitCode() != 2 || !strings.Contains(string(out), "--micro-batch") {
		t.Errorf("--micro-batch 0: exit %d\n%s", cmd.ProcessState.ExitCode(), out)
	}
}
