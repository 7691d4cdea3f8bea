package parallel

import (
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// cover runs For over n items and fails unless every index was visited
// exactly once, in at most Workers chunks.
func cover(t *testing.T, n, grain int) {
	t.Helper()
	seen := make([]atomic.Int32, n)
	var chunks atomic.Int32
	For(n, grain, func(lo, hi int) {
		chunks.Add(1)
		for i := lo; i < hi; i++ {
			seen[i].Add(1)
		}
	})
	for i := range seen {
		if v := seen[i].Load(); v != 1 {
			t.Fatalf("n=%d grain=%d: index %d visited %d times", n, grain, i, v)
		}
	}
	if c := int(chunks.Load()); c > max(1, Workers) {
		t.Fatalf("n=%d grain=%d: %d chunks for %d workers", n, grain, c, Workers)
	}
}

// Every index once, with helpers polling, asleep (after Spin without
// work) and without helpers (Spin 0), at several worker counts.
func TestForVisitsEveryIndexOnce(t *testing.T) {
	defer func(w int, s time.Duration) { Workers = w; SetSpin(s) }(Workers, SetSpin(DefaultSpin))
	for _, d := range []time.Duration{DefaultSpin, 0} {
		SetSpin(d)
		for _, w := range []int{1, 2, 3, 8} {
			Workers = w
			for _, n := range []int{0, 1, 7, 100, 1001} {
				for _, grain := range []int{0, 1, 16, 2000} {
					cover(t, n, grain)
				}
			}
			time.Sleep(2 * time.Millisecond) // the helpers fall asleep
			cover(t, 1000, 1)
		}
	}
}

// For called inside a chunk (a row loop whose rows run products that split
// again) and from many goroutines at once finishes and covers every index:
// a busy helper is never waited for, its chunk runs on the caller.
func TestForNestedAndConcurrent(t *testing.T) {
	defer func(w int) { Workers = w }(Workers)
	Workers = max(2, runtime.GOMAXPROCS(0))
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 50 {
				var total atomic.Int64
				For(64, 1, func(lo, hi int) {
					for i := lo; i < hi; i++ {
						For(32, 1, func(a, b int) { total.Add(int64(b - a)) })
					}
				})
				if got := total.Load(); got != 64*32 {
					t.Errorf("nested loops visited %d items, want %d", got, 64*32)
					return
				}
			}
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		t.Fatal("nested and concurrent loops did not finish in 60 s")
	}
}

// A chunk that outlasts the caller's own puts the caller to sleep in wait
// (after its polling) and wakes it when done; the helper's time is counted
// while CountHelperWork is on, and only then.
func TestLongChunkWaitAndHelperWork(t *testing.T) {
	defer func(w int) { Workers = w }(Workers)
	Workers = 2
	if Helpers() == 0 {
		t.Skip("GOMAXPROCS=1: no helpers")
	}
	CountHelperWork(true)
	var ran atomic.Int32
	For(2, 1, func(lo, hi int) {
		if lo == 1 {
			time.Sleep(30 * time.Millisecond)
		}
		ran.Add(int32(hi - lo))
	})
	CountHelperWork(false)
	if ran.Load() != 2 {
		t.Fatalf("ran %d of 2 items", ran.Load())
	}
	if w := HelperWork(); w < 20*time.Millisecond {
		t.Errorf("helper work %v counted for a 30 ms chunk, want at least 20 ms", w)
	}
	For(2, 1, func(lo, hi int) {
		if lo == 1 {
			time.Sleep(5 * time.Millisecond)
		}
	})
	if w := HelperWork(); w > 40*time.Millisecond {
		t.Errorf("helper work %v after counting was turned off, want it unchanged", w)
	}
}

// Drain hands out every item exactly once, starts work at most
// min(Workers, n) times, and keeps a slow worker's share small: with one
// worker held up, the other takes the rest.
func TestDrainTakesEveryItemOnce(t *testing.T) {
	defer func(w int) { Workers = w }(Workers)
	for _, w := range []int{1, 2, 3, 8} {
		Workers = w
		for _, n := range []int{0, 1, 5, 100} {
			seen := make([]atomic.Int32, n)
			var workers atomic.Int32
			Drain(n, func(take func() (int, bool)) {
				workers.Add(1)
				for i, ok := take(); ok; i, ok = take() {
					seen[i].Add(1)
				}
			})
			for i := range seen {
				if v := seen[i].Load(); v != 1 {
					t.Fatalf("workers=%d n=%d: item %d taken %d times", w, n, i, v)
				}
			}
			if got, most := int(workers.Load()), min(w, n); got > most {
				t.Fatalf("workers=%d n=%d: work ran %d times, want at most %d", w, n, got, most)
			}
		}
	}
	Workers = 2
	var slow, fast atomic.Int32
	var first atomic.Bool
	Drain(50, func(take func() (int, bool)) {
		held := first.CompareAndSwap(false, true)
		for _, ok := take(); ok; _, ok = take() {
			if held {
				slow.Add(1)
				time.Sleep(5 * time.Millisecond)
			} else {
				fast.Add(1)
			}
		}
	})
	if slow.Load() > 10 {
		t.Errorf("the held-up worker took %d of 50 items, the other %d", slow.Load(), fast.Load())
	}
}
