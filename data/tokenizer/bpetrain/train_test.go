package bpetrain

import (
	"bytes"
	"errors"
	"flag"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/moetrain/moetrain/data/tokenizer"
	"github.com/moetrain/moetrain/data/tokenizer/internal/testtext"
)

var updateGolden = flag.Bool("update-golden", false, "rewrite data/tokenizer/testdata/tokenizer.json")

// golden is the tokenizer the tokenizer package tests load.
const golden = "../testdata/tokenizer.json"

var (
	sharedOnce sync.Once
	sharedTok  *tokenizer.Tokenizer
	sharedErr  error
)

// trained returns a tokenizer trained once on testtext.Training() (vocab
// 1024, two extra specials).
func trained(t testing.TB) *tokenizer.Tokenizer {
	t.Helper()
	sharedOnce.Do(func() {
		sharedTok, sharedErr = Train(testtext.Source(testtext.Training()), 1024, []string{"<|pad|>", "<|sep|>"})
	})
	if sharedErr != nil {
		t.Fatalf("train: %v", sharedErr)
	}
	return sharedTok
}

// TestTrainGivesTheGoldenFile pins the trained tokenizer.json byte for
// byte, hence its hash: the hash is stored in every prepared dataset and
// checkpoint, so a change here would make them refuse to load. If the
// change is intended, regenerate with:
// go test ./data/tokenizer/bpetrain -run TestTrainGivesTheGoldenFile -update-golden
func TestTrainGivesTheGoldenFile(t *testing.T) {
	t.Parallel()
	got, err := trained(t).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if *updateGolden {
		if err := os.WriteFile(golden, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("training on testtext.Training() no longer gives %s (hash %s): existing datasets would not load; "+
			"if intended, regenerate with -update-golden", golden, trained(t).Hash())
	}
}

func TestTrainDeterministic(t *testing.T) {
	t.Parallel()
	texts := testtext.Training()
	a, err := Train(testtext.Source(texts), 700, nil)
	if err != nil {
		t.Fatal(err)
	}
	// Same texts in reverse order: word counts, hence merges, are the same.
	rev := slices.Clone(texts)
	slices.Reverse(rev)
	b, err := Train(testtext.Source(rev), 700, nil)
	if err != nil {
		t.Fatal(err)
	}
	ma, err := a.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	mb, err := b.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(ma, mb) {
		t.Fatalf("two trainings on the same texts differ (hashes %s, %s)", a.Hash(), b.Hash())
	}
	if a.Hash() != b.Hash() {
		t.Fatalf("equal Marshal bytes but hashes %s != %s", a.Hash(), b.Hash())
	}
	if a.VocabSize() != 700 {
		t.Fatalf("VocabSize = %d, want 700", a.VocabSize())
	}
}

func TestTieBreakAndFrequency(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		texts []string
		want  []string // merged tokens 256, 257, ... in order
	}{
		// All pairs occur once: (' ','c') < ('a','b') < ('c','d') by left
		// byte; then (" c",'d') still beats ('a','b') since ' ' < 'a'.
		{"ties by bytes", []string{"ab cd"}, []string{" c", " cd", "ab"}},
		// ('x','y') occurs three times, ('a','b') once: count beats bytes.
		{"frequency first", []string{"ab", "xy", "xy", "xy"}, []string{"xy", "ab"}},
		// Equal counts and left token: the right token decides.
		{"right decides", []string{"ac", "ab"}, []string{"ab", "ac"}},
		// Counts are per pre-token occurrence: " x" and "xy" tie at three,
		// and ' ' < 'x'.
		{"space pair", []string{"ab xy xy xy"}, []string{" x", " xy", "ab"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tok, err := Train(testtext.Source(tc.texts), 256+len(tc.want)+1, nil)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for id := 256; id < 256+len(tc.want); id++ {
				got = append(got, string(tok.TokenBytes(id)))
			}
			if !slices.Equal(got, tc.want) {
				t.Fatalf("merged tokens %q, want %q", got, tc.want)
			}
		})
	}
}

func TestCompresses(t *testing.T) {
	t.Parallel()
	tok := trained(t)
	text := strings.Join(testtext.Training(), "")
	n := len(tok.Encode(text))
	ratio := float64(n) / float64(len(text))
	// 768 merges on ~60 KB of text with a ~230-word vocabulary: far below
	// one token per byte.
	if ratio > 0.35 {
		t.Fatalf("tokens per byte on the training text = %.3f, want well below 1", ratio)
	}
	if held := float64(len(tok.Encode(testtext.HeldOut))) / float64(len(testtext.HeldOut)); held >= 0.9 {
		t.Fatalf("tokens per byte on held-out text = %.3f, want below 0.9", held)
	}
}

func TestTrainErrors(t *testing.T) {
	t.Parallel()
	boom := errors.New("boom")
	trainCases := []struct {
		name     string
		next     func() (string, error)
		vocab    int
		specials []string
	}{
		{"vocab too small", testtext.Source([]string{"abc"}), 257, nil},
		{"vocab too small for specials", testtext.Source([]string{"abc"}), 258, []string{"<|pad|>"}},
		{"reader error", func() (string, error) { return "", boom }, 300, nil},
		{"empty special", testtext.Source([]string{"abc"}), 300, []string{""}},
		{"duplicate special", testtext.Source([]string{"abc"}), 300, []string{"<|x|>", "<|x|>"}},
		{"byte special", testtext.Source([]string{"abc"}), 300, []string{"a"}},
		{"invalid special", testtext.Source([]string{"abc"}), 300, []string{"\xff"}},
		{"huge vocab", testtext.Source([]string{"abc"}), 1 << 30, nil},
	}
	for _, tc := range trainCases {
		if _, err := Train(tc.next, tc.vocab, tc.specials); err == nil {
			t.Errorf("Train(%s): no error", tc.name)
		}
	}
	if _, err := Train(func() (string, error) { return "", boom }, 300, nil); !errors.Is(err, boom) {
		t.Errorf("Train reader error not wrapped: %v", err)
	}
	// Running out of pairs is not an error: the vocabulary is smaller.
	small, err := Train(testtext.Source([]string{"abcd"}), 400, nil)
	if err != nil {
		t.Fatal(err)
	}
	if small.VocabSize() != 256+3+1 {
		t.Errorf("VocabSize on a 4-byte corpus = %d, want %d", small.VocabSize(), 256+3+1)
	}
}

// TestTrainMatchesNaive checks the incremental pair counting against a
// reference that recounts every pair from scratch before each merge.
func TestTrainMatchesNaive(t *testing.T) {
	t.Parallel()
	texts := []string{testtext.Prose, testtext.Code, testtext.Whitespace, testtext.Unicode, testtext.Synthetic(8000, 2)}
	const merges = 300
	counts := map[string]int{}
	for _, s := range texts {
		trained(t).PreTokens(s, func(w string) { counts[w]++ })
	}
	counts64 := make(map[string]int64, len(counts))
	for w, n := range counts {
		counts64[w] = int64(n)
	}
	tr := newTrainer(counts64)
	tr.run(256 + merges)

	// Reference: words as byte-string pieces, naive recount each step.
	type word struct {
		parts []string
		n     int
	}
	var words []word
	for w, n := range counts {
		var parts []string
		for i := 0; i < len(w); i++ {
			parts = append(parts, w[i:i+1])
		}
		words = append(words, word{parts, n})
	}
	var want []string
	for len(want) < merges {
		pc := map[[2]string]int{}
		for _, w := range words {
			for i := 0; i+1 < len(w.parts); i++ {
				pc[[2]string{w.parts[i], w.parts[i+1]}] += w.n
			}
		}
		var best [2]string
		bestN := 0
		for p, n := range pc {
			if n > bestN || (n == bestN && (p[0] < best[0] || (p[0] == best[0] && p[1] < best[1]))) {
				best, bestN = p, n
			}
		}
		if bestN == 0 {
			break
		}
		want = append(want, best[0]+"\x00"+best[1])
		for wi, w := range words {
			var out []string
			for i := 0; i < len(w.parts); i++ {
				if i+1 < len(w.parts) && w.parts[i] == best[0] && w.parts[i+1] == best[1] {
					out = append(out, best[0]+best[1])
					i++
				} else {
					out = append(out, w.parts[i])
				}
			}
			words[wi].parts = out
		}
	}
	var got []string
	for _, m := range tr.merges {
		got = append(got, string(tr.tokens[m.Left])+"\x00"+string(tr.tokens[m.Right]))
	}
	if !slices.Equal(got, want) {
		for i := range min(len(got), len(want)) {
			if got[i] != want[i] {
				t.Fatalf("merge %d: got %q, want %q", i, got[i], want[i])
			}
		}
		t.Fatalf("got %d merges, want %d", len(got), len(want))
	}
}
