package bpetrain

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/moetrain/moetrain/data/tokenizer"
)

// Train learns a byte-level BPE vocabulary of vocabSize entries (256 byte
// tokens, then merged tokens, then the specials) from the texts produced by
// next, which returns io.EOF after the last text. It is deterministic: the
// same texts, in any order, give a byte-identical Marshal (see the package
// doc for the tie-break). Pre-tokens never span two texts.
//
// specials are added tokens; "<|endoftext|>" is always the first of them
// (added if missing). Occurrences of specials in the texts are cut out
// before counting, as Encode does. When the texts run out of pairs before
// vocabSize is reached, the vocabulary is smaller: check VocabSize.
func Train(next func() (string, error), vocabSize int, specials []string) (*tokenizer.Tokenizer, error) {
	specs := withEndOfTextFirst(specials)
	if vocabSize < 257+len(specs) {
		return nil, fmt.Errorf("vocab size %d below 257+%d specials (256 bytes, one merge)", vocabSize, len(specs))
	}
	if vocabSize > tokenizer.MaxVocab {
		return nil, fmt.Errorf("vocab size %d above %d", vocabSize, tokenizer.MaxVocab)
	}
	// A tokenizer that knows only the bytes and the specials pre-tokenizes
	// as the trained one will; building it also checks the specials.
	bytesOnly := make([][]byte, 256)
	for b := range bytesOnly {
		bytesOnly[b] = []byte{byte(b)}
	}
	cutter, err := tokenizer.New(bytesOnly, nil, specs)
	if err != nil {
		return nil, err
	}

	counts := make(map[string]int64)
	for {
		text, err := next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("read training text: %w", err)
		}
		cutter.PreTokens(text, func(w string) {
			if c, ok := counts[w]; ok {
				counts[w] = c + 1
			} else {
				counts[strings.Clone(w)] = 1
			}
		})
	}

	tr := newTrainer(counts)
	tr.run(vocabSize - len(specs))
	return tokenizer.New(tr.tokens, tr.merges, specs)
}

// withEndOfTextFirst puts "<|endoftext|>" first, once; tokenizer.New checks
// the rest.
func withEndOfTextFirst(specials []string) []string {
	out := []string{tokenizer.EndOfText}
	for _, s := range specials {
		if s != tokenizer.EndOfText {
			out = append(out, s)
		}
	}
	return out
}

// trainer holds the BPE state: distinct pre-tokens as id sequences with
// their counts, the count of every adjacent pair weighted by word count, and
// for every pair the words that (may) contain it.
type trainer struct {
	tokens  [][]byte
	byBytes map[string]int32
	merges  []tokenizer.Merge

	words  [][]int32
	wcount []int64
	pairs  map[uint64]int64
	where  map[uint64][]int32
	seen   []int32 // word -> last merge that visited it (+1)
	heap   []cand
}

// cand is a heap entry: a pair and its count when pushed. Entries go stale
// when the count changes; pop re-checks them.
type cand struct {
	count       int64
	left, right int32
}

func newTrainer(counts map[string]int64) *trainer {
	tr := &trainer{
		byBytes: make(map[string]int32),
		pairs:   make(map[uint64]int64),
		where:   make(map[uint64][]int32),
	}
	for b := 0; b < 256; b++ {
		tr.tokens = append(tr.tokens, []byte{byte(b)})
		tr.byBytes[string([]byte{byte(b)})] = int32(b)
	}
	keys := make([]string, 0, len(counts))
	for w := range counts {
		keys = append(keys, w)
	}
	// Sorted words make every later iteration order deterministic.
	slices.Sort(keys)
	tr.words = make([][]int32, len(keys))
	tr.wcount = make([]int64, len(keys))
	tr.seen = make([]int32, len(keys))
	for wi, w := range keys {
		ids := make([]int32, len(w))
		for i := 0; i < len(w); i++ {
			ids[i] = int32(w[i])
		}
		tr.words[wi] = ids
		tr.wcount[wi] = counts[w]
		for i := 0; i+1 < len(ids); i++ {
			k := pairKey(ids[i], ids[i+1])
			tr.pairs[k] += counts[w]
			tr.where[k] = append(tr.where[k], int32(wi))
		}
	}
	for k, c := range tr.pairs {
		tr.heap = append(tr.heap, cand{count: c, left: int32(k >> 32), right: int32(uint32(k))})
	}
	for i := len(tr.heap)/2 - 1; i >= 0; i-- {
		tr.down(i)
	}
	return tr
}

// pairKey packs an adjacent pair of ids into one map key.
func pairKey(left, right int32) uint64 { return uint64(uint32(left))<<32 | uint64(uint32(right)) }

// better orders candidates: higher count first; among equal counts the
// lexicographically smallest (left bytes, right bytes). It is a total order
// on distinct pairs, so the heap's result never depends on insertion order.
func (tr *trainer) better(a, b cand) bool {
	if a.count != b.count {
		return a.count > b.count
	}
	if c := bytes.Compare(tr.tokens[a.left], tr.tokens[b.left]); c != 0 {
		return c < 0
	}
	return bytes.Compare(tr.tokens[a.right], tr.tokens[b.right]) < 0
}

func (tr *trainer) push(c cand) {
	tr.heap = append(tr.heap, c)
	i := len(tr.heap) - 1
	for i > 0 {
		p := (i - 1) / 2
		if !tr.better(tr.heap[i], tr.heap[p]) {
			break
		}
		tr.heap[i], tr.heap[p] = tr.heap[p], tr.heap[i]
		i = p
	}
}

func (tr *trainer) down(i int) {
	h := tr.heap
	for {
		l := 2*i + 1
		if l >= len(h) {
			return
		}
		best := l
		if r := l + 1; r < len(h) && tr.better(h[r], h[l]) {
			best = r
		}
		if !tr.better(h[best], h[i]) {
			return
		}
		h[i], h[best] = h[best], h[i]
		i = best
	}
}

// popBest returns the pair with the highest current count (ties as in
// better), or ok == false when no pair is left. A stale entry (its pair's
// count dropped since the push) is pushed back with the current count;
// counts that rise are pushed when they rise, so every pair always has an
// entry at or above its current count and the first entry that matches its
// pair's current count is the true best.
func (tr *trainer) popBest() (c cand, ok bool) {
	for len(tr.heap) > 0 {
		top := tr.heap[0]
		last := len(tr.heap) - 1
		tr.heap[0] = tr.heap[last]
		tr.heap = tr.heap[:last]
		tr.down(0)
		cur := tr.pairs[pairKey(top.left, top.right)]
		if cur == top.count && cur > 0 {
			return top, true
		}
		if cur > 0 && cur < top.count {
			tr.push(cand{count: cur, left: top.left, right: top.right})
		}
	}
	return cand{}, false
}

// run merges until the vocabulary has size entries or no pair is left.
func (tr *trainer) run(size int) {
	var touched []uint64
	inTouched := make(map[uint64]bool)
	for len(tr.tokens) < size {
		best, ok := tr.popBest()
		if !ok {
			return
		}
		a, b := best.left, best.right
		nb := make([]byte, 0, len(tr.tokens[a])+len(tr.tokens[b]))
		nb = append(append(nb, tr.tokens[a]...), tr.tokens[b]...)
		id, exists := tr.byBytes[string(nb)]
		if !exists {
			id = int32(len(tr.tokens))
			tr.tokens = append(tr.tokens, nb)
			tr.byBytes[string(nb)] = id
		}
		tr.merges = append(tr.merges, tokenizer.Merge{Left: int(a), Right: int(b), Result: int(id)})
		stamp := int32(len(tr.merges))

		key := pairKey(a, b)
		list := tr.where[key]
		delete(tr.where, key)
		touched = touched[:0]
		clear(inTouched)
		for _, wi := range list {
			if tr.seen[wi] == stamp {
				continue
			}
			tr.seen[wi] = stamp
			tr.mergeWord(wi, a, b, id, &touched, inTouched)
		}
		delete(tr.pairs, key)
		// Only pairs that contain the new token can have gained count.
		for _, k := range touched {
			if c := tr.pairs[k]; c > 0 {
				tr.push(cand{count: c, left: int32(k >> 32), right: int32(uint32(k))})
			}
		}
	}
}

// mergeWord replaces every (a, b) in word wi, left to right without overlap,
// by id and updates the pair counts: the pairs the change removes lose the
// word's count, the pairs it creates gain it and learn that wi holds them.
func (tr *trainer) mergeWord(wi, a, b, id int32, touched *[]uint64, inTouched map[uint64]bool) {
	w := tr.words[wi]
	c := tr.wcount[wi]
	has := false
	for i := 0; i+1 < len(w); i++ {
		if w[i] == a && w[i+1] == b {
			has = true
			break
		}
	}
	if !has {
		return // stale entry in where
	}
	for i := 0; i+1 < len(w); i++ {
		tr.pairs[pairKey(w[i], w[i+1])] -= c
	}
	out := w[:0]
	for i := 0; i < len(w); i++ {
		if i+1 < len(w) && w[i] == a && w[i+1] == b {
			out = append(out, id)
			i++
		} else {
			out = append(out, w[i])
		}
	}
	tr.words[wi] = out
	for i := 0; i+1 < len(out); i++ {
		k := pairKey(out[i], out[i+1])
		tr.pairs[k] += c
		if out[i] == id || out[i+1] == id {
			if !inTouched[k] {
				inTouched[k] = true
				*touched = append(*touched, k)
			}
			// Duplicates in where are cheap and skipped via seen.
			tr.where[k] = append(tr.where[k], wi)
		}
	}
}
