package sweep

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"os/signal"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/moetrain/moetrain/configs"
	"github.com/moetrain/moetrain/data"
	"github.com/moetrain/moetrain/data/prepare"
	"github.com/moetrain/moetrain/internal/stats"
	"github.com/moetrain/moetrain/internal/tol"
	"github.com/moetrain/moetrain/train"
)

// The test binary doubles as the trainer: with childEnv set it behaves like
// `moetrain train BASE --run-dir DIR --set ...` (train.Run in-process), so
// the runner's subprocess handling is tested without building the CLI.
const (
	childEnv    = "SWEEP_TEST_CHILD"
	launchesEnv = "SWEEP_TEST_LAUNCHES" // file: one line per launch (run dir name)
	stopEnv     = "SWEEP_TEST_STOP"     // "NAME:STEPS": that run stops after STEPS steps
)

var dataset string

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == "1" {
		os.Exit(childMain(os.Args[1:]))
	}
	dir, err := os.MkdirTemp("", "moetrain-sweep-test-")
	if err != nil {
		panic(err)
	}
	dataset = filepath.Join(dir, "data")
	err = prepare.SyntheticDataset(dataset, 5, 200, 320, 0.1)
	if err != nil {
		panic(err)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func childMain(args []string) int {
	if len(args) < 4 || args[0] != "train" || args[2] != "--run-dir" {
		fmt.Fprintf(os.Stderr, "child: bad args %q\n", args)
		return 2
	}
	base, dir := args[1], args[3]
	var sets []string
	for i := 4; i < len(args); i++ {
		if args[i] == "--set" && i+1 < len(args) {
			sets = append(sets, args[i+1])
			i++
		}
	}
	if f := os.Getenv(launchesEnv); f != "" {
		fh, err := os.OpenFile(f, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
		if err == nil {
			fmt.Fprintln(fh, filepath.Base(dir))
			fh.Close()
		}
	}
	cfg, err := configs.Load(base, sets)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	var stop atomic.Bool
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM)
	go func() { <-sig; stop.Store(true) }()
	limit := -1
	if name, steps, ok := strings.Cut(os.Getenv(stopEnv), ":"); ok && name == filepath.Base(dir) {
		limit, _ = strconv.Atoi(steps)
	}
	calls := 0
	_, err = train.Run(context.Background(), train.Options{Config: cfg, RunDir: dir, Out: os.Stdout, Stop: func() bool {
		calls++ // Stop is polled once before each step
		return stop.Load() || (limit >= 0 && calls > limit)
	}})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// tinyBase writes a tiny GShard config on the synthetic dataset and returns
// its path.
func tinyBase(t *testing.T, dir string) string {
	t.Helper()
	c := configs.Default()
	m := &c.Model
	m.VocabSize, m.Hidden, m.Layers, m.Heads, m.DenseWidth, m.FFN = 320, 32, 1, 2, 64, configs.FFNGShard
	m.RoutedExperts, m.ActiveRouted, m.ExpertWidth, m.Balance.ExpertAlpha = 8, 2, 64, 0.01
	c.Data.Path = dataset
	c.Train.SeqLen, c.Train.BatchSize = 16, 2
	c.Train.Tokens = 6 * 2 * 16 // 6 steps
	c.Schedule.MaxLR, c.Schedule.WarmupTokens = 3e-3, 32
	c.Log.EveryTokens = 2 * 16
	c.Checkpoint.EveryTokens = 2 * 2 * 16
	c.Eval.EveryTokens, c.Eval.Tokens = c.Train.Tokens, 512
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "base.yaml")
	if err := os.WriteFile(p, []byte(c.YAML()), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func parseSpec(t *testing.T, dir, text string) *Spec {
	t.Helper()
	s, err := Parse([]byte(text), dir)
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	return s
}

func TestExpandGridTiedSeeds(t *testing.T) {
	dir := t.TempDir()
	tinyBase(t, dir)
	s := parseSpec(t, dir, `
base: base.yaml
out: `+filepath.Join(dir, "out")+`
seeds: [1, 2, 3]
set: {train.tokens: 64, model.ffn: deepseekmoe}
variants:
  - name: small
    set: {model.hidden: 32}
  - name: wide
    set: {model.hidden: 64}
axes:
  - {model.routed_experts: [4, 8], model.active_routed: [1, 2]}
  - {model.expert_width: [16, 32]}
`)
	runs, err := s.Expand()
	if err != nil {
		t.Fatal(err)
	}
	if len(runs) != 2*2*2*3 {
		t.Fatalf("got %d runs, want 24", len(runs))
	}
	var names []string
	groups := map[string][]uint64{}
	for _, r := range runs {
		names = append(names, r.Name)
		groups[r.Group] = append(groups[r.Group], r.Seed)
		m := r.Config.Model
		// Tied keys advance together: 4 experts go with top-1, 8 with top-2.
		if want := map[int]int{4: 1, 8: 2}[m.RoutedExperts]; m.ActiveRouted != want {
			t.Errorf("%s: routed %d with active %d, want %d", r.Name, m.RoutedExperts, m.ActiveRouted, want)
		}
		if m.InitSeed != r.Seed {
			t.Errorf("%s: init_seed %d, want %d", r.Name, m.InitSeed, r.Seed)
		}
		wantHidden := map[bool]int{true: 32, false: 64}[strings.HasPrefix(r.Name, "small_")]
		if m.Hidden != wantHidden || r.Config.Train.Tokens != 64 {
			t.Errorf("%s: hidden %d tokens %d", r.Name, m.Hidden, r.Config.Train.Tokens)
		}
		if want := fmt.Sprintf("routed_experts-%d_active_routed-%d_expert_width-%d", m.RoutedExperts, m.ActiveRouted, m.ExpertWidth); !strings.Contains(r.Name, want) {
			t.Errorf("name %s does not contain %s", r.Name, want)
		}
		if r.Dir != filepath.Join(dir, "out", r.Name) {
			t.Errorf("dir %s", r.Dir)
		}
	}
	if len(groups) != 8 {
		t.Errorf("got %d groups, want 8", len(groups))
	}
	for g, seeds := range groups {
		if !slices.Equal(seeds, []uint64{1, 2, 3}) {
			t.Errorf("group %s has seeds %v", g, seeds)
		}
	}
	if want := "small_routed_experts-4_active_routed-1_expert_width-16_seed-1"; names[0] != want {
		t.Errorf("first run %s, want %s", names[0], want)
	}
	slices.Sort(names)
	if len(slices.Compact(names)) != 24 {
		t.Error("run names are not unique")
	}
}

func TestDeriveWidthRule(t *testing.T) {
	std := Standard{Experts: 16, Active: 2, Width: 3413} // DESIGN.md §4.1, f = 3413
	tests := []struct {
		m, ks int
		want  Experts
	}{
		{1, 0, Experts{0, 16, 2, 3413}}, // GShard
		{1, 1, Experts{1, 15, 1, 3413}}, // + shared expert isolation
		{2, 1, Experts{1, 31, 3, 1706}}, // + fine-grained ×2
		{4, 1, Experts{1, 63, 7, 853}},  // ×4 = DeepSeekMoE 2B
		{4, 2, Experts{2, 62, 6, 853}},  // shared:routed ratios
		{4, 4, Experts{4, 60, 4, 853}},
	}
	for _, tc := range tests {
		got, err := Derive(std, tc.m, tc.ks)
		if err != nil || got != tc.want {
			t.Errorf("Derive(m=%d, shared=%d) = %+v, %v; want %+v", tc.m, tc.ks, got, err, tc.want)
		}
		// Total and activated expert parameters stay those of the standard
		// layout, up to the floor of the width.
		total, act := (got.Shared+got.Routed)*got.Width, (got.Shared+got.Active)*got.Width
		if total > 16*3413 || 16*3413-total >= 16*tc.m || act > 2*3413 || 2*3413-act >= 2*tc.m {
			t.Errorf("m=%d shared=%d: expert widths sum to %d total / %d active, want 16·3413 / 2·3413 up to rounding", tc.m, tc.ks, total, act)
		}
	}
	if _, err := Derive(std, 1, 2); err == nil {
		t.Error("2 shared experts of 2 active at m=1: no error")
	}
	if _, err := Derive(std, 0, 0); err == nil {
		t.Error("granularity 0: no error")
	}
}

// TestExpandLadder checks the pseudo-keys through a whole expansion: the
// Figure 3 ladder on a GShard base with f = 3413.
func TestExpandLadder(t *testing.T) {
	dir := t.TempDir()
	tinyBase(t, dir)
	s := parseSpec(t, dir, `
base: base.yaml
out: out
seeds: [7]
set: {model.routed_experts: 16, model.expert_width: 3413}
axes:
  - {granularity: [1, 1, 2, 4], shared: [0, 1, 1, 1]}
`)
	runs, err := s.Expand()
	if err != nil {
		t.Fatal(err)
	}
	type layout struct {
		ffn                           string
		shared, routed, active, width int
	}
	want := []layout{{"gshard", 0, 16, 2, 3413}, {"deepseekmoe", 1, 15, 1, 3413}, {"deepseekmoe", 1, 31, 3, 1706}, {"deepseekmoe", 1, 63, 7, 853}}
	for i, r := range runs {
		m := r.Config.Model
		if got := (layout{m.FFN, m.SharedExperts, m.RoutedExperts, m.ActiveRouted, m.ExpertWidth}); got != want[i] {
			t.Errorf("%s: got %+v, want %+v", r.Name, got, want[i])
		}
	}
	if runs[2].Name != "granularity-2_shared-1_seed-7" {
		t.Errorf("name %s", runs[2].Name)
	}
}

func TestExpandRejects(t *testing.T) {
	dir := t.TempDir()
	tinyBase(t, dir)
	tests := []struct{ name, spec, want string }{
		{"data seed varies", "variants: [{name: a}, {name: b, set: {data.seed: 9}}]", "unfair"},
		{"mixture varies", "variants: [{name: a, set: {data.weights.prose: 1, data.weights.code: 1}}, {name: b, set: {data.weights.prose: 1, data.weights.code: 3}}]", "unfair"},
		{"budget varies", "axes: [{train.tokens: [64, 128]}]", "unfair"},
		{"init seed", "axes: [{model.init_seed: [1, 2]}]", "seeds list"},
		{"unknown key", "set: {model.nope: 1}", "unknown config key"},
		{"tied lengths", "axes: [{model.hidden: [32, 64], model.heads: [2]}]", "one length"},
		{"invalid config", "axes: [{model.heads: [3]}]", "model.heads"},
		{"unknown field", "sweeps: 1", "not found"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, err := Parse([]byte("base: base.yaml\nout: out\n"+tc.spec+"\n"), dir)
			if err == nil {
				_, err = s.Expand()
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

// TestEquivalentWeightsAreFair: variants whose data.weights are written
// differently but give the same mixture ({"*": 1}, {prose: 1, code: 1},
// {prose: 2, code: 2}) read the same stream, and the sweep accepts them.
func TestEquivalentWeightsAreFair(t *testing.T) {
	dir := t.TempDir()
	tinyBase(t, dir)
	s := parseSpec(t, dir, `
base: base.yaml
out: out
variants:
  - {name: star, set: {data.weights.*: 1}}
  - {name: named, set: {data.weights.prose: 1, data.weights.code: 1}}
  - {name: scaled, set: {data.weights.prose: 2, data.weights.code: 2}}
`)
	if _, err := s.Expand(); err != nil {
		t.Fatalf("equivalent weights refused: %v", err)
	}
}

// TestRunsReadSameTokens: two runs of a sweep with different models (a
// dense model and a DeepSeekMoE) share every stream setting, and the
// training streams train opens for them yield identical batches.
func TestRunsReadSameTokens(t *testing.T) {
	dir := t.TempDir()
	tinyBase(t, dir)
	s := parseSpec(t, dir, `
base: base.yaml
out: out
seeds: [1, 2]
variants:
  - {name: dense, set: {model.ffn: dense, model.routed_experts: 0, model.active_routed: 0, model.expert_width: 0, model.balance.expert_alpha: 0}}
  - {name: moe, set: {granularity: 2, shared: 1}}
`)
	runs, err := s.Expand()
	if err != nil {
		t.Fatal(err)
	}
	if runs[0].Config.Model.FFN == runs[2].Config.Model.FFN {
		t.Fatal("the variants should differ in the model")
	}
	batches := func(c configs.Config) [][]int32 {
		// The stream exactly as train.Run opens it.
		st, err := data.Open(data.StreamConfig{Dir: c.Data.Path, Split: "train", SeqLen: c.Train.SeqLen,
			Batch: c.Train.MicroBatch(), Seed: c.Data.Seed, Weights: c.Data.Weights, Vocab: c.Model.VocabSize}, data.Cursor{})
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		var out [][]int32
		steps := int(c.Train.Tokens / int64(c.Train.BatchSize*c.Train.SeqLen))
		for i := 0; i < steps; i++ {
			b, err := st.Next()
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, append([]int32(nil), b.Tokens...))
		}
		return out
	}
	ref := batches(runs[0].Config)
	for _, r := range runs[1:] {
		if !reflect.DeepEqual(KeyOf(r.Config), KeyOf(runs[0].Config)) {
			t.Errorf("%s: stream key differs", r.Name)
		}
		if got := batches(r.Config); !reflect.DeepEqual(got, ref) {
			t.Errorf("%s reads different training batches from %s", r.Name, runs[0].Name)
		}
	}
}

// TestInterruptedSweepResumes runs a three-run sweep whose middle run stops
// part-way (as after SIGTERM), then runs it again: the finished runs are
// skipped, the interrupted one resumes from its checkpoint and completes,
// and the summary covers all three.
func TestInterruptedSweepResumes(t *testing.T) {
	dir := t.TempDir()
	tinyBase(t, dir)
	out := filepath.Join(dir, "out")
	s := parseSpec(t, dir, `
name: tiny
base: base.yaml
out: `+out+`
seeds: [1]
variants:
  - {name: gshard}
  - {name: switch, set: {model.ffn: switch, model.active_routed: 1}}
  - {name: fine, set: {granularity: 2, shared: 1}}
expect:
  - [fine, gshard, switch]
`)
	runs, err := s.Expand()
	if err != nil {
		t.Fatal(err)
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	launches := filepath.Join(dir, "launches")
	var mu sync.Mutex
	var events []string
	rn := &Runner{Exe: exe, Env: []string{childEnv + "=1", launchesEnv + "=" + launches, stopEnv + "=" + runs[1].Name + ":2"},
		OnEvent: func(e Event) { mu.Lock(); events = append(events, e.Kind+" "+e.Run); mu.Unlock() }}
	err = rn.Run(context.Background(), runs)
	if err == nil || !strings.Contains(err.Error(), runs[1].Name) {
		t.Fatalf("first pass: got error %v, want the interrupted run named", err)
	}
	wantStatus := []Status{Done, Partial, Done}
	for i, r := range runs {
		if st, err := StatusOf(r); err != nil || st != wantStatus[i] {
			t.Fatalf("after the first pass %s is %v (%v), want %v", r.Name, st, err, wantStatus[i])
		}
	}
	events = nil
	rn.Env = rn.Env[:2] // no more stopping
	if err := rn.Run(context.Background(), runs); err != nil {
		t.Fatalf("second pass: %v", err)
	}
	want := []string{"done " + runs[1].Name, "skip " + runs[0].Name, "skip " + runs[2].Name, "start " + runs[1].Name}
	slices.Sort(events)
	slices.Sort(want)
	if !reflect.DeepEqual(events, want) {
		t.Errorf("second pass events %q, want %q", events, want)
	}
	raw, err := os.ReadFile(launches)
	if err != nil {
		t.Fatal(err)
	}
	wantLaunches := runs[0].Name + "\n" + runs[1].Name + "\n" + runs[2].Name + "\n" + runs[1].Name + "\n"
	if string(raw) != wantLaunches {
		t.Errorf("launches:\n%s\nwant:\n%s", raw, wantLaunches)
	}
	log, err := os.ReadFile(filepath.Join(runs[1].Dir, "train.log"))
	if err != nil || !strings.Contains(string(log), "resumed from") {
		t.Errorf("the interrupted run did not resume from its checkpoint (%v):\n%s", err, log)
	}
	sum, err := Summarise(s, runs)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range sum.Runs {
		if r.Status != Done || math.IsNaN(r.ValLoss) || r.Tokens != r.Budget {
			t.Errorf("run %+v: want done with a held-out loss at the budget", r)
		}
	}
	if len(sum.Orderings) != 1 || sum.Orderings[0].Holds {
		t.Errorf("one seed can never resolve an ordering: %+v", sum.Orderings)
	}
	for _, g := range sum.Groups {
		// MoE health and step time, read from every run's metrics.
		if !(g.MaxVio >= 0) || !(g.Dead >= 0 && g.Dead < 1) || !(g.StepSeconds > 0) {
			t.Errorf("group %s: MaxVio %v, dead %v, s/step %v", g.Group, g.MaxVio, g.Dead, g.StepSeconds)
		}
	}
	if err := sum.Write(out); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"summary.md", "summary.csv", "summary.png", "summary.svg", "summary-curve.png", "summary-curve.svg"} {
		if st, err := os.Stat(filepath.Join(out, f)); err != nil || st.Size() == 0 {
			t.Errorf("%s: %v", f, err)
		}
	}
}

// TestCancelStopsRunsForResume: cancelling the sweep while a run trains
// asks it to checkpoint (SIGTERM) and reports the sweep as interrupted.
func TestCancelStopsRunsForResume(t *testing.T) {
	dir := t.TempDir()
	tinyBase(t, dir)
	s := parseSpec(t, dir, "base: base.yaml\nout: "+filepath.Join(dir, "out")+"\nset: {train.tokens: 3200}\n")
	runs, err := s.Expand()
	if err != nil {
		t.Fatal(err)
	}
	exe, _ := os.Executable()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	rn := &Runner{Exe: exe, Env: []string{childEnv + "=1"}, OnEvent: func(e Event) {
		if e.Kind == "start" {
			// Let the trainer get going and install its signal handler.
			go func() {
				for {
					time.Sleep(20 * time.Millisecond)
					if infos, _ := os.ReadDir(runs[0].Dir); len(infos) > 0 {
						if b, _ := os.ReadFile(filepath.Join(runs[0].Dir, "metrics.jsonl")); len(b) > 0 {
							cancel()
							return
						}
					}
				}
			}()
		}
	}}
	err = rn.Run(ctx, runs)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want context.Canceled", err)
	}
	if st, _ := StatusOf(runs[0]); st != Partial {
		t.Errorf("status %v, want partial (a checkpoint saved on SIGTERM)", st)
	}
}

// TestGroupCurve: a group's curve averages the seeds at the evaluation
// points every seed reached, and leaves out a point only some have.
func TestGroupCurve(t *testing.T) {
	runs := []RunResult{
		{Curve: map[int64]float64{100: 2.0, 200: 1.0, 300: 0.5}},
		{Curve: map[int64]float64{100: 3.0, 200: 2.0}},
	}
	got := groupCurve(runs, curvePoints(runs))
	if len(got) != 2 || got[0].Tokens != 100 || got[1].Tokens != 200 {
		t.Fatalf("points %+v, want tokens 100 and 200 only", got)
	}
	for i, want := range []float64{2.5, 1.5} {
		if got[i].N != 2 || !tol.Float64.Close(got[i].Loss, want) || !tol.Float64.Close(got[i].Std, math.Sqrt(0.5)) {
			t.Errorf("point %d: %+v, want mean %g and std √0.5 over 2 seeds", i, got[i], want)
		}
	}
	if groupCurve(nil, []int64{100}) != nil {
		t.Error("no runs: want no curve")
	}
}

// TestCurveTableKeepsResumedSeeds: a seed resumed between evaluations
// evaluates at shifted token counts; the table still has every group at
// every evaluation point, the shifted seed interpolated there.
func TestCurveTableKeepsResumedSeeds(t *testing.T) {
	steady := func(l ...float64) map[int64]float64 {
		return map[int64]float64{1000: l[0], 2000: l[1], 3000: l[2], 4000: l[3]}
	}
	finished := [][]RunResult{
		{ // a: seed 2 resumed from a checkpoint at 1500 tokens
			{Curve: steady(3.0, 2.0, 1.5, 1.2)},
			{Curve: map[int64]float64{1000: 3.2, 2500: 2.0, 3500: 1.6, 4000: 1.4}},
		},
		{{Curve: steady(3.1, 2.1, 1.6, 1.3)}, {Curve: steady(3.3, 2.3, 1.8, 1.5)}},
	}
	groups := []GroupResult{{Group: "a", N: 2}, {Group: "b", N: 2}}
	setCurves(groups, finished)
	var md strings.Builder
	Summary{Groups: groups}.writeCurveTable(&md)
	// a at 2000: (2.0 + (3.2 + 2/3·(2.0−3.2))) / 2 = 2.2; at 3000:
	// (1.5 + (2.0 + 1/2·(1.6−2.0))) / 2 = 1.65.
	for _, want := range []string{
		"| group | 1.0K tokens | 2.0K tokens | 3.0K tokens | 4.0K tokens |",
		"| a | 3.1000 ± 0.1414 | 2.2000 ± 0.2828 | 1.6500 ± 0.2121 | 1.3000 ± 0.1414 |",
		"| b | 3.2000 ± 0.1414 | 2.2000 ± 0.1414 | 1.7000 ± 0.1414 | 1.4000 ± 0.1414 |",
	} {
		if !strings.Contains(md.String(), want) {
			t.Errorf("the table lacks %q:\n%s", want, md.String())
		}
	}
}

func TestComparePair(t *testing.T) {
	g := func(name string, xs ...float64) GroupResult {
		m, s := stats.MeanStd(xs)
		return GroupResult{Group: name, N: len(xs), Loss: m, Std: s, SE: s / math.Sqrt(float64(len(xs)))}
	}
	tests := []struct {
		a, b GroupResult
		want string
	}{
		{g("a", 1.00, 1.01, 0.99), g("b", 1.20, 1.21, 1.19), "holds"},
		{g("a", 1.20, 1.21, 1.19), g("b", 1.00, 1.01, 0.99), "reversed"},
		{g("a", 1.00, 1.10, 0.90), g("b", 1.05, 1.15, 0.95), "not resolved"},
		{g("a", 1.0), g("b", 2.0), "not resolved"},
	}
	for _, tc := range tests {
		if got := ComparePair(tc.a, tc.b); got.Verdict != tc.want {
			t.Errorf("%v vs %v: %s, want %s", tc.a, tc.b, got.Verdict, tc.want)
		}
	}
}

// TestApartGroups: a group named under apart gets its own table in the
// summary, and may take part in no ordering.
func TestApartGroups(t *testing.T) {
	dir := t.TempDir()
	tinyBase(t, dir)
	spec := `
base: base.yaml
out: ` + filepath.Join(dir, "out") + `
variants:
  - {name: gshard}
  - {name: ec, set: {model.balance.expert_alpha: 0, model.router.expert_choice: true}}
apart: [ec]
`
	s := parseSpec(t, dir, spec)
	runs, err := s.Expand()
	if err != nil {
		t.Fatal(err)
	}
	sum, err := Summarise(s, runs)
	if err != nil {
		t.Fatal(err)
	}
	var md strings.Builder
	if err := sum.WriteMarkdown(&md); err != nil {
		t.Fatal(err)
	}
	g, i, j := strings.Index(md.String(), "| gshard |"), strings.Index(md.String(), "Reported apart"), strings.Index(md.String(), "| ec |")
	if g < 0 || i < g || j < i {
		t.Errorf("ec is not in a table of its own after the ranking:\n%s", md.String())
	}
	s = parseSpec(t, dir, spec+"expect:\n  - [ec, gshard]\n")
	if _, err := Summarise(s, runs); err == nil || !strings.Contains(err.Error(), "reported apart") {
		t.Errorf("an apart group in an ordering: got %v", err)
	}
	s = parseSpec(t, dir, strings.Replace(spec, "apart: [ec]", "apart: [nope]", 1))
	if _, err := Summarise(s, runs); err == nil || !strings.Contains(err.Error(), `no group "nope"`) {
		t.Errorf("an unknown apart group: got %v", err)
	}
}
