package data

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestInspect(t *testing.T) {
	dir, man := fixture(t)
	rep, err := Inspect(dir, 200)
	if err != nil {
		t.Fatal(err)
	}
	var total int64
	for _, c := range rep.Top {
		total += c.Count
	}
	if rep.Used < 2 || rep.Used > man.Tokenizer.VocabSize || total == 0 {
		t.Fatalf("coverage %d of %d, top tokens total %d", rep.Used, man.Tokenizer.VocabSize, total)
	}
	// The sample is the start of the first train shard: a prefix of the
	// concatenated train documents of the first domain.
	if !strings.HasPrefix(rep.Sample, "Chapter ") {
		t.Fatalf("sample %q does not start like a synthetic prose document", rep.Sample)
	}
	if rep.ShortestDoc < 2 || rep.LongestDoc < rep.ShortestDoc {
		t.Fatalf("document lengths %d..%d", rep.ShortestDoc, rep.LongestDoc)
	}
	var buf bytes.Buffer
	rep.Format(&buf)
	for _, want := range []string{"vocabulary coverage", "prose", "code", "validation", man.Tokenizer.Hash} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, buf.String())
		}
	}
}

func TestInspectRefusesCorruptShard(t *testing.T) {
	dir, man := copyFixture(t)
	path := filepath.Join(dir, man.Shards[len(man.Shards)-1].File)
	b, _ := os.ReadFile(path)
	b[100] ^= 1
	os.WriteFile(path, b, 0o644)
	_, err := Inspect(dir, 10)
	wantErr(t, err, path, "SHA-256")
}
