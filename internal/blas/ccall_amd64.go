//go:build linux || freebsd

package blas

import (
	"runtime"
	"sync"
	"syscall"
	"unsafe"
)

// Calling C without cgo: a library function is called through an
// assembly trampoline that takes its arguments from a block in memory
// (dnnlTrampoline for dnnl_sgemm, fortranTrampoline for OpenBLAS's
// sgemm_), and callC runs the trampoline.

//go:linkname runtime_cgocall runtime.cgocall
func runtime_cgocall(fn uintptr, arg unsafe.Pointer) int32

// callC runs the trampoline tramp (an ABI0 address) on arg: on a C stack
// of the goroutine's P without leaving the scheduler where callStacks has
// one (see below), through runtime.cgocall, as purego does for its own
// calls (purego's fake cgo runtime makes cgocall usable without cgo),
// otherwise.
func callC(tramp uintptr, arg unsafe.Pointer) {
	if directCalls {
		p := procPin()
		if p < len(callStacks) {
			s := callStacks[p]
			callOnStack(tramp, arg, uintptr(unsafe.Pointer(unsafe.SliceData(s)))+uintptr(len(s)))
			procUnpin()
			return
		}
		procUnpin()
	}
	runtime_cgocall(tramp, arg)
}

// A call through runtime.cgocall leaves the Go scheduler: the thread gives
// up its P (the right to run Go code) for the call's length, and the Go
// runtime hands the P of a call longer than ~20 µs to another thread. Two
// goroutines making back-to-back expert-sized products (100-450 µs each),
// as the expert queue's two workers do, then kept 1.60-1.85 cores of 2
// busy, about one context switch per product, and each call took
// 1.13-1.39× its time alone (BenchmarkConcurrentSerialProducts). The libraries'
// products never call back into Go and wait for nothing Go does, so they
// can run like Go code that holds its P: procPin keeps the goroutine on
// its P (no preemption), and callOnStack moves the stack pointer to a C
// stack of the P's own and calls the trampoline there. Two goroutines then
// keep both cores busy and each call takes its time alone
// (docs/BENCHMARKS.md, round 13, has the steps). What this gives up: a
// garbage-collector stop waits for the running products to end (a few ms
// at most in training; one half of the peak's 2048³ product, measured once
// per machine, takes ~0.1 s), and a profile shows the products as external
// code.
//
// directCalls is whether callC does so (SetDirectCalls).
var directCalls = true

// SetDirectCalls chooses how the libraries' products are called: on their
// own stacks, holding the goroutine's P (true, the default), or through
// runtime.cgocall (false), for a side-by-side measurement
// (BenchmarkCallPathRatio) or a profile that should see the calls as cgo
// calls. Call it between products, not during them.
func SetDirectCalls(on bool) { directCalls = on }

// callStacks holds each P's C stack (index: P id), mapped by
// mapCallStacks when the first library is opened; empty if the mapping
// failed, and too short if GOMAXPROCS grew since, where calls take
// runtime.cgocall.
var callStacks [][]byte

var mapStacksOnce sync.Once

// ensureCallStacks maps the call stacks for the Ps there are now, once
// per process; a library's opening calls it.
func ensureCallStacks() {
	mapStacksOnce.Do(func() { callStacks = mapCallStacks(runtime.GOMAXPROCS(0)) })
}

// callStackBytes is each C stack's size: oneDNN 2.6's float32 and bfloat16
// products, JIT included, used at most 12 KiB, OpenBLAS 0.3's 1.6 KiB
// (TestCallStackDepth).
const callStackBytes = 256 << 10

// mapCallStacks maps n C stacks of callStackBytes, each above a page
// that may not be touched, so that an overflow faults instead of writing
// over other memory (nil if the mapping failed). They stay mapped for the
// process's life.
func mapCallStacks(n int) [][]byte {
	page := syscall.Getpagesize()
	each := callStackBytes + page
	mem, err := syscall.Mmap(-1, 0, n*each, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_PRIVATE|syscall.MAP_ANON)
	if err != nil {
		return nil
	}
	stacks := make([][]byte, n)
	for i := range stacks {
		lo := i * each
		if syscall.Mprotect(mem[lo:lo+page], syscall.PROT_NONE) != nil {
			syscall.Munmap(mem)
			return nil
		}
		stacks[i] = mem[lo+page : lo+each : lo+each] // its top is page-aligned
	}
	return stacks
}

// callOnStack runs the trampoline tramp (an ABI0 address) with arg in DI
// and the stack pointer at top (16-byte aligned), then restores the
// goroutine's stack pointer.
func callOnStack(tramp uintptr, arg unsafe.Pointer, top uintptr)

//go:linkname procPin runtime.procPin
func procPin() int

//go:linkname procUnpin runtime.procUnpin
func procUnpin()

// fortranTrampoline calls cCall13.fn with the C calling convention; it is
// only ever entered through callC, never from Go.
func fortranTrampoline()

// fortranTrampolineABI0 is fortranTrampoline's address (set in the .s file).
var fortranTrampolineABI0 uintptr

// callFortran makes the call c describes.
func callFortran(c *cCall13) { callC(fortranTrampolineABI0, unsafe.Pointer(c)) }
