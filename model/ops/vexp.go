package ops

import "math"

// exp32s sets dst[i] = exp32(src[i]) and sigmoid32s dst[i] =
// sigmoid32(src[i]), eight lanes at a time where the CPU has AVX2
// (vexp_amd64.s). The vector code performs exactly the scalar functions'
// float32 operations in the same order (no fused multiply-add), so every
// result is bit-identical to exp32/sigmoid32 and nothing downstream
// depends on which path ran. dst may alias src.
//
// A length of eight or more goes to the vector kernel whole, a ragged end
// as the last eight floats again (exp32x8), instead of one scalar
// exponential per leftover float.
func exp32s(dst, src []float32) {
	n := len(src)
	dst = dst[:n]
	if vexpOK && n >= 8 {
		exp32x8(&dst[0], &src[0], n)
		return
	}
	for i := range n {
		dst[i] = exp32(src[i])
	}
}

func sigmoid32s(dst, src []float32) {
	dst = dst[:len(src)]
	n := 0
	if vexpOK {
		n = len(src) &^ 7
		if n > 0 {
			sigmoid32x8(&dst[0], &src[0], n)
			if t := vecTail(len(src), disjoint(dst, src)); t < len(src) {
				sigmoid32x8(&dst[t], &src[t], 8)
				n = len(src)
			}
		}
	}
	for i := n; i < len(src); i++ {
		dst[i] = sigmoid32(src[i])
	}
}

// vexpTable holds the constants of exp32 and sigmoid32 as float32 (the
// same roundings the scalar code's constant conversions make), eight copies
// per row for the vector code. Row order is fixed by vexp_amd64.s.
var vexpTable = func() (t [15][8]uint32) {
	const (
		log2e = 1.44269504088896341
		ln2Hi = 0.693359375
		ln2Lo = -2.12194440e-4
	)
	rows := [15]uint32{
		math.Float32bits(-87.33654), // 0: below this exp32 is 0
		0x80000000,                  // 1: sign bit
		127,                         // 2: exponent bias (int32)
		math.Float32bits(1),         // 3
		math.Float32bits(ln2Lo),     // 4
		math.Float32bits(88),        // 5: clamp
		math.Float32bits(5.0000001201e-1),
		math.Float32bits(1.6666665459e-1),
		math.Float32bits(4.1665795894e-2),
		math.Float32bits(8.3334519073e-3),
		math.Float32bits(1.3981999507e-3),
		math.Float32bits(1.9875691500e-4), // 11: p0
		math.Float32bits(ln2Hi),           // 12
		math.Float32bits(0.5),             // 13
		math.Float32bits(log2e),           // 14
	}
	for i, v := range rows {
		for j := range t[i] {
			t[i][j] = v
		}
	}
	return t
}()
