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

var (
	counting   atomic.Bool
	helperWork atomic.Int64
)

// CountHelperWork turns on or off the tally of the time helpers spend
// running chunks, and zeroes it when turning it on. Over a stretch of wall
// time W with H helpers, HelperWork()/(H·W) is how busy the cores beyond
// the caller's were: `moetrain bench`'s breakdown reports it.
func CountHelperWork(on bool) {
	if on {
		helperWork.Store(0)
	}
	counting.Store(on)
}

// HelperWork is the time helpers spent running chunks while counting was
// on (CountHelperWork).
func HelperWork() time.Duration { return time.Duration(helperWork.Load()) }

// Helpers is the number of helper goroutines For hands chunks to.
func Helpers() int {
	helpersOnce.Do(startHelpers)
	return len(helpers)
}

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

// Drain hands the items 0..n−1 to up to Workers goroutines from a shared
// queue, one item at a time, so a worker slowed down (another process on
// its core, a large item) leaves the rest to the others. work runs once per
// goroutine, with take, which returns the next item, or false when none is
// left; per-goroutine scratch belongs before its loop. Which goroutine
// takes an item depends on timing: work must write only what its items
// own.
func Drain(n int, work func(take func() (int, bool))) {
	if n <= 0 {
		return
	}
	var next atomic.Int64
	take := func() (int, bool) {
		i := int(next.Add(1)) - 1
		return i, i < n
	}
	For(min(Workers, n), 1, func(_, _ int) { work(take) })
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
	wake    parker      // the helper, asleep until work is handed over
	done    parker      // the caller, asleep in wait until the work is finished
	fn      func(lo, hi int)
	lo, hi  int
}

// parker lets one goroutine sleep until a condition another goroutine makes
// true, without a lost wake-up: the sleeper marks itself asleep before it
// checks the condition, the other side makes the condition true before it
// looks for a sleeper, and a wake-up sent to nobody is dropped at the next
// park.
type parker struct {
	asleep atomic.Bool
	ch     chan struct{}
}

func newParker() parker { return parker{ch: make(chan struct{}, 1)} }

// park blocks until ready() holds, sleeping on the channel unless it
// already does.
func (p *parker) park(ready func() bool) {
	p.asleep.Store(true)
	if !ready() {
		<-p.ch
	}
	p.asleep.Store(false)
	select { // a wake-up sent after ready() was already seen
	case <-p.ch:
	default:
	}
}

// unpark wakes the goroutine in park, if any; call it after making its
// condition true.
func (p *parker) unpark() {
	if p.asleep.Load() {
		select {
		case p.ch <- struct{}{}:
		default:
		}
	}
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
		h := &helper{wake: newParker(), done: newParker()}
		helpers = append(helpers, h)
		go h.loop()
	}
}

// start hands the claimed helper fn over [lo, hi).
func (h *helper) start(fn func(lo, hi int), lo, hi int) {
	h.fn, h.lo, h.hi = fn, lo, hi
	h.pending.Store(true)
	h.wake.unpark()
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
			h.done.park(func() bool { return h.state.Load() == finished })
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
					h.wake.park(h.pending.Load)
					deadline = time.Now().Add(time.Duration(spin.Load()))
				} else {
					runtime.Gosched()
				}
			}
		}
		h.pending.Store(false)
		if counting.Load() {
			t0 := time.Now()
			h.fn(h.lo, h.hi)
			helperWork.Add(int64(time.Since(t0)))
		} else {
			h.fn(h.lo, h.hi)
		}
		h.state.Store(finished)
		h.done.unpark()
	}
}
