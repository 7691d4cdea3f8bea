package ops

import (
	"sync"
	"sync/atomic"
	"time"
)

// Per-op timing for `moetrain bench`'s breakdown. It is off by default;
// when off, each Do pays one atomic load and nothing else.

var (
	profiling atomic.Bool
	profMu    sync.Mutex
	profStats = map[string]OpStat{}
)

// OpStat is the time the ops of one name spent in Do while profiling was on.
type OpStat struct {
	Calls int
	Time  time.Duration
}

// SetProfiling turns per-op timing on or off. Not meant to be flipped
// while a graph is running.
func SetProfiling(on bool) { profiling.Store(on) }

// ResetProfile forgets the times recorded so far.
func ResetProfile() {
	profMu.Lock()
	profStats = map[string]OpStat{}
	profMu.Unlock()
}

// Profile returns a copy of the times recorded per op name since the last
// ResetProfile.
func Profile() map[string]OpStat {
	profMu.Lock()
	defer profMu.Unlock()
	out := make(map[string]OpStat, len(profStats))
	for k, v := range profStats {
		out[k] = v
	}
	return out
}

// record adds the time since t0 to name; Do methods call it deferred, only
// when profiling is on.
func record(name string, t0 time.Time) {
	d := time.Since(t0)
	profMu.Lock()
	s := profStats[name]
	s.Calls++
	s.Time += d
	profStats[name] = s
	profMu.Unlock()
}
