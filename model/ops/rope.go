package ops

import (
	"fmt"
	"math"
)

// Rotary position embedding in the rotate-half (GPT-NeoX / HF LLaMA)
// convention (DESIGN.md §1): dimension j of a head is paired with j+dh/2, and with
// c = cos(p·inv_freq[j]), s = sin(p·inv_freq[j]) at position p
//
//	x'[j]      = x[j]·c − x[j+dh/2]·s
//	x'[j+dh/2] = x[j+dh/2]·c + x[j]·s
//
// which is x⊙C + rotate_half(x)⊙S with C = [cos, cos], S = [sin, sin].
// Angles and their cos/sin are computed in float64 whatever the element type,
// so the tables of the training op and of ApplyRoPE (decoding) agree bit for
// bit. (torchref.py builds them in float32; the difference is ~1e-7·p rad.)

// invFreq is theta^(−2j/dh).
func invFreq(j, dh int, theta float64) float64 {
	return math.Pow(theta, -2*float64(j)/float64(dh))
}

// ropeTable holds cos and sin of p·inv_freq[j] for p < seq, j < dh/2, laid
// out [seq, dh/2]. It depends only on (seq, dh, theta), so each op builds it
// once and shares it with its backward op.
type ropeTable struct {
	half         int
	cos, sin     []float64
	cos32, sin32 []float32 // the same values rounded once, for float32 kernels
}

func newRopeTable(seq, dh int, theta float64) *ropeTable {
	half := dh / 2
	t := &ropeTable{half: half, cos: make([]float64, seq*half), sin: make([]float64, seq*half)}
	inv := make([]float64, half)
	for j := range inv {
		inv[j] = invFreq(j, dh, theta)
	}
	for p := 0; p < seq; p++ {
		for j, f := range inv {
			t.sin[p*half+j], t.cos[p*half+j] = math.Sincos(float64(p) * f)
		}
	}
	t.cos32, t.sin32 = make([]float32, len(t.cos)), make([]float32, len(t.sin))
	for i := range t.cos {
		t.cos32[i], t.sin32[i] = float32(t.cos[i]), float32(t.sin[i])
	}
	return t
}

// ropeAt returns the cos and sin rows of position p in element type F.
func ropeAt[F Float](t *ropeTable, p int) (cos, sin []F) {
	c, s := ropeAll[F](t)
	lo, hi := p*t.half, (p+1)*t.half
	return c[lo:hi], s[lo:hi]
}

// ropeAll returns the whole cos and sin tables ([seq, dh/2]) in element
// type F: loops over positions take them once rather than per row.
func ropeAll[F Float](t *ropeTable) (cos, sin []F) {
	var z F
	if _, ok := any(z).(float32); ok {
		return any(t.cos32).([]F), any(t.sin32).([]F)
	}
	return any(t.cos).([]F), any(t.sin).([]F)
}

// rotate writes the rotation of one head vector src (dh long) into dst; dst
// and src may be the same slice. float32 heads with dh a multiple of 16 run
// in vec_amd64.s (the same operations, identical bits).
func rotate[F Float](dst, src, cos, sin []F) {
	half := len(cos)
	if d, ok := any(dst).([]float32); ok && vexpOK && half%8 == 0 && half > 0 {
		_, _, _ = d[2*half-1], src[2*half-1], sin[half-1]
		rotate32x8(&d[0], &any(src).([]float32)[0], &any(cos).([]float32)[0], &any(sin).([]float32)[0], half)
		return
	}
	for j := range half {
		c, s := cos[j], sin[j]
		x1, x2 := src[j], src[j+half]
		dst[j] = x1*c - x2*s
		dst[j+half] = x2*c + x1*s
	}
}

// unrotate applies the transposed (= inverse) rotation: the RoPE backward
// dx = dx'⊙C + rotate_halfᵀ(dx'⊙S) with rotate_halfᵀ(y) = concat(y[dh/2:], −y[:dh/2]).
func unrotate[F Float](dst, src, cos, sin []F) {
	half := len(cos)
	if d, ok := any(dst).([]float32); ok && vexpOK && half%8 == 0 && half > 0 {
		_, _, _ = d[2*half-1], src[2*half-1], sin[half-1]
		unrotate32x8(&d[0], &any(src).([]float32)[0], &any(cos).([]float32)[0], &any(sin).([]float32)[0], half)
		return
	}
	for j := range half {
		c, s := cos[j], sin[j]
		g1, g2 := src[j], src[j+half]
		dst[j] = g1*c + g2*s
		dst[j+half] = g2*c - g1*s
	}
}

// ApplyRoPE rotates one token's [heads·dh] vector x in place as position pos
// (0-based), for incremental decoding with a KV cache; it gives the same
// values as the Attention op applies to row pos of a sequence. It panics if
// len(x) != heads·dh or dh is odd.
func ApplyRoPE[F Float](x []F, pos, heads, dh int, theta float64) {
	if dh%2 != 0 || len(x) != heads*dh {
		panic(fmt.Sprintf("ops: ApplyRoPE: len(x) %d, heads %d, dh %d", len(x), heads, dh))
	}
	half := dh / 2
	cos, sin := make([]F, half), make([]F, half)
	for j := range half {
		s, c := math.Sincos(float64(pos) * invFreq(j, dh, theta))
		cos[j], sin[j] = F(c), F(s)
	}
	for h := range heads {
		v := x[h*dh : (h+1)*dh]
		rotate(v, v, cos, sin)
	}
}
