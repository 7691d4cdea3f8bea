package blas

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

// TestRowsMatMul checks RowsMatMul against a float64 product of the rows
// its offsets name, at shapes that reach every tile: row counts with and
// without a partial last tile, columns in 32-, 16- and masked chunks (the
// last on eight or sixteen lanes), one term and many; rows anywhere in a,
// repeated and out of order. Each element must be within a float32 sum's
// error of the float64 value, and C's rows past m must be untouched.
func TestRowsMatMul(t *testing.T) {
	if !RowsOK() {
		t.Skip("no AVX-512 here: RowsMatMul is not used")
	}
	r := rand.New(rand.NewPCG(3, 4))
	for _, s := range [][3]int{
		{8, 32, 1}, {8, 16, 5}, {16, 48, 7}, {3, 86, 128}, {228, 172, 128}, {13, 7, 9},
		{9, 8, 3}, {7, 9, 2}, {1, 1, 1}, {20, 344, 64}, {64, 63, 128}, {5, 100, 33}, {8, 49, 3},
	} {
		m, n, k := s[0], s[1], s[2]
		t.Run(fmt.Sprintf("%dx%dx%d", m, n, k), func(t *testing.T) {
			rows := m + 5
			a := make([]float32, rows*k+3)
			for i := range a {
				a[i] = float32(r.NormFloat64())
			}
			offs := make([]int, m)
			for i := range offs {
				offs[i] = r.IntN(rows)*k + r.IntN(4) // any row, not only row starts
			}
			b := make([]float32, k*n)
			for i := range b {
				b[i] = float32(r.NormFloat64())
			}
			c := make([]float32, (m+1)*n)
			for i := range c {
				c[i] = -7
			}
			RowsMatMul(m, n, k, a, offs, b, c)
			checkTerms(t, m, n, k, c, func(i, j, p int) float64 { return float64(a[offs[i]+p]) * float64(b[p*n+j]) })
		})
	}
}

// TestRowsMatMulScattered: RowsMatMulScattered writes RowsMatMul's rows,
// bit for bit, where its row offsets put them (a permutation of
// 64-byte-aligned rows, with a partial last tile and without), leaves the
// rows it was not given alone, and refuses a row that is not 64-byte
// aligned.
func TestRowsMatMulScattered(t *testing.T) {
	if !RowsOK() {
		t.Skip("no AVX-512 here: RowsMatMulScattered is not used")
	}
	r := rand.New(rand.NewPCG(5, 6))
	for _, s := range [][3]int{{8, 32, 1}, {16, 128, 86}, {13, 64, 43}, {3, 128, 128}, {228, 128, 86}} {
		m, n, k := s[0], s[1], s[2]
		a := make([]float32, (m+3)*k)
		for i := range a {
			a[i] = float32(r.NormFloat64())
		}
		offs := make([]int, m)
		for i := range offs {
			offs[i] = r.IntN(m+3) * k
		}
		b := make([]float32, k*n)
		for i := range b {
			b[i] = float32(r.NormFloat64())
		}
		want := make([]float32, m*n)
		RowsMatMul(m, n, k, a, offs, b, want)
		rows := m + 4 // some rows of c get nothing
		buf := make([]float32, rows*n+16)
		c := buf
		for !Aligned64(c) {
			c = c[1:]
		}
		c = c[:rows*n]
		for i := range c {
			c[i] = -7
		}
		coffs := make([]int, m)
		for i, row := range r.Perm(rows)[:m] {
			coffs[i] = row * n
		}
		RowsMatMulScattered(m, n, k, a, offs, b, c, coffs)
		got := make([]bool, rows)
		for i, co := range coffs {
			got[co/n] = true
			for j := range n {
				if math.Float32bits(c[co+j]) != math.Float32bits(want[i*n+j]) {
					t.Fatalf("%dx%dx%d: row %d (at row %d of c), column %d: %v, RowsMatMul %v", m, n, k, i, co/n, j, c[co+j], want[i*n+j])
				}
			}
		}
		for row, g := range got {
			if !g && slices.ContainsFunc(c[row*n:(row+1)*n], func(v float32) bool { return v != -7 }) {
				t.Fatalf("%dx%dx%d: row %d of c written, no product row goes there", m, n, k, row)
			}
		}
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%dx%dx%d: an unaligned output row did not panic", m, n, k)
				}
			}()
			bad := slices.Clone(coffs)
			bad[m-1]++
			RowsMatMulScattered(m, n, k, a, offs, b, c, bad)
		}()
	}
}

// TestRowsMatMulChecksOperands: too short an operand or an offset past a
// panics instead of reading or writing out of bounds.
func TestRowsMatMulChecksOperands(t *testing.T) {
	if !RowsOK() {
		t.Skip("no AVX-512 here: RowsMatMul is not used")
	}
	a, b, c := make([]float32, 40), make([]float32, 4*8), make([]float32, 8*8)
	for _, tc := range []struct {
		name string
		offs []int
		c    []float32
	}{
		{"offset past a", []int{0, 8, 16, 24, 32, 36, 0, 0}, c},
		{"negative offset", []int{0, -1, 0, 0, 0, 0, 0, 0}, c},
		{"short c", []int{0, 0, 0, 0, 0, 0, 0, 0}, c[:63]},
		{"few offsets", []int{0, 0, 0}, c},
	} {
		t.Run(tc.name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Error("no panic")
				}
			}()
			RowsMatMul(8, 8, 5, a, tc.offs, b, tc.c)
		})
	}
}

// TestOuterSum checks OuterSum against float64 sums of the outer products
// its offsets name, at row counts with and without a last partial tile
// (computed over the rows before it again), every column chunk, no term
// and many, rows anywhere, repeated, out of order.
func TestOuterSum(t *testing.T) {
	if !RowsOK() {
		t.Skip("no AVX-512 here: OuterSum is not used")
	}
	r := rand.New(rand.NewPCG(5, 6))
	for _, s := range [][3]int{
		{8, 32, 1}, {8, 16, 5}, {16, 48, 7}, {128, 86, 228}, {172, 128, 228}, {13, 7, 9},
		{9, 8, 3}, {86, 9, 2}, {8, 1, 0}, {20, 344, 64}, {10, 100, 33}, {8, 49, 3}, {16, 56, 4},
	} {
		m, n, k := s[0], s[1], s[2]
		t.Run(fmt.Sprintf("%dx%dx%d", m, n, k), func(t *testing.T) {
			a, b := make([]float32, 40*m+3), make([]float32, 40*n+3)
			for i := range a {
				a[i] = float32(r.NormFloat64())
			}
			for i := range b {
				b[i] = float32(r.NormFloat64())
			}
			aoffs, boffs := make([]int, k), make([]int, k)
			for p := range k {
				aoffs[p], boffs[p] = r.IntN(40)*m+r.IntN(4), r.IntN(40)*n+r.IntN(4)
			}
			c := make([]float32, (m+1)*n)
			for i := range c {
				c[i] = -7
			}
			OuterSum(m, n, a, aoffs, b, boffs, c)
			checkTerms(t, m, n, k, c, func(i, j, p int) float64 { return float64(a[aoffs[p]+i]) * float64(b[boffs[p]+j]) })
		})
	}
}

// TestOuterSumChecksOperands: an offset that would read past a or b, or
// too few rows, panics instead.
func TestOuterSumChecksOperands(t *testing.T) {
	if !RowsOK() {
		t.Skip("no AVX-512 here: OuterSum is not used")
	}
	a, b, c := make([]float32, 40), make([]float32, 40), make([]float32, 64)
	for _, tc := range []struct {
		name         string
		m            int
		aoffs, boffs []int
	}{
		{"A row past a", 8, []int{0, 33}, []int{0, 0}},
		{"B row past b", 8, []int{0, 0}, []int{33, 0}},
		{"negative offset", 8, []int{-1}, []int{0}},
		{"offset counts differ", 8, []int{0, 0}, []int{0}},
		{"fewer than 8 rows", 7, []int{0}, []int{0}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Error("no panic")
				}
			}()
			OuterSum(tc.m, 8, a, tc.aoffs, b, tc.boffs, c)
		})
	}
}

// checkTerms checks each c[i, j] (i < m, j < n; row stride n) against the
// float64 sum of term(i, j, p) over p < k, within a float32 sum's error,
// and that row m of c still holds the -7 the tests fill it with.
func checkTerms(t *testing.T, m, n, k int, c []float32, term func(i, j, p int) float64) {
	t.Helper()
	for i := 0; i < m; i++ {
		for j := 0; j < n; j++ {
			var want, mag float64
			for p := range k {
				v := term(i, j, p)
				want += v
				mag += math.Abs(v)
			}
			if got := float64(c[i*n+j]); math.Abs(got-want) > 1e-6*float64(k)*mag+1e-30 {
				t.Fatalf("c[%d, %d] = %v, want %v", i, j, got, want)
			}
		}
	}
	for j := 0; j < n; j++ {
		if c[m*n+j] != -7 {
			t.Fatalf("row %d (past m) written at column %d", m, j)
		}
	}
}

// BenchmarkRowTiles times the row tiles at the science models' expert
// shapes on one goroutine, reporting GFLOP/s: an expert's products as
// the routed layer runs them (DeepSeekMoE: 228 slots, width 86; GShard:
// 256 slots, width 344; d = 128), the left rows of RowsMatMul and the
// rows of OuterSum scattered over a 2048-row input as token rows are;
// down_by_slot is the down product streamed to its slots' rows
// (RowsMatMulScattered: its output goes to memory, so it is not the
// kernel's own rate). Operands stay in cache between runs, so the others
// are the kernels' own rates (a step's are lower; docs/BENCHMARKS.md,
// round 17). Run with e.g.
//
//	go test ./internal/blas -run '^$' -bench RowTiles -benchtime 300x
func BenchmarkRowTiles(b *testing.B) {
	if !RowsOK() {
		b.Skip("no AVX-512 here")
	}
	const n, d = 2048, 128
	r := rand.New(rand.NewPCG(9, 10))
	input := make([]float32, n*d)
	for i := range input {
		input[i] = float32(r.NormFloat64())
	}
	for _, m := range []struct {
		name string
		c, w int
	}{{"deepseekmoe", 228, 86}, {"gshard", 256, 344}} {
		tokens := make([]int, m.c) // the expert's token rows, ascending
		for i, t := range r.Perm(n)[:m.c] {
			tokens[i] = t
		}
		slices.Sort(tokens)
		offs, rowsW, rows2W := make([]int, m.c), make([]int, m.c), make([]int, m.c)
		for i, t := range tokens {
			offs[i], rowsW[i], rows2W[i] = t*d, i*m.w, 2*i*m.w
		}
		big := func(k int) []float32 { return lcg(uint64(k), k) }
		wt, wdt, wd := big(d*2*m.w), big(m.w*d), big(d*m.w)
		gu, h, out, dd := make([]float32, m.c*2*m.w), big(m.c*m.w), make([]float32, m.c*d), make([]float32, m.c*m.w)
		dw := make([]float32, 2*m.w*d)
		// The down product by slot: each row to its token's row of an
		// [N·7, D] output, 64-byte aligned, as the forward streams them.
		slotOut := make([]float32, n*7*d+16)
		for !Aligned64(slotOut) {
			slotOut = slotOut[1:]
		}
		slotRows := make([]int, m.c)
		for i, t := range tokens {
			slotRows[i] = (t*7 + i%7) * d
		}
		for _, p := range []struct {
			name  string
			flops int
			run   func()
		}{
			{"gate_up", 2 * m.c * 2 * m.w * d, func() { RowsMatMul(m.c, 2*m.w, d, input, offs, wt, gu) }},
			{"down", 2 * m.c * d * m.w, func() { RowsMatMul(m.c, d, m.w, h, rowsW, wdt, out) }},
			{"down_by_slot", 2 * m.c * d * m.w, func() { RowsMatMulScattered(m.c, d, m.w, h, rowsW, wdt, slotOut, slotRows) }},
			{"dy_wd", 2 * m.c * m.w * d, func() { RowsMatMul(m.c, m.w, d, input, offs, wd, dd) }},
			{"dwd", 2 * d * m.w * m.c, func() { OuterSum(d, m.w, input, offs, h, rowsW, dw) }},
			{"dwg", 2 * m.w * d * m.c, func() { OuterSum(m.w, d, gu, rows2W, input, offs, dw) }},
		} {
			b.Run(m.name+"/"+p.name, func(b *testing.B) {
				for b.Loop() {
					p.run()
				}
				b.ReportMetric(float64(p.flops)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
			})
		}
	}
}
