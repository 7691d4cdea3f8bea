package ops

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"sync"

	"github.com/moetrain/moetrain/internal/parallel"
)

// Shape legend for the MoE files: N tokens (B·T), E experts, K experts per
// token (top-k), D hidden size, W expert width, S = N·K routing slots. Slot
// t·K+j is the j-th choice of token t.

// TopK writes into idx (length k) the indices of the k largest entries of
// row, in descending order of value. It is greedy top-k (DESIGN.md §2.3): ties are
// broken towards the lower expert index, so a row of equal values selects
// experts 0..k-1. Rows holding NaN still yield k distinct indices (NaN is
// never preferred to a number). It panics if k < 1, k > len(row) or
// len(idx) < k.
func TopK[F Float](idx []int32, row []F, k int) {
	if k < 1 || k > len(row) || len(idx) < k {
		panic(fmt.Sprintf("ops: TopK k=%d of %d values into %d slots", k, len(row), len(idx)))
	}
	if k <= len(topKVals[F]{}) {
		topKSmall(idx, row, k)
		return
	}
	topKList(idx, row, k)
}

// topKList is TopK for any k.
func topKList[F Float](idx []int32, row []F, k int) {
	// Insertion into a sorted list of the best k seen so far. Scanning in
	// ascending index order and inserting only after strictly better values
	// keeps equal values in index order, which is the tie rule.
	// thr is the value of the k-th best once k are held: most entries of a
	// router row fall below it and cost one comparison.
	c := 0
	var thr F
	for i, v := range row {
		if c == k && !(v > thr) {
			continue
		}
		p := c
		if c < k {
			c++
		} else {
			p = k - 1
		}
		for p > 0 && v > row[idx[p-1]] {
			idx[p] = idx[p-1]
			p--
		}
		idx[p] = int32(i)
		if c == k {
			thr = row[idx[k-1]]
		}
	}
}

// topKVals holds the values of topKSmall's list.
type topKVals[F Float] [16]F

// topKSmall is TopK for k ≤ 16. A float32 row of at most 64 values goes
// to topK32x64 where the CPU has AVX-512 (a round of a vector maximum per
// distinct value chosen, k at most: a router row of 63 experts costs about
// the same however its values fall); others, and rows holding NaN or
// −Inf, to topKSmallList.
func topKSmall[F Float](idx []int32, row []F, k int) {
	if f, ok := any(row).([]float32); ok && topKVector(len(f), k) && topK32x64(&idx[0], &f[0], len(f), k) {
		return
	}
	topKSmallList(idx, row, k)
}

// topKVector reports whether topK32x64 (and topK32x64x2) take rows of e
// values, k of them chosen: on AVX-512, e ≤ 64 and 1 ≤ k ≤ min(e, 16).
func topKVector(e, k int) bool {
	return topK512 && e <= 64 && k >= 1 && k <= min(e, len(topKVals[float32]{}))
}

// topKSmallList is topKList with the list's values kept beside its
// indices (in registers and the stack) instead of read back through the
// row: the same comparisons in the same order, so the same choice, about
// twice as fast at 63 experts, k = 7.
func topKSmallList[F Float](idx []int32, row []F, k int) {
	var vals topKVals[F]
	var ids [len(vals)]int32
	for i, v := range row[:k] {
		p := i
		for p > 0 && v > vals[p-1] {
			vals[p], ids[p] = vals[p-1], ids[p-1]
			p--
		}
		vals[p], ids[p] = v, int32(i)
	}
	thr := vals[k-1]
	for i := k; i < len(row); i++ {
		v := row[i]
		if !(v > thr) {
			continue
		}
		p := k - 1
		for p > 0 && v > vals[p-1] {
			vals[p], ids[p] = vals[p-1], ids[p-1]
			p--
		}
		vals[p], ids[p] = v, int32(i)
		thr = vals[k-1]
	}
	copy(idx, ids[:k])
}

// Routing is the top-k assignment of N tokens to E experts, in two views:
// token-major (Experts, Gates: slot t·K+j) and expert-major (Slots grouped by
// expert, tokens in ascending order within each expert).
type Routing struct {
	N, E, K int
	// Experts[t·K+j] is token t's j-th expert (descending probability).
	Experts []int32
	// Gates[t·K+j] is the weight of that expert's output: the raw
	// probability, or renormalised over the token's K choices (GShard).
	// Kept in float64 whatever the model's dtype; the kernels round once.
	Gates []float64
	// Slots[Offsets[e]:Offsets[e+1]] are the slots routed to expert e, in
	// ascending token order (a counting sort of Experts).
	Slots   []int32
	Offsets []int32
	// PosGates[p] is Gates[Slots[p]]: the gates in expert-major order, so
	// the backward reads an expert's gates in a row instead of one cache
	// line a slot all over Gates, mostly evicted since the forward (the
	// gate pass's CPU time in a science DeepSeekMoE step: median 2.8 →
	// 2.0 ms; docs/BENCHMARKS.md, round 19). group fills it; whoever
	// changes Gates after calls gatherGates.
	PosGates []float64
	// Pos is the inverse of Slots: slot s sits at position Pos[s] of the
	// expert-major order, where the kernels keep that slot's rows; −1 for a
	// dropped slot.
	Pos []int32
	// Dropped, when not nil, marks the slots dropped for exceeding their
	// expert's capacity (Gating.Capacity): they are in no expert's Slots,
	// contribute nothing to the output and get no gradient; Experts and
	// Gates still hold the router's choice.
	Dropped []bool
	// NumDropped counts the true entries of Dropped.
	NumDropped int
	// ExpertChoice marks an expert-choice routing: K = E slots per token,
	// the slots no expert took dropped (Gating.ExpertChoice).
	ExpertChoice bool
}

// Load returns how many tokens expert e computes (after any dropping).
func (r *Routing) Load(e int) int { return int(r.Offsets[e+1] - r.Offsets[e]) }

// Kept returns how many slots some expert computes: the rows of the
// expert-major order, N·K less the dropped slots (an expert-choice routing
// keeps about K/E of its N·E).
func (r *Routing) Kept() int {
	if len(r.Offsets) == 0 {
		return 0
	}
	return int(r.Offsets[r.E])
}

// Loads returns the per-expert token counts (length E).
func (r *Routing) Loads() []int {
	out := make([]int, r.E)
	for e := range out {
		out[e] = r.Load(e)
	}
	return out
}

// renormEps matches the reference implementation's w / (Σw + 1e-20).
const renormEps = 1e-20

// Gating says how Route turns a token's router scores into its experts and
// their gates.
type Gating struct {
	K int // experts per token (top-k)
	// Renorm divides the chosen scores by their sum (GShard, and sigmoid
	// scores); skipped at K = 1, where it would make the gate the constant 1
	// and starve the router of gradient.
	Renorm bool
	// Scale multiplies every gate (DeepSeek-V3's routed scaling factor);
	// 0 means 1.
	Scale float64
	// Capacity, when > 0, is how many slots each expert takes from each
	// run of Seq consecutive tokens (one sequence); the slots beyond it are
	// dropped, those with the smallest gates first (see drop).
	Capacity, Seq int
	// ExpertChoice routes the other way round (Zhou et al. 2022): within
	// each run of Seq tokens, every expert takes the Capacity tokens with
	// the largest scores for it (ties: the earlier token), with the score as
	// gate; a token may get any number of experts, none included. K is then
	// only the k of the capacity; the Routing has one slot per (token,
	// expert), those not taken dropped.
	ExpertChoice bool
}

func (g Gating) renorm() bool { return g.Renorm && g.K > 1 }

func (g Gating) scale() float64 {
	if g.Scale == 0 {
		return 1
	}
	return g.Scale
}

// key is the part of an op's hash key the gating decides.
func (g Gating) key() string {
	return fmt.Sprintf("k=%d,renorm=%t,scale=%g,capacity=%d/%d,ec=%t", g.K, g.renorm(), g.scale(), g.Capacity, g.Seq, g.ExpertChoice)
}

// CapacityOf is the capacity per expert of GShard and Switch (Lepikhin et
// al. 2020; Fedus et al. 2021): ⌈k · tokens routed together · factor / E⌉,
// tokens routed together being one sequence of seq tokens.
func CapacityOf(k, seq, experts int, factor float64) int {
	return int(math.Ceil(float64(k*seq) * factor / float64(experts)))
}

// Route selects the k most probable of e experts for each of the n rows of
// probs ([n, e], row-major) with TopK. Gates are the raw probabilities
// (Switch, DeepSeekMoE), or, when renorm is set and k > 1, the chosen
// probabilities divided by their sum (GShard); renormalising a single choice
// is skipped, as in the HF reference. It panics if len(probs) != n·e or k is
// out of [1, e] (callers validate shapes first).
func Route[F Float](probs []F, n, e, k int, renorm bool) Routing {
	return RouteGated(probs, nil, n, e, Gating{K: k, Renorm: renorm})
}

// RouteGated is Route with the whole Gating and a per-expert selection bias
// (auxiliary-loss-free balancing, DeepSeek-V3): when bias is not nil
// (length e), token t's experts are TopK(scores_t + bias), computed in F,
// while its gates are still made from the unbiased scores:
//
//	g_j = scale · s_{t,e_j} [/ (Σ_{i<k} s_{t,e_i} + ε) when renormalising]
func RouteGated[F Float](scores, bias []F, n, e int, g Gating) Routing {
	return routeShared(nil, scores, bias, n, e, g)
}

// routeShared is RouteGated selecting through share (nil for none; see
// SharedTopK).
func routeShared[F Float](share *SharedTopK, scores, bias []F, n, e int, g Gating) Routing {
	k := g.K
	if len(scores) != n*e || k < 1 || k > e || (bias != nil && len(bias) != e) || (g.Capacity > 0 && (g.Seq < 1 || n%g.Seq != 0)) {
		panic(fmt.Sprintf("ops: Route of %d scores as [%d, %d] with k=%d and %d biases", len(scores), n, e, k, len(bias)))
	}
	if g.ExpertChoice {
		return routeExpertChoice(scores, n, e, g)
	}
	r := newRouting(n, e, k)
	topKRows(share, r.Experts, scores, bias, n, e, k)
	renorm, scale := g.renorm(), g.scale()
	parallel.For(n, 256, func(lo, hi int) {
		for t := lo; t < hi; t++ {
			row, idx, gt := scores[t*e:(t+1)*e], r.Experts[t*k:(t+1)*k], r.Gates[t*k:(t+1)*k]
			var sum float64
			for j, x := range idx {
				gt[j] = float64(row[x])
				sum += gt[j]
			}
			if renorm {
				for j := range gt {
					gt[j] /= sum + renormEps
				}
			}
			if scale != 1 {
				for j := range gt {
					gt[j] *= scale
				}
			}
		}
	})
	if g.Capacity > 0 {
		r.drop(g.Seq, g.Capacity)
	}
	r.group()
	return r
}

// drop marks, within each run of seq tokens, the slots of every expert
// beyond its capacity as dropped, keeping the slots with the largest gates
// (ties: the earlier token, then the earlier choice). The token keeps its
// other experts; a token dropped by all of them passes through the layer on
// the residual alone.
func (r *Routing) drop(seq, capacity int) {
	k, e := r.K, r.E
	r.Dropped = make([]bool, r.N*k)
	var mu sync.Mutex
	parallel.For(r.N/seq, 1, func(lo, hi int) {
		byExpert := make([][]int32, e)
		dropped := 0
		for b := lo; b < hi; b++ {
			for x := range byExpert {
				byExpert[x] = byExpert[x][:0]
			}
			for s := b * seq * k; s < (b+1)*seq*k; s++ {
				x := r.Experts[s]
				byExpert[x] = append(byExpert[x], int32(s))
			}
			for _, slots := range byExpert {
				if len(slots) <= capacity {
					continue
				}
				// Slot order is token order, then choice order: a stable
				// sort by descending gate breaks ties as stated.
				slices.SortStableFunc(slots, func(a, b int32) int { return cmp.Compare(r.Gates[b], r.Gates[a]) })
				for _, s := range slots[capacity:] {
					r.Dropped[s] = true
					dropped++
				}
			}
		}
		mu.Lock()
		r.NumDropped += dropped
		mu.Unlock()
	})
}

// routeExpertChoice is RouteGated for Gating.ExpertChoice.
func routeExpertChoice[F Float](scores []F, n, e int, g Gating) Routing {
	seq, c := g.Seq, g.Capacity
	if seq < 1 || n%seq != 0 || c < 1 || c > seq {
		panic(fmt.Sprintf("ops: expert choice of %d tokens in sequences of %d, capacity %d", n, seq, c))
	}
	r := newRouting(n, e, e)
	r.ExpertChoice = true
	r.Dropped = make([]bool, n*e)
	scale := g.scale()
	parallel.For(n, denseRowsGrain(e), func(lo, hi int) {
		for t := lo; t < hi; t++ {
			for x := 0; x < e; x++ {
				s := t*e + x
				r.Experts[s] = int32(x)
				r.Gates[s] = scale * float64(scores[s])
				r.Dropped[s] = true
			}
		}
	})
	parallel.For(n/seq*e, 1, func(lo, hi int) {
		col, idx := make([]F, seq), make([]int32, c)
		for i := lo; i < hi; i++ {
			b, x := i/e, i%e
			for t := 0; t < seq; t++ {
				col[t] = scores[(b*seq+t)*e+x]
			}
			TopK(idx, col, c)
			for _, t := range idx {
				r.Dropped[(b*seq+int(t))*e+x] = false
			}
		}
	})
	r.NumDropped = n*e - n/seq*e*c
	r.groupExpertChoice(n / seq * c)
	return r
}

// groupExpertChoice is group for an expert-choice routing, where every
// expert keeps exactly per of the N tokens: the experts' offsets are known
// ahead, so each expert places its own slots (token order, as group does)
// on the workers, writing only the positions of its own slots. group
// walked the N·E slots on one goroutine.
func (r *Routing) groupExpertChoice(per int) {
	for x := 0; x <= r.E; x++ {
		r.Offsets[x] = int32(x * per)
	}
	parallel.For(r.E, 1, func(lo, hi int) {
		for x := lo; x < hi; x++ {
			p := r.Offsets[x]
			for s := x; s < r.N*r.E; s += r.E {
				if r.Dropped[s] {
					r.Pos[s] = -1
					continue
				}
				r.Slots[p] = int32(s)
				r.Pos[s] = p
				r.PosGates[p] = r.Gates[s]
				p++
			}
		}
	})
}

// fixedRouting routes token t to experts[t] with gate 1 (top-1, Hash layer).
func fixedRouting(experts []int32, e int) Routing {
	r := newRouting(len(experts), e, 1)
	copy(r.Experts, experts)
	for i := range r.Gates {
		r.Gates[i] = 1
	}
	r.group()
	return r
}

// newRouting returns a Routing of n tokens, e experts and k slots a token,
// its slices from routings a cache gave up (release) where there are some:
// fresh slices of a layer's size (1.1 MB a step at the science
// DeepSeekMoE's four layers) cost a page fault every 4 KB, which was
// about 0.4 ms of its step. Every slice is written whole by whoever
// routes (group, groupExpertChoice).
func newRouting(n, e, k int) Routing {
	r := Routing{N: n, E: e, K: k}
	if old, ok := routings.Get().(*Routing); ok {
		r.Experts, r.Gates, r.Slots, r.Offsets, r.Pos, r.PosGates = old.Experts, old.Gates, old.Slots, old.Offsets, old.Pos, old.PosGates
	}
	r.Experts, r.Gates, r.Slots, r.Pos = grow(r.Experts, n*k), grow(r.Gates, n*k), grow(r.Slots, n*k), grow(r.Pos, n*k)
	r.PosGates = grow(r.PosGates, n*k)
	r.Offsets = grow(r.Offsets, e+1)
	return r
}

// routings holds the slices of routings nothing reads any more, for
// newRouting.
var routings sync.Pool

// release gives r's slices to newRouting. Only the owner of a routing no
// one else holds may call it (an expertCache replacing its routing, an op
// that kept none); r must not be read after.
func (r *Routing) release() {
	if r.Experts == nil {
		return
	}
	routings.Put(&Routing{Experts: r.Experts, Gates: r.Gates, Slots: r.Slots, Offsets: r.Offsets, Pos: r.Pos, PosGates: r.PosGates})
	*r = Routing{}
}

// group fills Slots, Offsets, Pos and PosGates from Experts by a stable
// counting sort, leaving out dropped slots (Pos −1): in parallel over
// blocks of at least groupGrain slots (groupBlocks), with one block below
// that.
func (r *Routing) group() {
	r.groupBlocks(max(1, min(parallel.Workers, len(r.Experts)/groupGrain)))
}

// groupGrain is the fewest slots a block of a parallel group sorts: the
// science DeepSeekMoE layer's 14,336 slots took 52 µs serially
// (BenchmarkRoute), worth two cores; a few hundred are not.
const groupGrain = 2048

// groupBlocks is group over nb blocks of consecutive slots, one a worker:
// each block counts its slots per expert, a serial pass over experts then
// blocks gives every block its first position in each expert's run, and
// each block places its slots from there. Within an expert's run block b's
// slots follow block b−1's, each block's in slot order: the order of a
// serial sort, whatever nb (≥ 1). Every entry of Offsets is written.
func (r *Routing) groupBlocks(nb int) {
	s, e := len(r.Experts), r.E
	size := (s + nb - 1) / nb
	// Block b's counts, then its next positions: next[b·ld : b·ld+E], ld
	// a whole number of cache lines and one more, so that no two workers'
	// counters share a line (sharing one doubled the sort's time).
	ld := (e+15)&^15 + 16
	next := make([]int32, nb*ld)
	parallel.For(nb, 1, func(lo, hi int) {
		for b := lo; b < hi; b++ {
			r.countSlots(next[b*ld:b*ld+e], min(s, b*size), min(s, (b+1)*size))
		}
	})
	var pos int32
	for x := 0; x < e; x++ {
		r.Offsets[x] = pos
		for b := 0; b < nb; b++ {
			c := next[b*ld+x]
			next[b*ld+x] = pos
			pos += c
		}
	}
	r.Offsets[e] = pos
	parallel.For(nb, 1, func(lo, hi int) {
		for b := lo; b < hi; b++ {
			r.placeSlots(next[b*ld:b*ld+e], min(s, b*size), min(s, (b+1)*size))
		}
	})
}

// countSlots adds to counts[x] the kept slots of [lo, hi) routed to
// expert x.
func (r *Routing) countSlots(counts []int32, lo, hi int) {
	if r.Dropped == nil {
		for _, x := range r.Experts[lo:hi] {
			counts[x]++
		}
		return
	}
	for s := lo; s < hi; s++ {
		if !r.Dropped[s] {
			counts[r.Experts[s]]++
		}
	}
}

// placeSlots puts the kept slots of [lo, hi) at their positions, next[x]
// being where expert x's next slot goes, and marks dropped ones with Pos −1.
func (r *Routing) placeSlots(next []int32, lo, hi int) {
	if r.Dropped == nil {
		// Without drops, a loop over subslices that needs no test per slot
		// and fewer bounds checks: BenchmarkRoute's sort 31 → 20 µs
		// (docs/BENCHMARKS.md, round 21).
		slots, pos, pg, gates := r.Slots, r.Pos[lo:hi], r.PosGates, r.Gates[lo:hi]
		for i, x := range r.Experts[lo:hi] {
			p := next[x]
			next[x]++
			slots[p] = int32(lo + i)
			pos[i] = p
			pg[p] = gates[i]
		}
		return
	}
	for s := lo; s < hi; s++ {
		if r.Dropped != nil && r.Dropped[s] {
			r.Pos[s] = -1
			continue
		}
		x := r.Experts[s]
		p := next[x]
		next[x]++
		r.Slots[p] = int32(s)
		r.Pos[s] = p
		r.PosGates[p] = r.Gates[s]
	}
}

// gatherGates sets PosGates from Gates: for a routing whose gates
// changed after group.
func (r *Routing) gatherGates() {
	for p, s := range r.Slots[:r.Kept()] {
		r.PosGates[p] = r.Gates[s]
	}
}

// RouteRecord receives the routing of the latest forward pass of an MoE op,
// for logging (per-expert load histograms) and tests. The op overwrites it on
// every forward pass; read it only between runs of the graph.
type RouteRecord struct {
	N, E, K int
	// Experts[t·K+j] is token t's j-th expert (descending probability).
	Experts []int32
	// KeepGates, set by the record's owner, asks for Gates too.
	KeepGates bool
	// Gates[t·K+j] is the weight of that expert's output (Routing.Gates),
	// kept only with KeepGates (the training step does not need them).
	Gates []float64
	// Load[e] is the number of (token, slot) pairs the router sent to
	// expert e, dropped ones included (the router's demand).
	Load []int
	// Dropped is how many of the N·K slots were dropped for capacity.
	Dropped int
}

func (rec *RouteRecord) store(r *Routing) {
	if rec == nil {
		return
	}
	rec.N, rec.E, rec.K = r.N, r.E, r.K
	rec.Experts = append(rec.Experts[:0], r.Experts...)
	if rec.KeepGates {
		rec.Gates = append(rec.Gates[:0], r.Gates...)
	}
	rec.Load = append(rec.Load[:0], make([]int, r.E)...)
	for s, x := range r.Experts {
		// Under expert choice the slots no expert took are not routed.
		if !r.ExpertChoice || !r.Dropped[s] {
			rec.Load[x]++
		}
	}
	rec.Dropped = r.NumDropped
	if r.ExpertChoice {
		rec.Dropped = 0
	}
}
