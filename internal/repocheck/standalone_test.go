package repocheck

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// outside matches a reference to something beyond the repository. The
// character classes keep this file from matching itself.
var outside = regexp.MustCompile(strings.Join([]string{
	`\.\./share[d]`, // a sibling checkout's shared folder
	`/share[d]/(tools|SPEC|FACTS|STYLE|bench)`, // ... named absolutely
	`SPE[C](\.md)? §`,                          // the spec the repository used to cite; docs/DESIGN.md replaced it
	`\b(SPE[C]|FACT[S]|STYL[E])\.md\b`,         // documents that are not in the repository
	`/wor[k]/`, `/hom[e]/`, `/roo[t]/`,         // machine paths
}, "|"))

// TestNoPathOutsideRepository scans every tracked text file for outside.
func TestNoPathOutsideRepository(t *testing.T) {
	root := repoRoot(t)
	files := trackedFiles(t, root)
	if len(files) < 50 {
		t.Fatalf("git ls-files listed %d files under %s; expected the whole repository", len(files), root)
	}
	bad := 0
	for _, f := range files {
		raw, err := os.ReadFile(filepath.Join(root, f))
		if err != nil {
			t.Errorf("%s: %v", f, err)
			continue
		}
		if bytes.IndexByte(raw, 0) >= 0 { // binary (images, fixtures)
			continue
		}
		sc := bufio.NewScanner(bytes.NewReader(raw))
		sc.Buffer(make([]byte, 1<<20), 1<<24)
		for n := 1; sc.Scan(); n++ {
			if m := outside.FindString(sc.Text()); m != "" {
				bad++
				t.Errorf("%s:%d names %q, outside the repository: %s", f, n, m, strings.TrimSpace(sc.Text()))
			}
		}
	}
	if bad > 0 {
		t.Logf("%d references outside the repository; the paper facts belong in docs/DESIGN.md", bad)
	}
}

// TestPatternCatches makes sure the pattern is not vacuous: each kind of
// reference it exists to catch is caught, and ordinary text is not.
func TestPatternCatches(t *testing.T) {
	for _, tc := range []struct {
		line string
		want bool
	}{
		{"see " + "../" + "shared/bench/moe-small.json", true},
		{"python3 /x/" + "shared/tools/torchref.py", true},
		{"FLOPs per token (" + "SPEC" + " §7.3)", true},
		{"the layout of " + "SPEC" + ".md §8", true},
		{"(" + "FACTS" + ".md)", true},
		{"cd /" + "work/main", true},
		{"FLOPs per token (docs/DESIGN.md §7.3)", false},
		{"base: ../small/gshard.yaml", false},
		{"scripts/prepare-default.sh datasets/kjv", false},
	} {
		if got := outside.MatchString(tc.line); got != tc.want {
			t.Errorf("match(%q) = %v, want %v", tc.line, got, tc.want)
		}
	}
}

// repoRoot is the directory holding go.mod, found upwards from the test.
func repoRoot(t *testing.T) string {
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the test directory")
		}
		dir = parent
	}
}

// trackedFiles lists the files git tracks under root. Without git (or
// outside a checkout) the test skips, except under CI=true.
func trackedFiles(t *testing.T, root string) []string {
	cmd := exec.Command("git", "ls-files", "-z")
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("git ls-files: %v (CI needs git and a checkout)", err)
		}
		t.Skipf("git ls-files: %v", err)
	}
	var files []string
	for _, f := range strings.Split(string(out), "\x00") {
		if f != "" {
			files = append(files, f)
		}
	}
	return files
}
