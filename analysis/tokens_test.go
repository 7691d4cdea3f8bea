package analysis

import (
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"testing"

	"gorgonia.org/tensor"

	"github.com/moetrain/moetrain/configs"
	"github.com/moetrain/moetrain/data"
	"github.com/moetrain/moetrain/model"
	"github.com/moetrain/moetrain/rundir"
)

// untrained returns an untrained model of the test dataset's vocabulary with
// ffn and n routed experts, k active, wrapped as a loaded run.
func untrained(t *testing.T, ffn string, n, k int) *rundir.Loaded {
	t.Helper()
	c := configs.Default()
	md := &c.Model
	md.VocabSize, md.Hidden, md.Layers, md.Heads, md.DenseWidth, md.FFN = 320, 32, 2, 2, 64, ffn
	md.RoutedExperts, md.ActiveRouted, md.ExpertWidth = n, k, 16
	if ffn != configs.FFNHash {
		md.Balance.ExpertAlpha = 0.01
	}
	c.Data.Path = dataset
	c.Train.SeqLen, c.Train.BatchSize = 32, 4
	m, err := model.New(c.Model, tensor.Float32)
	if err != nil {
		t.Fatal(err)
	}
	return &rundir.Loaded{Model: m, State: rundir.State{Config: c}}
}

// heldOutIDs counts the input token ids of the windows an analysis with
// opts scores: the same stream, read independently of the scorer.
func heldOutIDs(t *testing.T, c configs.Config) []int64 {
	t.Helper()
	T := c.Train.SeqLen
	s, err := data.Open(data.StreamConfig{Dir: dataset, Split: data.Validation, SeqLen: T, Batch: opts.Batch, Epochs: 1, Vocab: c.Model.VocabSize}, data.Cursor{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	counts := make([]int64, c.Model.VocabSize)
	var seen int64
	for seen < opts.Tokens {
		b, err := s.Next()
		if err != nil && !errors.Is(err, io.EOF) {
			t.Fatal(err)
		}
		for row := 0; row < b.B; row++ {
			for _, id := range b.Tokens[row*(T+1) : row*(T+1)+T] {
				counts[id]++
			}
		}
		seen += int64(b.B * T)
		if b.B == 0 || errors.Is(err, io.EOF) {
			break
		}
	}
	return counts
}

// loadOf sums the id counts per expert under a token id → expert map.
func loadOf(ids []int64, expert func(id int) int, e int) []float64 {
	load := make([]float64, e)
	for id, n := range ids {
		load[expert(id)] += float64(n)
	}
	return load
}

// checkTokenMap checks a layer whose routing is the map expert (token id →
// its first expert; with k = 2 also expert+off): the entropy and balance
// of the load the id counts give, H(expert | id) = ln k, purity 1, every
// id's top expert.
func checkTokenMap(t *testing.T, tl TokenLayer, ids []int64, expert func(id int) int, k, off int) {
	t.Helper()
	load := loadOf(ids, expert, tl.Experts)
	if k == 2 {
		for e := 0; e < off; e++ {
			load[e+off] = load[e]
		}
	}
	var total, mx float64
	for _, l := range load {
		total += l
		mx = math.Max(mx, l)
	}
	close := func(got, want float64) bool { return math.Abs(got-want) <= 1e-9*math.Max(1, math.Abs(want)) }
	if h := entropyOf(load); !close(tl.Entropy, h) || !close(tl.Effective, math.Exp(h)) {
		t.Errorf("layer %d: H(expert) %v, effective %v; want %v, %v", tl.Layer, tl.Entropy, tl.Effective, h, math.Exp(h))
	}
	if want := mx / (total / float64(tl.Experts)); !close(tl.MaxLoad, want) {
		t.Errorf("layer %d: max load / mean %v, want %v", tl.Layer, tl.MaxLoad, want)
	}
	if !close(tl.CondEntropy, math.Log(float64(k))) || tl.Purity != 1 || !close(tl.Decided, 1) {
		t.Errorf("layer %d: H(expert | id) %v, purity %v, decided %v; want ln %d, 1, 1", tl.Layer, tl.CondEntropy, tl.Purity, tl.Decided, k)
	}
	seen := 0
	for _, id := range tl.IDs {
		if id.Positions != ids[id.ID] || id.Top != expert(id.ID) || id.Purity != 1 {
			t.Fatalf("layer %d: id %+v, want %d positions, top expert %d, purity 1", tl.Layer, id, ids[id.ID], expert(id.ID))
		}
		seen++
	}
	want := 0
	for _, n := range ids {
		if n > 0 {
			want++
		}
	}
	if seen != want {
		t.Errorf("layer %d: %d ids listed, %d seen", tl.Layer, seen, want)
	}
}

// Hash routing is a fixed table of token ids, so the analysis must find it
// exactly: H(expert | id) 0, purity 1, gate 1, each id's expert its table
// entry, and the load entropy and balance the id counts give through it.
func TestTokensOfHashAreItsTable(t *testing.T) {
	l := untrained(t, configs.FFNHash, 8, 1)
	res, err := Tokens(l, opts)
	if err != nil {
		t.Fatal(err)
	}
	ids := heldOutIDs(t, l.State.Config)
	if len(res.Layers) != 2 {
		t.Fatalf("%d layers, want 2", len(res.Layers))
	}
	for _, tl := range res.Layers {
		table := l.Model.Values[l.Model.Index(routerName(tl.Layer, "hash_table"))].Data().([]int)
		checkTokenMap(t, tl, ids, func(id int) int { return table[id] }, 1, 0)
		if tl.Gate != 1 {
			t.Errorf("layer %d: mean gate %v, want 1", tl.Layer, tl.Gate)
		}
	}
}

func routerName(layer int, what string) string {
	return fmt.Sprintf("model.layers.%d.mlp.%s", layer, what)
}

// A learned router set by hand to route by token id alone: attention
// writes nothing (o_proj 0), so every layer's router input is a function of
// the token; layer 0 reads the embedding, which puts each id on
// coordinate id mod 8, and its router scores coordinate e mod 8 for expert
// e. Switch (top-1 of 8) must then send id to expert id mod 8 with gate
// softmax(z)_top = e^z / (e^z + 7); GShard (top-2 of 16) to experts id mod 8
// and id mod 8 + 8 (tied, equal gates renormalised to sum 1), with
// H(expert | id) = ln 2. The deeper layer is still a function of the
// token: H(expert | id) = ln K and purity 1, whatever it chose.
func TestTokensOfARouterThatReadsTheTokenID(t *testing.T) {
	const s = 0.3 // router weight: logits s·rms-normalised coordinate
	for _, tc := range []struct {
		ffn  string
		n, k int
	}{{configs.FFNSwitch, 8, 1}, {configs.FFNGShard, 16, 2}} {
		t.Run(tc.ffn, func(t *testing.T) {
			l := untrained(t, tc.ffn, tc.n, tc.k)
			m, c := l.Model, l.State.Config.Model
			set := func(name string, f func(i int) float32) {
				v := m.Values[m.Index(name)].Data().([]float32)
				for i := range v {
					v[i] = f(i)
				}
			}
			d := c.Hidden
			set("model.embed_tokens.weight", func(i int) float32 {
				if i%d == (i/d)%8 {
					return 1
				}
				return 0
			})
			for layer := 0; layer < c.Layers; layer++ {
				set(fmt.Sprintf("model.layers.%d.self_attn.o_proj.weight", layer), func(int) float32 { return 0 })
			}
			set(routerName(0, "gate.weight"), func(i int) float32 {
				if i%d == (i/d)%8 {
					return s
				}
				return 0
			})
			res, err := Tokens(l, opts)
			if err != nil {
				t.Fatal(err)
			}
			ids := heldOutIDs(t, l.State.Config)
			checkTokenMap(t, res.Layers[0], ids, func(id int) int { return id % 8 }, tc.k, 8)
			// The router input of a one-hot row: RMSNorm gives 1/√(1/d + ε).
			z := s / math.Sqrt(1/float64(d)+c.NormEps)
			gate := math.Exp(z) / (math.Exp(z) + float64(tc.n-1))
			if tc.k == 2 {
				gate = 1 // two tied probabilities renormalised
			}
			if g := res.Layers[0].Gate; math.Abs(g-gate) > 1e-5 {
				t.Errorf("layer 0: mean gate %v, want %v", g, gate)
			}
			deep := res.Layers[1]
			if math.Abs(deep.CondEntropy-math.Log(float64(tc.k))) > 1e-9 || deep.Purity != 1 {
				t.Errorf("layer 1 (a function of the token): H(expert | id) %v, purity %v; want ln %d, 1", deep.CondEntropy, deep.Purity, tc.k)
			}
		})
	}
}

// On a trained model whose routing depends on context: the bounds every
// routing obeys, the same loss as the other analyses' unmodified model
// (inspecting the batches changes nothing), and the written files.
func TestTokensOfATrainedModel(t *testing.T) {
	l := load(t)
	res, err := Tokens(l, opts)
	if err != nil {
		t.Fatal(err)
	}
	top, err := TopK(l, opts)
	if err != nil {
		t.Fatal(err)
	}
	if trained := top.Points[len(top.Points)-1]; res.Loss != trained.Loss || res.Tokens != top.Tokens {
		t.Errorf("tokens analysis: loss %v over %d tokens; the unmodified model scores %v over %d", res.Loss, res.Tokens, trained.Loss, top.Tokens)
	}
	for _, tl := range res.Layers {
		lnK, lnE := math.Log(float64(tl.K)), math.Log(float64(tl.Experts))
		if tl.Tokens != res.Tokens {
			t.Errorf("layer %d routed %d tokens, want %d", tl.Layer, tl.Tokens, res.Tokens)
		}
		if !(tl.Entropy > lnK && tl.Entropy <= lnE+1e-12) {
			t.Errorf("layer %d: H(expert) %v outside (ln K, ln N']", tl.Layer, tl.Entropy)
		}
		if !(tl.CondEntropy >= lnK-1e-12 && tl.CondEntropy <= tl.Entropy+1e-12) {
			t.Errorf("layer %d: H(expert | id) %v outside [ln K, H(expert) = %v]", tl.Layer, tl.CondEntropy, tl.Entropy)
		}
		if !(tl.Decided >= 0 && tl.Decided <= 1) || !(tl.Purity > float64(tl.K)/float64(tl.Experts) && tl.Purity <= 1) {
			t.Errorf("layer %d: decided %v, purity %v", tl.Layer, tl.Decided, tl.Purity)
		}
		// DeepSeekMoE's gates are raw probabilities of K of N' experts.
		if !(tl.Gate > 0 && tl.Gate < 1) || !(tl.MaxLoad >= 1) {
			t.Errorf("layer %d: mean gate %v, max load / mean %v", tl.Layer, tl.Gate, tl.MaxLoad)
		}
		var positions int64
		for _, id := range tl.IDs {
			positions += id.Positions
		}
		if positions != res.Tokens {
			t.Errorf("layer %d: the ids account for %d positions, want %d", tl.Layer, positions, res.Tokens)
		}
	}
	dir := t.TempDir()
	files, err := WriteTokens(res, dir, "tiny")
	if err != nil {
		t.Fatal(err)
	}
	checkFiles(t, files, 3)
	if _, err := os.Stat(filepath.Join(dir, "analysis-tokens-ids.csv")); err != nil {
		t.Error(err)
	}
}

func TestTokensRefusesDenseAndExpertChoice(t *testing.T) {
	if _, err := Tokens(untrained(t, configs.FFNDense, 0, 0), opts); err == nil {
		t.Error("dense: no error")
	}
	l := load(t)
	l.State.Config.Model.Router.ExpertChoice = true
	if _, err := Tokens(l, opts); err == nil {
		t.Error("expert choice: no error")
	}
}
