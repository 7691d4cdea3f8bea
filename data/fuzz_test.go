package data

import (
	"os"
	"path/filepath"
	"testing"
)

// FuzzShardReader: any bytes given to the shard reader give an error or
// in-vocab tokens, never a panic or a runaway allocation.
func FuzzShardReader(f *testing.F) {
	dir, man := fixture(f)
	for _, s := range man.Shards[:2] {
		b, err := os.ReadFile(filepath.Join(dir, s.File))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, s.Tokens)
	}
	f.Add([]byte("ARROW1\x00\x00"), int64(1))
	f.Fuzz(func(t *testing.T, b []byte, tokens int64) {
		if tokens < 1 || tokens > 1<<16 {
			tokens = 1 + tokens&0xffff
		}
		r, err := openShardReader(byteReader(b), int64(len(b)), "fuzz.arrow")
		if err != nil {
			return
		}
		defer r.close()
		if r.setTokens(tokens) != nil {
			return
		}
		dst := make([]int32, tokens)
		if r.read(0, dst) != nil {
			return
		}
		for _, v := range dst {
			if v < 0 || int(v) >= r.hdr.Vocab {
				t.Fatalf("token %d outside the vocab %d passed the reader", v, r.hdr.Vocab)
			}
		}
	})
}

// FuzzManifest: ParseManifest returns an error or a manifest that
// validates, and never panics.
func FuzzManifest(f *testing.F) {
	dir, _ := fixture(f)
	b, err := os.ReadFile(filepath.Join(dir, ManifestFile))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	f.Add([]byte(`{}`))
	f.Add([]byte(`{"format":"moetrain-dataset","version":1,"shards":[{"file":"../x.arrow"}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := ParseManifest(b)
		if err != nil {
			return
		}
		if err := m.Validate(); err != nil {
			t.Fatalf("ParseManifest accepted a manifest that does not validate: %v", err)
		}
		_ = m.ID()
		for _, s := range m.Shards {
			if filepath.Base(s.File) != s.File {
				t.Fatalf("accepted shard path %q outside the dataset", s.File)
			}
		}
	})
}
