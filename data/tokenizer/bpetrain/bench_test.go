package bpetrain

import (
	"testing"

	"github.com/moetrain/moetrain/data/tokenizer/internal/testtext"
)

// BenchmarkTrain trains an 8192-entry vocabulary (the 2B validation
// models' size, docs/DESIGN.md §4.1) on ~10 MB and reports training throughput.
func BenchmarkTrain(b *testing.B) {
	texts := testtext.Bench()
	b.SetBytes(int64(testtext.Size(texts)))
	b.ReportAllocs()
	for b.Loop() {
		tok, err := Train(testtext.Source(texts), 8192, nil)
		if err != nil {
			b.Fatal(err)
		}
		if tok.VocabSize() != 8192 {
			b.Fatalf("vocab %d", tok.VocabSize())
		}
	}
}
