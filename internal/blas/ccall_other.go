//go:build !amd64 || !(linux || freebsd)

package blas

import "github.com/ebitengine/purego"

// trampolineSgemm is false here: this platform has no dnnlTrampoline, so
// oneDNN.run calls dnnl_sgemm through purego's RegisterFunc.
const trampolineSgemm = false

func callTrampoline(*dnnlArgs) int32 { panic("blas: no dnnl_sgemm trampoline on this platform") }

func ensureCallStacks() {}

// callFortran makes the call c describes through purego.
func callFortran(c *cCall13) { purego.SyscallN(c.fn, c.args[:]...) }

// SetDirectCalls does nothing here: products go through purego.
func SetDirectCalls(bool) {}
