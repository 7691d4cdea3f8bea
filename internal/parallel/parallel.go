// Package parallel runs loops over rows on all cores. Work is split into
// contiguous chunks in a fixed way that depends only on n and the worker
// count, and every chunk writes only its own rows, so results never depend on
// goroutine timing.
package parallel

import (
	"runtime"
	"sync"
)

// Workers is the number of goroutines For uses; it defaults to GOMAXPROCS.
var Workers = runtime.GOMAXPROCS(0)

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
