package analysis

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// OverSeeds groups NAME_seed-N directories by NAME and gives, per key row,
// the mean ± sample std of every other column; a "–" cell is NaN and
// spreads to its mean; other directories are ignored.
func TestOverSeedsMeansPerNameAndKey(t *testing.T) {
	dir := t.TempDir()
	write := func(run, body string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Join(dir, run), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, run, "analysis-churn.csv"), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	head := "training tokens,layer,slots moved since previous checkpoint,held-out loss\n"
	write("switch_seed-1", head+"100,0,–,3\n200,0,0.5,2\n")
	write("switch_seed-2", head+"100,0,–,5\n200,0,0.7,4\n")
	write("hash_seed-1", head+"100,0,–,1\n200,0,0,1\n")
	write("notes", head+"100,0,9,9\n")
	got, err := OverSeeds(dir, "churn")
	if err != nil {
		t.Fatal(err)
	}
	want := [][]string{
		{"hash", "100", "0", "1", "–", "1.0000 ± –"},
		{"hash", "200", "0", "1", "0.0000 ± –", "1.0000 ± –"},
		{"switch", "100", "0", "2", "–", "4.0000 ± 1.4142"},
		{"switch", "200", "0", "2", "0.6000 ± 0.1414", "3.0000 ± 1.4142"},
	}
	for i, w := range want {
		if i >= len(got.Rows) || strings.Join(got.Rows[i], "|") != strings.Join(w, "|") {
			t.Errorf("row %d = %v, want %v", i, got.Rows, w)
		}
	}
	if len(got.Rows) != len(want) {
		t.Errorf("%d rows, want %d", len(got.Rows), len(want))
	}
	if _, err := OverSeeds(dir, "redundancy"); err == nil || !strings.Contains(err.Error(), "cannot be summarised") {
		t.Errorf("redundancy: error %v", err)
	}
	if _, err := OverSeeds(t.TempDir(), "tokens"); err == nil || !strings.Contains(err.Error(), "no ") {
		t.Errorf("empty directory: error %v", err)
	}
}
