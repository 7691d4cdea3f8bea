//go:build linux || freebsd

package blas

import (
	"syscall"
	"unsafe"
)

// dnnl_sgemm takes alpha and beta by value, in float registers, alongside
// integer arguments. purego.SyscallN cannot pass that mix (it puts each
// float register's bits from the integer argument in the same position),
// and purego's reflective RegisterFunc made a 4×4×4 product cost 1.1 µs and
// 12 allocations against 0.3 µs and none this way (BenchmarkOneDNNCall),
// and a science-model step makes thousands of small products. So the call
// goes through dnnlTrampoline (dnnlcall_amd64.s), which loads the
// registers and the stack from a dnnlArgs block, entered on the system
// stack through runtime.cgocall, as purego does for its own calls (purego's
// fake cgo runtime makes cgocall usable without cgo).

//go:linkname runtime_cgocall runtime.cgocall
func runtime_cgocall(fn uintptr, arg unsafe.Pointer) int32

// dnnlTrampoline calls dnnlArgs.fn with the C calling convention; it is
// only ever entered through runtime.cgocall, never from Go.
func dnnlTrampoline()

// dnnlTrampolineABI0 is dnnlTrampoline's address (set in the .s file).
var dnnlTrampolineABI0 uintptr

// trampolineSgemm is whether oneDNN.run goes through dnnlTrampoline
// (false: purego's RegisterFunc, the path of other platforms; a test
// compares the two).
var trampolineSgemm = true

// callTrampoline runs the dnnl_sgemm call a describes (fn and every
// argument set) and returns its status: on a stack of its own without
// leaving the scheduler where callStacks has one for the goroutine's P
// (see callStacks), through runtime.cgocall otherwise.
func callTrampoline(a *dnnlArgs) int32 {
	if directCalls {
		p := procPin()
		if p < len(callStacks) {
			s := callStacks[p]
			dnnlOnStack(a, uintptr(unsafe.Pointer(unsafe.SliceData(s)))+uintptr(len(s)))
			procUnpin()
			return a.status
		}
		procUnpin()
	}
	runtime_cgocall(dnnlTrampolineABI0, unsafe.Pointer(a))
	return a.status
}

// A call through runtime.cgocall leaves the Go scheduler: the thread gives
// up its P (the right to run Go code) for the call's length, and the Go
// runtime hands the P of a call longer than ~20 µs to another thread. Two
// goroutines making back-to-back expert-sized products (100-450 µs each),
// as the expert queue's two workers do, then kept 1.55-1.85 cores of 2
// busy, about one context switch per product, and each call took 1.2-1.8×
// its time alone (BenchmarkConcurrentSerialProducts). oneDNN's products
// never call back into Go and never block, so they can run like Go code
// that holds its P: procPin keeps the goroutine on its P (no preemption),
// and dnnlOnStack moves the stack pointer to a C stack of the P's own and
// calls the trampoline there. Two goroutines then keep both cores busy and
// each call takes its time alone; docs/BENCHMARKS.md (round 13) has the
// steps. What this gives up: a garbage-collector stop waits for the
// running products to end (a few ms at most in training; one half of the
// peak's 2048³ product, measured once per machine, takes ~0.1 s), and a
// profile shows the products as external code.
//
// directCalls is whether callTrampoline does so (SetDirectCalls).
var directCalls = true

// SetDirectCalls chooses how oneDNN's products are called: on their own
// stacks, holding the goroutine's P (true, the default), or through
// runtime.cgocall (false), for a side-by-side measurement
// (BenchmarkCallPathRatio) or a profile that should see the calls as cgo
// calls. Call it between products, not during them.
func SetDirectCalls(on bool) { directCalls = on }

// callStacks holds each P's C stack (index: P id), mapped by
// mapCallStacks when oneDNN is opened; empty if the mapping failed, and
// too short if GOMAXPROCS grew since, where calls take runtime.cgocall.
var callStacks [][]byte

// callStackBytes is each C stack's size: oneDNN 2.6's float32 and bfloat16
// products, JIT included, used at most 12 KiB (TestCallStackDepth).
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

// dnnlOnStack runs dnnlTrampoline(a) with the stack pointer at top
// (16-byte aligned), then restores the goroutine's stack pointer.
func dnnlOnStack(a *dnnlArgs, top uintptr)

//go:linkname procPin runtime.procPin
func procPin() int

//go:linkname procUnpin runtime.procUnpin
func procUnpin()
