package data

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
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
	hdr := ShardHeader{TokenizerHash: "random", Vocab: vocab, EOS: vocab - 1, Split: Train, Domain: "random", RecordTokens: 8192}
	w := NewShardWriter(dir, hdr, 1<<24)
	r := rand.New(rand.NewPCG(1, 2))
	doc := make([]int, 0, 4096)
	var n, docs int64
	for n < tokens {
		doc = doc[:1+r.IntN(2000)]
		for i := range doc {
			doc[i] = r.IntN(vocab - 1)
		}
		if err := w.WriteDoc(doc); err != nil {
			tb.Fatal(err)
		}
		n += int64(len(doc)) + 1
		docs++
	}
	shards, err := w.Close()
	if err != nil {
		tb.Fatal(err)
	}
	m := &Manifest{Format: ManifestFormat, Version: ManifestVersion,
		Tokenizer: TokenizerInfo{File: TokenizerFile, Hash: "random", VocabSize: vocab, EOS: vocab - 1},
		TokenType: "uint16", RecordTokens: 8192, Domains: []string{"random"}, Shards: shards,
		Splits: map[string]SplitInfo{
			Train:      {Tokens: n, Documents: docs, Domains: map[string]DomainCount{"random": {n, docs}}},
			Validation: {Domains: map[string]DomainCount{}},
		}}
	if err := m.Validate(); err != nil {
		tb.Fatal(err)
	}
	if err := m.Write(filepath.Join(dir, ManifestFile)); err != nil {
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
