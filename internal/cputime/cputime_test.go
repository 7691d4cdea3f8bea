package cputime

import (
	"testing"
	"time"
)

// Spinning for 50 ms of wall time on one goroutine must show as CPU time,
// and CPU time never goes backwards.
func TestProcessCountsBusyWork(t *testing.T) {
	c0 := Process()
	if c0 <= 0 {
		t.Fatalf("Process() = %v before any work, want > 0", c0)
	}
	x := 0.0
	for t0 := time.Now(); time.Since(t0) < 50*time.Millisecond; {
		x += 1e-9
	}
	_ = x
	got := Process() - c0
	if got < 20*time.Millisecond {
		t.Errorf("50 ms busy loop used %v CPU time, want at least 20 ms", got)
	}
}
