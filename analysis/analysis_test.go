package analysis

import (
	"bytes"
	"context"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/moetrain/moetrain/configs"
	"github.com/moetrain/moetrain/data"
	"github.com/moetrain/moetrain/data/prepare"
	"github.com/moetrain/moetrain/internal/tol"
	"github.com/moetrain/moetrain/model"
	"github.com/moetrain/moetrain/model/ops"
	"github.com/moetrain/moetrain/rundir"
	"github.com/moetrain/moetrain/train"
)

// loaded is a tiny DeepSeekMoE trained a few steps on synthetic prose and
// code, prepared once for the package.
var (
	dataset string
	runDir  string
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "moetrain-analysis-test-")
	if err != nil {
		panic(err)
	}
	dataset = filepath.Join(dir, "data")
	err = prepare.SyntheticDataset(dataset, 3, 240, 320, 0.15)
	if err != nil {
		panic(err)
	}
	c := configs.Default()
	md := &c.Model
	md.VocabSize, md.Hidden, md.Layers, md.Heads, md.DenseWidth, md.FFN = 320, 32, 2, 2, 64, configs.FFNDeepSeekMoE
	md.SharedExperts, md.RoutedExperts, md.ActiveRouted, md.ExpertWidth, md.Balance.ExpertAlpha = 1, 12, 3, 16, 0.01
	c.Data.Path = dataset
	c.Train.SeqLen, c.Train.BatchSize, c.Train.Tokens = 32, 4, 6*4*32
	c.Schedule.MaxLR, c.Schedule.WarmupTokens = 3e-3, 64
	c.Log.EveryTokens, c.Checkpoint.EveryTokens, c.Eval.EveryTokens, c.Eval.Tokens = 128, 0, 0, 256
	runDir = filepath.Join(dir, "run")
	var out bytes.Buffer
	if _, err := train.Run(context.Background(), train.Options{Config: c, RunDir: runDir, Out: &out}); err != nil {
		panic(err.Error() + "\n" + out.String())
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func load(t *testing.T) *rundir.Loaded {
	t.Helper()
	l, err := rundir.LoadModel(runDir)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

var opts = Options{Tokens: 512, Batch: 4}

// TestCurvesShareTheTrainedPoint: disabling no expert and activating the
// trained number are both the unmodified model, so they score the same
// loss bit for bit; the curves span the settings DESIGN.md §4.1 asks for.
func TestCurvesShareTheTrainedPoint(t *testing.T) {
	l := load(t)
	red, err := Redundancy(l, opts)
	if err != nil {
		t.Fatal(err)
	}
	top, err := TopK(l, opts)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(red.Points); n != 4 { // r = 0 .. round(12·4/16) = 3
		t.Errorf("redundancy has %d points, want 4", n)
	}
	if n := len(top.Points); n != 3 || top.Points[0].Setting != 1 || top.Points[2].Setting != 3 {
		t.Errorf("topk points %+v, want k = 1, 2, 3", top.Points)
	}
	if red.Points[0].Loss != top.Points[2].Loss || red.Points[0].Increase != 0 || top.Points[2].Increase != 0 {
		t.Errorf("trained model: redundancy r=0 loss %v, topk k=3 loss %v; want equal, increase 0", red.Points[0].Loss, top.Points[2].Loss)
	}
	for _, p := range append(red.Points, top.Points...) {
		if math.IsNaN(p.Loss) || p.Loss <= 0 {
			t.Errorf("point %+v", p)
		}
	}
	if red.Points[3].Loss == red.Points[0].Loss {
		t.Error("disabling 3 experts did not change the loss at all")
	}
	dir := t.TempDir()
	for _, cv := range []Curve{red, top} {
		files, err := WriteCurve(cv, dir, "tiny")
		if err != nil {
			t.Fatal(err)
		}
		checkFiles(t, files, 4)
	}
}

// TestDisableTopReroutes checks the graph option behind the redundancy
// analysis: with r disabled, no token is routed to any of its r most
// probable experts, and every token gets K' others.
func TestDisableTopReroutes(t *testing.T) {
	l := load(t)
	c := l.State.Config
	const B, r = 2, 2
	T := c.Train.SeqLen
	s, err := data.Open(data.StreamConfig{Dir: dataset, Split: data.Validation, SeqLen: T, Batch: B, Epochs: 1}, data.Cursor{})
	if err != nil {
		t.Fatal(err)
	}
	b, err := s.Next()
	s.Close()
	if err != nil {
		t.Fatal(err)
	}
	g, err := l.Model.Build(model.GraphOptions{Batch: B, Seq: T, DisableTop: r})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	if _, err := g.Run(b.Tokens); err != nil {
		t.Fatal(err)
	}
	for j, rec := range g.Routes {
		probs := g.RouterProbs(j).Data().([]float32)
		e, k := rec.E, rec.K
		top := make([]int32, r)
		for tok := 0; tok < rec.N; tok++ {
			ops.TopK(top, probs[tok*e:(tok+1)*e], r)
			for _, x := range rec.Experts[tok*k : (tok+1)*k] {
				for _, d := range top {
					if x == d {
						t.Fatalf("layer %d token %d routed to its disabled expert %d", g.RouteOf[j], tok, d)
					}
				}
			}
		}
	}
	if _, err := l.Model.Build(model.GraphOptions{Batch: B, Seq: T, DisableTop: 10}); err == nil {
		t.Error("disabling 10 of 12 experts with 3 active: no error")
	}
}

func TestLoadByDomain(t *testing.T) {
	l := load(t)
	res, err := Load(l, opts)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Layers) != 2 {
		t.Fatalf("%d layers, want 2", len(res.Layers))
	}
	for _, ll := range res.Layers {
		if len(ll.Domains) != 2 {
			t.Fatalf("layer %d: %d domains, want prose and code", ll.Layer, len(ll.Domains))
		}
		for _, d := range ll.Domains {
			var sum int64
			for _, x := range d.Load {
				sum += x
			}
			// Every token takes K' = 3 routed slots.
			if sum != 3*d.Tokens {
				t.Errorf("layer %d %s: %d slots for %d tokens, want 3 per token", ll.Layer, d.Domain, sum, d.Tokens)
			}
			if !(d.Entropy > 0 && d.Entropy <= math.Log(12)+1e-9) {
				t.Errorf("layer %d %s: entropy %v outside (0, ln 12]", ll.Layer, d.Domain, d.Entropy)
			}
		}
		if !(ll.JSD >= 0 && ll.JSD <= 1) {
			t.Errorf("JSD %v outside [0, 1]", ll.JSD)
		}
		if !(ll.MeanTopShare >= 0.5 && ll.MeanTopShare <= 1) {
			t.Errorf("mean top-domain share %v outside [1/2, 1]", ll.MeanTopShare)
		}
	}
	dir := t.TempDir()
	files, err := WriteLoad(res, dir, "tiny")
	if err != nil {
		t.Fatal(err)
	}
	checkFiles(t, files, 5)
	// Bars, not lines: a filled bar per expert in the first domain's color
	// (its legend sample is one more), and no stroked line in it.
	svg, err := os.ReadFile(filepath.Join(dir, "analysis-load.svg"))
	if err != nil {
		t.Fatal(err)
	}
	experts := 0
	for _, ll := range res.Layers {
		experts += len(ll.Domains[0].Load)
	}
	if got := strings.Count(string(svg), "fill:#1F77B4"); got != experts+len(res.Layers) {
		t.Errorf("analysis-load.svg: %d bars in the first domain's color, want %d (one per expert and layer, one legend sample per layer)", got, experts+len(res.Layers))
	}
}

func TestJSD(t *testing.T) {
	p := []float64{0.5, 0.25, 0.25, 0}
	if got := JSD(p, p); got != 0 {
		t.Errorf("JSD(p, p) = %v, want 0", got)
	}
	if got := JSD([]float64{1, 0}, []float64{0, 1}); !tol.Float64.Close(got, 1) {
		t.Errorf("JSD of disjoint distributions = %v bits, want 1", got)
	}
	q := []float64{0.25, 0.25, 0.25, 0.25}
	if a, b := JSD(p, q), JSD(q, p); a != b || !(a > 0 && a < 1) {
		t.Errorf("JSD(p, q) = %v, JSD(q, p) = %v: want equal and in (0, 1)", a, b)
	}
	shares, mean, n := topShares([]DomainLoad{{Tokens: 10, Load: []int64{10, 5, 0}}, {Tokens: 20, Load: []int64{0, 10, 0}}})
	// Expert 0: prose only; expert 1: equal per-token rates; expert 2: unused.
	if shares[0] != 1 || shares[1] != 0.5 || !math.IsNaN(shares[2]) || n != 1 || !tol.Float64.Close(mean, (1*1+0.5*1)/2) {
		t.Errorf("topShares = %v, mean %v, %d specialised", shares, mean, n)
	}
}

func TestRejectsModelsWithoutRouter(t *testing.T) {
	if err := needRouter(configs.Model{FFN: configs.FFNHash}, "redundancy"); err == nil {
		t.Error("hash: no error")
	}
	if err := needRouter(configs.Model{FFN: configs.FFNDense}, "topk"); err == nil {
		t.Error("dense: no error")
	}
}

func checkFiles(t *testing.T, files Written, want int) {
	t.Helper()
	if len(files) != want {
		t.Errorf("wrote %v, want %d files", files, want)
	}
	for _, f := range files {
		if st, err := os.Stat(f); err != nil || st.Size() == 0 {
			t.Errorf("%s: %v", f, err)
		}
	}
}
