package prepare

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/moetrain/moetrain/data"
)

// TestPrepareDeterministic: the output does not depend on the number of
// encoding goroutines, and the tokenizer is trained the same way each time.
func TestPrepareDeterministic(t *testing.T) {
	docs := Synthetic(3, 60)
	var mans []*data.Manifest
	for _, w := range []int{1, 3} {
		o := fixtureOpts(filepath.Join(t.TempDir(), "ds"))
		o.Workers = w
		m, err := Documents(context.Background(), docs, o)
		if err != nil {
			t.Fatal(err)
		}
		mans = append(mans, m)
	}
	if !reflect.DeepEqual(mans[0], mans[1]) {
		t.Fatalf("1 and 3 workers wrote different datasets:\n%+v\n%+v", mans[0], mans[1])
	}
	// Counts add up to the documents given, split by val_fraction.
	m := mans[0]
	tr, va := m.Splits[data.Train], m.Splits[data.Validation]
	if tr.Documents+va.Documents != 60 || va.Domains["prose"].Documents != 3 || va.Domains["code"].Documents != 3 {
		t.Fatalf("train %d + validation %d documents (prose %d, code %d), want 60 with 3+3 in validation", tr.Documents, va.Documents, va.Domains["prose"].Documents, va.Domains["code"].Documents)
	}
}

func TestPrepareFilesAndDirs(t *testing.T) {
	root := t.TempDir()
	text := "Book 1\n\n  1 In the beginning.\n\nBook 2\n\n  1 Then.\n  2 After.\n"
	os.WriteFile(filepath.Join(root, "book.txt"), []byte(text), 0o644)
	src := filepath.Join(root, "src")
	os.MkdirAll(filepath.Join(src, "a", "testdata"), 0o755)
	os.WriteFile(filepath.Join(src, "a", "x.go"), []byte("package a\n\nfunc X() {}\n"), 0o644)
	os.WriteFile(filepath.Join(src, "a", "x_test.go"), []byte("package a\n\nfunc TestX() {}\n"), 0o644)
	os.WriteFile(filepath.Join(src, "a", "testdata", "y.go"), []byte("package broken\n"), 0o644)
	os.WriteFile(filepath.Join(src, "a", "bin.go"), []byte("package a\x00\x01"), 0o644)
	os.WriteFile(filepath.Join(src, "b.go"), []byte("package b\n"), 0o644)
	os.WriteFile(filepath.Join(src, "README"), []byte("not go\n"), 0o644)
	o := Options{Out: filepath.Join(root, "ds"), VocabSize: 300, DocStart: regexp.MustCompile(`^Book \d+$`),
		Include: []string{"*.go"}, Exclude: []string{"*_test.go", "testdata"}, Stdin: strings.NewReader("from stdin\n")}
	m, err := Run(context.Background(), []Source{{"prose", filepath.Join(root, "book.txt")}, {"code", src}, {"misc", "-"}}, o)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]int64{"prose": 2, "code": 2, "misc": 1}
	for d, n := range want {
		if got := m.Splits[data.Train].Domains[d].Documents; got != n {
			t.Errorf("domain %s: %d documents, want %d", d, got, n)
		}
	}
	if !reflect.DeepEqual(m.Domains, []string{"prose", "code", "misc"}) {
		t.Errorf("domains %v, want source order", m.Domains)
	}
}

func TestSplitDocs(t *testing.T) {
	text := "\nGenesis 1\n\n  1 In the beginning\nof it.\n\n1 Kings 2\n  1 Now\n"
	var got []string
	splitDocs("kjv", text, regexp.MustCompile(KJVChapter), func(_, d string) error { got = append(got, d); return nil })
	want := []string{"\n", "Genesis 1\n\n  1 In the beginning\nof it.\n\n", "1 Kings 2\n  1 Now\n"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %q, want %q", got, want)
	}
	if strings.Join(got, "") != text {
		t.Fatal("documents do not concatenate back to the text")
	}
}

func TestParseSource(t *testing.T) {
	for _, c := range []struct {
		arg  string
		want Source
		err  bool
	}{
		{"prose=kjv.txt", Source{"prose", "kjv.txt"}, false},
		{"code=/usr/local/go/src", Source{"code", "/usr/local/go/src"}, false},
		{"kjv.txt", Source{DefaultDomain, "kjv.txt"}, false},
		{"-", Source{DefaultDomain, "-"}, false},
		{"./a=b.txt", Source{DefaultDomain, "./a=b.txt"}, false},
		{"Prose=x", Source{}, true},
		{"prose=", Source{}, true},
		{"", Source{}, true},
	} {
		got, err := ParseSource(c.arg)
		if (err != nil) != c.err || (!c.err && got != c.want) {
			t.Errorf("ParseSource(%q) = %+v, %v; want %+v, error %v", c.arg, got, err, c.want, c.err)
		}
	}
}

// TestKJV prepares the real King James Bible when the bible command exists.
func TestKJV(t *testing.T) {
	if _, err := exec.LookPath("bible"); err != nil {
		t.Skip("bible not installed (apt-get install bible-kjv)")
	}
	if testing.Short() {
		t.Skip("-short")
	}
	kjv, err := exec.Command("bible", "Gen1:1-Rev22:21").Output()
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "kjv")
	o := Options{Out: dir, VocabSize: 1024, ValFraction: 0.01, Seed: 1, DocStart: regexp.MustCompile(KJVChapter), Stdin: strings.NewReader(string(kjv))}
	m, err := Run(context.Background(), []Source{{"prose", "-"}}, o)
	if err != nil {
		t.Fatal(err)
	}
	if n := m.Splits[data.Train].Documents + m.Splits[data.Validation].Documents; n != 1189 {
		t.Fatalf("%d KJV chapters, want 1189", n)
	}
	// The first validation chapter decodes back to a chapter of the text.
	s := openT(t, data.StreamConfig{Dir: dir, Split: data.Validation, SeqLen: 4096, Batch: 1, Epochs: 1}, data.Cursor{})
	b, err := s.Next()
	if err != nil {
		t.Fatal(err)
	}
	ids := make([]int, 0, len(b.Tokens))
	for _, id := range b.Tokens {
		if int(id) == m.Tokenizer.EOS {
			break
		}
		ids = append(ids, int(id))
	}
	ch := loadTok(t, dir).Decode(ids)
	if !regexp.MustCompile(KJVChapter).MatchString(strings.SplitN(ch, "\n", 2)[0]) || !strings.Contains(string(kjv), ch) {
		t.Fatalf("first validation document is not a KJV chapter:\n%.300s", ch)
	}
}

// BeforePublish runs on the finished dataset before it replaces Out: Out
// still holds the old dataset then, and when the hook fails (or the process
// is killed in it) the old dataset stays and no temporary directory is left.
func TestBeforePublish(t *testing.T) {
	out := filepath.Join(t.TempDir(), "ds")
	old, err := Documents(context.Background(), Synthetic(3, 40), fixtureOpts(out))
	if err != nil {
		t.Fatal(err)
	}
	o := fixtureOpts(out)
	o.Force = true
	var seen string
	o.BeforePublish = func(_ context.Context, dir string) error {
		seen = dir
		if m, err := data.LoadManifest(dir); err != nil {
			t.Errorf("the hook's directory holds no dataset yet: %v", err)
		} else if m.ID() == old.ID() {
			t.Error("the hook got the old dataset")
		}
		if m, err := data.LoadManifest(out); err != nil || m.ID() != old.ID() {
			t.Errorf("Out was replaced before the hook ran: %v", err)
		}
		return os.ErrDeadlineExceeded // any failure
	}
	if _, err := Documents(context.Background(), Synthetic(4, 40), o); err == nil {
		t.Fatal("a failing hook did not fail Prepare")
	}
	if m, err := data.LoadManifest(out); err != nil || m.ID() != old.ID() {
		t.Errorf("the old dataset did not survive the failed hook: %v", err)
	}
	if _, err := os.Stat(seen); !os.IsNotExist(err) {
		t.Errorf("temporary directory %s left behind: %v", seen, err)
	}
}

func TestPrepareErrors(t *testing.T) {
	root := t.TempDir()
	empty := filepath.Join(root, "empty.txt")
	os.WriteFile(empty, []byte("  \n\n"), 0o644)
	os.Mkdir(filepath.Join(root, "emptydir"), 0o755)
	ctx := context.Background()
	opts := Options{Out: filepath.Join(root, "out"), VocabSize: 300}
	_, err := Run(ctx, []Source{{Domain: "prose", Path: filepath.Join(root, "nope.txt")}}, opts)
	wantErr(t, err, "nope.txt", "check the path")
	_, err = Run(ctx, []Source{{Domain: "prose", Path: empty}}, opts)
	wantErr(t, err, "empty.txt", "0 documents")
	_, err = Run(ctx, []Source{{Domain: "code", Path: filepath.Join(root, "emptydir")}}, opts)
	wantErr(t, err, "emptydir", "0 documents")
	opts.Stdin = strings.NewReader("")
	_, err = Run(ctx, []Source{{Domain: "prose", Path: "-"}}, opts)
	wantErr(t, err, "prose=-", "0 documents")
	if _, err := os.Stat(opts.Out); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("failed prepares left %s behind", opts.Out)
	}
	if m, _ := filepath.Glob(opts.Out + ".tmp-*"); len(m) > 0 {
		t.Fatalf("failed prepares left %v behind", m)
	}
}

// TestPrepareNoOverwrite: an existing dataset is kept unless Force.
func TestPrepareNoOverwrite(t *testing.T) {
	dir, man := fixture(t)
	before, _ := os.ReadFile(filepath.Join(dir, data.ManifestFile))
	docs := Synthetic(2, 20)
	_, err := Documents(context.Background(), docs, fixtureOpts(dir))
	wantErr(t, err, dir, "--force")
	after, _ := os.ReadFile(filepath.Join(dir, data.ManifestFile))
	if !bytes.Equal(before, after) {
		t.Fatal("a refused prepare changed the manifest")
	}
	opts := fixtureOpts(dir)
	opts.Force = true
	opts.Tokenizer = filepath.Join(dir, data.TokenizerFile) // reuse the dataset's own tokenizer, as is
	m2, err := Documents(context.Background(), docs, opts)
	if err != nil {
		t.Fatal(err)
	}
	if m2.Tokenizer.Hash != man.Tokenizer.Hash || m2.Tokenizer.Trained {
		t.Fatalf("--tokenizer: hash %s trained %v, want the reused %s", m2.Tokenizer.Hash, m2.Tokenizer.Trained, man.Tokenizer.Hash)
	}
	got, err := data.LoadManifest(dir)
	if err != nil || got.Splits[data.Train].Documents+got.Splits[data.Validation].Documents != 20 {
		t.Fatalf("after --force: %v, %+v", err, got)
	}
}

// BenchmarkPrepareDefault prepares the default dataset (KJV + Go source,
// vocab 8192) and reports tokens written per second, tokenizer training
// included. Skipped without the bible command.
func BenchmarkPrepareDefault(b *testing.B) {
	if _, err := exec.LookPath("bible"); err != nil {
		b.Skip("bible not installed")
	}
	kjv, err := exec.Command("bible", "Gen1:1-Rev22:21").Output()
	if err != nil {
		b.Fatal(err)
	}
	src := filepath.Join(runtime.GOROOT(), "src")
	for i := 0; i < b.N; i++ {
		out := filepath.Join(b.TempDir(), "ds")
		start := time.Now()
		m, err := Run(context.Background(), []Source{{"prose", "-"}, {"code", src}}, Options{
			Out: out, VocabSize: 8192, ValFraction: 0.01, Seed: 1, DocStart: regexp.MustCompile(KJVChapter),
			Include: []string{"*.go"}, Exclude: []string{"*_test.go", "testdata"}, Stdin: strings.NewReader(string(kjv)),
		})
		if err != nil {
			b.Fatal(err)
		}
		tok := m.Splits[data.Train].Tokens + m.Splits[data.Validation].Tokens
		b.ReportMetric(float64(tok)/time.Since(start).Seconds(), "tok/s")
		b.ReportMetric(float64(tok), "tokens")
	}
}
