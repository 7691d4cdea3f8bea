package evaluate

import (
	"context"
	"math"
	"path/filepath"
	"testing"

	"gorgonia.org/tensor"

	"github.com/moetrain/moetrain/configs"
	"github.com/moetrain/moetrain/data/prepare"
	"github.com/moetrain/moetrain/data/tokenizer"
	"github.com/moetrain/moetrain/internal/testdata"
	"github.com/moetrain/moetrain/internal/tol"
	"github.com/moetrain/moetrain/model"
)

// dataset is a small synthetic two-domain dataset prepared once for the
// package.
var dataset string

func TestMain(m *testing.M) { testdata.Main(m, &dataset, 5, 300, 384, 0.1) }

// tinyConfig is a tiny dense model on the synthetic data.
func tinyConfig() configs.Config {
	c := configs.Default()
	m := &c.Model
	m.VocabSize, m.Hidden, m.Layers, m.Heads, m.DenseWidth, m.FFN = 384, 32, 2, 2, 64, configs.FFNDense
	c.Data.Path = dataset
	c.Train.SeqLen, c.Train.BatchSize = 32, 4
	return c
}

// Bits per byte on a known text: the validation split is one document of
// known text, scored as a single window, so the predicted tokens are all
// its tokens but the first, plus the end-of-document token (0 bytes).
func TestBitsPerByteOnKnownText(t *testing.T) {
	text := "In the beginning God created the heaven and the earth. And the earth was without form, and void; and darkness was upon the face of the deep."
	dir := filepath.Join(t.TempDir(), "known")
	// Two copies: one goes to validation, one stays in train.
	docs := []prepare.Document{{Domain: "prose", Name: "a", Text: text}, {Domain: "prose", Name: "b", Text: text}}
	man, err := prepare.Documents(context.Background(), docs, prepare.Options{Out: dir, VocabSize: 300, ValFraction: 0.5, Seed: 3})
	if err != nil {
		t.Fatal(err)
	}
	tok, err := tokenizer.Load(filepath.Join(dir, man.Tokenizer.File))
	if err != nil {
		t.Fatal(err)
	}
	ids := tok.Encode(text)
	if got := man.Splits["validation"].Tokens; got != int64(len(ids)+1) {
		t.Fatalf("validation holds %d tokens, want the text's %d + EOS", got, len(ids))
	}
	c := tinyConfig()
	c.Model.VocabSize = man.Tokenizer.VocabSize
	c.Data.Path = dir
	c.Train.SeqLen, c.Train.BatchSize = len(ids), 1
	m, err := model.New(c.Model, tensor.Float32)
	if err != nil {
		t.Fatal(err)
	}
	e, err := New(m, c, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	res, err := e.HeldOut(0, true)
	if err != nil {
		t.Fatal(err)
	}
	wantBytes := int64(len(text) - len(tok.TokenBytes(ids[0])))
	if res.Tokens != int64(len(ids)) || res.Bytes != wantBytes {
		t.Fatalf("scored %d tokens, %d bytes; want %d tokens, %d bytes", res.Tokens, res.Bytes, len(ids), wantBytes)
	}
	want := res.Loss * float64(res.Tokens) / float64(wantBytes) / math.Ln2
	if !tol.Float64.Close(res.BPB, want) {
		t.Errorf("bits per byte %.9f, want loss·tokens/bytes/ln2 = %.9f", res.BPB, want)
	}
	// An untrained model is near uniform over the vocabulary.
	if u := math.Log(float64(c.Model.VocabSize)); math.Abs(res.Loss-u) > 0.05 {
		t.Errorf("untrained loss %.4f, want about ln V = %.4f", res.Loss, u)
	}
	if len(res.Domains) != 0 {
		t.Errorf("one domain gave per-domain results %v", res.Domains)
	}
}

// Per-domain held-out scores stream each domain alone; their token counts
// add up to the whole split's (no cap), and the overall loss is their
// token-weighted mean.
func TestHeldOutDomains(t *testing.T) {
	c := tinyConfig()
	m, err := model.New(c.Model, tensor.Float32)
	if err != nil {
		t.Fatal(err)
	}
	e, err := New(m, c, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	res, err := e.HeldOut(0, true)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Domains) != 2 {
		t.Fatalf("domains %v, want prose and code", res.Domains)
	}
	var tokens, bytes int64
	var nats float64
	for d, r := range res.Domains {
		tokens += r.Tokens
		bytes += r.Bytes
		nats += r.Loss * float64(r.Tokens)
		if r.Tokens == 0 || r.Bytes == 0 || r.BPB <= 0 {
			t.Errorf("domain %s: %+v", d, r)
		}
	}
	// Windows never span two domains' streams, so the split as one corpus
	// can have a window or so more than the domains apart.
	T := int64(c.Train.SeqLen)
	if tokens > res.Tokens || res.Tokens-tokens > 2*T {
		t.Errorf("domains scored %d tokens, the whole split %d", tokens, res.Tokens)
	}
	if !(tol.Tol{Rel: 0.02}).Close(nats/float64(tokens), res.Loss) {
		t.Errorf("token-weighted domain loss %.5f, overall %.5f", nats/float64(tokens), res.Loss)
	}
	capped, err := e.HeldOut(4*T, true)
	if err != nil {
		t.Fatal(err)
	}
	if capped.Tokens < 4*T || capped.Tokens > 4*T+int64(c.Train.MicroBatch())*T {
		t.Errorf("cap of %d tokens scored %d", 4*T, capped.Tokens)
	}
}
