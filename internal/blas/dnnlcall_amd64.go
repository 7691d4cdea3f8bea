//go:build linux || freebsd

package blas

import "unsafe"

// dnnl_sgemm takes alpha and beta by value, in float registers, alongside
// integer arguments. purego.SyscallN cannot pass that mix (it puts each
// float register's bits from the integer argument in the same position),
// and purego's reflective RegisterFunc made a 4×4×4 product cost 1.1 µs and
// 12 allocations against 0.3 µs and none this way (BenchmarkOneDNNCall),
// and a science-model step makes thousands of small products. So the call
// goes through dnnlTrampoline (dnnlcall_amd64.s), which loads the
// registers and the stack from a dnnlArgs block, entered through callC
// (ccall_amd64.go) on a C stack.

// dnnlTrampoline calls dnnlArgs.fn with the C calling convention; it is
// only ever entered through callC, never from Go.
func dnnlTrampoline()

// dnnlTrampolineABI0 is dnnlTrampoline's address (set in the .s file).
var dnnlTrampolineABI0 uintptr

// trampolineSgemm is whether oneDNN.run goes through dnnlTrampoline
// (false: purego's RegisterFunc, the path of other platforms; a test
// compares the two).
var trampolineSgemm = true

// callTrampoline runs the dnnl_sgemm call a describes (fn and every
// argument set) and returns its status (through callC).
func callTrampoline(a *dnnlArgs) int32 {
	callC(dnnlTrampolineABI0, unsafe.Pointer(a))
	return a.status
}
