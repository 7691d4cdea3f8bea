package tokenizer

import (
	"unicode"
	"unicode/utf8"
)

// Character classes of the pre-tokenizer. "space" is Go regexp's \s, i.e.
// ASCII [\t\n\f\r ] only: sugarme/tokenizer runs its split pattern through
// Go's regexp package, so \v, U+00A0, U+3000 and friends count as "other"
// (punctuation-like) there, and they must here as well.
const (
	clsSpace = iota
	clsLetter
	clsNumber
	clsOther
)

// asciiClass caches the class of every ASCII byte.
var asciiClass [128]uint8

func init() {
	for b := 0; b < 128; b++ {
		asciiClass[b] = uint8(classOfSlow(rune(b)))
	}
}

func classOfSlow(r rune) int {
	switch {
	case r == '\t' || r == '\n' || r == '\f' || r == '\r' || r == ' ':
		return clsSpace
	case unicode.IsLetter(r):
		return clsLetter
	case unicode.IsNumber(r):
		return clsNumber
	default:
		return clsOther
	}
}

// classAt returns the class of the rune starting at s[i] and its width. An
// invalid UTF-8 byte is one "other" character of width 1, as Go's regexp
// sees it (U+FFFD, category So).
func classAt(s string, i int) (cls, width int) {
	c := s[i]
	if c < utf8.RuneSelf {
		return int(asciiClass[c]), 1
	}
	r, w := utf8.DecodeRuneInString(s[i:])
	return classOfSlow(r), w
}

// runEnd returns the end of the run of characters of class cls starting at i.
func runEnd(s string, i, cls int) int {
	for i < len(s) {
		c, w := classAt(s, i)
		if c != cls {
			break
		}
		i += w
	}
	return i
}

// matchAt returns the end of the split-pattern match starting at s[i], or -1
// when no alternative matches there. The pattern, tried in this order
// (leftmost-first, as Go's regexp does), is sugarme's ByteLevel pattern
//
//	's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+
//
// No alternative matches at an ASCII whitespace character unless it is a
// single ' ' followed by a non-space character, so gaps hold only whitespace.
func matchAt(s string, i int) int {
	c := s[i]
	if c == '\'' && i+1 < len(s) {
		switch s[i+1] {
		case 's', 't', 'm', 'd':
			return i + 2
		case 'r':
			if i+2 < len(s) && s[i+2] == 'e' {
				return i + 3
			}
		case 'v':
			if i+2 < len(s) && s[i+2] == 'e' {
				return i + 3
			}
		case 'l':
			if i+2 < len(s) && s[i+2] == 'l' {
				return i + 3
			}
		}
	}
	j := i
	if c == ' ' {
		j = i + 1
		if j >= len(s) {
			return -1
		}
	}
	cls, w := classAt(s, j)
	if cls == clsSpace {
		return -1
	}
	return runEnd(s, j+w, cls)
}

// splitWords calls emit for every pre-token of s, in order; the pre-tokens
// concatenate to s. They are the matches of the pattern above plus the
// unmatched gaps between them (runs of whitespace), exactly the pieces
// sugarme's ByteLevel pre-tokenizer produces with its Isolated split.
//
// This differs from GPT-2's own pattern in one place: GPT-2 ends with
// `\s+(?!\S)|\s+`, which splits "\n\n" before a word into "\n" + "\n",
// whereas here the whole gap "\n\n" is one pre-token. A whitespace gap
// followed by a word still leaves its last ' ' to that word (" foo").
func splitWords(s string, emit func(word string)) {
	gap := -1
	i := 0
	for i < len(s) {
		end := matchAt(s, i)
		if end < 0 {
			// Only ASCII whitespace fails to match: one byte.
			if gap < 0 {
				gap = i
			}
			i++
			continue
		}
		if gap >= 0 {
			emit(s[gap:i])
			gap = -1
		}
		emit(s[i:end])
		i = end
	}
	if gap >= 0 {
		emit(s[gap:])
	}
}
