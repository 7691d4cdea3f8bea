// Package parallel runs loops over rows on all cores. Work is split into
// contiguous chunks in a fixed way that depends only on n and the worker
// count, and every chunk writes only its own rows, so results never depend on
// goroutine timing.
//
// The chunks after the first go to long-lived helper goroutines, one per
// further core, which keep polling for the next chunk for a short while
// (DefaultSpin) before they sleep. A training step is thousands of parallel loops
// of 0.1-1 ms each; a helper started or woken per loop lets its core go idle
// in between, and on a virtual machine waking an idle core costs tens of
// microseconds per loop (docs/BENCHMARKS.md, round 8).
package parallel

import (
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// Workers is the number of goroutines For uses; it defaults to GOMAXPROCS.
var Workers = runtime.GOMAXPROCS(0)

// spin is how long an idle helper keeps polling for work before it sleeps
// until the next loop wakes it (SetSpin).
var spin atomic.Int64

func init() { spin.Store(int64(DefaultSpin)) }

// DefaultSpin is the helpers' polling time. 50 µs, 200 µs and 1 ms gave
// the same step times within the noise of a shared machine; every loop of a
// step follows the last by far less.
const DefaultSpin = 200 * time.Microsecond

// SetSpin sets how long idle helpers poll before sleeping and returns the
// previous value. Zero starts a goroutine per chunk instead, as before the
// helpers (for comparisons and tests).
func SetSpin(d time.Duration) time.Duration { return time.Duration(spin.Swap(int64(d))) }

// For calls fn(lo, hi) over disjoint chunks covering [0, n). When the work is
// smaller than grain items it runs on the calling goroutine. fn must only
// write data owned by rows lo..hi-1.
func For(n, grain int, fn func(lo, hi int)) {
	w := Workers
	if grain < 1 {
		grain = 1
	}
	if n <= grain || w <= 1 {
		if n > 0 {
			fn(0, n)
		}
		return
	}
	chunks := (n + grain - 1) / grain
	if chunks > w {
		chunks = w
	}
	size := (n + chunks - 1) / chunks
	if spin.Load() <= 0 {
		forGoroutines(n, size, fn)
		return
	}
	var handed [maxHelpers]*helper
	nh := 0
	for lo := size; lo < n; lo += size {
		hi := min(lo+size, n)
		// A helper busy with another loop (For called from inside a chunk,
		// or from several goroutines) is skipped: its chunk runs here.
		var h *helper
		if nh < maxHelpers {
			h = idleHelper()
		}
		if h != nil {
			h.start(fn, lo, hi)
			handed[nh] = h
			nh++
		} else {
			fn(lo, hi)
		}
	}
	fn(0, min(size, n))
	for _, h := range handed[:nh] {
		h.wait()
	}
}

func forGoroutines(n, size int, fn func(lo, hi int)) {
	var wg sync.WaitGroup
	for lo := size; lo < n; lo += size {
		hi := min(lo+size, n)
		wg.Add(1)
		go func(lo, hi int) {
			defer wg.Done()
			fn(lo, hi)
		}(lo, hi)
	}
	fn(0, min(size, n))
	wg.Wait()
}

const maxHelpers = 64

// helper states.
const (
	idle     = iota // polling or asleep, takes work
	assigned        // work handed over, not finished
	finished        // work done, the caller has not collected it
)

type helper struct {
	state   atomic.Int32
	pending atomic.Bool // work handed over and not yet taken up
	asleep  atomic.Bool
	wake    chan struct{}
	done    chan struct{} // signalled when the caller sleeps in wait
	waiter  atomic.Bool   // the caller is asleep in wait
	fn      func(lo, hi int)
	lo, hi  int
}

var (
	helpersOnce sync.Once
	helpers     []*helper
)

// idleHelper claims an idle helper, or returns nil when none is.
func idleHelper() *helper {
	helpersOnce.Do(startHelpers)
	for _, h := range helpers {
		if h.state.CompareAndSwap(idle, assigned) {
			return h
		}
	}
	return nil
}

func startHelpers() {
	n := min(maxHelpers, max(0, runtime.GOMAXPROCS(0)-1))
	for range n {
		h := &helper{wake: make(chan struct{}, 1), done: make(chan struct{}, 1)}
		helpers = append(helpers, h)
		go h.loop()
	}
}

// start hands the claimed helper fn over [lo, hi).
func (h *helper) start(fn func(lo, hi int), lo, hi int) {
	h.fn, h.lo, h.hi = fn, lo, hi
	h.pending.Store(true)
	if h.asleep.Load() {
		select {
		case h.wake <- struct{}{}:
		default:
		}
	}
}

// wait returns once the helper finished its chunk, and frees it.
func (h *helper) wait() {
	for i := 0; h.state.Load() != finished; i++ {
		if i < 1<<12 {
			continue
		}
		if i%64 == 0 {
			runtime.Gosched()
		}
		if i > 1<<16 {
			h.waiter.Store(true)
			if h.state.Load() != finished {
				<-h.done
			}
			h.waiter.Store(false)
			select { // a signal sent after the state was already seen
			case <-h.done:
			default:
			}
		}
	}
	h.fn = nil
	h.state.Store(idle)
}

func (h *helper) loop() {
	for {
		deadline := time.Now().Add(time.Duration(spin.Load()))
		for i := 0; !h.pending.Load(); i++ {
			if i%256 == 255 {
				if time.Now().After(deadline) {
					h.sleep()
					deadline = time.Now().Add(time.Duration(spin.Load()))
				} else {
					runtime.Gosched()
				}
			}
		}
		h.pending.Store(false)
		h.fn(h.lo, h.hi)
		h.state.Store(finished)
		if h.waiter.Load() {
			select {
			case h.done <- struct{}{}:
			default:
			}
		}
	}
}

// sleep blocks until start wakes the helper, unless work arrived meanwhile.
func (h *helper) sleep() {
	h.asleep.Store(true)
	if !h.pending.Load() {
		<-h.wake
	}
	h.asleep.Store(false)
	select { // drop a wake-up sent after pending was already seen
	case <-h.wake:
	default:
	}
}
