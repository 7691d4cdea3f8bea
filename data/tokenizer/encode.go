package tokenizer

import (
	"strings"
	"sync"
)

// Encode returns the token ids of text. Occurrences of added tokens (such as
// "<|endoftext|>") are matched first, leftmost and then longest, and map to
// their ids; the text between them is pre-tokenized (see splitWords) and
// every pre-token is encoded by BPE on its bytes. Safe for concurrent use.
func (t *Tokenizer) Encode(text string) []int {
	out := make([]int, 0, len(text)/3+1)
	t.forSegments(text, func(seg string, special int) {
		if special >= 0 {
			out = append(out, special)
			return
		}
		splitWords(seg, func(word string) {
			for _, id := range t.encodeWord(word) {
				out = append(out, int(id))
			}
		})
	})
	return out
}

// PreTokens calls emit with each pre-token of text in order: the pieces
// Encode runs BPE on, with the added tokens cut out first. A BPE trainer
// counts these, so that it learns merges on exactly what Encode will see.
func (t *Tokenizer) PreTokens(text string, emit func(word string)) {
	t.forSegments(text, func(seg string, special int) {
		if special < 0 {
			splitWords(seg, emit)
		}
	})
}

// forSegments splits text at the added tokens: fn gets either a plain text
// segment with special == -1, or an added token's text and its id.
func (t *Tokenizer) forSegments(text string, fn func(seg string, special int)) {
	if len(t.added) == 0 {
		fn(text, -1)
		return
	}
	// next[i] is the next occurrence of added token i at or after pos
	// (-1: none left); recomputed only when pos passes it.
	next := make([]int, len(t.added))
	for i, a := range t.added {
		next[i] = strings.Index(text, a.content)
	}
	pos := 0
	for {
		best := -1
		for i, a := range t.added {
			if next[i] >= 0 && next[i] < pos {
				if k := strings.Index(text[pos:], a.content); k >= 0 {
					next[i] = pos + k
				} else {
					next[i] = -1
				}
			}
			if next[i] < 0 {
				continue
			}
			if best < 0 || next[i] < next[best] ||
				(next[i] == next[best] && len(a.content) > len(t.added[best].content)) {
				best = i
			}
		}
		if best < 0 {
			if pos < len(text) {
				fn(text[pos:], -1)
			}
			return
		}
		at := next[best]
		if at > pos {
			fn(text[pos:at], -1)
		}
		fn(t.added[best].content, t.added[best].id)
		pos = at + len(t.added[best].content)
	}
}

// encodeWord returns the ids of one pre-token, from the cache when it can.
// The returned slice is shared: callers must not modify it.
func (t *Tokenizer) encodeWord(word string) []int32 {
	if len(word) == 1 {
		b := int(word[0])
		return t.byteID[b : b+1]
	}
	t.mu.RLock()
	ids, ok := t.cache[word]
	t.mu.RUnlock()
	if ok {
		return ids
	}
	sc := scratchPool.Get().(*bpeScratch)
	ids = t.bpe(word, sc, nil)
	scratchPool.Put(sc)
	t.mu.Lock()
	if len(t.cache) >= cacheLimit {
		clear(t.cache)
	}
	t.cache[strings.Clone(word)] = ids
	t.mu.Unlock()
	return ids
}

// symbol is one live or dead (n == 0) piece of a word during BPE; prev and
// next link the live pieces (-1 at the ends).
type symbol struct{ id, prev, next, n int32 }

// heapItem is a candidate merge of the symbol at pos with its successor.
type heapItem struct{ pos, rank, result int32 }

type bpeScratch struct {
	syms []symbol
	heap []heapItem
}

var scratchPool = sync.Pool{New: func() any { return new(bpeScratch) }}

// bpe appends the ids of word to dst. It reproduces, step for step,
// sugarme/tokenizer v0.3.0's Word.MergeAll, including its priority queue:
// a binary heap (emirpasic/gods) ordered by merge rank only, so that among
// equal-rank candidates (overlapping pairs such as the three "  " pairs in
// four spaces) the pop order is the heap's, not leftmost-first as in HF's
// Rust code. Stale candidates are skipped when the symbol is dead, has no
// successor, or the current pair's merge has a different result id.
func (t *Tokenizer) bpe(word string, sc *bpeScratch, dst []int32) []int32 {
	syms := sc.syms[:0]
	for i := 0; i < len(word); i++ {
		syms = append(syms, symbol{id: t.byteID[word[i]], prev: int32(i - 1), next: int32(i + 1), n: 1})
	}
	syms[len(syms)-1].next = -1
	h := sc.heap[:0]
	for i := 0; i+1 < len(syms); i++ {
		if m, ok := t.rank[pairKey(syms[i].id, syms[i+1].id)]; ok {
			h = heapPush(h, heapItem{pos: int32(i), rank: m.rank, result: m.result})
		}
	}
	for len(h) > 0 {
		var top heapItem
		top, h = heapPop(h)
		s := &syms[top.pos]
		if s.n == 0 || s.next == -1 {
			continue
		}
		nextPos := s.next
		right := syms[nextPos]
		if m, ok := t.rank[pairKey(s.id, right.id)]; !ok || m.result != top.result {
			continue
		}
		s.id = top.result
		s.n += right.n
		s.next = right.next
		syms[nextPos].n = 0
		if right.next > -1 {
			syms[right.next].prev = top.pos
		}
		cur := syms[top.pos]
		if cur.prev >= 0 {
			if m, ok := t.rank[pairKey(syms[cur.prev].id, cur.id)]; ok {
				h = heapPush(h, heapItem{pos: cur.prev, rank: m.rank, result: m.result})
			}
		}
		if cur.next > -1 {
			if m, ok := t.rank[pairKey(cur.id, syms[cur.next].id)]; ok {
				h = heapPush(h, heapItem{pos: top.pos, rank: m.rank, result: m.result})
			}
		}
	}
	for _, s := range syms {
		if s.n != 0 {
			dst = append(dst, s.id)
		}
	}
	sc.syms, sc.heap = syms, h
	return dst
}

// heapPush and heapPop are gods' binaryheap Push (bubbleUp) and Pop (swap
// the last element to the root, bubbleDown) with a rank-only comparator;
// ties never swap. Their exact order matters: see bpe.
func heapPush(h []heapItem, x heapItem) []heapItem {
	h = append(h, x)
	i := len(h) - 1
	for i > 0 {
		p := (i - 1) >> 1
		if h[p].rank <= h[i].rank {
			break
		}
		h[p], h[i] = h[i], h[p]
		i = p
	}
	return h
}

func heapPop(h []heapItem) (heapItem, []heapItem) {
	top := h[0]
	last := len(h) - 1
	h[0], h[last] = h[last], h[0]
	h = h[:last]
	i := 0
	for {
		l := 2*i + 1
		if l >= len(h) {
			break
		}
		small := l
		if r := l + 1; r < len(h) && h[l].rank > h[r].rank {
			small = r
		}
		if h[i].rank > h[small].rank {
			h[i], h[small] = h[small], h[i]
			i = small
		} else {
			break
		}
	}
	return top, h
}
