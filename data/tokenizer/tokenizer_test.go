package tokenizer

import (
	"bytes"
	"errors"
	"math/rand"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
)

var (
	sharedOnce sync.Once
	sharedTok  *Tokenizer
	sharedErr  error
)

// trained returns a tokenizer trained once on trainingTexts (vocab 1024,
// two extra specials).
func trained(t testing.TB) *Tokenizer {
	t.Helper()
	sharedOnce.Do(func() {
		sharedTok, sharedErr = Train(sliceSource(trainingTexts()), 1024, []string{"<|pad|>", "<|sep|>"})
	})
	if sharedErr != nil {
		t.Fatalf("train: %v", sharedErr)
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
		proseText, codeText, pyText, unicodeText, whitespaceText, heldOutText}
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

func TestTrainDeterministic(t *testing.T) {
	t.Parallel()
	texts := trainingTexts()
	a, err := Train(sliceSource(texts), 700, nil)
	if err != nil {
		t.Fatal(err)
	}
	// Same texts in reverse order: word counts, hence merges, are the same.
	rev := slices.Clone(texts)
	slices.Reverse(rev)
	b, err := Train(sliceSource(rev), 700, nil)
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

func TestTrainLayout(t *testing.T) {
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
			tok, err := Train(sliceSource(tc.texts), 256+len(tc.want)+1, nil)
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

func TestRoundTrip(t *testing.T) {
	t.Parallel()
	tok := trained(t)
	cases := []string{"", " ", "\n", "a", proseText, codeText, pyText, unicodeText, whitespaceText, heldOutText,
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

func TestCompresses(t *testing.T) {
	t.Parallel()
	tok := trained(t)
	text := strings.Join(trainingTexts(), "")
	n := len(tok.Encode(text))
	ratio := float64(n) / float64(len(text))
	// 768 merges on ~60 KB of text with a ~230-word vocabulary: far below
	// one token per byte.
	if ratio > 0.35 {
		t.Fatalf("tokens per byte on the training text = %.3f, want well below 1", ratio)
	}
	if held := float64(len(tok.Encode(heldOutText))) / float64(len(heldOutText)); held >= 0.9 {
		t.Fatalf("tokens per byte on held-out text = %.3f, want below 0.9", held)
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
	for _, s := range []string{heldOutText, codeText, unicodeText, whitespaceText} {
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
	for _, s := range []string{heldOutText, codeText, whitespaceText, "a<|sep|>b"} {
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

	boom := errors.New("boom")
	trainCases := []struct {
		name     string
		next     func() (string, error)
		vocab    int
		specials []string
	}{
		{"vocab too small", sliceSource([]string{"abc"}), 257, nil},
		{"vocab too small for specials", sliceSource([]string{"abc"}), 258, []string{"<|pad|>"}},
		{"reader error", func() (string, error) { return "", boom }, 300, nil},
		{"empty special", sliceSource([]string{"abc"}), 300, []string{""}},
		{"duplicate special", sliceSource([]string{"abc"}), 300, []string{"<|x|>", "<|x|>"}},
		{"byte special", sliceSource([]string{"abc"}), 300, []string{"a"}},
		{"invalid special", sliceSource([]string{"abc"}), 300, []string{"\xff"}},
		{"huge vocab", sliceSource([]string{"abc"}), 1 << 30, nil},
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
	small, err := Train(sliceSource([]string{"abcd"}), 400, nil)
	if err != nil {
		t.Fatal(err)
	}
	if small.VocabSize() != 256+3+1 {
		t.Errorf("VocabSize on a 4-byte corpus = %d, want %d", small.VocabSize(), 256+3+1)
	}
}

func TestEncodeConcurrent(t *testing.T) {
	t.Parallel()
	tok := trained(t)
	texts := []string{heldOutText, codeText, unicodeText, syntheticText(5000, 9)}
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

// TestTrainMatchesNaive checks the incremental pair counting against a
// reference that recounts every pair from scratch before each merge.
func TestTrainMatchesNaive(t *testing.T) {
	t.Parallel()
	texts := []string{proseText, codeText, whitespaceText, unicodeText, syntheticText(8000, 2)}
	const merges = 300
	tok, err := Train(sliceSource(texts), 256+merges+1, nil)
	if err != nil {
		t.Fatal(err)
	}

	// Reference: words as byte-string pieces, naive recount each step.
	counts := map[string]int{}
	for _, s := range texts {
		splitWords(s, func(w string) { counts[w]++ })
	}
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
	for _, m := range tok.merges {
		got = append(got, string(tok.TokenBytes(int(m.left)))+"\x00"+string(tok.TokenBytes(int(m.right))))
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
