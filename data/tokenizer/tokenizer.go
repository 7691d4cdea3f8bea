package tokenizer

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"unicode/utf8"
)

// EndOfText is the special token that separates documents; every Tokenizer
// has it, and a trained one has it as its first special.
const EndOfText = "<|endoftext|>"

// cacheLimit bounds the word cache of Encode; when it fills up it is
// cleared, which keeps memory flat on an unbounded stream of rare words.
const cacheLimit = 1 << 17

// MaxVocab is the largest vocabulary a Tokenizer holds; it keeps ids
// comfortably inside int32 (the merge table packs two ids into a uint64).
const MaxVocab = 1 << 24

// Tokenizer is a byte-level BPE tokenizer. It is immutable after New, Load
// or Parse, and safe for concurrent use.
type Tokenizer struct {
	tokens  [][]byte // id -> raw bytes; for an added token, its content
	added   []addedToken
	byteID  [256]int32            // byte -> id of its single-byte token
	merges  []mergeRule           // in rank order, as written to merges
	rank    map[uint64]mergeValue // (left<<32 | right) -> rank and result
	eos     int
	isAdded []bool // id -> is an added (special) token

	mu    sync.RWMutex
	cache map[string][]int32 // pre-token -> ids
}

// addedToken is an entry of tokenizer.json's added_tokens: matched verbatim
// in the input before pre-tokenization and mapped to one id.
type addedToken struct {
	content string
	id      int
	special bool
}

type mergeRule struct{ left, right, result int32 }

// Merge is one BPE merge rule, by id: the adjacent tokens Left and Right
// become Result.
type Merge struct{ Left, Right, Result int }

type mergeValue struct{ rank, result int32 }

func pairKey(left, right int32) uint64 { return uint64(uint32(left))<<32 | uint64(uint32(right)) }

// VocabSize returns the number of ids (byte tokens, merged tokens, specials).
func (t *Tokenizer) VocabSize() int { return len(t.tokens) }

// EOS returns the id of "<|endoftext|>".
func (t *Tokenizer) EOS() int { return t.eos }

// NumMerges returns the number of merge rules.
func (t *Tokenizer) NumMerges() int { return len(t.merges) }

// Specials returns the contents of the added tokens, in id order.
func (t *Tokenizer) Specials() []string {
	out := make([]string, len(t.added))
	for i, a := range t.added {
		out[i] = a.content
	}
	return out
}

// SpecialID returns the id of the added token with the given content.
func (t *Tokenizer) SpecialID(content string) (int, bool) {
	for _, a := range t.added {
		if a.content == content {
			return a.id, true
		}
	}
	return 0, false
}

// IsSpecial reports whether id is an added (special) token.
func (t *Tokenizer) IsSpecial(id int) bool {
	return id >= 0 && id < len(t.isAdded) && t.isAdded[id]
}

// TokenBytes returns the raw bytes token id stands for (a copy), or nil for
// an id out of range. For a special it is the special's text.
func (t *Tokenizer) TokenBytes(id int) []byte {
	if id < 0 || id >= len(t.tokens) {
		return nil
	}
	return append([]byte(nil), t.tokens[id]...)
}

// Hash returns the hex SHA-256 of Marshal(): a fingerprint to store next to
// token shards and checkpoints.
func (t *Tokenizer) Hash() string {
	data, err := t.Marshal()
	if err != nil {
		// Marshal only fails on a broken internal invariant.
		panic(fmt.Sprintf("tokenizer: marshal for hash: %v", err))
	}
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}

// Decode returns the text ids stand for. Ids out of range decode to U+FFFD.
// Decode(Encode(s)) == s for every string s (valid UTF-8 or not).
func (t *Tokenizer) Decode(ids []int) string {
	var sb strings.Builder
	for _, id := range ids {
		if id < 0 || id >= len(t.tokens) {
			sb.WriteRune(utf8.RuneError)
			continue
		}
		sb.Write(t.tokens[id])
	}
	return sb.String()
}

// New builds a tokenizer from its tables, as a BPE trainer produces them:
// tokens[id] is the raw bytes of token id (every byte 0x00..0xff must have
// a single-byte token), merges are in rank order, and specials are the
// added tokens, given the ids len(tokens), len(tokens)+1, ... in order.
// "<|endoftext|>" must be among the specials. A special may not be empty,
// invalid UTF-8, given twice, or spelled like one of the tokens in the
// byte-level alphabet (tokenizer.json would then have one key twice).
func New(tokens [][]byte, merges []Merge, specials []string) (*Tokenizer, error) {
	if len(tokens)+len(specials) > MaxVocab {
		return nil, fmt.Errorf("vocabulary of %d entries exceeds %d", len(tokens)+len(specials), MaxVocab)
	}
	spelled := make(map[string]int, len(tokens))
	for id, tok := range tokens {
		spelled[byteLevelString(tok)] = id
	}
	all := slices.Clone(tokens)
	var added []addedToken
	seen := make(map[string]bool, len(specials))
	for _, s := range specials {
		switch {
		case s == "":
			return nil, errors.New("empty special token")
		case !utf8.ValidString(s):
			return nil, fmt.Errorf("special token %q is not valid UTF-8", s)
		case seen[s]:
			return nil, fmt.Errorf("special token %q given twice", s)
		}
		if id, ok := spelled[s]; ok {
			return nil, fmt.Errorf("special %q equals the byte-level spelling of token %d", s, id)
		}
		seen[s] = true
		added = append(added, addedToken{content: s, id: len(all), special: true})
		all = append(all, []byte(s))
	}
	rules := make([]mergeRule, len(merges))
	for r, m := range merges {
		for _, id := range []int{m.Left, m.Right, m.Result} {
			if id < 0 || id >= len(tokens) {
				return nil, fmt.Errorf("merge %d: id %d out of range", r, id)
			}
		}
		rules[r] = mergeRule{left: int32(m.Left), right: int32(m.Right), result: int32(m.Result)}
	}
	return newTokenizer(all, added, rules)
}

// newTokenizer checks the tables and builds the derived lookups. tokens
// must be dense; added tokens' ids index tokens.
func newTokenizer(tokens [][]byte, added []addedToken, merges []mergeRule) (*Tokenizer, error) {
	if len(tokens) > MaxVocab {
		return nil, fmt.Errorf("vocabulary of %d entries exceeds %d", len(tokens), MaxVocab)
	}
	t := &Tokenizer{
		tokens:  tokens,
		added:   added,
		merges:  merges,
		eos:     -1,
		isAdded: make([]bool, len(tokens)),
		rank:    make(map[uint64]mergeValue, len(merges)),
		cache:   make(map[string][]int32),
	}
	for _, a := range added {
		if a.id < 0 || a.id >= len(tokens) {
			return nil, fmt.Errorf("added token %q: id %d out of range", a.content, a.id)
		}
		if a.content == "" {
			return nil, errors.New("empty added token")
		}
		t.isAdded[a.id] = true
		if a.content == EndOfText {
			t.eos = a.id
		}
	}
	if t.eos < 0 {
		return nil, fmt.Errorf("no %s special token", EndOfText)
	}
	for i := range t.byteID {
		t.byteID[i] = -1
	}
	for id, tok := range tokens {
		if len(tok) == 1 && !t.isAdded[id] {
			t.byteID[tok[0]] = int32(id)
		}
	}
	for b, id := range t.byteID {
		if id < 0 {
			return nil, fmt.Errorf("no token for byte 0x%02x: not a byte-level vocabulary", b)
		}
	}
	for r, m := range merges {
		// A later duplicate of the same pair overrides the earlier one, as
		// sugarme's merge map does.
		t.rank[pairKey(m.left, m.right)] = mergeValue{rank: int32(r), result: m.result}
	}
	return t, nil
}
