package tokenizer

import (
	"math/rand"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/moetrain/moetrain/data/tokenizer/internal/testtext"

	"github.com/sugarme/tokenizer/pretrained"
)

// TestSugarmeParity saves the golden trained tokenizer, loads it with sugarme's
// pretrained.FromFile and checks that sugarme encodes held-out text, and
// many random strings over a tricky alphabet, to exactly our ids.
func TestSugarmeParity(t *testing.T) {
	t.Parallel()
	tok := trained(t)
	path := filepath.Join(t.TempDir(), "tokenizer.json")
	if err := tok.Save(path); err != nil {
		t.Fatal(err)
	}
	ref, err := pretrained.FromFile(path)
	if err != nil {
		t.Fatalf("sugarme cannot load our file: %v", err)
	}
	if got := ref.GetVocabSize(true); got != tok.VocabSize() {
		t.Fatalf("sugarme vocab size %d, ours %d", got, tok.VocabSize())
	}
	cases := []string{testtext.HeldOut, strings.ReplaceAll(testtext.HeldOut, "<|endoftext|>", ""), "a<|endoftext|>b <|pad|>c", testtext.Prose, testtext.Code, testtext.Py,
		testtext.Unicode, testtext.Whitespace, testtext.Synthetic(20_000, 42),
		"x" + strings.Repeat(" ", 13) + "y", strings.Repeat("=", 37), strings.Repeat("\t", 9) + "return",
		strings.Repeat("0", 21), "aaaaaaaaaaaaaaaaaaaaa"}
	alphabet := []string{" ", " ", "  ", "    ", "\n", "\t", "\n\t", "'s", "'", "the", "and", " of", "e", "r", "t", "h",
		"1", "0", "00", "=", "==", "(", ")", "{", "}", ":", ".", ",", "é", "中", "😀", "\u00a0", "\v", "Point", "func"}
	r := rand.New(rand.NewSource(11))
	for i := 0; i < 300; i++ {
		var b strings.Builder
		for n := r.Intn(30); n >= 0; n-- {
			b.WriteString(alphabet[r.Intn(len(alphabet))])
		}
		cases = append(cases, b.String())
	}
	for _, s := range cases {
		enc, err := ref.EncodeSingle(s, false)
		if err != nil {
			t.Fatalf("sugarme encode %q: %v", s, err)
		}
		if got := withoutSpecials(tok, tok.Encode(s)); !slices.Equal(got, enc.Ids) {
			t.Fatalf("encode %q:\nours    %v\nsugarme %v", s, got, enc.Ids)
		}
	}
}

// withoutSpecials drops added-token ids: sugarme v0.3.0 splits the text at
// added tokens like we do but then loses them (PreTokenizedString.Normalize
// keeps only splits without tokens), so it is compared on the rest.
func withoutSpecials(tok *Tokenizer, ids []int) []int {
	return slices.DeleteFunc(ids, tok.IsSpecial)
}

// TestSugarmeParityForeign checks the permuted GPT-2-style layout of
// TestParseForeignLayout against sugarme as well.
func TestSugarmeParityForeign(t *testing.T) {
	t.Parallel()
	tok := trained(t)
	n := tok.VocabSize()
	perm := rand.New(rand.NewSource(6)).Perm(n - 3)
	for i := n - 3; i < n; i++ {
		perm = append(perm, i)
	}
	data := foreignJSON(t, tok, perm)
	ours, err := Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	ref, err := pretrained.FromReader(strings.NewReader(string(data)))
	if err != nil {
		t.Fatalf("sugarme cannot load the foreign layout: %v", err)
	}
	for _, s := range []string{testtext.HeldOut, testtext.Code, testtext.Whitespace, testtext.Unicode} {
		enc, err := ref.EncodeSingle(s, false)
		if err != nil {
			t.Fatal(err)
		}
		if got := withoutSpecials(ours, ours.Encode(s)); !slices.Equal(got, enc.Ids) {
			t.Fatalf("encode %q:\nours    %v\nsugarme %v", s, got, enc.Ids)
		}
	}
}
