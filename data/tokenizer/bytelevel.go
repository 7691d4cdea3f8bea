package tokenizer

import "unicode/utf8"

// byteRune maps each byte to the printable rune GPT-2's bytes_to_unicode
// assigns it: printable Latin-1 bytes map to themselves, the other 68 bytes
// (controls, space, 0x7f-0xa0, 0xad) map to U+0100.. in byte order. The HF
// tokenizer.json stores every vocabulary entry and merge in this alphabet, so
// that tokens contain no spaces or control characters.
var byteRune [256]rune

// runeByte is the inverse of byteRune (runes up to U+0143).
var runeByte map[rune]byte

func init() {
	n := 0
	runeByte = make(map[rune]byte, 256)
	for b := 0; b < 256; b++ {
		if (b >= '!' && b <= '~') || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff) {
			byteRune[b] = rune(b)
		} else {
			byteRune[b] = rune(256 + n)
			n++
		}
		runeByte[byteRune[b]] = byte(b)
	}
}

// byteLevelString returns the byte-level alphabet spelling of raw bytes.
func byteLevelString(raw []byte) string {
	out := make([]byte, 0, 2*len(raw))
	for _, b := range raw {
		out = utf8.AppendRune(out, byteRune[b])
	}
	return string(out)
}

// byteLevelBytes decodes a byte-level alphabet spelling back to raw bytes;
// ok is false when s holds a rune outside the alphabet.
func byteLevelBytes(s string) (raw []byte, ok bool) {
	raw = make([]byte, 0, len(s))
	for _, r := range s {
		b, found := runeByte[r]
		if !found {
			return nil, false
		}
		raw = append(raw, b)
	}
	return raw, true
}
