package train

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gorgonia.org/tensor"

	"github.com/moetrain/moetrain/configs"
	"github.com/moetrain/moetrain/evaluate"
	"github.com/moetrain/moetrain/model"
	"github.com/moetrain/moetrain/rundir"
	"github.com/moetrain/moetrain/tasks"
)

// Word lists of prepare.Synthetic's generator: prose nouns, code identifiers.
var (
	synNouns = strings.Fields("king people land city house river mountain servant lord son daughter field water bread fire stone gate temple army shepherd")
	synIdent = strings.Fields("buf n err ctx val key idx count total name size off")
	synAdjs  = strings.Fields("great holy old young strong wise good evil fair little")
)

// writeMirrorTask writes a two-choice task in which every (noun, identifier)
// pair appears twice with the same two choices: once after a prose context
// (the noun is right) and once after a code context (the identifier is
// right). A model that ignores the context picks the same choice in both and
// scores exactly 1/2, whatever its preferences between words; only reading
// the context scores higher.
func writeMirrorTask(t *testing.T, path string, pairs int) {
	t.Helper()
	r := rand.New(rand.NewPCG(17, 0))
	var b strings.Builder
	b.WriteString(`{"task": "mirror", "kind": "multiple_choice"}` + "\n")
	line := func(ctx string, choices []string, gold int) {
		raw, _ := json.Marshal(map[string]any{"context": ctx, "choices": choices, "gold": gold})
		b.Write(raw)
		b.WriteByte('\n')
	}
	for i := range pairs {
		noun, ident := synNouns[r.IntN(len(synNouns))], synIdent[r.IntN(len(synIdent))]
		choices, gNoun := []string{" " + noun, " " + ident}, 0
		if r.IntN(2) == 1 {
			choices, gNoun = []string{" " + ident, " " + noun}, 1
		}
		line(fmt.Sprintf("Chapter %d\n\n  1 And the %s", 1+r.IntN(150), synAdjs[r.IntN(len(synAdjs))]), choices, gNoun)
		line(fmt.Sprintf("package p%d\n\nfunc %s%d(%s int) (int, error) {\n\tif", 2*i+1, synIdent[r.IntN(len(synIdent))], r.IntN(3), ident), choices, 1-gNoun)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
}

// copyDataset copies the package's prepared dataset, so that task files
// added to it do not change other tests.
func copyDataset(t *testing.T) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "data")
	if err := os.CopyFS(dst, os.DirFS(dataset)); err != nil {
		t.Fatal(err)
	}
	return dst
}

// A model trained a few hundred steps on the synthetic corpus reads the
// context: it scores well above chance on the mirror task, while the same
// model untrained is at chance. Tolerances: the mirror design puts a
// context-blind model at exactly 0.5, and an untrained model is nearly
// context-blind, so |acc − 0.5| ≤ 0.1; the trained model must reach 0.8
// (with this seed it reaches 1.0, and about 0.8 halfway). The eval lines reach metrics.jsonl at every
// evaluation.
func TestTrainedBeatsChance(t *testing.T) {
	dir := copyDataset(t)
	writeMirrorTask(t, filepath.Join(dir, "tasks", "mirror.jsonl"), 40)
	c := tinyConfig(configs.FFNDense)
	c.Data.Path = dir
	c.Train.Tokens = 300 * 4 * 32
	c.Log.EveryTokens = c.Train.Tokens
	c.Checkpoint.EveryTokens = c.Train.Tokens
	c.Eval.EveryTokens, c.Eval.Tokens = c.Train.Tokens/2, 1024
	c.Eval.Tasks = []string{"mirror"}

	untrained, err := model.New(c.Model, tensor.Float32)
	if err != nil {
		t.Fatal(err)
	}
	e, err := evaluate.New(untrained, c, evaluate.Options{Tasks: c.Eval.Tasks})
	if err != nil {
		t.Fatal(err)
	}
	res, err := e.ScoreTasks(nil)
	e.Close()
	if err != nil {
		t.Fatal(err)
	}
	if acc, _ := res[0].Get("acc"); math.Abs(acc-0.5) > 0.1 || res[0].Chance != 0.5 || res[0].Examples != 80 {
		t.Errorf("untrained: acc %.3f over %d examples (chance %.2f), want within 0.1 of 0.5", acc, res[0].Examples, res[0].Chance)
	}

	runDir := t.TempDir()
	run(t, c, runDir)
	ms, err := rundir.ReadMetrics(filepath.Join(runDir, "metrics.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	evals := map[int64]int{}
	for _, m := range ms {
		if m.Kind == "eval" {
			got[fmt.Sprintf("%d %s %s", m.Tokens, m.Task, m.Metric)] = *m.Value
			evals[m.Tokens]++
		}
	}
	final := c.Train.Tokens
	for _, k := range []string{"heldout loss", "heldout bits_per_byte", "heldout/prose loss", "heldout/code bits_per_byte", "mirror acc", "mirror acc_norm"} {
		for _, at := range []int64{final / 2, final} {
			if _, ok := got[fmt.Sprintf("%d %s", at, k)]; !ok {
				t.Errorf("metrics.jsonl has no eval line %q at %d tokens", k, at)
			}
		}
	}
	acc := got[fmt.Sprintf("%d mirror acc", final)]
	if acc < 0.8 {
		t.Errorf("trained: acc %.3f on the mirror task, want >= 0.8", acc)
	}
	if l := got[fmt.Sprintf("%d heldout loss", final)]; !(l > 0 && l < math.Log(float64(c.Model.VocabSize))-1) {
		t.Errorf("trained held-out loss %.3f: not clearly below ln V", l)
	}
	t.Logf("untrained acc %.3f, trained acc %.3f (mid-run %.3f), evaluations %v", mustGet(res[0], "acc"), acc, got[fmt.Sprintf("%d mirror acc", final/2)], evals)
}

func mustGet(r tasks.Result, name string) float64 {
	v, _ := r.Get(name)
	return v
}

// A bad task file, or a task name no file provides, stops a run at start
// with the file and line; a dataset without task files evaluates held-out
// loss only.
func TestTaskErrorsStopTheRun(t *testing.T) {
	dir := copyDataset(t)
	c := tinyConfig(configs.FFNDense)
	c.Data.Path = dir
	c.Eval.Tasks = []string{"absent"}
	_, err := Run(context.Background(), Options{Config: c, RunDir: t.TempDir()})
	// A task name the dataset lacks is a config mistake naming the key.
	var ce *configs.Error
	if !errors.As(err, &ce) || !strings.Contains(err.Error(), "eval.tasks") || !strings.Contains(err.Error(), "absent") {
		t.Errorf("unknown task: %v, want a config error naming eval.tasks and the task", err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "tasks"), 0o755); err != nil {
		t.Fatal(err)
	}
	bad := `{"context": "a", "choices": [" b", " c"], "gold": 0}` + "\n" + `{"context": "a", "choices": [" b", " c"], "gold": 3}`
	if err := os.WriteFile(filepath.Join(dir, "tasks", "bad.jsonl"), []byte(bad), 0o644); err != nil {
		t.Fatal(err)
	}
	c.Eval.Tasks = nil
	m, err := model.New(c.Model, tensor.Float32)
	if err != nil {
		t.Fatal(err)
	}
	var te *tasks.Error
	_, err = newEvaluator(m, c, nil)
	if !evalSetupFatal(err) || !errors.As(err, &te) || te.Line != 2 || !strings.Contains(err.Error(), "bad.jsonl:2") {
		t.Errorf("bad task file: %v", err)
	}
	// An example longer than train.seq_len.
	long := `{"context": "` + strings.Repeat("and the king ", 20) + `", "choices": [" b", " c"], "gold": 0}`
	if err := os.WriteFile(filepath.Join(dir, "tasks", "bad.jsonl"), []byte(long), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = evaluate.New(m, c, evaluate.Options{})
	if !errors.As(err, &te) || te.Line != 1 || !strings.Contains(err.Error(), "context of 32") {
		t.Errorf("too long for the context: %v", err)
	}
	// The trainer cuts such contexts from the left and says so.
	e, err := newEvaluator(m, c, nil)
	if err != nil || len(e.Notes()) != 1 || !strings.Contains(e.Notes()[0], "1 of 1 examples") {
		t.Errorf("the trainer's evaluator on a long example: %v, notes %v", err, e.Notes())
	}
	e.Close()
	// Without task files and with a validation split, held-out only.
	if err := os.RemoveAll(filepath.Join(dir, "tasks")); err != nil {
		t.Fatal(err)
	}
	e, err = newEvaluator(m, c, nil)
	if err != nil || len(e.Tasks()) != 0 {
		t.Fatalf("no task files: %v", err)
	}
	e.Close()
}
