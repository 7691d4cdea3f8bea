//go:build !amd64 || !(linux || freebsd)

package blas

// trampolineSgemm is false here: this platform has no dnnlTrampoline, so
// oneDNN.run calls dnnl_sgemm through purego's RegisterFunc.
const trampolineSgemm = false

func callTrampoline(*dnnlArgs) int32 { panic("blas: no dnnl_sgemm trampoline on this platform") }

func mapCallStacks(int) [][]byte { return nil }

var callStacks [][]byte

// SetDirectCalls does nothing here: products go through purego.
func SetDirectCalls(bool) {}
