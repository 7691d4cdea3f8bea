package checkpoints

import "math"

// bf16FromF32 rounds f to bfloat16 with round-to-nearest-even, the rounding
// PyTorch's float→bfloat16 cast uses. A NaN keeps its sign and the top of its
// payload (PyTorch instead writes 0x7FC0 for every NaN), so a NaN read from a
// BF16 file is written back with the same bits.
func bf16FromF32(f float32) uint16 {
	b := math.Float32bits(f)
	if f != f {
		h := uint16(b >> 16)
		if h&0x7F == 0 {
			h |= 0x40 // payload only in the dropped bits: stay a NaN, not Inf
		}
		return h
	}
	// Adding 0x7FFF plus the lowest kept bit rounds ties to even; a carry
	// out of the mantissa bumps the exponent, and out of the largest
	// finite value yields Inf, both of which are the correct results.
	b += 0x7FFF + (b>>16)&1
	return uint16(b >> 16)
}

// bf16ToF32 is exact: bfloat16 is the top half of a float32.
func bf16ToF32(h uint16) float32 {
	return math.Float32frombits(uint32(h) << 16)
}

// f16FromF32 rounds f to IEEE binary16 with round-to-nearest-even, going
// through binary16 subnormals and overflowing to ±Inf. A NaN keeps its sign
// and the top of its payload, so NaNs read from an F16 file round-trip.
func f16FromF32(f float32) uint16 {
	b := math.Float32bits(f)
	sign := uint16(b>>16) & 0x8000
	exp := int(b>>23) & 0xFF
	mant := b & 0x7FFFFF
	if exp == 0xFF {
		if mant != 0 {
			m := uint16(mant >> 13)
			if m == 0 {
				m = 0x200 // payload only in the dropped bits: stay a NaN, not Inf
			}
			return sign | 0x7C00 | m
		}
		return sign | 0x7C00
	}
	e := exp - 127 + 15 // binary16 biased exponent
	if e >= 0x1F {
		return sign | 0x7C00
	}
	if e <= 0 {
		// Below 2^-25 everything rounds to zero (2^-25 itself ties to the
		// even zero); float32 subnormals land here too.
		if e < -10 {
			return sign
		}
		mant |= 0x800000 // the implicit leading 1 becomes explicit
		shift := uint(14 - e)
		r := mant >> shift
		rem := mant & (1<<shift - 1)
		half := uint32(1) << (shift - 1)
		if rem > half || (rem == half && r&1 == 1) {
			r++ // may carry into the smallest normal: still the right bits
		}
		return sign | uint16(r)
	}
	r := uint32(e)<<10 | mant>>13
	rem := mant & 0x1FFF
	if rem > 0x1000 || (rem == 0x1000 && r&1 == 1) {
		r++ // a carry into the exponent (up to Inf) is the correct result
	}
	return sign | uint16(r)
}

// f16ToF32 is exact: every binary16 value is a float32.
func f16ToF32(h uint16) float32 {
	sign := uint32(h&0x8000) << 16
	exp := uint32(h>>10) & 0x1F
	mant := uint32(h & 0x3FF)
	switch {
	case exp == 0x1F:
		return math.Float32frombits(sign | 0x7F800000 | mant<<13)
	case exp != 0:
		return math.Float32frombits(sign | (exp+127-15)<<23 | mant<<13)
	case mant == 0:
		return math.Float32frombits(sign)
	default: // subnormal: mant × 2^-24, exact in float32
		v := float32(mant) * (1.0 / (1 << 24))
		if sign != 0 {
			v = -v
		}
		return v
	}
}
