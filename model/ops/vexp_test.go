package ops

import (
	"math"
	"math/rand/v2"
	"testing"
)

// vexpInputs covers the special values, the clamp and flush edges, and
// random values over exp32's domain and beyond, in a length that is not a
// multiple of 8 (so the scalar tail runs too).
func vexpInputs() []float32 {
	xs := []float32{0, float32(math.Copysign(0, -1)), 1, -1, 88, 88.5, 100, -87.33654, -87.3365, -87.4, -88, -103, -1e-30, 1e-30,
		float32(math.Inf(1)), float32(math.Inf(-1)), float32(math.NaN()), math.Float32frombits(0xffc00001),
		math.MaxFloat32, -math.MaxFloat32, math.SmallestNonzeroFloat32, 0.5, -0.5, 0.3465736, -0.3465736}
	r := rand.New(rand.NewPCG(1, 2))
	for range 20000 {
		xs = append(xs, float32(-90*r.Float64()), float32(40*(2*r.Float64()-1)), float32(4*(2*r.Float64()-1)))
	}
	for i := uint32(0); i < 1<<32-1<<20; i += 1<<20 - 7 { // a sweep over bit patterns
		xs = append(xs, math.Float32frombits(i))
	}
	return append(xs, 3, 2, 1)
}

func sameBits(a, b float32) bool {
	return math.Float32bits(a) == math.Float32bits(b) || (a != a && b != b)
}

func TestVectorExpSigmoidMatchScalarBits(t *testing.T) {
	if !vexpOK {
		t.Skip("no vector kernels on this CPU")
	}
	xs := vexpInputs()
	e, s := make([]float32, len(xs)), make([]float32, len(xs))
	exp32s(e, xs)
	sigmoid32s(s, xs)
	bad := 0
	for i, x := range xs {
		if x <= 88 || x != x { // exp32's domain (larger x is clamped, also checked)
			if want := exp32(x); !sameBits(e[i], want) && bad < 10 {
				t.Errorf("exp32s(%g [%#x]) = %g [%#x], exp32 %g [%#x]", x, math.Float32bits(x), e[i], math.Float32bits(e[i]), want, math.Float32bits(want))
				bad++
			}
		}
		if want := sigmoid32(x); !sameBits(s[i], want) && bad < 10 {
			t.Errorf("sigmoid32s(%g [%#x]) = %g [%#x], sigmoid32 %g [%#x]", x, math.Float32bits(x), s[i], math.Float32bits(s[i]), want, math.Float32bits(want))
			bad++
		}
	}
	// In place, as the callers use it.
	in := append([]float32(nil), xs...)
	exp32s(in, in)
	for i := range in {
		if !sameBits(in[i], e[i]) {
			t.Fatalf("exp32s in place differs at %d", i)
		}
	}
}

// The sixteen-lane (AVX-512) kernels give the eight-lane (AVX2) kernels'
// bits for exp32s, sigmoid32s and siluGate32, at lengths that end in a
// whole 16-block, in an 8-block, and in a scalar tail.
func TestVexp512MatchesAVX2(t *testing.T) {
	if !vexp512 {
		t.Skip("no AVX-512 on this CPU")
	}
	defer func() { vexp512 = true }()
	xs := vexpInputs()
	u := make([]float32, len(xs))
	for i := range u {
		u[i] = float32(i%13) - 6.5
	}
	for _, n := range []int{8, 16, 24, 40, 41, 1024, len(xs)} {
		var outs [2][4][]float32 // per path: exp, sigmoid, silu h, silu s
		for i, wide := range []bool{true, false} {
			vexp512 = wide
			for j := range outs[i] {
				outs[i][j] = make([]float32, n)
			}
			exp32s(outs[i][0], xs[:n])
			sigmoid32s(outs[i][1], xs[:n])
			siluGate32(outs[i][2], outs[i][3], xs[:n], u[:n])
		}
		for j, name := range []string{"exp32s", "sigmoid32s", "siluGate32 h", "siluGate32 s"} {
			for k := range n {
				if a, b := outs[0][j][k], outs[1][j][k]; !sameBits(a, b) {
					t.Fatalf("n %d: %s(%g) = %g [%#x] on 16 lanes, %g [%#x] on 8", n, name, xs[k], a, math.Float32bits(a), b, math.Float32bits(b))
				}
			}
		}
	}
}

// siluGateRows gives the bits of siluGate row by row, on sixteen lanes and
// on eight, at widths that end in a whole 16-block, an 8-block, a partial
// block (the expert width 86, 43) and under eight (scalar rows).
func TestSiluGateRowsMatchesRowByRow(t *testing.T) {
	xs := vexpInputs()
	paths := []bool{false}
	if vexp512 {
		paths = append(paths, true)
		defer func() { vexp512 = true }()
	}
	for _, wide := range paths {
		vexp512 = wide
		for _, w := range []int{5, 8, 16, 24, 43, 86, 344} {
			for _, rows := range []int{1, 3, 17} {
				gu := make([]float32, 2*rows*w)
				for i := range gu {
					gu[i] = xs[(i*7)%len(xs)]
				}
				h, s := make([]float32, rows*w), make([]float32, rows*w)
				siluGateRows(h, s, gu, rows, w)
				for i := 0; i < rows; i++ {
					wantH, wantS := make([]float32, w), make([]float32, w)
					siluGate32(wantH, wantS, gu[2*i*w:(2*i+1)*w], gu[(2*i+1)*w:(2*i+2)*w])
					for k := range w {
						if !sameBits(h[i*w+k], wantH[k]) || !sameBits(s[i*w+k], wantS[k]) {
							t.Fatalf("16 lanes %t, w %d, row %d of %d, element %d: h %g s %g, row by row %g %g",
								wide, w, i, rows, k, h[i*w+k], s[i*w+k], wantH[k], wantS[k])
						}
					}
				}
			}
		}
	}
}

// BenchmarkRowWalks times SwiGLU's three elementwise steps on one science
// DeepSeekMoE expert's rows (228 tokens, width 86, in cache as in an
// expert visit), 63 times (a layer's experts): row by row, as the expert
// loops called them before, and as one row walk. Run with e.g.
//
//	go test ./model/ops -run '^$' -bench RowWalks -benchtime 200x
func BenchmarkRowWalks(b *testing.B) {
	const rows, w, experts = 228, 86, 63
	xs := vexpInputs()
	gu := make([]float32, 2*rows*w)
	for i := range gu {
		gu[i] = xs[(i*7)%len(xs)] / 8
	}
	h, s, dh, dgu := make([]float32, rows*w), make([]float32, rows*w), make([]float32, rows*w), make([]float32, 2*rows*w)
	siluGateRows(h, s, gu, rows, w)
	copy(dh, h)
	g := func(i int) []float32 { return gu[2*i*w : (2*i+1)*w] }
	u := func(i int) []float32 { return gu[(2*i+1)*w : (2*i+2)*w] }
	row := func(x []float32, i int) []float32 { return x[i*w : (i+1)*w] }
	for _, c := range []struct {
		name string
		run  func()
	}{
		{"silu/rows", func() {
			for i := range rows {
				siluGate32(row(h, i), row(s, i), g(i), u(i))
			}
		}},
		{"silu/walk", func() { siluGateRows(h, s, gu, rows, w) }},
		{"hidden/rows", func() {
			for i := range rows {
				mul3(row(h, i), g(i), row(s, i), u(i))
			}
		}},
		{"hidden/walk", func() { hiddenRows(h, gu, s, rows, w) }},
		{"grad/rows", func() {
			for i := range rows {
				swigluGrad(dgu[2*i*w:(2*i+1)*w], dgu[(2*i+1)*w:(2*i+2)*w], row(dh, i), g(i), u(i), row(s, i))
			}
		}},
		{"grad/walk", func() { swigluGradRows(dgu, dh, gu, s, rows, w) }},
	} {
		b.Run(c.name, func(b *testing.B) {
			for b.Loop() {
				for range experts {
					c.run()
				}
			}
		})
	}
}

// The vector kernels at the shapes they run on: attention rows (T = 128,
// 256), a SwiGLU hidden matrix of the science model ([2048, 344]) and of
// the bench model ([2048, 1024]).
func BenchmarkExp32(b *testing.B) {
	kernels := []struct {
		prefix string // "" for exp, "sigmoid-"
		scalar func(float32) float32
		vector func(dst, src []float32)
	}{{"", exp32, exp32s}, {"sigmoid-", sigmoid32, sigmoid32s}}
	for _, n := range []int{128, 256, 2048 * 344, 2048 * 1024} {
		xs := make([]float32, n)
		r := rand.New(rand.NewPCG(3, 4))
		for i := range xs {
			xs[i] = float32(-20 * r.Float64())
		}
		dst := make([]float32, n)
		for _, k := range kernels {
			b.Run(sizeName(n)+"/"+k.prefix+"scalar", func(b *testing.B) {
				b.SetBytes(int64(8 * n))
				for b.Loop() {
					for i, x := range xs {
						dst[i] = k.scalar(x)
					}
				}
			})
			// Sixteen lanes where the CPU has them, and eight for comparison.
			for _, wide := range []bool{true, false} {
				name := "vector"
				if !wide {
					if !vexp512 {
						continue
					}
					name = "vector-8lanes"
				}
				b.Run(sizeName(n)+"/"+k.prefix+name, func(b *testing.B) {
					defer func(v bool) { vexp512 = v }(vexp512)
					vexp512 = vexp512 && wide
					b.SetBytes(int64(8 * n))
					for b.Loop() {
						k.vector(dst, xs)
					}
				})
			}
		}
	}
}

func sizeName(n int) string {
	switch n {
	case 128:
		return "row128"
	case 256:
		return "row256"
	case 2048 * 344:
		return "sci-swiglu"
	}
	return "bench-swiglu"
}
