package ops

import (
	"bytes"
	"fmt"
	"sync"
	"unsafe"

	G "gorgonia.org/gorgonia"

	"github.com/moetrain/moetrain/internal/parallel"
)

// SharedTopK lets the ops of one layer that select the same top-k from the
// same router scores (the MoE op and its balance losses) select it once per
// graph run instead of once each: with 63 experts and k = 7 the selection
// is a few percent of a step. The first op to select publishes its choice
// with a copy of the scores and bias it came from; another op takes the
// choice only when its own scores and bias equal that copy and its k is the
// same, so it can never see a choice made from other values, whatever order
// the ops run in and whatever ran in between. The copy and the comparison
// cost one pass over the [N, E] scores each, a small fraction of selecting.
type SharedTopK struct {
	mu     sync.Mutex
	k      int
	scores any // []float32 or []float64: a copy of the scores selected from
	bias   any // a copy of the bias, nil for none
	idx    []int32
	hits   int // selections taken from the share (for tests)
}

// ShareTopK makes the ops of nodes (MoE ops and expert or device balance
// losses) select their top-k through s. Other ops are an error.
func ShareTopK(s *SharedTopK, nodes ...*G.Node) error {
	for _, n := range nodes {
		switch op := n.Op().(type) {
		case *moeOp:
			op.share = s
		case *balanceOp:
			op.share = s
		default:
			return fmt.Errorf("ShareTopK: %v is not an MoE or balance op", n.Op())
		}
	}
	return nil
}

// topKRows writes into idx ([n·k]) the top k of each row of scores [n, e],
// after adding bias (nil for none) in F as RouteGated does, taking them from
// s (nil for none) when it holds a selection from equal scores and bias,
// and else publishing its own there.
func topKRows[F Float](s *SharedTopK, idx []int32, scores, bias []F, n, e, k int) {
	if s != nil && shareTake(s, idx, scores, bias, k) {
		return
	}
	parallel.For(n, 256, func(lo, hi int) {
		var biased []F
		if bias != nil {
			biased = make([]F, e)
		}
		if s32, ok := any(scores).([]float32); ok && bias == nil {
			lo = topKPairs(idx, s32, lo, hi, e, k)
		}
		for t := lo; t < hi; t++ {
			row, out := scores[t*e:(t+1)*e], idx[t*k:(t+1)*k]
			if bias != nil {
				for i, v := range row {
					biased[i] = v + bias[i]
				}
				row = biased
			}
			TopK(out, row, k)
		}
	})
	if s != nil {
		sharePublish(s, idx, scores, bias, k)
	}
}

// topKPairs selects rows lo, lo+1, … of scores [·, e] two at a time
// through topK32x64x2 (each pair's rounds interleaved: the same choices
// as topK32x64 row by row, which waited on each round's latency; 2048
// router rows of 63, k = 7, in docs/BENCHMARKS.md round 20), a row it
// refuses (NaN or -Inf) through topKSmallList (TopK's path for such a
// row), and returns the first row it left: hi, or hi−1 for an odd count,
// or lo where the kernel does not apply.
func topKPairs(idx []int32, scores []float32, lo, hi, e, k int) int {
	if !topKVector(e, k) {
		return lo
	}
	t := lo
	for ; t+2 <= hi; t += 2 {
		a, b := idx[t*k:(t+1)*k], idx[(t+1)*k:(t+2)*k]
		ra, rb := scores[t*e:(t+1)*e], scores[(t+1)*e:(t+2)*e]
		okA, okB := topK32x64x2(&a[0], &ra[0], &b[0], &rb[0], e, k)
		if !okA {
			topKSmallList(a, ra, k)
		}
		if !okB {
			topKSmallList(b, rb, k)
		}
	}
	return t
}

// shareTake copies the shared selection into idx if it was made with k from
// scores and bias with the same bits as these. A selection is a function of
// its inputs' bits, so equal bits give the same choice, NaNs included; a
// −0 where the copy has +0 only costs a selection. The bytes are compared
// as memory (bytes.Equal's vector loop): slices.Equal's float comparisons,
// one at a time, took 0.08 ms a layer at 2048 × 63 scores.
func shareTake[F Float](s *SharedTopK, idx []int32, scores, bias []F, k int) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	have, ok := s.scores.([]F)
	if !ok || s.k != k || len(s.idx) != len(idx) || !equalBits(have, scores) {
		return false
	}
	hb, _ := s.bias.([]F)
	if (hb == nil) != (bias == nil) || !equalBits(hb, bias) {
		return false
	}
	copy(idx, s.idx)
	s.hits++
	return true
}

// equalBits reports whether a and b hold the same bits.
func equalBits[F Float](a, b []F) bool {
	if len(a) != len(b) {
		return false
	}
	if len(a) == 0 {
		return true
	}
	size := len(a) * int(unsafe.Sizeof(a[0]))
	return bytes.Equal(unsafe.Slice((*byte)(unsafe.Pointer(&a[0])), size), unsafe.Slice((*byte)(unsafe.Pointer(&b[0])), size))
}

// sharePublish keeps idx as the selection from scores and bias.
func sharePublish[F Float](s *SharedTopK, idx []int32, scores, bias []F, k int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	have, _ := s.scores.([]F)
	s.scores = append(have[:0], scores...)
	if bias == nil {
		s.bias = nil
	} else {
		hb, _ := s.bias.([]F)
		s.bias = append(hb[:0], bias...)
	}
	s.k, s.idx = k, append(s.idx[:0], idx...)
}
