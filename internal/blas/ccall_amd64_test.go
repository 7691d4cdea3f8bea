//go:build linux || freebsd

package blas

import (
	"fmt"
	"runtime"
	"slices"
	"sync"
	"testing"

	"github.com/moetrain/moetrain/internal/parallel"
	"github.com/moetrain/moetrain/internal/tol"
)

// Calls on their own stacks from more goroutines than there are Ps, each
// checking its every product against the same product made alone, find no
// two calls sharing a stack: each P's stack serves one call at a time. A
// goroutine forcing garbage collections meanwhile stops the world while
// calls run; the stops wait for them.
//
// With more Ps than stacks (GOMAXPROCS raised after the library was
// opened), calls on Ps without one go through cgocall, with the same
// results. Both libraries.
func TestConcurrentCallsKeepTheirStacks(t *testing.T) {
	for _, lib := range libraries {
		t.Run(lib, func(t *testing.T) {
			l := useLibrary(t, lib).(serialSgemmer)
			if len(callStacks) < runtime.GOMAXPROCS(0) {
				t.Fatalf("%d call stacks for %d Ps", len(callStacks), runtime.GOMAXPROCS(0))
			}
			concurrentProducts(t, l)
			defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(len(callStacks) + 2))
			concurrentProducts(t, l)
		})
	}
}

// concurrentProducts runs 4·GOMAXPROCS goroutines of 200 products each,
// checking every one against the same product made first, alone, while a
// goroutine forces garbage collections.
func concurrentProducts(t *testing.T, l serialSgemmer) {
	const m, n, k = 96, 80, 64
	type job struct{ a, b, want []float32 }
	jobs := make([]job, 4*runtime.GOMAXPROCS(0))
	for i := range jobs {
		j := job{a: lcg(uint64(3*i+1), m*k), b: lcg(uint64(3*i+2), k*n), want: make([]float32, m*n)}
		l.SgemmSerial('N', 'T', m, n, k, 1, j.a, k, j.b, k, 0, j.want, n)
		jobs[i] = j
	}
	done := make(chan struct{})
	collected := make(chan int)
	go func() {
		n := 0
		for ; ; n++ {
			select {
			case <-done:
				collected <- n
				return
			default:
				runtime.GC()
			}
		}
	}()
	var wg sync.WaitGroup
	errs := make(chan string, len(jobs))
	for i, j := range jobs {
		wg.Go(func() {
			got := make([]float32, m*n)
			for r := range 200 {
				l.SgemmSerial('N', 'T', m, n, k, 1, j.a, k, j.b, k, 0, got, n)
				if !slices.Equal(got, j.want) {
					errs <- fmt.Sprintf("goroutine %d, product %d: not the product made alone", i, r)
					return
				}
			}
		})
	}
	wg.Wait()
	close(done)
	if n := <-collected; n == 0 {
		t.Error("no garbage collection ran during the products")
	}
	close(errs)
	for e := range errs {
		t.Error(e)
	}
}

// The products' stack depth, at the models' shapes and the peak's, stays
// well inside callStackBytes; and it is not zero, which shows the calls ran
// on callStacks. OpenBLAS, and oneDNN in float32 and bfloat16.
func TestCallStackDepth(t *testing.T) {
	for _, lib := range libraries {
		t.Run(lib, func(t *testing.T) { callStackDepth(t, useLibrary(t, lib)) })
	}
}

func callStackDepth(t *testing.T, l Sgemmer) {
	const mark = 0xa5
	for _, s := range callStacks {
		for j := range s {
			s[j] = mark
		}
	}
	shapes := [][3]int{{1, 1, 1}, {228, 172, 128}, {128, 86, 228}, {2048, 128, 128}, {2048, 258, 128}, {512, 512, 512}}
	precisions := []bool{false}
	if _, ok := l.(*oneDNN); ok && SetBF16Products(true) == nil {
		precisions = append(precisions, true)
	}
	defer SetBF16Products(false)
	for _, bf16 := range precisions {
		if err := SetBF16Products(bf16); err != nil {
			t.Fatal(err)
		}
		for si, s := range shapes {
			for ti := range 4 {
				checkProduct(l, ti&1 == 1, ti&2 == 2, s[0], s[1], s[2], uint64(si))
			}
		}
	}
	deepest := 0
	for _, s := range callStacks {
		used := len(s)
		for used > 0 && s[len(s)-used] == mark {
			used--
		}
		deepest = max(deepest, used)
	}
	t.Logf("deepest call stack: %d bytes of %d", deepest, callStackBytes)
	if deepest == 0 || deepest > callStackBytes/4 {
		t.Errorf("deepest call stack: %d bytes, want 1 to %d", deepest, callStackBytes/4)
	}
}

// OpenBLAS running its own threads inside a call (threads per call above
// 1, as a user's OPENBLAS_NUM_THREADS asks) still gives gonum's products
// when the call is made on its own stack.
func TestThreadedOpenBLASOnOwnStack(t *testing.T) {
	l := loaded(t)
	defer l.configure(1, parallel.Workers)
	l.configure(2, 1)
	if n := l.getNumThreads(); n != 2 {
		t.Fatalf("openblas_get_num_threads() = %d after asking for 2", n)
	}
	for si, s := range [][3]int{{512, 512, 512}, {2048, 128, 128}, {228, 172, 128}} {
		for ti := range 4 {
			got, want := checkProduct(l, ti&1 == 1, ti&2 == 2, s[0], s[1], s[2], uint64(si*4+ti+1))
			if err := tol.CheckScaled(fmt.Sprintf("%v tA=%v tB=%v on 2 OpenBLAS threads", s, ti&1 == 1, ti&2 == 2), got, want, 1e-4); err != nil {
				t.Error(err)
			}
		}
	}
}
