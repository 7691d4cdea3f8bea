package torchref

import (
	"fmt"
	"strings"
	"testing"
)

// recorder is a testing.TB that records Fatalf and Skipf instead of
// stopping the goroutine.
type recorder struct {
	testing.TB
	fatal, skip string
}

func (r *recorder) Helper()                      {}
func (r *recorder) Fatalf(f string, args ...any) { r.fatal = fmt.Sprintf(f, args...) }
func (r *recorder) Skipf(f string, args ...any)  { r.skip = fmt.Sprintf(f, args...) }

// TestRequireWithoutTorch: with an interpreter that cannot import torch,
// Require fails under CI=true naming the Debian package, and skips outside
// CI.
func TestRequireWithoutTorch(t *testing.T) {
	saved := Python
	defer func() { Python = saved }()
	Python = "/nonexistent/python3"

	t.Setenv("CI", "true")
	var r recorder
	Require(&r)
	if !strings.Contains(r.fatal, "python3-torch") || r.skip != "" {
		t.Errorf("CI=true: fatal %q, skip %q; want a failure naming python3-torch", r.fatal, r.skip)
	}

	t.Setenv("CI", "")
	r = recorder{}
	Require(&r)
	if r.skip == "" || r.fatal != "" {
		t.Errorf("outside CI: fatal %q, skip %q; want a skip", r.fatal, r.skip)
	}
}

// TestScriptInRepository: the reference is found inside the repository.
func TestScriptInRepository(t *testing.T) {
	if !strings.HasPrefix(Script, Root+"/reference/") {
		t.Errorf("Script %s is not under the repository root %s", Script, Root)
	}
}
