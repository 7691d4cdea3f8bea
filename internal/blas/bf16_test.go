package blas

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"testing"
	"time"
	"unsafe"

	"github.com/moetrain/moetrain/internal/tol"
)

// BenchmarkOneDNNBF16 measures oneDNN's dnnl_gemm_bf16bf16f32 (bfloat16
// inputs, float32 accumulation and output) against its dnnl_sgemm at the
// science shapes, one call each on the calling goroutine, interleaved,
// each one's best time over the rounds. bf16_convert_us is the time
// roundBF16 takes to round both operands (what SetBF16Products adds to
// every product). It skips where oneDNN or a bfloat16 kernel is missing.
// Run with e.g.
//
//	go test ./internal/blas -run '^$' -bench OneDNNBF16 -benchtime 300x
func BenchmarkOneDNNBF16(b *testing.B) {
	l := loadedOneDNN(b)
	bf16 := l.bf16Fn
	if bf16 == 0 {
		b.Skip("no dnnl_gemm_bf16bf16f32")
	}
	for _, s := range sciShapes {
		b.Run(s.name, func(b *testing.B) {
			ra, ca := stored(s.tA, s.m, s.k)
			rb, cb := stored(s.tB, s.k, s.n)
			a, bm, c := make([]float32, ra*ca), make([]float32, rb*cb), make([]float32, s.m*s.n)
			for i := range a {
				a[i] = float32(i%13)*0.01 - 0.06
			}
			for i := range bm {
				bm[i] = float32(i%7)*0.02 - 0.06
			}
			a16, b16 := make([]uint16, len(a)), make([]uint16, len(bm))
			call := func(fn uintptr, ap, bp unsafe.Pointer) {
				args := &dnnlArgs{fn: fn, transA: uintptr(fortranOp(s.tA)), transB: uintptr(fortranOp(s.tB)),
					m: int64(s.m), n: int64(s.n), k: int64(s.k), alpha: 1, beta: 0,
					a: uintptr(ap), lda: int64(ca), b: uintptr(bp), ldb: int64(cb), c: uintptr(unsafe.Pointer(&c[0])), ldc: int64(s.n)}
				if st := callTrampoline(args); st != 0 {
					b.Skipf("status %d: no bfloat16 kernel on this CPU", st)
				}
			}
			best := [3]time.Duration{time.Hour, time.Hour, time.Hour}
			timed := func(i int, fn func()) {
				t0 := time.Now()
				fn()
				best[i] = min(best[i], time.Since(t0))
			}
			for b.Loop() {
				timed(0, func() { call(l.sgemmFn, unsafe.Pointer(&a[0]), unsafe.Pointer(&bm[0])) })
				timed(1, func() { roundBF16(a16, a); roundBF16(b16, bm) })
				timed(2, func() { call(bf16, unsafe.Pointer(&a16[0]), unsafe.Pointer(&b16[0])) })
			}
			flop := 2 * float64(s.m*s.n*s.k) / 1e9
			b.ReportMetric(flop/best[0].Seconds(), "f32_GFLOP/s")
			b.ReportMetric(flop/best[2].Seconds(), "bf16_GFLOP/s")
			b.ReportMetric(best[1].Seconds()*1e6, "bf16_convert_us")
			b.ReportMetric(best[0].Seconds()*1e6, "f32_us")
		})
	}
}

// bf16Value is the float32 a bfloat16 stands for.
func bf16Value(h uint16) float32 { return math.Float32frombits(uint32(h) << 16) }

// roundBF16 rounds to nearest with ties to even, overflows to Inf, keeps
// NaN a NaN, and gives the same bits on sixteen lanes as one at a time.
func TestRoundBF16(t *testing.T) {
	for _, c := range []struct {
		in   uint32
		want uint16
	}{
		{0x3f800000, 0x3f80}, // 1
		{0x3f808000, 0x3f80}, // halfway, even below: down
		{0x3f818000, 0x3f82}, // halfway, odd below: up
		{0x3f808001, 0x3f81}, // above halfway: up
		{0x7f7fffff, 0x7f80}, // the largest float32 rounds to Inf
		{0xff800000, 0xff80}, // -Inf
		{0x80000000, 0x8000}, // -0
	} {
		got := make([]uint16, 1)
		roundBF16(got, []float32{math.Float32frombits(c.in)})
		if got[0] != c.want {
			t.Errorf("round(%#08x) = %#04x, want %#04x", c.in, got[0], c.want)
		}
	}
	// Every pattern class, NaNs included, through both paths.
	src := make([]float32, 4096)
	x := uint32(12345)
	for i := range src {
		x = x*1664525 + 1013904223
		src[i] = math.Float32frombits(x)
	}
	src[7], src[100] = float32(math.NaN()), math.Float32frombits(0xffffffff)
	vec, one := make([]uint16, len(src)), make([]uint16, len(src))
	roundBF16(vec, src)
	if !roundBF16Vector {
		t.Log("no AVX-512: checked the scalar path only")
	}
	for i, v := range src {
		roundBF16(one[i:i+1], src[i:i+1])
		if vec[i] != one[i] {
			t.Fatalf("%#08x: %#04x on sixteen lanes, %#04x alone", math.Float32bits(v), vec[i], one[i])
		}
		if r := bf16Value(one[i]); v != v != (r != r) {
			t.Fatalf("%#08x rounds to %#04x: NaN-ness changed", math.Float32bits(v), one[i])
		}
	}
}

// With bfloat16 products on, Gemm is the product of the operands rounded
// to bfloat16, accumulated in float32 (every case, split or not, padding
// untouched), the same bits every time, and different from the float32
// product; off again, it is the float32 product.
func TestBF16Products(t *testing.T) {
	l := loadedOneDNN(t)
	if err := SetBF16Products(true); errors.Is(err, ErrNoBF16) {
		t.Skip(err)
	} else if err != nil {
		t.Fatal(err)
	}
	defer SetBF16Products(false)
	if !BF16Products() {
		t.Fatal("BF16Products() false after SetBF16Products(true)")
	}
	defer func(f, s int) { l.minSplitFlops = f; l.setSplit(s) }(l.minSplitFlops, l.split)
	for _, split := range []int{1, 2} {
		l.setSplit(split)
		l.minSplitFlops = 1
		for _, c := range splitCases() {
			rowsA, colsA := stored(c.tA, c.m, c.k)
			rowsB, colsB := stored(c.tB, c.k, c.n)
			lda, ldb, ldc := max(1, colsA+c.padA), max(1, colsB+c.padB), c.n+c.padC
			a, b, cc := lcg(11, rowsA*lda), lcg(12, rowsB*ldb), lcg(13, c.m*ldc)
			ra, rb := roundedCopy(a), roundedCopy(b)
			want := naiveGemm(c.tA, c.tB, c.m, c.n, c.k, c.alpha, ra, lda, rb, ldb, c.beta, cc, ldc)
			orig := slices.Clone(cc)
			Gemm(c.tA, c.tB, c.m, c.n, c.k, float32(c.alpha), a, lda, b, ldb, float32(c.beta), cc, ldc)
			again := slices.Clone(orig)
			Gemm(c.tA, c.tB, c.m, c.n, c.k, float32(c.alpha), a, lda, b, ldb, float32(c.beta), again, ldc)
			got := make([]float64, 0, c.m*c.n)
			for i := range c.m {
				for j := range ldc {
					v := cc[i*ldc+j]
					switch {
					case math.Float32bits(v) != math.Float32bits(again[i*ldc+j]):
						t.Fatalf("split %d, %v: C[%d,%d] = %g, then %g", split, c, i, j, v, again[i*ldc+j])
					case j >= c.n && v != orig[i*ldc+j]:
						t.Fatalf("split %d, %v: padding C[%d,%d] changed", split, c, i, j)
					case j < c.n:
						got = append(got, float64(v))
					}
				}
			}
			if err := tol.CheckScaled(fmt.Sprintf("split %d, %v", split, c), got, want, 2e-6); err != nil {
				t.Error(err)
			}
		}
	}
	// The mode is on: a 64-term product differs from float32's by far more
	// than float32 rounding; off, Gemm is float32 again.
	const m, n, k = 16, 16, 64
	a, b := lcg(41, m*k), lcg(42, k*n)
	bf, f32 := make([]float32, m*n), make([]float32, m*n)
	MatMul(false, false, m, n, k, a, b, bf, false)
	if err := SetBF16Products(false); err != nil {
		t.Fatal(err)
	}
	MatMul(false, false, m, n, k, a, b, f32, false)
	want := naiveGemm(false, false, m, n, k, 1, a, k, b, n, 0, f32, n)
	if err := tol.CheckScaled("float32 again", convert[float64](f32), want, 2e-6); err != nil {
		t.Error(err)
	}
	if tol.CheckScaled("bfloat16", convert[float64](bf), want, 1e-4) == nil {
		t.Error("the bfloat16 product is as close to the exact one as float32's: the mode did not take")
	}
}

// roundedCopy is x with every value rounded to bfloat16 (as float32).
func roundedCopy(x []float32) []float32 {
	h := make([]uint16, len(x))
	roundBF16(h, x)
	out := make([]float32, len(x))
	for i, v := range h {
		out[i] = bf16Value(v)
	}
	return out
}

// Without oneDNN there are no bfloat16 products, and asking says why.
func TestBF16NeedsOneDNN(t *testing.T) {
	withKernel(pureGo, pureGoName, func() {
		err := SetBF16Products(true)
		if !errors.Is(err, ErrNoBF16) || BF16Products() {
			t.Fatalf("SetBF16Products(true) on gonum: %v, on %v; want ErrNoBF16, off", err, BF16Products())
		}
		if err := SetBF16Products(false); err != nil {
			t.Fatal(err)
		}
	})
}

// TestPeakProductIsFloat32: the peak's product runs in float32 while
// bfloat16 products are on (a run with train.products: bf16 measures the
// peak at launch), and leaves them on.
func TestPeakProductIsFloat32(t *testing.T) {
	loadedOneDNN(t)
	if err := SetBF16Products(true); errors.Is(err, ErrNoBF16) {
		t.Skip(err)
	} else if err != nil {
		t.Fatal(err)
	}
	defer SetBF16Products(false)
	const n = 64
	a, b := lcg(1, n*n), lcg(2, n*n)
	peak, bf16, fp32 := make([]float32, n*n), make([]float32, n*n), make([]float32, n*n)
	peakProduct(n, a, b, peak)
	if !BF16Products() {
		t.Fatal("bfloat16 products off after peakProduct")
	}
	MatMul(false, false, n, n, n, a, b, bf16, false)
	if err := SetBF16Products(false); err != nil {
		t.Fatal(err)
	}
	MatMul(false, false, n, n, n, a, b, fp32, false)
	if slices.Equal(bf16, fp32) {
		t.Fatal("bfloat16 and float32 products agree to the bit: the test cannot tell them apart")
	}
	if !slices.Equal(peak, fp32) {
		t.Error("the peak's product is not the float32 one")
	}
}
