// Package parallel runs loops over rows on all cores. Work is split into
// contiguous chunks in a fixed way that depends only on n and the worker
// count, and every chunk writes only its own rows, so results never depend on
// goroutine timing.
package parallel

import (
	"runtime"
	"sync"
	"sync/atomic"
)

// Workers is the number of cores the process uses; it defaults to
// GOMAXPROCS. For and the BLAS split use PerCaller of them.
var Workers = runtime.GOMAXPROCS(0)

// sharers is the number of goroutines Share divides Workers among (0: none).
var sharers atomic.Int32

// PerCaller is the number of goroutines one For (or one split product)
// uses: Workers, or Workers divided among the callers of a Share in force
// (at least 1), so graphs run side by side do not each cut their work for
// all the cores and oversubscribe them.
func PerCaller() int {
	n := int(sharers.Load())
	if n <= 1 {
		return Workers
	}
	return max(1, Workers/n)
}

// Share divides Workers among n goroutines that are about to run work side
// by side (PerCaller is Workers/n) until the returned function is called.
// Shares do not nest: call it from one goroutine, and only while no other
// Share is in force. Results computed under a Share may round differently
// from unshared ones (products are split differently), never from one
// Share of the same n to the next.
func Share(n int) (done func()) {
	sharers.Store(int32(n))
	return func() { sharers.Store(0) }
}

// For calls fn(lo, hi) over disjoint chunks covering [0, n). When the work is
// smaller than grain items it runs on the calling goroutine. fn must only
// write data owned by rows lo..hi-1.
func For(n, grain int, fn func(lo, hi int)) {
	w := PerCaller()
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
	var wg sync.WaitGroup
	for lo := size; lo < n; lo += size {
		hi := lo + size
		if hi > n {
			hi = n
		}
		wg.Add(1)
		go func(lo, hi int) {
			defer wg.Done()
			fn(lo, hi)
		}(lo, hi)
	}
	hi := size
	if hi > n {
		hi = n
	}
	fn(0, hi)
	wg.Wait()
}
