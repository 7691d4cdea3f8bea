package ops

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/moetrain/moetrain/internal/blas"
)

// vecInputs returns n float32 values: random ones of mixed scale with
// special values (zeros, infinities, NaN, subnormals, extremes) mixed in.
func vecInputs(r *rand.Rand, n int) []float32 {
	special := []float32{0, float32(math.Copysign(0, -1)), 1, -1, float32(math.Inf(1)), float32(math.Inf(-1)), float32(math.NaN()),
		math.MaxFloat32, -math.MaxFloat32, math.SmallestNonzeroFloat32, 1e-30, -3e38}
	xs := make([]float32, n)
	for i := range xs {
		switch r.IntN(8) {
		case 0:
			xs[i] = special[r.IntN(len(special))]
		case 1:
			xs[i] = math.Float32frombits(r.Uint32())
		default:
			xs[i] = float32(r.NormFloat64() * math.Pow(10, float64(r.IntN(7)-3)))
		}
	}
	return xs
}

// The vector kernels give the scalar float32 loops' bits (written out here
// independently), at lengths with and without a scalar tail, in place
// where the callers use them so.
func TestVectorKernelsMatchScalarBits(t *testing.T) {
	if !vexpOK {
		t.Skip("no vector kernels on this CPU")
	}
	r := rand.New(rand.NewPCG(3, 4))
	check := func(name string, n int, got, want []float32) {
		t.Helper()
		for i := range want {
			if !sameBits(got[i], want[i]) {
				t.Fatalf("%s, n=%d: element %d = %g [%#x], scalar %g [%#x]", name, n, i, got[i], math.Float32bits(got[i]), want[i], math.Float32bits(want[i]))
			}
		}
	}
	for _, n := range []int{0, 1, 7, 8, 9, 16, 43, 86, 128, 344, 1001} {
		for range 20 {
			a, b, c, y := vecInputs(r, n), vecInputs(r, n), vecInputs(r, n), vecInputs(r, n)
			k := vecInputs(r, 1)[0]

			got, want := make([]float32, n), make([]float32, n)
			mul3(got, a, b, c)
			for i := range want {
				want[i] = a[i] * b[i] * c[i]
			}
			check("mul3", n, got, want)

			got, want = append([]float32(nil), y...), append([]float32(nil), y...)
			axpy(got, k, a)
			for i := range want {
				want[i] += k * a[i]
			}
			check("axpy", n, got, want)

			// sumRows: k axpy calls in one pass, rows anywhere in o.
			for _, k := range []int{1, 2, 7} {
				o := vecInputs(r, 3*n+5)
				offs, gates := make([]int, k), vecInputs(r, k)
				for j := range offs {
					offs[j] = r.IntN(2*n + 6)
				}
				got, want = append([]float32(nil), y...), append([]float32(nil), y...)
				sumRows(got, o, offs, gates)
				for j, off := range offs {
					for i := range want {
						want[i] += gates[j] * o[off+i]
					}
				}
				check(fmt.Sprintf("sumRows k=%d", k), n, got, want)
			}

			got, want = append([]float32(nil), y...), append([]float32(nil), y...)
			addTo(got, a)
			for i := range want {
				want[i] += a[i]
			}
			check("addTo", n, got, want)

			got, want = append([]float32(nil), y...), append([]float32(nil), y...)
			scaleBy(got, k)
			for i := range want {
				want[i] *= k
			}
			check("scaleBy", n, got, want)

			got, want = append([]float32(nil), y...), append([]float32(nil), y...)
			shift(got, k)
			for i := range want {
				want[i] -= k
			}
			check("shift", n, got, want)

			got, want = append([]float32(nil), y...), append([]float32(nil), y...)
			dsoftmax(got, a, k)
			for i := range want {
				want[i] = a[i] * (want[i] - k)
			}
			check("dsoftmax", n, got, want)

			got, want = make([]float32, n), make([]float32, n)
			rmsScale(got, a, b, k)
			for i := range want {
				want[i] = a[i] * (b[i] * k)
			}
			check("rmsScale", n, got, want)

			k2 := vecInputs(r, 1)[0]
			got, want = make([]float32, n), make([]float32, n)
			gotW, wantW := append([]float32(nil), c...), append([]float32(nil), c...)
			rmsGrad(got, gotW, a, b, y, k, k2)
			for i := range want {
				want[i] = k*a[i]*b[i] - y[i]*k2
				wantW[i] += b[i] * y[i] * k
			}
			check("rmsGrad dx", n, got, want)
			check("rmsGrad pw", n, gotW, wantW)

			// swigluGrad in place (dg over g, du over u), as SwiGLU's backward runs it.
			dg, du := append([]float32(nil), a...), append([]float32(nil), b...)
			swigluGrad(dg, du, y, dg, du, c)
			wg, wu := make([]float32, n), make([]float32, n)
			for i := range wg {
				s := c[i]
				wg[i], wu[i] = y[i]*b[i]*s*(1+a[i]*(1-s)), y[i]*a[i]*s
			}
			check("swigluGrad dg", n, dg, wg)
			check("swigluGrad du", n, du, wu)

			// swigluGrad into separate outputs, as the expert backward runs
			// it (the tail then runs as an overlapping vector pass).
			dg, du = make([]float32, n), make([]float32, n)
			swigluGrad(dg, du, y, a, b, c)
			check("swigluGrad dg, separate", n, dg, wg)
			check("swigluGrad du, separate", n, du, wu)

			// sigmoid32s into another row and in place.
			got, want = make([]float32, n), make([]float32, n)
			sigmoid32s(got, a)
			for i := range want {
				want[i] = sigmoid32(a[i])
			}
			check("sigmoid32s", n, got, want)
			got = append([]float32(nil), a...)
			sigmoid32s(got, got)
			check("sigmoid32s in place", n, got, want)

			// siluGate32: the sigmoid and the product in one pass.
			gotH, gotS, wantH := make([]float32, n), make([]float32, n), make([]float32, n)
			siluGate32(gotH, gotS, a, b)
			for i := range wantH {
				wantH[i] = a[i] * want[i] * b[i]
			}
			check("siluGate32 s", n, gotS, want)
			check("siluGate32 h", n, gotH, wantH)
		}
	}
	for _, dh := range []int{16, 32, 64, 6} { // 6: the scalar path
		half := dh / 2
		for range 50 {
			src, cs, sn := vecInputs(r, dh), vecInputs(r, half), vecInputs(r, half)
			got, want, wantU := make([]float32, dh), make([]float32, dh), make([]float32, dh)
			for j := range half {
				x1, x2 := src[j], src[j+half]
				want[j], want[j+half] = x1*cs[j]-x2*sn[j], x2*cs[j]+x1*sn[j]
				wantU[j], wantU[j+half] = x1*cs[j]+x2*sn[j], x2*cs[j]-x1*sn[j]
			}
			rotate(got, src, cs, sn)
			check("rotate", dh, got, want)
			unrotate(got, src, cs, sn)
			check("unrotate", dh, got, wantU)
			copy(got, src)
			rotate(got, got, cs, sn)
			check("rotate in place", dh, got, want)
		}
	}
}

// rowDots gives each row rowDot's sum (laneSum's order), whatever the
// row count, and writes each sum at its row's slot.
func TestRowDotsMatchLanes(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	for _, rows := range []int{0, 1, 3, 4, 5, 9, 16} {
		for _, w := range []int{1, 7, 8, 86, 129} {
			a, b := make([]float32, rows*w), make([]float32, rows*w)
			for i := range a {
				a[i], b[i] = float32(r.NormFloat64()*1e3), float32(r.NormFloat64()*1e-3)
			}
			slots := make([]int32, rows)
			for i, p := range r.Perm(rows) {
				slots[i] = int32(p)
			}
			got := make([]float64, rows)
			rowDots(got, slots, a, b, w)
			for i := 0; i < rows; i++ {
				terms := make([]float64, w)
				for j := range terms {
					terms[j] = float64(a[i*w+j]) * float64(b[i*w+j])
				}
				if want := laneSum(terms); math.Float64bits(got[slots[i]]) != math.Float64bits(want) {
					t.Fatalf("rows=%d w=%d: row %d sums to %v, laneSum %v", rows, w, i, got[slots[i]], want)
				}
			}
		}
	}
}

// laneSum is rowSum's order written out: with vector kernels, eight lane
// sums over the first len(terms) &^ 7 terms (lane j mod 8), c_l = lane l +
// lane l+4, then (c0 + c2) + (c1 + c3), then the rest one at a time;
// without them, one at a time throughout.
func laneSum(terms []float64) float64 {
	var l [8]float64
	n := vecLen(len(terms))
	for j, v := range terms[:n] {
		l[j%8] += v
	}
	var c [4]float64
	for i := range c {
		c[i] = l[i] + l[i+4]
	}
	sum := (c[0] + c[2]) + (c[1] + c[3])
	if n == 0 {
		sum = 0
	}
	for _, v := range terms[n:] {
		sum += v
	}
	return sum
}

// rowSquaresLanes is rowSquares and rowSquaresDot written out (laneSum's
// order).
func rowSquaresLanes(x, g, w []float32) (ss, dot float64) {
	sq, dt := make([]float64, len(x)), make([]float64, len(x))
	for j := range x {
		v := float64(x[j])
		sq[j], dt[j] = v*v, float64(w[j])*float64(g[j])*v
	}
	return laneSum(sq), laneSum(dt)
}

// The vector row sums (RMSNorm's, the attention softmax's) give laneSum's
// bits at every length, and rowSquares gives rowSquaresDot's first sum.
func TestRowSumsMatchLanes(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	for _, n := range []int{1, 7, 8, 9, 16, 23, 64, 128, 344} {
		x, g, w := make([]float32, n), make([]float32, n), make([]float32, n)
		for i := range x {
			x[i], g[i], w[i] = float32(r.NormFloat64()*1e3), float32(r.NormFloat64()*1e-3), float32(r.NormFloat64())
		}
		wantSS, wantDot := rowSquaresLanes(x, g, w)
		ss, dot := rowSquaresDot(x, g, w)
		if math.Float64bits(ss) != math.Float64bits(wantSS) || math.Float64bits(dot) != math.Float64bits(wantDot) {
			t.Errorf("n=%d: rowSquaresDot = %v, %v; lanes written out %v, %v", n, ss, dot, wantSS, wantDot)
		}
		if got := rowSquares(x); math.Float64bits(got) != math.Float64bits(wantSS) {
			t.Errorf("n=%d: rowSquares = %v, lanes written out %v", n, got, wantSS)
		}
		// Terms of float32 size sum exactly in float64 in any order unless
		// their exponents spread wider than float64's precision.
		terms := make([]float64, n)
		for j := range x {
			x[j] = float32(r.NormFloat64() * math.Ldexp(1, r.IntN(80)-40))
			terms[j] = float64(x[j])
		}
		if got, want := rowSum(x), laneSum(terms); math.Float64bits(got) != math.Float64bits(want) {
			t.Errorf("n=%d: rowSum = %v, lanes written out %v", n, got, want)
		}
	}
}

// colSums gives the bits of the per-column loop in row order, on widths
// with and without a partial last vector, with terms spread far enough
// in size that another order would round differently, and leaves what
// lies past col's e entries alone.
func TestColSumsMatchLoop(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 12))
	for _, e := range []int{1, 3, 4, 5, 16, 63, 64, 65} {
		for _, rows := range []int{1, 2, 37, 256} {
			x := make([]float32, rows*e)
			for i := range x {
				x[i] = float32(r.NormFloat64() * math.Ldexp(1, r.IntN(100)-50))
			}
			col, want := make([]float64, e+1), make([]float64, e+1)
			for j := range col {
				col[j] = r.NormFloat64() * 1e10
				want[j] = col[j]
			}
			for row := range rows {
				for j := range e {
					want[j] += float64(x[row*e+j])
				}
			}
			colSums(col, x, rows, e)
			for j := range col {
				if math.Float64bits(col[j]) != math.Float64bits(want[j]) {
					t.Errorf("e=%d rows=%d: col[%d] = %v, the loop's %v", e, rows, j, col[j], want[j])
					break
				}
			}
		}
	}
}

func TestDisjoint(t *testing.T) {
	buf := make([]float32, 32)
	for _, c := range []struct {
		dst, src []float32
		want     bool
	}{
		{buf[:8], buf[8:16], true},
		{buf[8:16], buf[:8], true},
		{buf[:8], buf[7:16], false},
		{buf[4:12], buf[:5], false},
		{buf[:8], buf[:8], false},
		{buf[:8], nil, true},
		{nil, buf, true},
	} {
		if got := disjoint(c.dst, c.src); got != c.want {
			t.Errorf("disjoint(buf[%d:%d], %d elements at %d) = %t", cap(buf)-cap(c.dst), cap(buf)-cap(c.dst)+len(c.dst), len(c.src), cap(buf)-cap(c.src), got)
		}
	}
}

// softmaxRow32 with room past the row (garbage values, NaN included) gives
// the row the bits it gets without.
func TestSoftmaxRowRoomKeepsBits(t *testing.T) {
	r := rand.New(rand.NewPCG(15, 16))
	for n := 1; n <= 130; n++ {
		x := make([]float32, n)
		for i := range x {
			x[i] = float32(r.NormFloat64() * 5)
		}
		want := append([]float32(nil), x...)
		softmaxRow32(want, want)
		room := append(append([]float32(nil), x...), vecInputs(r, 9)...)
		softmaxRow32(room[:n], room)
		for i := range want {
			if !sameBits(room[i], want[i]) {
				t.Fatalf("n=%d: element %d = %g with room, %g without", n, i, room[i], want[i])
			}
		}
	}
}

// causalSoftmax32 gives every causal row softmaxRow32's bits and clears
// the rest of each row to its block's end, for T with and without
// remainders of eight and of the block, a NaN row and a −∞ row, on eight
// and (where the CPU has them) sixteen lanes.
func TestCausalSoftmaxMatchesRows(t *testing.T) {
	defer func(v bool) { vexp512 = v }(vexp512)
	for _, wide := range []bool{false, vexp512} { // both lane widths where the CPU has AVX-512
		vexp512 = wide
		testCausalSoftmaxMatchesRows(t)
	}
}

func testCausalSoftmaxMatchesRows(t *testing.T) {
	r := rand.New(rand.NewPCG(17, 18))
	for _, T := range []int{1, 3, 4, 7, 64, 67, 128, 130} {
		p := make([]float32, T*T)
		for i := range p {
			p[i] = float32(r.NormFloat64() * 3)
		}
		if T >= 67 {
			// A NaN in a row's whole vectors sends it to softmaxRow32; one
			// in its last partial vector, or in its room past the diagonal,
			// stays in the block kernel; −∞ and zeros of both signs.
			p[20*T+5], p[66*T+3] = float32(math.NaN()), float32(math.Inf(-1))
			p[30*T+28], p[40*T+50] = float32(math.NaN()), float32(math.NaN())
			p[50*T+2], p[50*T+9] = 0, float32(math.Copysign(0, -1))
		}
		want := append([]float32(nil), p...)
		for i := 0; i < T; i++ {
			softmaxRow32(want[i*T:i*T+i+1], want[i*T:i*T+i+1])
			clear(want[i*T+i+1 : i*T+min(T, (i/attnBlock+1)*attnBlock)])
		}
		causalSoftmax32(p, T)
		for i := range want {
			if !sameBits(p[i], want[i]) {
				t.Fatalf("T=%d: element (%d, %d) = %g, row by row %g", T, i/T, i%T, p[i], want[i])
			}
		}
	}
}

// The softmaxes, whose row maximum comes from max32x8, give the bits of the
// scalar formula with maxOfRow's maximum: rows of zeros of both signs,
// infinities and NaN included.
func TestSoftmaxWithVectorMaxMatchesScalar(t *testing.T) {
	r := rand.New(rand.NewPCG(21, 22))
	negZero := float32(math.Copysign(0, -1))
	special := []float32{0, negZero, float32(math.Inf(-1)), float32(math.NaN()), -1e30, 3}
	for it := 0; it < 3000; it++ {
		n := 1 + r.IntN(70)
		x := make([]float32, n)
		for i := range x {
			switch r.IntN(4) {
			case 0:
				x[i] = special[r.IntN(len(special))]
			case 1:
				x[i] = []float32{0, negZero}[r.IntN(2)]
			default:
				x[i] = float32(r.NormFloat64() * 3)
			}
		}
		// attention's float32 softmax
		want := append([]float32(nil), x...)
		m := maxOfRow(want)
		for i := range want {
			want[i] = exp32(want[i] - m)
		}
		terms := make([]float64, len(want))
		for i, e := range want {
			terms[i] = float64(e)
		}
		sum := laneSum(terms)
		for i := range want {
			want[i] *= float32(1 / sum)
		}
		got := append([]float32(nil), x...)
		softmaxRow32(got, got)
		for i := range want {
			if !sameBits(got[i], want[i]) {
				t.Fatalf("softmaxRow32(%v): element %d = %g, scalar %g", x, i, got[i], want[i])
			}
		}
		// the router softmax
		want = rowSoftmax32Scalar(x)
		RowSoftmax(got, x)
		for i := range want {
			if !sameBits(got[i], want[i]) {
				t.Fatalf("RowSoftmax(%v): element %d = %g, scalar %g", x, i, got[i], want[i])
			}
		}
	}
}

// TestTransposeInto: every element lands at its transposed place for row
// and column counts on and off the 8×8 blocks and the four-row step, and a destination wider than the
// source's row count keeps its other columns (stackedTransposed writes
// two transposes side by side into one [d, 2f] buffer).
func TestTransposeInto(t *testing.T) {
	for _, c := range []struct{ rows, cols, ldd int }{{1, 1, 1}, {3, 5, 3}, {4, 4, 4}, {7, 3, 9}, {8, 8, 8}, {19, 21, 25}, {16, 9, 16}, {86, 128, 172}, {344, 128, 344}, {258, 128, 258}} {
		checkTranspose(t, 0, c.rows, c.cols, c.ldd, func(dst, src []float32) { transposeInto(dst, c.ldd, src, c.rows, c.cols) })
	}
}

// TestTransposeRowsTails: transposeRows on row ranges that do not start
// at zero and shapes whose last rows or columns are not a whole 8×8 block
// (taken as the eight ending there, over blocks already written).
func TestTransposeRowsTails(t *testing.T) {
	for _, c := range []struct{ r0, r1, cols, ldd int }{
		{0, 86, 128, 172}, {0, 128, 86, 128}, {8, 86, 128, 90}, {3, 14, 12, 20}, {0, 8, 15, 8}, {0, 15, 8, 15}, {5, 12, 9, 16}, {0, 7, 30, 7},
	} {
		checkTranspose(t, c.r0, c.r1, c.cols, c.ldd, func(dst, src []float32) { transposeRows(dst, c.ldd, src, c.r0, c.r1, c.cols) })
	}
}

// checkTranspose runs transpose on a source of r1 rows of cols distinct
// values and a destination of cols rows of stride ldd filled with -1, and
// wants rows r0..r1−1 transposed and every other element untouched.
func checkTranspose(t *testing.T, r0, r1, cols, ldd int, transpose func(dst, src []float32)) {
	t.Helper()
	src := make([]float32, r1*cols)
	for i := range src {
		src[i] = float32(i + 1)
	}
	dst := make([]float32, cols*ldd)
	for i := range dst {
		dst[i] = -1
	}
	transpose(dst, src)
	for col := range cols {
		for r := range ldd {
			want := float32(-1)
			if r >= r0 && r < r1 {
				want = src[r*cols+col]
			}
			if got := dst[col*ldd+r]; got != want {
				t.Fatalf("rows %d..%d of %d columns into stride %d: dst[%d][%d] = %v, want %v", r0, r1, cols, ldd, col, r, got, want)
			}
		}
	}
}

// BenchmarkTransposeInto times transposeInto on hot weights of the
// science model's forward products (the SwiGLU gate and up weights into
// the stacked copy, its down weight, the q, k, v weights, a fine-grained
// expert's gate and down weights), reporting ns a float. Run with e.g.
//
//	go test ./model/ops -run '^$' -bench TransposeInto -benchtime 3000x
func BenchmarkTransposeInto(b *testing.B) {
	for _, c := range []struct {
		name            string
		rows, cols, ldd int
	}{{"gate_344x128", 344, 128, 688}, {"down_128x344", 128, 344, 128}, {"qkv_384x128", 384, 128, 384},
		// A DeepSeekMoE expert's gate weight into the stacked transposed
		// copy and its down weight (width 86: a last partial block).
		{"expert_gate_86x128", 86, 128, 172}, {"expert_down_128x86", 128, 86, 128}} {
		src, dst := make([]float32, c.rows*c.cols), make([]float32, c.cols*c.ldd)
		b.Run(c.name, func(b *testing.B) {
			for b.Loop() {
				transposeInto(dst, c.ldd, src, c.rows, c.cols)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*c.rows*c.cols), "ns/float")
		})
	}
}

// hiddenRows and swigluGradRows give the bits of mul3 and swigluGrad row
// by row, at widths that end in a whole 8-block, a partial block (the
// expert widths 86 and 43) and under eight (scalar rows).
func TestRowWalksMatchRowByRow(t *testing.T) {
	r := rand.New(rand.NewPCG(31, 32))
	for _, w := range []int{5, 8, 16, 43, 86, 344} {
		for _, rows := range []int{1, 2, 17} {
			gu, s, dh := make([]float32, 2*rows*w), make([]float32, rows*w), make([]float32, rows*w)
			for i := range gu {
				gu[i] = float32(r.NormFloat64() * 3)
			}
			for i := range s {
				s[i], dh[i] = r.Float32(), float32(r.NormFloat64())
			}
			h, dgu := make([]float32, rows*w), make([]float32, 2*rows*w)
			hiddenRows(h, gu, s, rows, w)
			swigluGradRows(dgu, dh, gu, s, rows, w)
			for i := 0; i < rows; i++ {
				wantH, wantDG, wantDU := make([]float32, w), make([]float32, w), make([]float32, w)
				g, u := gu[2*i*w:(2*i+1)*w], gu[(2*i+1)*w:(2*i+2)*w]
				mul3(wantH, g, s[i*w:(i+1)*w], u)
				swigluGrad(wantDG, wantDU, dh[i*w:(i+1)*w], g, u, s[i*w:(i+1)*w])
				for k := range w {
					if !sameBits(h[i*w+k], wantH[k]) || !sameBits(dgu[2*i*w+k], wantDG[k]) || !sameBits(dgu[(2*i+1)*w+k], wantDU[k]) {
						t.Fatalf("w %d, row %d of %d, element %d: h %g dg %g du %g, row by row %g %g %g",
							w, i, rows, k, h[i*w+k], dgu[2*i*w+k], dgu[(2*i+1)*w+k], wantH[k], wantDG[k], wantDU[k])
					}
				}
			}
		}
	}
}

// TestCausalDsoftmaxRowsMatchesRows: dsoftmaxRows32x8 (causal) gives the
// bits of dsoftmax(rowDot) and clear row by row, leaves every float past
// each row's 8-row tile end alone, and handles rows under eight floats
// (scalar only) and partial vectors.
func TestCausalDsoftmaxRowsMatchesRows(t *testing.T) {
	if !vexpOK {
		t.Skip("no vector kernels here")
	}
	r := rand.New(rand.NewPCG(23, 24))
	for _, T := range []int{8, 16, 40, 128} {
		p, dp := make([]float32, T*T), make([]float32, T*T)
		for i := range p {
			p[i], dp[i] = float32(r.Float64()), float32(r.NormFloat64())
		}
		want := slices.Clone(dp)
		for i := 0; i < T; i++ {
			row, pr := want[i*T:i*T+i+1], p[i*T:i*T+i+1]
			dsoftmax(row, pr, float32(rowDot(pr, row)))
			clear(want[i*T+i+1 : i*T+i&^7+8])
		}
		dsoftmaxRows32x8(&dp[0], &p[0], T, T, 1, true)
		for i := range want {
			if !sameBits(dp[i], want[i]) {
				t.Fatalf("T=%d: element (%d, %d) = %g, row by row %g", T, i/T, i%T, dp[i], want[i])
			}
		}
	}
}

// TestSoftmaxRowsMatchesRowSoftmax: the router's softmaxRows (one kernel
// call per chunk of rows) gives RowSoftmax's bits row by row, the
// decoder's path, and its backward those of the per-row calls, on both lane widths, at widths with and without a
// partial last vector, with a NaN in a row's whole vectors (RowSoftmax's
// own path), a NaN in its partial vector, −∞, and zeros of both signs.
func TestSoftmaxRowsMatchesRowSoftmax(t *testing.T) {
	defer func(v bool) { vexp512 = v }(vexp512)
	for _, wide := range []bool{false, vexp512} {
		vexp512 = wide
		r := rand.New(rand.NewPCG(25, 26))
		for _, e := range []int{3, 8, 16, 63, 64, 100} {
			const n = 150 // past softmaxRows' 64-row groups
			x := make([]float32, n*e)
			for i := range x {
				x[i] = float32(r.NormFloat64() * 4)
			}
			x[2*e+1], x[5*e+e-1], x[7*e] = float32(math.NaN()), float32(math.NaN()), float32(math.Inf(-1))
			x[9*e], x[9*e+e/2] = 0, float32(math.Copysign(0, -1))
			x[100*e+2] = float32(math.NaN())
			want := make([]float32, n*e)
			for i := range n {
				RowSoftmax(want[i*e:(i+1)*e], x[i*e:(i+1)*e])
			}
			got := make([]float32, n*e)
			softmaxRows(got, x, n, e)
			for i := range want {
				if !sameBits(got[i], want[i]) {
					t.Fatalf("wide=%v e=%d: element (%d, %d) = %g, RowSoftmax %g", wide, e, i/e, i%e, got[i], want[i])
				}
			}
			// The backward: one kernel call per chunk against rowDot,
			// copy and dsoftmax row by row.
			dy := make([]float32, n*e)
			for i := range dy {
				dy[i] = float32(r.NormFloat64())
			}
			wantDx := make([]float32, n*e)
			for i := range n {
				g, s, dr := dy[i*e:(i+1)*e], want[i*e:(i+1)*e], wantDx[i*e:(i+1)*e]
				dot := rowDot(g, s)
				copy(dr, g)
				dsoftmax(dr, s, float32(dot))
			}
			gotDx := make([]float32, n*e)
			softmaxBackwardRows(gotDx, want, dy, n, e)
			for i := range wantDx {
				if !sameBits(gotDx[i], wantDx[i]) {
					t.Fatalf("wide=%v e=%d: dx (%d, %d) = %g, row by row %g", wide, e, i/e, i%e, gotDx[i], wantDx[i])
				}
			}
		}
	}
}

// TestGateRowsMatchRowByRow: gateRows's one pass (gateRows32x8) gives the
// bits of rowDot and scale32 row by row, NaN, infinities and subnormals
// among the inputs, at widths with and without a scalar tail, slots out
// of order, each row scaled by its own gate; without a dgate it only
// scales.
func TestGateRowsMatchRowByRow(t *testing.T) {
	if !vexpOK {
		t.Skip("no vector kernels on this CPU")
	}
	r := rand.New(rand.NewPCG(31, 32))
	for _, w := range []int{1, 7, 8, 9, 86, 128} {
		const rows, k = 7, 3 // three pairs of rows and one alone
		h, dd := vecInputs(r, rows*w), vecInputs(r, rows*w)
		slots := make([]int32, rows)
		for i, p := range r.Perm(rows * k)[:rows] {
			slots[i] = int32(p)
		}
		gates := make([]float64, rows) // row i's gate
		for i := range gates {
			gates[i] = float64(vecInputs(r, 1)[0])
		}
		wantH, wantD, want := slices.Clone(h), slices.Clone(dd), make([]float64, rows*k)
		for i, sl := range slots {
			want[sl] = rowDot(wantH[i*w:(i+1)*w], wantD[i*w:(i+1)*w])
			g := float32(gates[i])
			scale32(wantH[i*w:(i+1)*w], g)
			scale32(wantD[i*w:(i+1)*w], g)
		}
		got := make([]float64, rows*k)
		gotH, gotD := slices.Clone(h), slices.Clone(dd)
		gateRows(got, slots, gates, gotH, gotD, w)
		for i := range want {
			if math.Float64bits(got[i]) != math.Float64bits(want[i]) && !(got[i] != got[i] && want[i] != want[i]) {
				t.Fatalf("w=%d: dgate[%d] = %g, row by row %g", w, i, got[i], want[i])
			}
		}
		for i := range wantH {
			if !sameBits(gotH[i], wantH[i]) || !sameBits(gotD[i], wantD[i]) {
				t.Fatalf("w=%d: element %d scaled to %g, %g; row by row %g, %g", w, i, gotH[i], gotD[i], wantH[i], wantD[i])
			}
		}
		onlyH, onlyD := slices.Clone(h), slices.Clone(dd)
		gateRows(nil, slots, gates, onlyH, onlyD, w)
		if !slices.EqualFunc(onlyH, wantH, sameBits) || !slices.EqualFunc(onlyD, wantD, sameBits) {
			t.Fatalf("w=%d: without a dgate the rows are not scaled as with one", w)
		}
	}
}

// TestDownWeightGradMatchesOuterSum: downWeightGrad's transposed product
// gives blas.OuterSum's bits as [D, W], on the widths it transposes (86,
// 43: not multiples of 32) and those it leaves (344 at D = 100, 64), rows
// repeated and out of order, NaN, infinities and subnormals among the
// inputs.
func TestDownWeightGradMatchesOuterSum(t *testing.T) {
	if !blas.RowsOK() {
		t.Skip("no row tiles on this CPU")
	}
	r := rand.New(rand.NewPCG(33, 34))
	for _, sh := range []struct{ d, w int }{{128, 86}, {64, 43}, {128, 64}, {100, 344}} {
		const n, c = 40, 23
		dy, h := vecInputs(r, n*sh.d), vecInputs(r, c*sh.w)
		offs, hoffs := make([]int, c), make([]int, c)
		for i := range offs {
			offs[i], hoffs[i] = r.IntN(n)*sh.d, r.IntN(c)*sh.w
		}
		want, got := make([]float32, sh.d*sh.w), make([]float32, sh.d*sh.w)
		blas.OuterSum(sh.d, sh.w, dy, offs, h, hoffs, want)
		downWeightGrad(got, dy, offs, h, hoffs, sh.d, sh.w)
		if !slices.EqualFunc(got, want, sameBits) {
			t.Errorf("d=%d w=%d: downWeightGrad differs from OuterSum", sh.d, sh.w)
		}
	}
}

// TestStreamCopy: streamCopy32 copies exactly n floats, from and to every
// alignment, the lengths around a cache line's 16 floats, and touches
// nothing past them.
func TestStreamCopy(t *testing.T) {
	if !vexp512 {
		t.Skip("no AVX-512 on this CPU")
	}
	r := rand.New(rand.NewPCG(51, 52))
	for _, n := range []int{0, 1, 15, 16, 17, 31, 33, 100, 344} {
		for off := range 17 {
			src := vecInputs(r, n+16)
			dst := make([]float32, n+48)
			for i := range dst {
				dst[i] = -3
			}
			if n > 0 {
				streamCopy32(&dst[off], &src[off%5], n)
			}
			for i, v := range dst {
				want := float32(-3)
				if i >= off && i < off+n {
					want = src[off%5+i-off]
				}
				if !sameBits(v, want) {
					t.Fatalf("n=%d offset %d: dst[%d] = %v, want %v", n, off, i, v, want)
				}
			}
		}
	}
}
