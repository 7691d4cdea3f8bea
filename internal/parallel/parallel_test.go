package parallel

import (
	"sync/atomic"
	"testing"
)

// For covers [0, n) exactly once in at most PerCaller chunks, and a Share
// divides the workers among its callers until it ends.
func TestForChunksFollowShare(t *testing.T) {
	defer func(w int) { Workers = w }(Workers)
	Workers = 4
	chunks := func() int {
		var calls atomic.Int32
		seen := make([]atomic.Int32, 100)
		For(len(seen), 1, func(lo, hi int) {
			calls.Add(1)
			for i := lo; i < hi; i++ {
				seen[i].Add(1)
			}
		})
		for i := range seen {
			if seen[i].Load() != 1 {
				t.Fatalf("index %d visited %d times", i, seen[i].Load())
			}
		}
		return int(calls.Load())
	}
	tests := []struct {
		share, perCaller, chunks int
	}{{0, 4, 4}, {2, 2, 2}, {4, 1, 1}, {8, 1, 1}}
	for _, tc := range tests {
		done := func() {}
		if tc.share > 0 {
			done = Share(tc.share)
		}
		if got := PerCaller(); got != tc.perCaller {
			t.Errorf("Share(%d): PerCaller() = %d, want %d", tc.share, got, tc.perCaller)
		}
		if got := chunks(); got != tc.chunks {
			t.Errorf("Share(%d): For ran %d chunks, want %d", tc.share, got, tc.chunks)
		}
		done()
		if got := PerCaller(); got != 4 {
			t.Errorf("after Share(%d) ended: PerCaller() = %d, want 4", tc.share, got)
		}
	}
}
