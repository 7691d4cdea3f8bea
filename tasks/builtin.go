package tasks

// Built-in tasks: benchmark-like multiple-choice tasks made from a prepared
// dataset's validation split, so that every run has task curves without
// downloads. They are written next to the shards as DATASET/tasks/<name>.jsonl
// by `moetrain prepare` (and rebuilt by `moetrain tasks build`).
//
//   - next_verse (HellaSwag-like): the context is one or two verses of a
//     chapter followed by the next verse's number; the choices are the next
//     verse's text and three verses from other chapters of similar length.
//   - last_word (LAMBADA-like): a verse (after the previous verse, when
//     there is one) without its last word; the choices are the last word and
//     the last words of three other verses. It is multiple choice rather
//     than greedy generation because small models stay near zero exact
//     match for a long time, which flattens the curve; distractors are
//     drawn from verse endings weighted by how often they occur, so a
//     unigram prior over final words cannot tell the answer apart.
//   - code_next_line: up to twelve lines of a Go file; the choices are the
//     true next line and three lines of similar length from elsewhere (other
//     files, or at least twelve lines away in the same file), re-indented
//     like the true line so that indentation gives nothing away.
//
// Every choice starts with the whitespace that separates it from the
// context (" " or "\n"), so the context ends on a natural token boundary
// and the gold choice appended to the context is verbatim validation text.
//
// The files are a function of the dataset alone: documents are visited in
// stream order and every random choice comes from a PCG seeded with the
// manifest's seed and the task's name.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"unicode"

	"github.com/moetrain/moetrain/data"
	"github.com/moetrain/moetrain/internal/atomicfile"
)

// Built-in task names, in build order.
const (
	NextVerse    = "next_verse"
	LastWord     = "last_word"
	CodeNextLine = "code_next_line"
)

// BuiltinNames lists the built-in tasks in build order.
var BuiltinNames = []string{NextVerse, LastWord, CodeNextLine}

// DefaultBuiltinExamples caps each built-in task (evaluation stays fast).
const DefaultBuiltinExamples = 200

// builtinChoices is the number of choices of every built-in task.
const builtinChoices = 4

// BuiltinDir is the directory of a dataset's built-in task files.
func BuiltinDir(dataset string) string { return filepath.Join(dataset, "tasks") }

// BuiltinOptions configure BuildBuiltin; the zero value means defaults.
type BuiltinOptions struct {
	// MaxExamples caps the examples of each task (0 = DefaultBuiltinExamples).
	MaxExamples int
}

// BuiltinTask describes one built-in task BuildBuiltin considered.
type BuiltinTask struct {
	Name     string
	Kind     string
	Examples int    // 0: the validation split has no material for it
	Path     string // the file written; empty when Examples is 0
}

// BuildBuiltin (re)writes the built-in task files of the dataset in dir from
// its validation split. A task without material (e.g. next_verse on a
// code-only dataset) gets no file, and a stale file of that name is
// removed. The same dataset always gives byte-identical files.
func BuildBuiltin(ctx context.Context, dir string, opt BuiltinOptions) ([]BuiltinTask, error) {
	if opt.MaxExamples == 0 {
		opt.MaxExamples = DefaultBuiltinExamples
	}
	if opt.MaxExamples < 0 {
		return nil, fmt.Errorf("build tasks: max examples %d is negative", opt.MaxExamples)
	}
	man, err := data.LoadManifest(dir)
	if err != nil {
		return nil, fmt.Errorf("build tasks: %w", err)
	}
	docs, err := builtinValidationText(ctx, dir, man)
	if err != nil {
		return nil, fmt.Errorf("build tasks: %w", err)
	}
	src := builtinParse(docs)
	out := BuiltinDir(dir)
	if err := os.MkdirAll(out, 0o755); err != nil {
		return nil, fmt.Errorf("build tasks: %w", err)
	}
	var res []BuiltinTask
	for _, name := range BuiltinNames {
		rng := rand.New(rand.NewPCG(man.Seed, builtinKey(name)))
		var exs []builtinExample
		switch name {
		case NextVerse:
			exs = builtinNextVerse(src, rng, opt.MaxExamples)
		case LastWord:
			exs = builtinLastWord(src, rng, opt.MaxExamples)
		case CodeNextLine:
			exs = builtinCodeNextLine(src, rng, opt.MaxExamples)
		}
		t := BuiltinTask{Name: name, Kind: "multiple_choice", Examples: len(exs)}
		path := filepath.Join(out, name+".jsonl")
		if len(exs) == 0 {
			if err := os.Remove(path); err != nil && !os.IsNotExist(err) {
				return nil, fmt.Errorf("build tasks: remove stale %s: %w", path, err)
			}
			res = append(res, t)
			continue
		}
		// No description: the scorer would prepend it to every context,
		// and the contexts must stay verbatim validation text.
		hdr := builtinHeader{Task: name, Kind: t.Kind, Fewshot: 0, Separator: "\n\n"}
		if err := builtinWrite(path, hdr, exs); err != nil {
			return nil, fmt.Errorf("build tasks: %w", err)
		}
		t.Path = path
		res = append(res, t)
	}
	return res, nil
}

// builtinKey separates the random streams of the tasks.
func builtinKey(name string) uint64 {
	h := fnv.New64a()
	h.Write([]byte("moetrain/tasks/" + name))
	return h.Sum64()
}

// builtinDoc is one decoded validation document.
type builtinDoc struct {
	Domain, Text string
}

// builtinValidationText decodes every validation document with the
// dataset's tokenizer, in stream order.
func builtinValidationText(ctx context.Context, dir string, man *data.Manifest) ([]builtinDoc, error) {
	tok, err := data.LoadTokenizer(dir, man)
	if err != nil {
		return nil, err
	}
	var docs []builtinDoc
	var ids []int
	err = data.Documents(ctx, dir, data.Validation, func(domain string, tokens []int32) error {
		ids = ids[:0]
		for _, t := range tokens {
			ids = append(ids, int(t))
		}
		docs = append(docs, builtinDoc{Domain: domain, Text: tok.Decode(ids)})
		return nil
	})
	return docs, err
}

// verse is one verse: the lines "  N body" (and its wrapped continuation
// lines) of a chapter. Group numbers chapters across the split.
type verse struct {
	Group int
	Num   int
	Mark  string // "  N", the verse's marker as written
	Body  string // the text after "  N ", wrapped lines joined with "\n" as written
}

// Raw is the verse exactly as the document has it.
func (v verse) Raw() string { return v.Mark + " " + v.Body }

// codeLine is one line of a Go file; Lines is the whole file.
type codeLine struct {
	File  int
	Index int
	Lines []string
}

type builtinSource struct {
	Verses []verse
	Code   []codeLine // candidate target lines
	Files  [][]string
}

var (
	verseRE   = regexp.MustCompile(`^( {1,4}\d{1,4}) (\S.*)$`)
	goPkgRE   = regexp.MustCompile(`(?m)^package [A-Za-z_][A-Za-z0-9_]*\s*$`)
	hasLetter = regexp.MustCompile(`[A-Za-z]`)
)

// builtinParse finds the verses of prose documents and the lines of Go
// documents. A chapter (verse group) is a run of verse lines with no blank
// line or heading in between; a line that follows a verse and is not a verse
// line itself is the verse's wrapped continuation.
func builtinParse(docs []builtinDoc) *builtinSource {
	src := &builtinSource{}
	group := 0
	for _, d := range docs {
		lines := strings.Split(d.Text, "\n")
		if goPkgRE.MatchString(d.Text) {
			file := len(src.Files)
			src.Files = append(src.Files, lines)
			for i, l := range lines {
				if i >= 2 && builtinCodeCandidate(l) {
					src.Code = append(src.Code, codeLine{File: file, Index: i, Lines: lines})
				}
			}
			continue
		}
		open := false // a verse is open: a plain line continues it
		group++
		for _, l := range lines {
			if m := verseRE.FindStringSubmatch(l); m != nil {
				var n int
				fmt.Sscan(strings.TrimSpace(m[1]), &n)
				src.Verses = append(src.Verses, verse{Group: group, Num: n, Mark: m[1], Body: m[2]})
				open = true
				continue
			}
			if strings.TrimSpace(l) == "" || !open {
				// A blank line or a heading ends the chapter (groups
				// need only differ, so empty ones do no harm).
				group++
				open = false
				continue
			}
			v := &src.Verses[len(src.Verses)-1]
			v.Body += "\n" + l
		}
	}
	return src
}

// builtinCodeCandidate reports whether a line is worth predicting: some
// letters and at least 8 bytes of content.
func builtinCodeCandidate(l string) bool {
	t := strings.TrimSpace(l)
	return len(t) >= 8 && hasLetter.MatchString(t)
}

// builtinExample is one multiple-choice example.
type builtinExample struct {
	Context string   `json:"context"`
	Choices []string `json:"choices"`
	Gold    int      `json:"gold"`
}

type builtinHeader struct {
	Task        string `json:"task"`
	Kind        string `json:"kind"`
	Fewshot     int    `json:"fewshot"`
	Separator   string `json:"separator"`
	Description string `json:"description,omitempty"`
}

// builtinAssemble places the truth among the distractors at a random index.
func builtinAssemble(rng *rand.Rand, context, truth string, distractors []string) builtinExample {
	gold := rng.IntN(len(distractors) + 1)
	choices := make([]string, 0, len(distractors)+1)
	choices = append(choices, distractors[:gold]...)
	choices = append(choices, truth)
	choices = append(choices, distractors[gold:]...)
	return builtinExample{Context: context, Choices: choices, Gold: gold}
}

// byLength indexes items by a length so that near-length items can be drawn.
type byLength struct {
	idx  []int // item indices sorted by (length, index)
	lens []int // lens[k] = length of item idx[k]
}

func newByLength(n int, length func(i int) int) byLength {
	b := byLength{idx: make([]int, n), lens: make([]int, n)}
	for i := range b.idx {
		b.idx[i] = i
	}
	sort.SliceStable(b.idx, func(x, y int) bool { return length(b.idx[x]) < length(b.idx[y]) })
	for k, i := range b.idx {
		b.lens[k] = length(i)
	}
	return b
}

// pick returns up to want items whose length is near l, drawn at random
// from windows of growing width around l, each accepted by ok (which sees
// the items chosen so far through its own closure).
func (b byLength) pick(rng *rand.Rand, l, want int, ok func(i int) bool) []int {
	center := sort.SearchInts(b.lens, l)
	var got []int
	tried := map[int]bool{}
	for w := 8; len(got) < want; w *= 2 {
		lo, hi := max(0, center-w), min(len(b.idx), center+w)
		var window []int
		for k := lo; k < hi; k++ {
			if !tried[b.idx[k]] {
				window = append(window, b.idx[k])
			}
		}
		rng.Shuffle(len(window), func(x, y int) { window[x], window[y] = window[y], window[x] })
		for _, i := range window {
			tried[i] = true
			if len(got) < want && ok(i) {
				got = append(got, i)
			}
		}
		if lo == 0 && hi == len(b.idx) {
			break
		}
	}
	return got
}

// builtinNextVerse: context = the previous one or two verses and the
// verse's marker; truth = " " + the verse's body.
func builtinNextVerse(src *builtinSource, rng *rand.Rand, limit int) []builtinExample {
	vs := src.Verses
	var cand []int
	for i := 1; i < len(vs); i++ {
		if vs[i].Group == vs[i-1].Group && vs[i].Num == vs[i-1].Num+1 && len(strings.Fields(vs[i].Body)) >= 3 {
			cand = append(cand, i)
		}
	}
	rng.Shuffle(len(cand), func(x, y int) { cand[x], cand[y] = cand[y], cand[x] })
	pool := newByLength(len(vs), func(i int) int { return len(vs[i].Body) })
	var out []builtinExample
	for _, i := range cand {
		if len(out) == limit {
			break
		}
		v := vs[i]
		seen := map[string]bool{v.Body: true}
		picked := pool.pick(rng, len(v.Body), builtinChoices-1, func(j int) bool {
			if vs[j].Group == v.Group || seen[vs[j].Body] || len(strings.Fields(vs[j].Body)) < 3 {
				return false
			}
			seen[vs[j].Body] = true
			return true
		})
		if len(picked) < builtinChoices-1 {
			continue
		}
		ctx := vs[i-1].Raw() + "\n"
		if i >= 2 && vs[i-2].Group == v.Group && vs[i-2].Num == v.Num-2 {
			ctx = vs[i-2].Raw() + "\n" + ctx
		}
		ctx += v.Mark
		var ds []string
		for _, j := range picked {
			ds = append(ds, " "+vs[j].Body)
		}
		out = append(out, builtinAssemble(rng, ctx, " "+v.Body, ds))
	}
	return out
}

// lastWordRE splits a verse body into (everything before the last word,
// the separator, the last word, trailing punctuation).
var lastWordRE = regexp.MustCompile(`(?s)^(.*\S)(\s)([A-Za-z]{3,})([^A-Za-z0-9\s]*)$`)

// builtinLastWord: context = the previous verse (when it is in the same
// chapter) and the verse up to its last word; truth = separator + word.
func builtinLastWord(src *builtinSource, rng *rand.Rand, limit int) []builtinExample {
	vs := src.Verses
	type ending struct {
		verse      int
		head, sep  string
		word, rest string
	}
	var ends []ending
	for i, v := range vs {
		m := lastWordRE.FindStringSubmatch(v.Body)
		if m == nil || len(strings.Fields(m[1])) < 3 {
			continue
		}
		ends = append(ends, ending{verse: i, head: m[1], sep: m[2], word: m[3], rest: m[4]})
	}
	cand := make([]int, len(ends))
	for i := range cand {
		cand[i] = i
	}
	rng.Shuffle(len(cand), func(x, y int) { cand[x], cand[y] = cand[y], cand[x] })
	var out []builtinExample
	for _, c := range cand {
		if len(out) == limit {
			break
		}
		e := ends[c]
		v := vs[e.verse]
		// Distractors: the endings of random other verses, so each word's
		// chance is its frequency as a verse ending. Words differing only
		// in case count as the same word.
		seen := map[string]bool{strings.ToLower(e.word): true}
		var ds []string
		for _, k := range rng.Perm(len(ends)) {
			w := ends[k].word
			if vs[ends[k].verse].Group == v.Group || seen[strings.ToLower(w)] {
				continue
			}
			seen[strings.ToLower(w)] = true
			ds = append(ds, e.sep+w)
			if len(ds) == builtinChoices-1 {
				break
			}
		}
		if len(ds) < builtinChoices-1 {
			continue
		}
		ctx := ""
		if e.verse > 0 && vs[e.verse-1].Group == v.Group && vs[e.verse-1].Num == v.Num-1 {
			ctx = vs[e.verse-1].Raw() + "\n"
		}
		ctx += v.Mark + " " + e.head
		out = append(out, builtinAssemble(rng, ctx, e.sep+e.word, ds))
	}
	return out
}

// builtinCodeContext is how many lines before the target the context holds.
const builtinCodeContext = 12

// builtinCodeNextLine: context = up to 12 previous lines of the file;
// truth = "\n" + the line.
func builtinCodeNextLine(src *builtinSource, rng *rand.Rand, limit int) []builtinExample {
	code := src.Code
	trim := func(i int) string { return strings.TrimSpace(code[i].Lines[code[i].Index]) }
	pool := newByLength(len(code), func(i int) int { return len(trim(i)) })
	cand := make([]int, len(code))
	for i := range cand {
		cand[i] = i
	}
	rng.Shuffle(len(cand), func(x, y int) { cand[x], cand[y] = cand[y], cand[x] })
	var out []builtinExample
	for _, i := range cand {
		if len(out) == limit {
			break
		}
		c := code[i]
		line := c.Lines[c.Index]
		body := strings.TrimSpace(line)
		indent := line[:len(line)-len(strings.TrimLeftFunc(line, unicode.IsSpace))]
		ctxLines := c.Lines[max(0, c.Index-builtinCodeContext):c.Index]
		ctx := strings.Join(ctxLines, "\n")
		if !hasLetter.MatchString(ctx) {
			continue
		}
		seen := map[string]bool{body: true}
		picked := pool.pick(rng, len(body), builtinChoices-1, func(j int) bool {
			t := trim(j)
			near := code[j].File == c.File && code[j].Index > c.Index-builtinCodeContext && code[j].Index < c.Index+builtinCodeContext
			if near || seen[t] {
				return false
			}
			seen[t] = true
			return true
		})
		if len(picked) < builtinChoices-1 {
			continue
		}
		var ds []string
		for _, j := range picked {
			ds = append(ds, "\n"+indent+trim(j))
		}
		out = append(out, builtinAssemble(rng, ctx, "\n"+line, ds))
	}
	return out
}

// builtinWrite writes a task file atomically: the header line, then one
// line per example.
func builtinWrite(path string, hdr builtinHeader, exs []builtinExample) error {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(hdr); err != nil {
		return fmt.Errorf("encode %s: %w", path, err)
	}
	for _, e := range exs {
		if err := enc.Encode(e); err != nil {
			return fmt.Errorf("encode %s: %w", path, err)
		}
	}
	return atomicfile.WriteFile(path, buf.Bytes(), 0o644)
}
