package checkpoints

import (
	"math"
	"math/rand/v2"
	"testing"
)

// halfFormat describes a 16-bit float format for the shared property tests.
type halfFormat struct {
	name   string
	from   func(float32) uint16
	to     func(uint16) float32
	infBit uint16 // magnitude bits of +Inf
}

var halfFormats = []halfFormat{
	{"bf16", bf16FromF32, bf16ToF32, 0x7F80},
	{"f16", f16FromF32, f16ToF32, 0x7C00},
}

// Every 16-bit pattern, NaNs included, survives decode then encode: a file
// read and written again keeps its bits.
func TestHalfExhaustiveRoundTrip(t *testing.T) {
	t.Parallel()
	for _, hf := range halfFormats {
		for h := 0; h < 1<<16; h++ {
			if got := hf.from(hf.to(uint16(h))); got != uint16(h) {
				t.Fatalf("%s: 0x%04X -> %g -> 0x%04X, want 0x%04X", hf.name, h, hf.to(uint16(h)), got, h)
			}
		}
	}
}

// Rounding is to the nearest representable value, ties to even, and
// overflow goes to Inf only beyond the midpoint above the largest finite
// value. Checked in float64 arithmetic, where every candidate is exact.
func TestHalfRoundNearestEven(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(1, 2))
	var inputs []float32
	for i := 0; i < 200000; i++ {
		inputs = append(inputs, math.Float32frombits(rng.Uint32()))
	}
	// Exact ties and near-ties around representable values in both formats,
	// subnormals, the overflow boundary and signed zeros.
	for i := 0; i < 20000; i++ {
		b := rng.Uint32() &^ 0xFFFF
		inputs = append(inputs, math.Float32frombits(b|0x8000), math.Float32frombits(b|0x7FFF), math.Float32frombits(b|0x8001))
		b = rng.Uint32() &^ 0x1FFF
		inputs = append(inputs, math.Float32frombits(b|0x1000), math.Float32frombits(b|0x0FFF))
	}
	inputs = append(inputs, 0, float32(math.Copysign(0, -1)), 65504, 65520, 65519.99, 1.0/(1<<25), 1.5/(1<<25), 1.0/(1<<24),
		math.MaxFloat32, -math.MaxFloat32, math.SmallestNonzeroFloat32)
	for _, hf := range halfFormats {
		maxFinite := float64(hf.to(hf.infBit - 1))
		mid := maxFinite + (maxFinite-float64(hf.to(hf.infBit-2)))/2
		for _, f := range inputs {
			if f != f || math.IsInf(float64(f), 0) {
				continue
			}
			r := hf.from(f)
			if (r&0x8000 != 0) != math.Signbit(float64(f)) {
				t.Fatalf("%s(%g): sign lost, got 0x%04X", hf.name, f, r)
			}
			x := math.Abs(float64(f))
			m := r & 0x7FFF
			if m == hf.infBit {
				if x < mid {
					t.Fatalf("%s(%g) = Inf, but %g is below the overflow midpoint %g", hf.name, f, x, mid)
				}
				continue
			}
			if x >= mid {
				t.Fatalf("%s(%g) = 0x%04X, want Inf at or beyond the overflow midpoint %g", hf.name, f, r, mid)
			}
			if m > hf.infBit {
				t.Fatalf("%s(%g) = NaN 0x%04X", hf.name, f, r)
			}
			d := math.Abs(float64(hf.to(m)) - x)
			for _, nb := range []uint16{m - 1, m + 1} {
				if (nb == m-1 && m == 0) || nb >= hf.infBit {
					continue
				}
				dn := math.Abs(float64(hf.to(nb)) - x)
				if dn < d || (dn == d && m&1 == 1) {
					t.Fatalf("%s(%g) = 0x%04X (%g), but 0x%04X (%g) is nearer or the even tie", hf.name, f, r, hf.to(m), nb, hf.to(nb))
				}
			}
		}
	}
}
