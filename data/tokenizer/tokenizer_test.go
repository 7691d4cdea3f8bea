package tokenizer

import (
	"bytes"
	"math/rand"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/moetrain/moetrain/data/tokenizer/internal/testtext"
)

var (
	sharedOnce sync.Once
	sharedTok  *Tokenizer
	sharedErr  error
)

// golden is a tokenizer.json that bpetrain trained on testtext.Training()
// (vocab 1024, specials "<|pad|>" and "<|sep|>"); bpetrain's tests check
// that training still gives these exact bytes.
const golden = "testdata/tokenizer.json"

// trained returns the golden tokenizer, loaded once.
func trained(t testing.TB) *Tokenizer {
	t.Helper()
	sharedOnce.Do(func() {
		sharedTok, sharedErr = Load(golden)
	})
	if sharedErr != nil {
		t.Fatalf("load the golden tokenizer: %v", sharedErr)
	}
	return sharedTok
}

// sugarmePattern is the split pattern of sugarme v0.3.0's ByteLevel
// pre-tokenizer (pretokenizer/bytelevel.go, splitRegStr).
var sugarmePattern = regexp.MustCompile(`'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+`)

// regexpSplit splits like sugarme: the matches plus the gaps between them.
func regexpSplit(s string) []string {
	var out []string
	pos := 0
	for _, m := range sugarmePattern.FindAllStringIndex(s, -1) {
		if m[0] > pos {
			out = append(out, s[pos:m[0]])
		}
		out = append(out, s[m[0]:m[1]])
		pos = m[1]
	}
	if pos < len(s) {
		out = append(out, s[pos:])
	}
	return out
}

func splitAll(s string) []string {
	var out []string
	splitWords(s, func(w string) { out = append(out, w) })
	return out
}

func TestSplitWordsMatchesRegexp(t *testing.T) {
	t.Parallel()
	fixed := []string{"", " ", "  ", "a", " a", "a ", "a  b", "a\n\nb", "a \nb", "it's", "it''s", " 's", "'re 've 'll 'd 'm 't 'x",
		"x'", "''", "don't", "3.14 apples", " 123abc", "a\u00a0b", "a\vb", "\t\tx", "!!! ???", "é", "\xff\xfe a", "Ⅻ½",
		testtext.Prose, testtext.Code, testtext.Py, testtext.Unicode, testtext.Whitespace, testtext.HeldOut}
	alphabet := []string{" ", " ", "\n", "\t", "\r", "\f", "\v", "'", "s", "t", "r", "e", "v", "l", "m", "d", "a", "Z", "1", "9",
		"٣", "½", "é", "中", "😀", "\u00a0", "\u3000", "!", ".", "-", "_", "\xff", "\xc3", "\u0301"}
	r := rand.New(rand.NewSource(7))
	cases := slices.Clone(fixed)
	for i := 0; i < 3000; i++ {
		var b strings.Builder
		for n := r.Intn(12); n >= 0; n-- {
			b.WriteString(alphabet[r.Intn(len(alphabet))])
		}
		cases = append(cases, b.String())
	}
	for _, s := range cases {
		got, want := splitAll(s), regexpSplit(s)
		if !slices.Equal(got, want) {
			t.Fatalf("split %q:\ngot  %q\nwant %q", s, got, want)
		}
		if strings.Join(got, "") != s {
			t.Fatalf("split %q does not concatenate back: %q", s, got)
		}
	}
}

func TestLayout(t *testing.T) {
	t.Parallel()
	tok := trained(t)
	if got := tok.VocabSize(); got != 1024 {
		t.Fatalf("VocabSize = %d, want 1024", got)
	}
	wantSpecials := []string{EndOfText, "<|pad|>", "<|sep|>"}
	if got := tok.Specials(); !slices.Equal(got, wantSpecials) {
		t.Fatalf("Specials = %q, want %q", got, wantSpecials)
	}
	if tok.EOS() != 1024-3 {
		t.Fatalf("EOS = %d, want %d (first special, after all merged tokens)", tok.EOS(), 1024-3)
	}
	for i, s := range wantSpecials {
		id, ok := tok.SpecialID(s)
		if !ok || id != 1021+i || !tok.IsSpecial(id) || string(tok.TokenBytes(id)) != s {
			t.Fatalf("special %q: id %d ok %v", s, id, ok)
		}
	}
	for b := 0; b < 256; b++ {
		if got := tok.TokenBytes(b); len(got) != 1 || got[0] != byte(b) {
			t.Fatalf("TokenBytes(%d) = %v, want the byte itself", b, got)
		}
	}
	// Every merged token is the concatenation of its merge's parts.
	for _, m := range tok.merges {
		want := append(tok.TokenBytes(int(m.left)), tok.TokenBytes(int(m.right))...)
		if got := tok.TokenBytes(int(m.result)); !bytes.Equal(got, want) {
			t.Fatalf("merge result %d = %q, want %q", m.result, got, want)
		}
	}
	if tok.TokenBytes(-1) != nil || tok.TokenBytes(tok.VocabSize()) != nil {
		t.Fatal("TokenBytes out of range is not nil")
	}
}

func TestRoundTrip(t *testing.T) {
	t.Parallel()
	tok := trained(t)
	cases := []string{"", " ", "\n", "a", testtext.Prose, testtext.Code, testtext.Py, testtext.Unicode, testtext.Whitespace, testtext.HeldOut,
		"<|endoftext|>", "x<|endoftext|>y<|pad|><|endoftext|>", "<|endoftext", "\xff\xfe invalid \xc3 utf8",
		strings.Repeat(" ", 1000), strings.Repeat("ab", 500), "\x00\x01\x02 control"}
	r := rand.New(rand.NewSource(3))
	for i := 0; i < 200; i++ {
		b := make([]byte, r.Intn(40))
		r.Read(b)
		cases = append(cases, string(b))
	}
	for _, s := range cases {
		ids := tok.Encode(s)
		if got := tok.Decode(ids); got != s {
			t.Fatalf("Decode(Encode(%q)) = %q", s, got)
		}
		var cat []byte
		for _, id := range ids {
			cat = append(cat, tok.TokenBytes(id)...)
		}
		if string(cat) != s {
			t.Fatalf("TokenBytes of Encode(%q) concatenate to %q", s, cat)
		}
	}
	if got := tok.Decode([]int{-1, 'a', 1 << 30}); got != "\ufffda\ufffd" {
		t.Fatalf("Decode with bad ids = %q", got)
	}
}

func TestSpecialsInText(t *testing.T) {
	t.Parallel()
	tok := trained(t)
	pad, _ := tok.SpecialID("<|pad|>")
	ids := tok.Encode("a<|endoftext|><|pad|>b")
	want := []int{'a', tok.EOS(), pad, 'b'}
	if !slices.Equal(ids, want) {
		t.Fatalf("Encode = %v, want %v", ids, want)
	}
}

func TestSaveLoad(t *testing.T) {
	t.Parallel()
	tok := trained(t)
	path := filepath.Join(t.TempDir(), "tokenizer.json")
	if err := tok.Save(path); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := tok.Marshal()
	if !bytes.Equal(data, want) {
		t.Fatal("Save did not write Marshal's bytes")
	}
	entries, _ := os.ReadDir(filepath.Dir(path))
	if len(entries) != 1 {
		t.Fatalf("Save left %d files, want 1", len(entries))
	}
	back, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	again, _ := back.Marshal()
	if !bytes.Equal(again, data) {
		t.Fatal("Marshal(Load(Save(t))) differs from Marshal(t)")
	}
	if back.Hash() != tok.Hash() || back.EOS() != tok.EOS() || back.VocabSize() != tok.VocabSize() {
		t.Fatal("loaded tokenizer differs in hash, EOS or size")
	}
	for _, s := range []string{testtext.HeldOut, testtext.Code, testtext.Unicode, testtext.Whitespace} {
		if a, b := tok.Encode(s), back.Encode(s); !slices.Equal(a, b) {
			t.Fatalf("Load(Save(t)) encodes %q differently", s)
		}
	}
}

// TestParseForeignLayout loads a file in the layout of other byte-level BPE
// files (GPT-2's): ids permuted so bytes are not 0..255, merges as
// ["a", "b"] arrays, the special only in added_tokens; it must encode like
// the original up to the id permutation.
func TestParseForeignLayout(t *testing.T) {
	t.Parallel()
	tok := trained(t)
	n := tok.VocabSize()
	perm := rand.New(rand.NewSource(5)).Perm(n - 3) // specials keep their ids
	for i := n - 3; i < n; i++ {
		perm = append(perm, i)
	}
	data := foreignJSON(t, tok, perm)
	foreign, err := Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{testtext.HeldOut, testtext.Code, testtext.Whitespace, "a<|sep|>b"} {
		ids := tok.Encode(s)
		for i, id := range ids {
			ids[i] = perm[id]
		}
		if got := foreign.Encode(s); !slices.Equal(got, ids) {
			t.Fatalf("foreign layout encodes %q to %v, want %v", s, got, ids)
		}
	}
}

// foreignJSON writes tok as a tokenizer.json with ids mapped through perm.
func foreignJSON(t testing.TB, tok *Tokenizer, perm []int) []byte {
	t.Helper()
	var b strings.Builder
	b.WriteString(`{"version":"1.0","added_tokens":[`)
	for i, a := range tok.added {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(`{"id":` + strconv.Itoa(perm[a.id]) + `,"content":` + quote(a.content) +
			`,"single_word":false,"lstrip":false,"rstrip":false,"normalized":false,"special":true}`)
	}
	b.WriteString(`],"normalizer":null,"pre_tokenizer":{"type":"ByteLevel","add_prefix_space":false,"trim_offsets":true,"use_regex":true},`)
	b.WriteString(`"post_processor":null,"decoder":{"type":"ByteLevel","add_prefix_space":false,"trim_offsets":true,"use_regex":true},`)
	b.WriteString(`"model":{"type":"BPE","dropout":null,"unk_token":null,"vocab":{`)
	first := true
	for id := range tok.tokens {
		if tok.IsSpecial(id) {
			continue
		}
		if !first {
			b.WriteByte(',')
		}
		first = false
		b.WriteString(quote(byteLevelString(tok.tokens[id])) + ":" + strconv.Itoa(perm[id]))
	}
	b.WriteString(`},"merges":[`)
	for i, m := range tok.merges {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString("[" + quote(byteLevelString(tok.tokens[m.left])) + "," + quote(byteLevelString(tok.tokens[m.right])) + "]")
	}
	b.WriteString("]}}")
	return []byte(b.String())
}

func quote(s string) string {
	var b bytes.Buffer
	writeJSONString(&b, s)
	return b.String()
}

func TestErrors(t *testing.T) {
	t.Parallel()
	good, err := trained(t).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	mutate := func(old, new string) []byte {
		if !bytes.Contains(good, []byte(old)) {
			t.Fatalf("fixture lacks %q", old)
		}
		return bytes.Replace(good, []byte(old), []byte(new), 1)
	}
	parseCases := []struct {
		name string
		data []byte
	}{
		{"empty", nil},
		{"bad json", []byte(`{"model": {`)},
		{"not an object", []byte(`[1,2]`)},
		{"no model", []byte(`{"version":"1.0"}`)},
		{"wordpiece", mutate(`"type": "BPE"`, `"type": "WordPiece"`)},
		{"normalizer", mutate(`"normalizer": null`, `"normalizer": {"type":"NFC"}`)},
		{"prefix space", mutate(`"add_prefix_space": false`, `"add_prefix_space": true`)},
		{"no pre-tokenizer", mutate(`"pre_tokenizer": {`, `"pre_tokenizer": null, "x": {`)},
		{"dropout", mutate(`"dropout": null`, `"dropout": 0.1`)},
		{"missing byte token", mutate(`"Ā": 0,`, ``)},
		{"duplicate id", mutate(`"ā": 1,`, `"ā": 0,`)},
		{"no eos", mutate(`"content": "<|endoftext|>"`, `"content": "<|eot|>"`)},
		{"bad merge", mutate(`"merges": [`, `"merges": ["a b c", `)},
		{"merge result missing", mutate(`"merges": [`, `"merges": ["Ā Ā", `)},
		{"vocab not an object", mutate(`"vocab": {`, `"vocab": [], "x": {`)},
		{"added id differs from vocab", mutate(`"id": 1022,`, `"id": 1024,`)},
	}
	for _, tc := range parseCases {
		if _, err := Parse(tc.data); err == nil {
			t.Errorf("Parse(%s): no error", tc.name)
		}
	}
	if _, err := Load(filepath.Join(t.TempDir(), "missing.json")); err == nil {
		t.Error("Load of a missing file: no error")
	}
}

func TestEncodeConcurrent(t *testing.T) {
	t.Parallel()
	tok := trained(t)
	texts := []string{testtext.HeldOut, testtext.Code, testtext.Unicode, testtext.Synthetic(5000, 9)}
	want := make([][]int, len(texts))
	for i, s := range texts {
		want[i] = tok.Encode(s)
	}
	var wg sync.WaitGroup
	errs := make(chan string, 8)
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i, s := range texts {
				if !slices.Equal(tok.Encode(s), want[i]) {
					errs <- s
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for s := range errs {
		t.Fatalf("concurrent Encode of %q differs", s[:min(len(s), 40)])
	}
}

func TestPreTokens(t *testing.T) {
	t.Parallel()
	tok := trained(t)
	for _, s := range []string{"", testtext.Prose, testtext.Whitespace, "a<|endoftext|>b<|pad|> c<|sep|>", "<|endoftext|>"} {
		var got []string
		tok.PreTokens(s, func(w string) { got = append(got, w) })
		var want []string
		for _, seg := range strings.Split(strings.NewReplacer("<|pad|>", "<|endoftext|>", "<|sep|>", "<|endoftext|>").Replace(s), "<|endoftext|>") {
			want = append(want, splitAll(seg)...)
		}
		if !slices.Equal(got, want) {
			t.Fatalf("PreTokens(%q) = %q, want %q", s, got, want)
		}
	}
}

// New builds the golden tokenizer from its tables, byte for byte, and
// refuses tables that would not make a valid tokenizer.json.
func TestNew(t *testing.T) {
	t.Parallel()
	tok := trained(t)
	n := tok.VocabSize() - len(tok.Specials())
	tokens := tok.tokens[:n]
	merges := make([]Merge, len(tok.merges))
	for i, m := range tok.merges {
		merges[i] = Merge{Left: int(m.left), Right: int(m.right), Result: int(m.result)}
	}
	built, err := New(tokens, merges, tok.Specials())
	if err != nil {
		t.Fatal(err)
	}
	if built.Hash() != tok.Hash() {
		t.Fatal("New from the golden tokenizer's tables gives a different tokenizer.json")
	}
	bytesOnly := tokens[:256]
	bad := []struct {
		name     string
		tokens   [][]byte
		merges   []Merge
		specials []string
	}{
		{"no eos", bytesOnly, nil, []string{"<|pad|>"}},
		{"empty special", bytesOnly, nil, []string{EndOfText, ""}},
		{"special twice", bytesOnly, nil, []string{EndOfText, "<|x|>", "<|x|>"}},
		{"invalid special", bytesOnly, nil, []string{EndOfText, "\xff"}},
		{"special spelled like a byte", bytesOnly, nil, []string{EndOfText, "a"}},
		{"special spelled like a merged token", tokens, merges, []string{EndOfText, byteLevelString(tokens[n-1])}},
		{"missing byte", tokens[1:], nil, []string{EndOfText}},
		{"merge out of range", bytesOnly, []Merge{{Left: 'a', Right: 'b', Result: 256}}, []string{EndOfText}},
	}
	for _, tc := range bad {
		if _, err := New(tc.tokens, tc.merges, tc.specials); err == nil {
			t.Errorf("New(%s): no error", tc.name)
		}
	}
}
