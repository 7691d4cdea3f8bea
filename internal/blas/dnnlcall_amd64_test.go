//go:build linux || freebsd

package blas

import (
	"math"
	"testing"
)

// The trampoline gives the bits of purego's RegisterFunc call of the same
// dnnl_sgemm: every transpose pair, padded leading dimensions, alpha and
// beta not 0/1, and the shapes of the models.
func TestTrampolineMatchesRegisterFunc(t *testing.T) {
	l := loadedOneDNN(t)
	defer func() { trampolineSgemm = true }()
	shapes := [][3]int{{1, 1, 1}, {37, 29, 41}, {228, 172, 128}, {128, 86, 228}, {2048, 128, 128}, {5, 300, 7}}
	for si, s := range shapes {
		for ti := range 4 {
			tA, tB := ti&1 == 1, ti&2 == 2
			var outs [2][]float64
			for i, tramp := range []bool{true, false} {
				trampolineSgemm = tramp
				outs[i], _ = checkProduct(l, tA, tB, s[0], s[1], s[2], uint64(si*4+ti+1))
			}
			for i := range outs[0] {
				if math.Float64bits(outs[0][i]) != math.Float64bits(outs[1][i]) {
					t.Fatalf("%v tA=%v tB=%v: C[%d] = %g through the trampoline, %g through RegisterFunc", s, tA, tB, i, outs[0][i], outs[1][i])
				}
			}
		}
	}
}

// BenchmarkOneDNNCall times one 4×4×4 dnnl_sgemm, where the cost is the
// call itself, through the trampoline and through purego's RegisterFunc.
func BenchmarkOneDNNCall(b *testing.B) {
	l := loadedOneDNN(b)
	defer func() { trampolineSgemm = true }()
	a, bb, c := lcg(1, 16), lcg(2, 16), make([]float32, 16)
	for _, tramp := range []bool{true, false} {
		name := map[bool]string{true: "trampoline", false: "RegisterFunc"}[tramp]
		b.Run(name, func(b *testing.B) {
			trampolineSgemm = tramp
			b.ReportAllocs()
			for b.Loop() {
				l.SgemmSerial('N', 'T', 4, 4, 4, 1, a, 4, bb, 4, 0, c, 4)
			}
		})
	}
}
