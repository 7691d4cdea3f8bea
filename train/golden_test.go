package train

import (
	"encoding/json"
	"flag"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/moetrain/moetrain/configs"
	"github.com/moetrain/moetrain/internal/blas"
)

// updateGolden rewrites testdata/golden-dense-losses.json from this machine:
//
//	go test ./train -run TestGoldenLossCurve -update-golden
var updateGolden = flag.Bool("update-golden", false, "rewrite train/testdata/golden-dense-losses.json")

const goldenConfig, goldenFile = "testdata/golden-dense.yaml", "testdata/golden-dense-losses.json"

// goldenTol bounds how far a step's loss may move on another CPU or BLAS
// kernel. Float32 products summed in another order differ in the last bits
// and training carries that forward. Measured when the curve was stored
// (largest |Δ| over the 48 steps against the stored OpenBLAS Haswell run):
// pure-Go gonum (MOETRAIN_OPENBLAS=none) 2.4e-7, OPENBLAS_CORETYPE=SkylakeX
// 2.4e-7, Prescott 2.4e-7, micro_batch_size 8 instead of 4 3.6e-7. 1e-4
// nats leaves a 400x margin for other CPUs, and still fails on small real
// changes: Adam eps 1e-8 → 1e-7 moved the curve by 3.7e-4, max_lr +1% by
// 2.2e-2, one more warmup step by 5.6e-2.
const goldenTol = 1e-4

// golden is the stored curve and how it was made.
type golden struct {
	Comment string    `json:"comment"`
	Config  string    `json:"config"`
	Kernel  string    `json:"kernel"`
	Tol     float64   `json:"tolerance_nats"`
	Losses  []float64 `json:"losses"`
}

// TestGoldenLossCurve trains the golden config and checks every step's loss
// against the stored curve, so any change to training numerics (ops, init,
// data order, optimizer, schedule, accumulation) shows as a failure naming
// the first step that moved. If the change is intended, regenerate the file
// with -update-golden and say why in the commit.
func TestGoldenLossCurve(t *testing.T) {
	c, err := configs.Load(goldenConfig, []string{"data.path=" + dataset})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	run(t, c, dir)
	got := trainLosses(t, dir)
	steps := int(c.Train.Tokens / int64(c.Train.BatchSize*c.Train.SeqLen))
	if len(got) != steps {
		t.Fatalf("%d train lines in metrics.jsonl, want one per step (%d)", len(got), steps)
	}
	if *updateGolden {
		g := golden{
			Comment: "Per-step training losses of " + goldenConfig + " on data.PrepareSynthetic(5, 300, 384, 0.1). Regenerate: go test ./train -run TestGoldenLossCurve -update-golden",
			Config:  goldenConfig, Kernel: blas.Current().Kernel, Tol: goldenTol, Losses: got,
		}
		raw, err := json.MarshalIndent(g, "", "  ")
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(goldenFile, append(raw, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("wrote %s (%d steps, kernel %s)", goldenFile, len(got), g.Kernel)
		return
	}
	raw, err := os.ReadFile(goldenFile)
	if err != nil {
		t.Fatalf("%v (regenerate with -update-golden)", err)
	}
	var want golden
	if err := json.Unmarshal(raw, &want); err != nil {
		t.Fatalf("%s: %v", filepath.Base(goldenFile), err)
	}
	if len(want.Losses) != len(got) {
		t.Fatalf("%d steps trained, %s holds %d", len(got), goldenFile, len(want.Losses))
	}
	worst, at := 0.0, -1
	for i := range got {
		if d := math.Abs(got[i] - want.Losses[i]); !(d <= worst) {
			worst, at = d, i
		}
	}
	t.Logf("largest deviation %.3g nats at step %d (tolerance %g; kernel %s, stored from %s)", worst, at+1, goldenTol, blas.Current().Kernel, want.Kernel)
	for i := range got {
		if d := math.Abs(got[i] - want.Losses[i]); !(d <= goldenTol) {
			t.Fatalf("step %d: loss %.6f, golden %.6f (|Δ| %.3g > %g): training numerics changed; if intended, regenerate with: go test ./train -run TestGoldenLossCurve -update-golden",
				i+1, got[i], want.Losses[i], d, goldenTol)
		}
	}
}
