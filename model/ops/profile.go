package ops

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/moetrain/moetrain/internal/cputime"
)

// Per-op timing for `moetrain bench`'s breakdown. It is off by default;
// when off, each Do pays one atomic load and nothing else.

var (
	profiling atomic.Bool
	profMu    sync.Mutex
	profStats = map[string]OpStat{}
)

// OpStat is the time the ops of one name spent in Do while profiling was on.
// CPU is the process's CPU time over those calls (all threads), so CPU/Time
// is how many cores the op kept busy: the breakdown's measure of where a
// step leaves cores idle.
type OpStat struct {
	Calls int
	Time  time.Duration
	CPU   time.Duration
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

// opClock is where an op's Do started, in wall and CPU time.
type opClock struct {
	wall time.Time
	cpu  time.Duration
}

func startClock() opClock { return opClock{cpu: cputime.Process(), wall: time.Now()} }

// record adds the wall and CPU time since c to name; Do methods call it
// deferred (`defer record(op.name, startClock())`), only when profiling is on.
func record(name string, c opClock) {
	d := time.Since(c.wall)
	cpu := cputime.Process() - c.cpu
	profMu.Lock()
	s := profStats[name]
	s.Calls++
	s.Time += d
	s.CPU += cpu
	profStats[name] = s
	profMu.Unlock()
}

// PartSep joins an op's name and the name of one of its parts in
// Profile's keys ("MoE/k-way sum"): the time the op spent in one stretch
// of its Do, already counted in the op's own time.
const PartSep = "/"

// phaseTimer records the stretches of an op's Do as its parts while
// profiling is on; a nil *phaseTimer records nothing.
type phaseTimer struct {
	op string
	c  opClock
}

// startPhases returns a timer for op's parts, or nil when profiling is off.
func startPhases(op string) *phaseTimer {
	if !profiling.Load() {
		return nil
	}
	return &phaseTimer{op: op, c: startClock()}
}

// mark records the time since the timer started or last marked as part,
// and starts the next stretch.
func (p *phaseTimer) mark(part string) {
	if p == nil {
		return
	}
	record(p.op+PartSep+part, p.c)
	p.c = startClock()
}
