package tokenizer_test

import (
	"sync"
	"testing"

	"github.com/moetrain/moetrain/data/tokenizer"
	"github.com/moetrain/moetrain/data/tokenizer/bpetrain"
	"github.com/moetrain/moetrain/data/tokenizer/internal/testtext"
)

var (
	benchTokOnce sync.Once
	benchTok     *tokenizer.Tokenizer
)

// BenchmarkEncode encodes the 10 MB corpus with a tokenizer trained on it
// (one goroutine) and reports bytes/s and tokens per byte.
func BenchmarkEncode(b *testing.B) {
	texts := testtext.Bench()
	benchTokOnce.Do(func() {
		var err error
		benchTok, err = bpetrain.Train(testtext.Source(texts), 8192, nil)
		if err != nil {
			b.Fatal(err)
		}
	})
	n := testtext.Size(texts)
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
