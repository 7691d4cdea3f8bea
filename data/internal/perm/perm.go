// Package perm holds the keyed permutations and hashes that fix the order
// of a dataset's training windows and which documents Prepare holds out:
// pure functions of the seed, so the same seed gives the same order and
// split on every machine.
package perm

import "math/bits"

// feistelRounds is the number of Feistel rounds; any count gives a
// bijection, six give a well-mixed order.
const feistelRounds = 6

// Perm is a keyed bijection on [0, n): a balanced Feistel network over the
// smallest even-bit power-of-two domain that holds n, with cycle walking to
// stay inside [0, n). The domain is at most 4n, so at walks average < 4
// steps. It needs O(1) memory whatever n is.
type Perm struct {
	n    uint64
	half uint // bits per Feistel half
	mask uint64
	keys [feistelRounds]uint64
}

// New returns the permutation of [0, n) keyed by key.
func New(n, key uint64) Perm {
	p := Perm{n: n}
	if n <= 1 {
		return p
	}
	b := uint(bits.Len64(n - 1))
	if b < 2 {
		b = 2
	}
	p.half = (b + 1) / 2
	p.mask = 1<<p.half - 1
	s := key
	for i := range p.keys {
		s += 0x9e3779b97f4a7c15
		p.keys[i] = mix64(s)
	}
	return p
}

// At returns the image of i (0 <= i < n); it panics if i is out of range.
func (p Perm) At(i uint64) uint64 {
	if i >= p.n {
		panic("perm: index out of range")
	}
	if p.n <= 1 {
		return i
	}
	x := i
	for {
		x = p.encrypt(x)
		if x < p.n {
			return x
		}
	}
}

func (p Perm) encrypt(x uint64) uint64 {
	l, r := x>>p.half, x&p.mask
	for _, k := range p.keys {
		l, r = r, l^(mix64(r^k)&p.mask)
	}
	return l<<p.half | r
}

// mix64 is the splitmix64 finaliser: a fast bijective 64-bit mixer.
func mix64(z uint64) uint64 {
	z = (z ^ z>>30) * 0xbf58476d1ce4e5b9
	z = (z ^ z>>27) * 0x94d049bb133111eb
	return z ^ z>>31
}

// HashKey folds parts into one key; the order of parts matters.
func HashKey(parts ...uint64) uint64 {
	h := uint64(0x243f6a8885a308d3)
	for _, v := range parts {
		h = mix64(h ^ mix64(v+0x9e3779b97f4a7c15))
	}
	return h
}

// StrKey hashes a string (FNV-1a) for use in HashKey.
func StrKey(s string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= 1099511628211
	}
	return h
}

// Key tags keep the permutations of different purposes independent (their
// values are part of every prepared dataset's split and every run's data
// order: never renumber them).
const (
	TagNatural    = 1 + iota // a single domain's windows in natural mixing
	TagBlock                 // the domain slots of a mixing block
	TagDomain                // one domain's windows under weights
	TagValidation            // which documents Prepare holds out
	TagTokSample             // which documents train the tokenizer
)
