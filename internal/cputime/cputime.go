// Package cputime reads the process's CPU time (user + system, all
// threads). Benchmarks divide it by wall time to see how many cores a
// piece of work kept busy, which on a shared machine also follows the work
// done far better than wall time does.
package cputime

import (
	"syscall"
	"time"
)

// Process is the CPU time the process has used so far, or 0 where the
// system cannot say.
func Process() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
