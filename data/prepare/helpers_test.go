package prepare

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/moetrain/moetrain/data"
	"github.com/moetrain/moetrain/data/tokenizer"
)

func fixtureOpts(out string) Options {
	return Options{Out: out, VocabSize: 400, ValFraction: 0.1, Seed: 7, RecordTokens: 64, ShardTokens: 1024}
}

// fixture prepares a small synthetic dataset in a fresh directory.
func fixture(t *testing.T) (string, *data.Manifest) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "ds")
	man, err := Documents(t.Context(), Synthetic(1, 120), fixtureOpts(dir))
	if err != nil {
		t.Fatal(err)
	}
	return dir, man
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

func openT(t testing.TB, cfg data.StreamConfig, at data.Cursor) *data.Stream {
	t.Helper()
	s, err := data.Open(cfg, at)
	if err != nil {
		t.Fatalf("Open(%+v, %+v): %v", cfg, at, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func loadTok(t testing.TB, dir string) *tokenizer.Tokenizer {
	t.Helper()
	tok, err := tokenizer.Load(filepath.Join(dir, data.TokenizerFile))
	if err != nil {
		t.Fatal(err)
	}
	return tok
}
