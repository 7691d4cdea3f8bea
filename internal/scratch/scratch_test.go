package scratch

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
)

// deadPID returns the id of a process that has exited.
func deadPID(t *testing.T) int {
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Skip("no true(1):", err)
	}
	return cmd.Process.Pid
}

func TestSweep(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "data")
	dead := strconv.Itoa(deadPID(t))
	mine := strconv.Itoa(os.Getpid())
	for _, name := range []string{"data.tmp-" + dead, "data.old-" + dead, "data.tmp-" + mine, "other.tmp-" + dead} {
		if err := os.MkdirAll(filepath.Join(dir, name), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	notes, err := Sweep(out)
	if err != nil || len(notes) != 2 {
		t.Fatalf("notes %q, %v; want two", notes, err)
	}
	// out was missing: the dead process's .old- is the dataset, put back.
	if _, err := os.Stat(out); err != nil {
		t.Errorf("out not restored: %v", err)
	}
	for name, want := range map[string]bool{"data.tmp-" + dead: false, "data.old-" + dead: false, "data.tmp-" + mine: true, "other.tmp-" + dead: true} {
		if _, err := os.Stat(filepath.Join(dir, name)); (err == nil) != want {
			t.Errorf("%s: exists %v, want %v", name, err == nil, want)
		}
	}
	// With out present a dead process's .old- is removed.
	os.MkdirAll(filepath.Join(dir, "data.old-"+dead), 0o755)
	if notes, err := Sweep(out); err != nil || len(notes) != 1 {
		t.Fatalf("notes %q, %v", notes, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "data.old-"+dead)); !os.IsNotExist(err) {
		t.Errorf("stale .old- kept beside an existing out")
	}
}
