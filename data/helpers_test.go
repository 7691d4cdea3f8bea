package data

import (
	"bytes"
	"path/filepath"
	"sync"
	"testing"

	"github.com/moetrain/moetrain/data/tokenizer"
)

// fixture is a small prepared synthetic dataset shared by the tests; tests
// that modify files copy it first.
var (
	fixtureOnce sync.Once
	fixtureDir  string
	fixtureMan  *Manifest
	fixtureErr  error
)

// fixtureDocs synthetic documents (data/prepare's Synthetic, seed 1) make
// the fixture.
const fixtureDocs = 120

// textDoc is one document of the fixture's input.
type textDoc struct{ Domain, Text string }

// prepareFixture prepares the fixture into a directory and syntheticDocs
// returns its input documents. The preparer imports this package, so only
// a test file outside it can call the preparer: fixture_test.go (package
// data_test) sets both through SetFixture.
var (
	prepareFixture func(dir string) (*Manifest, error)
	syntheticDocs  func() []textDoc
)

func fixture(t testing.TB) (string, *Manifest) {
	t.Helper()
	fixtureOnce.Do(func() {
		dir, err := osMkdirTemp()
		if err != nil {
			fixtureErr = err
			return
		}
		fixtureDir = filepath.Join(dir, "ds")
		fixtureMan, fixtureErr = prepareFixture(fixtureDir)
	})
	if fixtureErr != nil {
		t.Fatalf("prepare fixture: %v", fixtureErr)
	}
	return fixtureDir, fixtureMan
}

func loadTok(t testing.TB, dir string) *tokenizer.Tokenizer {
	t.Helper()
	tok, err := tokenizer.Load(filepath.Join(dir, TokenizerFile))
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// collect reads n batches (fewer at EOF).
func collect(t testing.TB, s *Stream, n int) []Batch {
	t.Helper()
	var out []Batch
	for i := 0; i < n; i++ {
		b, err := s.Next()
		if err != nil {
			break
		}
		out = append(out, b)
	}
	return out
}

func openT(t testing.TB, cfg StreamConfig, at Cursor) *Stream {
	t.Helper()
	s, err := Open(cfg, at)
	if err != nil {
		t.Fatalf("Open(%+v, %+v): %v", cfg, at, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func byteReader(b []byte) *bytes.Reader { return bytes.NewReader(b) }
