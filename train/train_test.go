package train

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/moetrain/moetrain/configs"
	"github.com/moetrain/moetrain/data/prepare"
	"github.com/moetrain/moetrain/internal/testdata"
	"github.com/moetrain/moetrain/internal/tol"
	"github.com/moetrain/moetrain/rundir"
)

// dataset is a small synthetic dataset prepared once for the package.
var dataset string

func TestMain(m *testing.M) { testdata.Main(m, &dataset, 5, 300, 384, 0.1) }

// tinyConfig is a tiny DeepSeekMoE (or other kind) on the synthetic data.
func tinyConfig(ffn string) configs.Config {
	c := configs.Default()
	m := &c.Model
	m.VocabSize, m.Hidden, m.Layers, m.Heads, m.DenseWidth, m.FFN = 384, 32, 2, 2, 64, ffn
	switch ffn {
	case configs.FFNDeepSeekMoE:
		m.SharedExperts, m.RoutedExperts, m.ActiveRouted, m.ExpertWidth = 1, 7, 3, 16
		m.Balance.ExpertAlpha = 0.01
	case configs.FFNGShard:
		m.RoutedExperts, m.ActiveRouted, m.ExpertWidth = 8, 2, 64
		m.Balance.ExpertAlpha = 0.01
	case configs.FFNSwitch:
		m.RoutedExperts, m.ActiveRouted, m.ExpertWidth = 8, 1, 64
		m.Balance.ExpertAlpha = 0.01
	case configs.FFNHash:
		m.RoutedExperts, m.ActiveRouted, m.ExpertWidth = 8, 1, 64
	}
	c.Data.Path = dataset
	c.Train.SeqLen, c.Train.BatchSize = 32, 4
	c.Train.Tokens = 8 * 4 * 32 // 8 steps
	c.Schedule.MaxLR, c.Schedule.WarmupTokens = 3e-3, 64
	c.Log.EveryTokens = 4 * 32 // every step
	c.Checkpoint.EveryTokens = 4 * 4 * 32
	c.Eval.EveryTokens, c.Eval.Tokens = 0, 2048
	return c
}

func run(t *testing.T, c configs.Config, dir string) Summary {
	t.Helper()
	var out bytes.Buffer
	s, err := Run(context.Background(), Options{Config: c, RunDir: dir, Out: &out})
	if err != nil {
		t.Fatalf("run: %v\n%s", err, out.String())
	}
	return s
}

func trainLosses(t *testing.T, dir string) []float64 {
	t.Helper()
	ms, err := rundir.ReadMetrics(filepath.Join(dir, "metrics.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	var out []float64
	for _, m := range ms {
		if m.Kind == "train" {
			out = append(out, m.Loss)
		}
	}
	return out
}

func latestModelBytes(t *testing.T, dir string) []byte {
	t.Helper()
	ents, err := filepath.Glob(filepath.Join(dir, "checkpoints", "tokens-*", "model.safetensors"))
	if err != nil || len(ents) == 0 {
		t.Fatalf("no checkpoint in %s", dir)
	}
	b, err := os.ReadFile(ents[len(ents)-1])
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// N steps straight equal N/2 steps, a stop, and N/2 more: the same bytes of
// model.safetensors and the same loss sequence, with and without gradient
// accumulation.
func TestResumeIsBitExact(t *testing.T) {
	for _, micro := range []int{0, 2} {
		t.Run(fmt.Sprintf("micro=%d", micro), func(t *testing.T) {
			c := tinyConfig(configs.FFNDeepSeekMoE)
			c.Train.MicroBatchSize = micro
			resumeMatchesStraight(t, c)
		})
	}
}

// resumeMatchesStraight runs c straight into one directory and as two
// halves with a resume between them into another, checks that both end
// with the same model.safetensors bytes and the same loss sequence, and
// returns the two directories.
func resumeMatchesStraight(t *testing.T, c configs.Config) (straight, split string) {
	t.Helper()
	// The schedule's horizon is fixed at launch: the split run launches
	// with half the budget, so it names the whole one.
	c.Schedule.TotalTokens = c.Train.Tokens
	straight, split = t.TempDir(), t.TempDir()
	run(t, c, straight)
	half := c
	half.Train.Tokens = c.Train.Tokens / 2
	if s := run(t, half, split); s.Tokens != half.Train.Tokens {
		t.Fatalf("first half stopped at %d tokens, want %d", s.Tokens, half.Train.Tokens)
	}
	if s := run(t, c, split); !s.Resumed || s.Tokens != c.Train.Tokens {
		t.Fatalf("second half: resumed %v at %d tokens", s.Resumed, s.Tokens)
	}
	if !bytes.Equal(latestModelBytes(t, straight), latestModelBytes(t, split)) {
		t.Error("model.safetensors differs between the straight and the resumed run")
	}
	if a, b := trainLosses(t, straight), trainLosses(t, split); fmt.Sprint(a) != fmt.Sprint(b) {
		t.Errorf("loss sequences differ:\n straight %v\n resumed  %v", a, b)
	}
	return straight, split
}

// Gradient accumulation over micro-batches equals one big batch within
// float tolerance (per-sequence balance losses).
func TestMicroBatchesEqualOneBatch(t *testing.T) {
	c := tinyConfig(configs.FFNDeepSeekMoE)
	c.Train.Tokens = 4 * 32
	one, two := t.TempDir(), t.TempDir()
	run(t, c, one)
	c.Train.MicroBatchSize = 1
	run(t, c, two)
	la, lb := trainLosses(t, one), trainLosses(t, two)
	if err := (tol.Tol{Abs: 1e-6, Rel: 1e-5}).CheckSlice("loss", la, lb); err != nil {
		t.Error(err)
	}
}

// With a batch-level balance loss (per_sequence false), micro-batches use
// the whole batch's routing counts: losses and weights equal one big batch.
func TestMicroBatchesEqualOneBatchBatchLevelBalance(t *testing.T) {
	c := tinyConfig(configs.FFNDeepSeekMoE)
	c.Model.Balance.PerSequence = false
	c.Model.Balance.ExpertAlpha = 0.5 // large, so a wrong f would show
	c.Train.Tokens = 2 * 4 * 32
	one, two := t.TempDir(), t.TempDir()
	run(t, c, one)
	c.Train.MicroBatchSize = 2
	run(t, c, two)
	la, lb := trainLosses(t, one), trainLosses(t, two)
	if err := (tol.Tol{Abs: 1e-6, Rel: 1e-5}).CheckSlice("loss", la, lb); err != nil {
		t.Error(err)
	}
	ma, mb := balanceOf(t, one), balanceOf(t, two)
	if err := (tol.Tol{Abs: 1e-7, Rel: 1e-5}).CheckSlice("balance", ma, mb); err != nil {
		t.Error(err)
	}
}

func balanceOf(t *testing.T, dir string) []float64 {
	ms, err := rundir.ReadMetrics(filepath.Join(dir, "metrics.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	var out []float64
	for _, m := range ms {
		if m.Kind == "train" {
			for l := 0; l < 2; l++ {
				out = append(out, m.Balance[fmt.Sprintf("layer%d.expert", l)])
			}
		}
	}
	return out
}

// Loss falls on the synthetic corpus for every FFN kind.
func TestLossFallsForEveryKind(t *testing.T) {
	for _, kind := range []string{configs.FFNDense, configs.FFNDeepSeekMoE, configs.FFNGShard, configs.FFNSwitch, configs.FFNHash} {
		t.Run(kind, func(t *testing.T) {
			c := tinyConfig(kind)
			c.Train.Tokens = 40 * 4 * 32
			c.Log.EveryTokens = 10 * 4 * 32
			dir := t.TempDir()
			s := run(t, c, dir)
			l := trainLosses(t, dir)
			if len(l) < 2 || !(l[len(l)-1] < l[0]-0.5) {
				t.Errorf("loss did not fall by 0.5 nats: %v", l)
			}
			if !(s.ValLoss > 0) {
				t.Errorf("no validation loss in the summary: %+v", s)
			}
		})
	}
}

func TestChangedConfigIsRefused(t *testing.T) {
	c := tinyConfig(configs.FFNDense)
	c.Train.Tokens = 4 * 32
	dir := t.TempDir()
	run(t, c, dir)
	c.Model.Hidden = 64
	c.Schedule.MaxLR = 1e-3
	c.Log.EveryTokens = 1 << 20 // safe
	_, err := Run(context.Background(), Options{Config: c, RunDir: dir})
	if !errors.Is(err, ErrConfigChanged) {
		t.Fatalf("got %v, want ErrConfigChanged", err)
	}
	for _, k := range []string{"model.hidden: 32 → 64", "schedule.max_lr"} {
		if !bytes.Contains([]byte(err.Error()), []byte(k)) {
			t.Errorf("error %q does not name %q", err, k)
		}
	}
	if bytes.Contains([]byte(err.Error()), []byte("log.every_tokens")) {
		t.Errorf("error %q names a key that is safe to change", err)
	}
}

// data.weights compare on resume by the stream they read: a run started
// with a round-1 config's {prose: 1, code: 1} resumes under {"*": 1} to the
// weights an uninterrupted {"*": 1} run reaches, and a different mixture is
// refused in the dataset's terms.
func TestEquivalentWeightsResume(t *testing.T) {
	c := tinyConfig(configs.FFNDense)
	c.Schedule.TotalTokens = 8 * 4 * 32
	c.Train.Tokens = 4 * 4 * 32 // stop at the first checkpoint
	c.Data.Weights = map[string]float64{"prose": 1, "code": 1}
	dir := t.TempDir()
	run(t, c, dir)

	c.Train.Tokens = 8 * 4 * 32
	c.Data.Weights = map[string]float64{"*": 1}
	run(t, c, dir)
	whole := t.TempDir()
	run(t, c, whole)
	if !bytes.Equal(latestModelBytes(t, dir), latestModelBytes(t, whole)) {
		t.Fatal(`resumed under {"*": 1} from {prose: 1, code: 1}: final weights differ from an uninterrupted {"*": 1} run`)
	}

	c.Train.Tokens = 12 * 4 * 32
	c.Data.Weights = map[string]float64{"prose": 1, "code": 3}
	_, err := Run(context.Background(), Options{Config: c, RunDir: dir})
	if !errors.Is(err, ErrConfigChanged) {
		t.Fatalf("resume with {prose: 1, code: 3}: got %v, want ErrConfigChanged", err)
	}
	for _, want := range []string{"data.weights: {code: 1, prose: 1} → {code: 3, prose: 1}", "code 50%", "code 75%"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	if strings.Contains(err.Error(), "data.weights.") {
		t.Errorf("error %q lists the maps key by key besides their meaning", err)
	}
}

func TestTooBigForMemoryIsRefused(t *testing.T) {
	c := tinyConfig(configs.FFNDense)
	_, err := Run(context.Background(), Options{Config: c, RunDir: t.TempDir(), AvailableMemory: 1 << 20})
	if !errors.Is(err, ErrMemory) {
		t.Fatalf("got %v, want ErrMemory", err)
	}
}

func TestStopSavesAndResumes(t *testing.T) {
	c := tinyConfig(configs.FFNGShard)
	dir := t.TempDir()
	steps := 0
	s, err := Run(context.Background(), Options{Config: c, RunDir: dir, Stop: func() bool { steps++; return steps > 3 }})
	if err != nil {
		t.Fatal(err)
	}
	if !s.Interrupted || s.Tokens != 3*4*32 {
		t.Fatalf("got %+v, want an interruption after 3 steps", s)
	}
	straight := t.TempDir()
	run(t, c, straight)
	run(t, c, dir)
	if !bytes.Equal(latestModelBytes(t, straight), latestModelBytes(t, dir)) {
		t.Error("a stopped and resumed run differs from a straight one")
	}
}

// Log lines, evaluations and checkpoints fall at multiples of their
// intervals, so a run stopped between them and resumed writes its metrics at
// the same token counts as a run that never stopped.
func TestResumedRunLogsAtTheSameTokens(t *testing.T) {
	c := tinyConfig(configs.FFNGShard)
	c.Log.EveryTokens = 2 * 4 * 32 // every 2 steps
	c.Eval.EveryTokens, c.Eval.Tokens = 2*4*32, 256
	straight := t.TempDir()
	run(t, c, straight)
	dir := t.TempDir()
	steps := 0
	s, err := Run(context.Background(), Options{Config: c, RunDir: dir, Stop: func() bool { steps++; return steps > 3 }})
	if err != nil || s.Tokens != 3*4*32 {
		t.Fatalf("stop after 3 steps: %+v, %v", s, err)
	}
	run(t, c, dir)
	at := func(dir string) string {
		ms, err := rundir.ReadMetrics(filepath.Join(dir, "metrics.jsonl"))
		if err != nil {
			t.Fatal(err)
		}
		var b strings.Builder
		for _, m := range ms {
			if m.Kind == "train" || m.Task == "heldout" && m.Metric == "loss" {
				fmt.Fprintf(&b, "%s@%d ", m.Kind, m.Tokens)
			}
		}
		return b.String()
	}
	if a, b := at(straight), at(dir); a != b {
		t.Errorf("metrics at other token counts after a resume:\n straight %s\n resumed  %s", a, b)
	}
}

// A resume on a different dataset is refused: the token stream would not
// continue where it stopped.
func TestResumeOnOtherDatasetIsRefused(t *testing.T) {
	c := tinyConfig(configs.FFNDense)
	c.Train.Tokens = 4 * 32
	dir := t.TempDir()
	run(t, c, dir)
	other := filepath.Join(t.TempDir(), "other")
	if err := prepare.SyntheticDataset(other, 6, 300, 384, 0.1); err != nil {
		t.Fatal(err)
	}
	// Same path, other contents: replace the dataset directory in place.
	moved := dataset + ".orig"
	if err := os.Rename(dataset, moved); err != nil {
		t.Fatal(err)
	}
	defer os.Rename(moved, dataset)
	if err := os.Rename(other, dataset); err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dataset)
	c.Train.Tokens = 2 * 4 * 32
	_, err := Run(context.Background(), Options{Config: c, RunDir: dir})
	if err == nil || !bytes.Contains([]byte(err.Error()), []byte("not the one this run started on")) {
		t.Fatalf("got %v, want a refusal naming the dataset change", err)
	}
}

// A router frozen after 4 of 8 steps (model.router.freeze_after_tokens) has
// the same weights at 8 steps as at 4 while the experts keep training, and
// a run stopped at 2 steps and resumed across the freeze equals the
// straight run bit for bit.
func TestFrozenRouterStopsAtItsTokens(t *testing.T) {
	c := tinyConfig(configs.FFNSwitch)
	c.Model.Router.FreezeAfterTokens = c.Train.Tokens / 2
	c.Schedule.TotalTokens = c.Train.Tokens
	straight := t.TempDir()
	run(t, c, straight)
	at := func(tokens int64) *rundir.Loaded {
		t.Helper()
		l, err := rundir.LoadModel(filepath.Join(straight, "checkpoints", fmt.Sprintf("tokens-%015d", tokens)))
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	mid, end := at(c.Train.Tokens/2), at(c.Train.Tokens)
	for _, name := range []string{"model.layers.0.mlp.gate.weight", "model.layers.1.mlp.gate.weight", "model.layers.0.mlp.experts.*.down_proj.weight"} {
		i := mid.Model.Index(name)
		a, b := mid.Model.Values[i].Data().([]float32), end.Model.Values[i].Data().([]float32)
		router := strings.HasSuffix(name, "gate.weight")
		if same := slices.Equal(a, b); same != router {
			t.Errorf("%s unchanged from 4 to 8 steps: %v, want %v", name, same, router)
		}
	}

	split := t.TempDir()
	early := c
	early.Train.Tokens = c.Train.Tokens / 4
	run(t, early, split)
	if s := run(t, c, split); !s.Resumed {
		t.Fatal("the second launch did not resume")
	}
	if !bytes.Equal(latestModelBytes(t, straight), latestModelBytes(t, split)) {
		t.Error("model.safetensors differs between the straight run and the one resumed before the freeze")
	}
}
