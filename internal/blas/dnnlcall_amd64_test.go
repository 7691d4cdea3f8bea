//go:build linux || freebsd

package blas

import (
	"math"
	"testing"
)

// The trampoline gives the bits of purego's RegisterFunc call of the same
// dnnl_sgemm, on the calls' own stacks (callStacks) and through
// runtime.cgocall: every transpose pair, padded leading dimensions, alpha
// and beta not 0/1, and the shapes of the models.
func TestTrampolineMatchesRegisterFunc(t *testing.T) {
	l := loadedOneDNN(t)
	defer func() { trampolineSgemm, directCalls = true, true }()
	shapes := [][3]int{{1, 1, 1}, {37, 29, 41}, {228, 172, 128}, {128, 86, 228}, {2048, 128, 128}, {5, 300, 7}}
	paths := []struct {
		name          string
		tramp, direct bool
	}{{"RegisterFunc", false, false}, {"the trampoline on its own stack", true, true}, {"the trampoline through cgocall", true, false}}
	for si, s := range shapes {
		for ti := range 4 {
			tA, tB := ti&1 == 1, ti&2 == 2
			var outs [3][]float64
			for i, p := range paths {
				trampolineSgemm, directCalls = p.tramp, p.direct
				outs[i], _ = checkProduct(l, tA, tB, s[0], s[1], s[2], uint64(si*4+ti+1))
			}
			for p := 1; p < len(paths); p++ {
				for i := range outs[0] {
					if math.Float64bits(outs[p][i]) != math.Float64bits(outs[0][i]) {
						t.Fatalf("%v tA=%v tB=%v: C[%d] = %g through %s, %g through %s", s, tA, tB, i, outs[p][i], paths[p].name, outs[0][i], paths[0].name)
					}
				}
			}
		}
	}
}

// BenchmarkOneDNNCall times one 4×4×4 dnnl_sgemm, where the cost is the
// call itself: through the trampoline on the call's own stack, through the
// trampoline and runtime.cgocall, and through purego's RegisterFunc.
func BenchmarkOneDNNCall(b *testing.B) {
	l := loadedOneDNN(b)
	defer func() { trampolineSgemm, directCalls = true, true }()
	a, bb, c := lcg(1, 16), lcg(2, 16), make([]float32, 16)
	for _, p := range []struct {
		name          string
		tramp, direct bool
	}{{"direct", true, true}, {"cgocall", true, false}, {"RegisterFunc", false, false}} {
		b.Run(p.name, func(b *testing.B) {
			trampolineSgemm, directCalls = p.tramp, p.direct
			b.ReportAllocs()
			for b.Loop() {
				l.SgemmSerial('N', 'T', 4, 4, 4, 1, a, 4, bb, 4, 0, c, 4)
			}
		})
	}
}
