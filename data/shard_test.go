package data

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// TestShardWriterBoundaries: documents ending exactly at record and shard
// boundaries are counted in the shard holding their EOS, and the tokens
// read back equal the tokens written, for both token widths.
func TestShardWriterBoundaries(t *testing.T) {
	for _, wide := range []bool{false, true} {
		dir := t.TempDir()
		vocab := 300
		if wide {
			vocab = 70000
		}
		hdr := ShardHeader{TokenizerHash: "h", Vocab: vocab, EOS: 0, Split: Train, Domain: "d", RecordTokens: 4, Uint32: wide}
		w := NewShardWriter(dir, hdr, 8)
		var want []int32
		for d := 0; d < 7; d++ {
			doc := []int{d + 1, vocab - 1, d + 2} // 3 tokens + EOS = one record
			if d == 5 {
				doc = doc[:1]
			}
			if err := w.WriteDoc(doc); err != nil {
				t.Fatal(err)
			}
			for _, id := range doc {
				want = append(want, int32(id))
			}
			want = append(want, 0)
		}
		shards, err := w.Close()
		if err != nil {
			t.Fatal(err)
		}
		var docs int64
		var got []int32
		for _, s := range shards {
			docs += s.Documents
			b, _ := os.ReadFile(filepath.Join(dir, s.File))
			r, err := openShardReader(bytes.NewReader(b), int64(len(b)), s.File)
			if err != nil {
				t.Fatal(err)
			}
			if r.hdr != hdr || r.setTokens(s.Tokens) != nil {
				t.Fatalf("%s: header %+v, want %+v", s.File, r.hdr, hdr)
			}
			buf := make([]int32, s.Tokens)
			if err := r.read(0, buf); err != nil {
				t.Fatal(err)
			}
			got = append(got, buf...)
			var eos int64
			for _, id := range buf {
				if id == 0 {
					eos++
				}
			}
			if eos != s.Documents {
				t.Errorf("%s: %d EOS tokens but Documents = %d", s.File, eos, s.Documents)
			}
		}
		if docs != 7 || len(shards) != 4 {
			t.Fatalf("wide=%v: %d documents in %d shards, want 7 in 4", wide, docs, len(shards))
		}
		if !slices.Equal(got, want) {
			t.Fatalf("wide=%v: read back %v, want %v", wide, got, want)
		}
	}
}
