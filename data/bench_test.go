package data

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"
)

// writeRandomDataset writes a train split of about tokens random tokens
// (documents of ~1000 tokens, vocab 8192) without a tokenizer: enough for
// the stream, which never decodes.
func writeRandomDataset(tb testing.TB, dir string, tokens int64) *Manifest {
	tb.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		tb.Fatal(err)
	}
	const vocab = 8192
	hdr := shardHeader{TokenizerHash: "random", Vocab: vocab, EOS: vocab - 1, Split: Train, Domain: "random", RecordTokens: 8192}
	w := newShardWriter(dir, hdr, 1<<24)
	r := rand.New(rand.NewPCG(1, 2))
	doc := make([]int, 0, 4096)
	var n, docs int64
	for n < tokens {
		doc = doc[:1+r.IntN(2000)]
		for i := range doc {
			doc[i] = r.IntN(vocab - 1)
		}
		if err := w.writeDoc(doc); err != nil {
			tb.Fatal(err)
		}
		n += int64(len(doc)) + 1
		docs++
	}
	shards, err := w.close()
	if err != nil {
		tb.Fatal(err)
	}
	m := &Manifest{Format: manifestFormat, Version: manifestVersion,
		Tokenizer: TokenizerInfo{File: TokenizerFile, Hash: "random", VocabSize: vocab, EOS: vocab - 1},
		TokenType: "uint16", RecordTokens: 8192, Domains: []string{"random"}, Shards: shards,
		Splits: map[string]SplitInfo{
			Train:      {Tokens: n, Documents: docs, Domains: map[string]DomainCount{"random": {n, docs}}},
			Validation: {Domains: map[string]DomainCount{}},
		}}
	if err := m.Validate(); err != nil {
		tb.Fatal(err)
	}
	if err := writeManifest(filepath.Join(dir, ManifestFile), m); err != nil {
		tb.Fatal(err)
	}
	return m
}

var benchDir string

// BenchmarkStream measures shuffled streaming of a 64M-token corpus
// (128 MB of shards): tokens delivered per second to the consumer.
func BenchmarkStream(b *testing.B) {
	if benchDir == "" {
		benchDir = filepath.Join(tempRoot, "bench")
		writeRandomDataset(b, benchDir, 64<<20)
	}
	for _, c := range []struct{ T, B int }{{512, 8}, {2048, 8}} {
		b.Run(fmt.Sprintf("T=%d,B=%d", c.T, c.B), func(b *testing.B) {
			s, err := Open(StreamConfig{Dir: benchDir, SeqLen: c.T, Batch: c.B, Seed: 1}, Cursor{})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			b.ResetTimer()
			start := time.Now()
			for i := 0; i < b.N; i++ {
				if _, err := s.Next(); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N*c.B*(c.T+1))/time.Since(start).Seconds(), "tok/s")
		})
	}
}

// BenchmarkPrepareDefault prepares the default dataset (KJV + Go source,
// vocab 8192) and reports tokens written per second, tokenizer training
// included. Skipped without the bible command.
func BenchmarkPrepareDefault(b *testing.B) {
	if _, err := exec.LookPath("bible"); err != nil {
		b.Skip("bible not installed")
	}
	kjv, err := exec.Command("bible", "Gen1:1-Rev22:21").Output()
	if err != nil {
		b.Fatal(err)
	}
	src := filepath.Join(runtime.GOROOT(), "src")
	for i := 0; i < b.N; i++ {
		out := filepath.Join(b.TempDir(), "ds")
		start := time.Now()
		m, err := Prepare(context.Background(), []Source{{"prose", "-"}, {"code", src}}, PrepareOptions{
			Out: out, VocabSize: 8192, ValFraction: 0.01, Seed: 1, DocStart: regexp.MustCompile(KJVChapter),
			Include: []string{"*.go"}, Exclude: []string{"*_test.go", "testdata"}, Stdin: strings.NewReader(string(kjv)),
		})
		if err != nil {
			b.Fatal(err)
		}
		tok := m.Splits[Train].Tokens + m.Splits[Validation].Tokens
		b.ReportMetric(float64(tok)/time.Since(start).Seconds(), "tok/s")
		b.ReportMetric(float64(tok), "tokens")
	}
}
