package tasks

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/moetrain/moetrain/data"
	"github.com/moetrain/moetrain/data/prepare"
)

// The built-in task fixture: a small synthetic prose+code dataset, prepared
// once per test binary (a sync.Once rather than TestMain, which the rest of
// the package's tests may define).
var (
	builtinOnce    sync.Once
	builtinRoot    string
	builtinDataset string
	builtinErr     error
)

func builtinFixtureOpts(out string) prepare.Options {
	return prepare.Options{Out: out, VocabSize: 400, ValFraction: 0.25, Seed: 11, RecordTokens: 64, ShardTokens: 512}
}

func builtinFixture(t *testing.T) string {
	t.Helper()
	builtinOnce.Do(func() {
		builtinRoot, builtinErr = os.MkdirTemp("", "moetrain-tasks-test")
		if builtinErr != nil {
			return
		}
		builtinDataset = filepath.Join(builtinRoot, "ds")
		_, builtinErr = prepare.Documents(context.Background(), prepare.Synthetic(3, 80), builtinFixtureOpts(builtinDataset))
	})
	if builtinErr != nil {
		t.Fatalf("prepare fixture: %v", builtinErr)
	}
	return builtinDataset
}

// copyDataset copies the fixture so that a test may write into it.
func copyDataset(t *testing.T, src string) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "ds")
	if err := os.CopyFS(dst, os.DirFS(src)); err != nil {
		t.Fatal(err)
	}
	os.RemoveAll(filepath.Join(dst, "tasks"))
	return dst
}

type builtinFile struct {
	Header   builtinHeader
	Examples []builtinExample
}

// readBuiltinFile parses a task file strictly (independently of the
// package's own parser, which is tested on its own).
func readBuiltinFile(t *testing.T, path string) builtinFile {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var f builtinFile
	sc := bufio.NewScanner(bytes.NewReader(raw))
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for i := 0; sc.Scan(); i++ {
		dec := json.NewDecoder(bytes.NewReader(sc.Bytes()))
		dec.DisallowUnknownFields()
		var err error
		if i == 0 {
			err = dec.Decode(&f.Header)
		} else {
			var e builtinExample
			err = dec.Decode(&e)
			f.Examples = append(f.Examples, e)
		}
		if err != nil {
			t.Fatalf("%s:%d: %v", path, i+1, err)
		}
	}
	return f
}

// validationTexts decodes the fixture's validation documents.
func validationTexts(t *testing.T, dir string) []builtinDoc {
	t.Helper()
	man, err := data.LoadManifest(dir)
	if err != nil {
		t.Fatal(err)
	}
	docs, err := builtinValidationText(context.Background(), dir, man)
	if err != nil {
		t.Fatal(err)
	}
	return docs
}

func TestBuiltinValidationTextIsTheValidationDocuments(t *testing.T) {
	dir := builtinFixture(t)
	man, err := data.LoadManifest(dir)
	if err != nil {
		t.Fatal(err)
	}
	docs := validationTexts(t, dir)
	if int64(len(docs)) != man.Splits[data.Validation].Documents {
		t.Fatalf("got %d validation documents, manifest says %d", len(docs), man.Splits[data.Validation].Documents)
	}
	orig := map[string]string{}
	for _, d := range prepare.Synthetic(3, 80) {
		orig[d.Text] = d.Domain
	}
	for i, d := range docs {
		dom, ok := orig[d.Text]
		if !ok {
			t.Fatalf("validation document %d is not one of the corpus documents: %.80q", i, d.Text)
		}
		if dom != d.Domain {
			t.Errorf("validation document %d: domain %q, want %q", i, d.Domain, dom)
		}
	}
}

func TestBuiltinTasksWellFormed(t *testing.T) {
	dir := copyDataset(t, builtinFixture(t))
	got, err := BuildBuiltin(context.Background(), dir, BuiltinOptions{MaxExamples: 40})
	if err != nil {
		t.Fatal(err)
	}
	docs := validationTexts(t, dir)
	var verses []string // every validation verse body, to check the choices' origin
	for _, v := range builtinParse(docs).Verses {
		verses = append(verses, v.Body)
	}
	isVerse := map[string]bool{}
	for _, v := range verses {
		isVerse[v] = true
	}
	if len(got) != len(BuiltinNames) {
		t.Fatalf("got %d tasks, want %d", len(got), len(BuiltinNames))
	}
	for i, task := range got {
		t.Run(task.Name, func(t *testing.T) {
			if task.Name != BuiltinNames[i] {
				t.Fatalf("task %d is %q, want %q", i, task.Name, BuiltinNames[i])
			}
			if task.Examples == 0 {
				t.Fatalf("no examples: the synthetic corpus has verses and Go code")
			}
			f := readBuiltinFile(t, task.Path)
			if task.Path != filepath.Join(dir, "tasks", task.Name+".jsonl") {
				t.Errorf("path %s", task.Path)
			}
			if f.Header.Task != task.Name || f.Header.Kind != "multiple_choice" || f.Header.Fewshot != 0 || f.Header.Description != "" {
				t.Errorf("header %+v", f.Header)
			}
			if len(f.Examples) != task.Examples || len(f.Examples) > 40 {
				t.Errorf("file has %d examples, BuildBuiltin says %d (cap 40)", len(f.Examples), task.Examples)
			}
			// The package's own reader accepts the file and sees the same examples.
			parsed, err := Load(task.Path)
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			if parsed.Name != task.Name || parsed.Kind != MultipleChoice || len(parsed.Examples) != len(f.Examples) {
				t.Errorf("Load: name %q kind %q, %d examples; want %q %q %d", parsed.Name, parsed.Kind, len(parsed.Examples), task.Name, MultipleChoice, len(f.Examples))
			}
			golds := map[int]int{}
			contexts := map[string]bool{}
			for k, e := range f.Examples {
				if len(e.Choices) != builtinChoices || e.Gold < 0 || e.Gold >= len(e.Choices) {
					t.Fatalf("example %d: %d choices, gold %d", k, len(e.Choices), e.Gold)
				}
				golds[e.Gold]++
				distinct := map[string]bool{}
				for _, c := range e.Choices {
					key := c
					if task.Name == LastWord {
						key = strings.ToLower(c)
					}
					if distinct[key] {
						t.Fatalf("example %d: choice %q repeated in %q", k, c, e.Choices)
					}
					distinct[key] = true
				}
				// The context followed by the gold choice is verbatim
				// validation text: the true continuation is present.
				whole := e.Context + e.Choices[e.Gold]
				found := false
				for _, d := range docs {
					if strings.Contains(d.Text, whole) {
						found = true
						break
					}
				}
				if !found {
					t.Fatalf("example %d: context+gold %q is not in the validation split", k, whole)
				}
				// Choices share the separator the gold choice starts with.
				sep := e.Choices[e.Gold][:1]
				for _, c := range e.Choices {
					if !strings.HasPrefix(c, sep) || strings.TrimSpace(c) == "" {
						t.Errorf("example %d: choice %q does not start with %q or is empty", k, c, sep)
					}
				}
				switch task.Name {
				case NextVerse:
					for _, c := range e.Choices {
						if !isVerse[c[1:]] {
							t.Errorf("example %d: choice %q is not a validation verse", k, c)
						}
					}
				case LastWord:
					for _, c := range e.Choices {
						if w := c[1:]; strings.ContainsAny(w, " \n.,;:") {
							t.Errorf("example %d: choice %q is not one word", k, c)
						}
					}
				case CodeNextLine:
					indent := func(s string) string { return s[:len(s)-len(strings.TrimLeft(s, "\t "))] }
					for _, c := range e.Choices {
						if c[0] != '\n' || indent(c[1:]) != indent(e.Choices[e.Gold][1:]) {
							t.Errorf("example %d: choice %q is not a line indented like the gold one", k, c)
						}
					}
				}
				contexts[e.Context+"\x00"+e.Choices[e.Gold]] = true
			}
			if len(contexts) != len(f.Examples) {
				t.Errorf("%d distinct examples among %d", len(contexts), len(f.Examples))
			}
			// The gold position is random, not fixed.
			if len(f.Examples) >= 12 && len(golds) < 2 {
				t.Errorf("gold positions %v: always the same", golds)
			}
		})
	}
}

func TestBuiltinTasksDeterministic(t *testing.T) {
	src := builtinFixture(t)
	a := copyDataset(t, src)
	// b is the same corpus prepared again from scratch.
	b := filepath.Join(t.TempDir(), "ds")
	if _, err := prepare.Documents(context.Background(), prepare.Synthetic(3, 80), builtinFixtureOpts(b)); err != nil {
		t.Fatal(err)
	}
	ra, err := BuildBuiltin(context.Background(), a, BuiltinOptions{})
	if err != nil {
		t.Fatal(err)
	}
	first := map[string][]byte{}
	for _, task := range ra {
		first[task.Name], _ = os.ReadFile(task.Path)
	}
	for _, dir := range []string{a, b} { // rebuild in place, and on the re-prepared copy
		rb, err := BuildBuiltin(context.Background(), dir, BuiltinOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for _, task := range rb {
			got, err := os.ReadFile(task.Path)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) == 0 || !bytes.Equal(got, first[task.Name]) {
				t.Errorf("%s: %s differs from the first build", dir, task.Name)
			}
		}
	}
	// A smaller cap gives a prefix of the same examples: the cap only stops
	// the walk, it does not change the random stream before it.
	c := copyDataset(t, src)
	rc, err := BuildBuiltin(context.Background(), c, BuiltinOptions{MaxExamples: 3})
	if err != nil {
		t.Fatal(err)
	}
	for _, task := range rc {
		got, _ := os.ReadFile(task.Path)
		lines := strings.SplitAfter(string(first[task.Name]), "\n")
		if want := strings.Join(lines[:4], ""); string(got) != want {
			t.Errorf("%s with 3 examples is not the first 3 of the full build", task.Name)
		}
	}
}

func TestBuiltinErrors(t *testing.T) {
	if _, err := BuildBuiltin(context.Background(), filepath.Join(t.TempDir(), "missing"), BuiltinOptions{}); err == nil || !strings.Contains(err.Error(), "manifest") {
		t.Errorf("missing dataset: got %v, want an error about the manifest", err)
	}
	if _, err := BuildBuiltin(context.Background(), builtinFixture(t), BuiltinOptions{MaxExamples: -1}); err == nil {
		t.Error("negative cap: no error")
	}
	// A corrupt shard fails with the data package's error, not a panic.
	dir := copyDataset(t, builtinFixture(t))
	man, err := data.LoadManifest(dir)
	if err != nil {
		t.Fatal(err)
	}
	shard := filepath.Join(dir, man.ShardsOf(data.Validation, "")[0].File)
	raw, _ := os.ReadFile(shard)
	raw[len(raw)/2] ^= 0xff
	os.WriteFile(shard, raw, 0o644)
	if _, err := BuildBuiltin(context.Background(), dir, BuiltinOptions{}); err == nil || !strings.Contains(err.Error(), "corrupt") {
		t.Errorf("corrupt shard: got %v", err)
	}
}

func TestBuiltinParseKJVLayout(t *testing.T) {
	// The layout of `bible`'s output: a heading, a blank line, verses whose
	// long lines wrap without indentation.
	text := "Genesis 1\n\n  1 In the beginning God created the heaven and the earth.\n" +
		"  2 And the earth was without form, and void; and darkness was upon the face of\nthe deep.\n" +
		"  3 And God said, Let there be light: and there was light.\n\nGenesis 2\n\n  1 Thus the heavens were finished.\n"
	src := builtinParse([]builtinDoc{{Domain: "prose", Text: text}})
	want := []verse{
		{Num: 1, Mark: "  1", Body: "In the beginning God created the heaven and the earth."},
		{Num: 2, Mark: "  2", Body: "And the earth was without form, and void; and darkness was upon the face of\nthe deep."},
		{Num: 3, Mark: "  3", Body: "And God said, Let there be light: and there was light."},
		{Num: 1, Mark: "  1", Body: "Thus the heavens were finished."},
	}
	if len(src.Verses) != len(want) {
		t.Fatalf("got %d verses %+v, want %d", len(src.Verses), src.Verses, len(want))
	}
	for i, v := range src.Verses {
		if v.Num != want[i].Num || v.Mark != want[i].Mark || v.Body != want[i].Body {
			t.Errorf("verse %d: got %+v, want %+v", i, v, want[i])
		}
	}
	if g := src.Verses; g[0].Group != g[2].Group || g[2].Group == g[3].Group {
		t.Errorf("groups %d %d %d %d: want chapter 1 together and chapter 2 apart", g[0].Group, g[1].Group, g[2].Group, g[3].Group)
	}
	if len(src.Code) != 0 {
		t.Errorf("prose gave %d code lines", len(src.Code))
	}
}
