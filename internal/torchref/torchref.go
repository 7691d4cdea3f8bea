// Package torchref runs the PyTorch reference of this repository
// (reference/torchref.py, reference/README.md) for tests that compare
// moetrain with it. Tests skip when python3-torch is missing, except under
// CI (CI set to anything but "" or "false"), where they fail and say what
// to install.
package torchref

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"testing"

	"github.com/moetrain/moetrain/checkpoints"
)

// Python is the interpreter with Debian's python3-torch (a variable so that
// a test can point it at an interpreter without torch).
var Python = "/usr/bin/python3"

// Root is the repository's root directory (this file is
// internal/torchref/torchref.go inside it).
var Root = func() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Dir(filepath.Dir(filepath.Dir(file)))
}()

// Dir is the reference's directory, and Script its program.
var (
	Dir    = filepath.Join(Root, "reference")
	Script = filepath.Join(Dir, "torchref.py")
)

// CI reports whether the tests run under CI, where a missing tool fails a
// test instead of skipping it.
func CI() bool {
	v := os.Getenv("CI")
	return v != "" && v != "false" && v != "0"
}

// Require skips t when the reference cannot run, or fails it under CI.
func Require(t testing.TB) {
	t.Helper()
	fail := func(format string, args ...any) {
		t.Helper()
		if CI() {
			t.Fatalf("CI=true: the PyTorch reference must run: "+format, args...)
		} else {
			t.Skipf(format, args...)
		}
	}
	if _, err := os.Stat(Script); err != nil {
		fail("no reference at %s: %v", Script, err)
		return
	}
	if out, err := exec.Command(Python, "-c", "import torch").CombinedOutput(); err != nil {
		fail("%s cannot import torch (%v: %s); install Debian's python3-torch: apt-get install python3-torch",
			Python, err, bytes.TrimSpace(out))
	}
}

// Run runs torchref.py with args and returns its standard output.
func Run(t testing.TB, args ...string) []byte {
	t.Helper()
	cmd := exec.Command(Python, append([]string{Script}, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("torchref %s: %v\n%s%s", args[0], err, out, stderr.String())
	}
	return out
}

// Dump is what `torchref.py dump` reports and writes.
type Dump struct {
	Loss       float64  `json:"loss"`
	AuxLoss    float64  `json:"aux_loss"`
	MinTopKGap *float64 `json:"min_topk_gap"`
	// Tensors: "loss", "aux_loss", "logits" [B, T, V], "grad.<HF name>" for
	// every parameter, "route.<layer>.topk_idx" [B·T, k] (sorted, int32).
	Tensors map[string]checkpoints.Tensor
}

// Fragile reports a smallest top-k margin under 1e-5: below it a float32
// comparison of routing is fragile, so tests pick another fixture.
func (d Dump) Fragile() bool { return d.MinTopKGap != nil && *d.MinTopKGap < 1e-5 }

// RunDump runs `torchref.py dump` on an HF config.json and weights with
// tokens (B rows of T+1 ids).
func RunDump(t testing.TB, config, weights string, tokens []int32, b, tt int) Dump {
	t.Helper()
	dir := t.TempDir()
	var lines []string
	for r := 0; r < b; r++ {
		var row []string
		for _, x := range tokens[r*(tt+1) : (r+1)*(tt+1)] {
			row = append(row, fmt.Sprint(x))
		}
		lines = append(lines, strings.Join(row, " "))
	}
	tokPath, outPath := filepath.Join(dir, "tokens.txt"), filepath.Join(dir, "dump.safetensors")
	if err := os.WriteFile(tokPath, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out := Run(t, "dump", "--config", config, "--weights", weights, "--tokens", tokPath, "--out", outPath, "--threads", "1")
	var d Dump
	last := bytes.Split(bytes.TrimSpace(out), []byte("\n"))
	if err := json.Unmarshal(last[len(last)-1], &d); err != nil {
		t.Fatalf("torchref output %q: %v", out, err)
	}
	raw, err := os.ReadFile(outPath)
	if err != nil {
		t.Fatal(err)
	}
	ts, _, err := checkpoints.ReadSafetensors(raw)
	if err != nil {
		t.Fatal(err)
	}
	d.Tensors = map[string]checkpoints.Tensor{}
	for _, x := range ts {
		d.Tensors[x.Name] = x
	}
	return d
}

// Float64s returns a float tensor's values as float64.
func Float64s(t checkpoints.Tensor) []float64 {
	switch {
	case t.F32 != nil:
		return ToFloat64(t.F32)
	case t.F64 != nil:
		return t.F64
	}
	return nil
}

// ToFloat64 converts []float32 or []float64 values.
func ToFloat64(d any) []float64 {
	switch d := d.(type) {
	case []float32:
		out := make([]float64, len(d))
		for i, v := range d {
			out[i] = float64(v)
		}
		return out
	case []float64:
		return d
	}
	return nil
}

// CheckExperts fails t unless, for each of n tokens, the k experts a
// layer chose (experts[t·k:(t+1)·k], in any order) are the ones the
// reference chose.
func CheckExperts(t testing.TB, layer, n, k int, experts []int32, d Dump) {
	t.Helper()
	want, ok := d.Tensors[fmt.Sprintf("route.%d.topk_idx", layer)]
	if !ok {
		t.Fatalf("the reference has no routing for layer %d", layer)
	}
	for tk := 0; tk < n; tk++ {
		got := append([]int32(nil), experts[tk*k:(tk+1)*k]...)
		sort.Slice(got, func(a, b int) bool { return got[a] < got[b] })
		if fmt.Sprint(got) != fmt.Sprint(want.I32[tk*k:(tk+1)*k]) {
			t.Fatalf("layer %d token %d: experts %v, reference %v", layer, tk, got, want.I32[tk*k:(tk+1)*k])
		}
	}
}
