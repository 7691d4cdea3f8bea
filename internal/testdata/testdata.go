// Package testdata holds the TestMain of packages whose tests share one
// small synthetic dataset, so the set-up is written once.
package testdata

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/moetrain/moetrain/data/prepare"
)

// Main prepares prepare.SyntheticDataset(seed, docs, vocab, valFraction)
// in a temporary folder, stores its path in *dir, runs the package's tests
// and removes the folder. Call it as a package's whole TestMain.
func Main(m *testing.M, dir *string, seed uint64, docs, vocab int, valFraction float64) {
	tmp, err := os.MkdirTemp("", "moetrain-test-")
	if err != nil {
		panic(err)
	}
	*dir = filepath.Join(tmp, "data")
	if err := prepare.SyntheticDataset(*dir, seed, docs, vocab, valFraction); err != nil {
		os.RemoveAll(tmp)
		panic(err)
	}
	code := m.Run()
	os.RemoveAll(tmp)
	os.Exit(code)
}
