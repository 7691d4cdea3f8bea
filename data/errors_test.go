package data

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// copyFixture copies the shared dataset so a test can damage it.
func copyFixture(t *testing.T) (string, *Manifest) {
	t.Helper()
	src, man := fixture(t)
	dst := filepath.Join(t.TempDir(), "ds")
	if err := os.CopyFS(dst, os.DirFS(src)); err != nil {
		t.Fatal(err)
	}
	return dst, man
}

func wantErr(t *testing.T, err error, parts ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("got no error, want one mentioning %q", parts)
	}
	for _, p := range parts {
		if !strings.Contains(err.Error(), p) {
			t.Fatalf("error %q does not mention %q", err, p)
		}
	}
}

func TestCorruptShardsRefused(t *testing.T) {
	cfg := StreamConfig{SeqLen: 8, Batch: 2}
	t.Run("truncated", func(t *testing.T) {
		dir, man := copyFixture(t)
		path := filepath.Join(dir, man.Shards[0].File)
		if err := os.Truncate(path, man.Shards[0].Bytes/2); err != nil {
			t.Fatal(err)
		}
		cfg.Dir, cfg.Split = dir, man.Shards[0].Split
		_, err := Open(cfg, Cursor{})
		wantErr(t, err, path, "truncated", "--force")
		if !errors.Is(err, ErrCorruptShard) {
			t.Fatalf("error %v does not wrap ErrCorruptShard", err)
		}
	})
	t.Run("flipped byte", func(t *testing.T) {
		dir, man := copyFixture(t)
		path := filepath.Join(dir, man.Shards[0].File)
		b, _ := os.ReadFile(path)
		b[len(b)/2] ^= 0x10
		os.WriteFile(path, b, 0o644)
		cfg.Dir, cfg.Split = dir, man.Shards[0].Split
		_, err := Open(cfg, Cursor{})
		wantErr(t, err, path, "SHA-256", "--force")
		if !errors.Is(err, ErrCorruptShard) {
			t.Fatalf("error %v does not wrap ErrCorruptShard", err)
		}
	})
	t.Run("missing", func(t *testing.T) {
		dir, man := copyFixture(t)
		path := filepath.Join(dir, man.Shards[0].File)
		os.Remove(path)
		cfg.Dir, cfg.Split = dir, man.Shards[0].Split
		_, err := Open(cfg, Cursor{})
		wantErr(t, err, path, "--force")
	})
}

// TestParserNeverPanics flips bytes all over a shard (bypassing the
// checksum, as if the manifest had been rewritten) and reads it: every
// outcome must be an error or in-vocab tokens, never a panic.
func TestParserNeverPanics(t *testing.T) {
	dir, man := fixture(t)
	info := man.Shards[0]
	orig, err := os.ReadFile(filepath.Join(dir, info.File))
	if err != nil {
		t.Fatal(err)
	}
	failed := 0
	for pos := 0; pos < len(orig); pos += 5 {
		b := bytes.Clone(orig)
		b[pos] ^= 0xff
		if readWholeShard(b, info.Tokens, man.Tokenizer.VocabSize) != nil {
			failed++
		}
	}
	if failed == 0 {
		t.Fatal("no flipped byte was detected by the parser")
	}
	if err := readWholeShard(orig, info.Tokens, man.Tokenizer.VocabSize); err != nil {
		t.Fatalf("the intact shard: %v", err)
	}
}

// readWholeShard parses b as a shard and reads every token.
func readWholeShard(b []byte, tokens int64, vocab int) error {
	r, err := openShardReader(bytes.NewReader(b), int64(len(b)), "fuzz.arrow")
	if err != nil {
		return err
	}
	defer r.close()
	if r.hdr.Vocab != vocab {
		return errors.New("vocab changed")
	}
	if err := r.setTokens(tokens); err != nil {
		return err
	}
	dst := make([]int32, tokens)
	if err := r.read(0, dst); err != nil {
		return err
	}
	for _, v := range dst {
		if v < 0 || int(v) >= vocab {
			panic("token outside the vocab passed the reader")
		}
	}
	return nil
}

func TestStreamErrors(t *testing.T) {
	dir, man := fixture(t)
	_, err := Open(StreamConfig{Dir: dir, SeqLen: 8, Batch: 2, Vocab: man.Tokenizer.VocabSize + 1}, Cursor{})
	wantErr(t, err, "vocab", dir)
	_, err = Open(StreamConfig{Dir: dir, SeqLen: 1 << 20, Batch: 2}, Cursor{})
	wantErr(t, err, "fewer than seq_len+1", "lower seq_len")
	_, err = Open(StreamConfig{Dir: dir, SeqLen: 8, Batch: 2}, Cursor{Position: 1 << 40})
	wantErr(t, err, "cursor")
	_, err = Open(StreamConfig{Dir: t.TempDir(), SeqLen: 8, Batch: 2}, Cursor{})
	wantErr(t, err, ManifestFile, "moetrain prepare")
	_, err = Open(StreamConfig{Dir: dir, Split: "test", SeqLen: 8, Batch: 2}, Cursor{})
	wantErr(t, err, "split")
	if err := man.CheckVocab(man.Tokenizer.VocabSize); err != nil {
		t.Fatalf("CheckVocab of the dataset's own vocab: %v", err)
	}
}

func TestManifestErrors(t *testing.T) {
	dir, _ := copyFixture(t)
	path := filepath.Join(dir, ManifestFile)
	orig, _ := os.ReadFile(path)
	for name, edit := range map[string]func(string) string{
		"bad json":      func(s string) string { return s[:len(s)/2] },
		"unknown field": func(s string) string { return strings.Replace(s, `"format"`, `"colour": 1, "format"`, 1) },
		"wrong total": func(s string) string {
			return regexp.MustCompile(`"tokens": (\d)`).ReplaceAllString(s, `"tokens": 9$1`)
		},
		"bad file name": func(s string) string { return strings.Replace(s, `"file": "train-`, `"file": "../train-`, 1) },
	} {
		os.WriteFile(path, []byte(edit(string(orig))), 0o644)
		_, err := LoadManifest(dir)
		if err == nil {
			t.Errorf("%s: LoadManifest succeeded", name)
			continue
		}
		wantErr(t, err, path)
	}
}
