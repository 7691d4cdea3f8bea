package sweep

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/moetrain/moetrain/configs"
	"github.com/moetrain/moetrain/model"
	"github.com/moetrain/moetrain/rundir"
)

// Seeds of one model are timed once; a partial run uses the rate its log
// shows and only the tokens it has left; a finished run takes no time.
func TestEstimates(t *testing.T) {
	root := t.TempDir()
	base := configs.Default()
	base.Train.Tokens, base.Train.SeqLen = 8192, 128
	base.Eval.EveryTokens, base.Eval.Tokens = 4096, 1024
	wide := base
	wide.Model.Hidden = 2 * base.Model.Hidden
	mk := func(name string, c configs.Config, seed uint64) Run {
		c.Model.InitSeed = seed
		d := filepath.Join(root, name)
		os.MkdirAll(d, 0o755)
		return Run{Name: name, Dir: d, Config: c}
	}
	runs := []Run{mk("a1", base, 1), mk("a2", base, 2), mk("b1", wide, 1), mk("a3", base, 3), mk("done", base, 4)}
	// a3 logged 2048 tokens at a median rate of 500 tokens/s.
	f, _ := os.Create(filepath.Join(runs[3].Dir, "metrics.jsonl"))
	for i, tps := range []float64{900, 400, 500} {
		raw, _ := json.Marshal(rundir.Metrics{Kind: "train", Tokens: int64(i+1) * 512 * 4 / 3, TokensPerS: tps, Loss: 5})
		f.Write(append(raw, '\n'))
	}
	raw, _ := json.Marshal(rundir.Metrics{Kind: "train", Tokens: 2048, TokensPerS: 500, Loss: 5})
	f.Write(append(raw, '\n'))
	f.Close()
	os.WriteFile(filepath.Join(runs[4].Dir, DoneFile), []byte("{}"), 0o644)

	calls := map[int]int{}
	measure := func(c configs.Config) (float64, error) {
		calls[c.Model.Hidden]++
		return float64(c.Model.Hidden) * 10, nil
	}
	ests, err := Estimates(runs, measure)
	if err != nil {
		t.Fatal(err)
	}
	if len(calls) != 2 || calls[base.Model.Hidden] != 1 || calls[wide.Model.Hidden] != 1 {
		t.Errorf("measured %v, want each model shape once", calls)
	}
	fpt := model.FLOPsPerToken(base.Model, 128)
	check := func(i int, left int64, evalTokens int64, tps float64) {
		t.Helper()
		e := ests[i]
		want := (float64(left) + float64(evalTokens)/3) / tps
		if e.TokensLeft != left || e.EvalTokens != evalTokens || e.TokensPerS != tps || math.Abs(e.Seconds-want) > 1e-9*want {
			t.Errorf("%s: %+v, want %d tokens left, %d eval tokens at %v tokens/s = %v s", runs[i].Name, e, left, evalTokens, tps, want)
		}
	}
	// 8192 tokens, evaluations at 4096 and at the end: 2 × 1024.
	check(0, 8192, 2048, float64(base.Model.Hidden)*10)
	if ests[0].FLOPs != 8192*fpt {
		t.Errorf("FLOPs %v, want %v", ests[0].FLOPs, 8192*fpt)
	}
	check(2, 8192, 2048, float64(wide.Model.Hidden)*10)
	check(3, 8192-2048, 2048, 500)
	if ests[3].Measured != "this run's log" || ests[4].TokensLeft != 0 || ests[4].Seconds != 0 {
		t.Errorf("partial %+v, done %+v", ests[3], ests[4])
	}
}
