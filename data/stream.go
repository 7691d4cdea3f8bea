package data

import (
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/moetrain/moetrain/data/internal/perm"
)

// StreamConfig says what to stream from a dataset directory.
type StreamConfig struct {
	Dir string
	// Split is "train" (shuffled windows) or "validation" (windows in file
	// order, for evaluation). Empty means "train".
	Split string
	// SeqLen is T; each example is T+1 tokens (inputs and shifted targets).
	SeqLen int
	// Batch is B, the examples per batch.
	Batch int
	// Seed fixes, with the epoch, the order of train windows.
	Seed uint64
	// Weights maps domain → mixture weight; nil streams the split as one
	// concatenated corpus (natural proportions). With weights, each domain is
	// its own stream, examples are drawn from the domains in proportion to
	// the weights (resolution 1/4096), a small domain repeats (reshuffled)
	// while a large one is still in its first pass, and a domain missing from
	// the map is left out. An "epoch" is then a nominal count of examples:
	// the sum of the included domains' windows. The key OtherDomains ("*")
	// weighs every domain the map does not name, so {"*": 1} is an equal
	// mixture of whatever domains a dataset has.
	Weights map[string]float64
	// Epochs stops the stream after this many epochs (0 = never stop). The
	// last batch may then hold fewer than Batch examples; Next then returns
	// io.EOF. Use Split: "validation", Epochs: 1 to evaluate once.
	Epochs int64
	// Vocab is the model's vocab size; when nonzero, Open refuses a dataset
	// whose tokenizer has a different number of ids.
	Vocab int
	// Prefetch is how many batches a background goroutine prepares ahead
	// (0 means 4).
	Prefetch int
}

// Cursor is the whole state needed to resume a stream: the next example is
// example Position of epoch Epoch. It is JSON-serialisable.
type Cursor struct {
	Epoch    int64 `json:"epoch"`
	Position int64 `json:"position"`
}

// Batch is B examples of T+1 tokens each.
type Batch struct {
	Tokens []int32 // B×(T+1), row-major; row b is tokens [b*(T+1), (b+1)*(T+1))
	B, T   int
	Cursor Cursor // the cursor after this batch: Open(cfg, Cursor) continues from here
}

// Stream yields batches from a dataset. Its methods must be called from one
// goroutine; it reads ahead on its own goroutine.
type Stream struct {
	cfg      StreamConfig
	man      *Manifest
	units    []*unit
	shuffle  bool
	weighted bool
	slots    []int64 // weighted: unit u owns block slots [slots[u], slots[u+1])
	epochLen int64

	readers []*shardReader
	files   []*os.File

	ch   chan item
	done chan struct{}
	wg   sync.WaitGroup
	err  error // sticky
}

type item struct {
	b   Batch
	err error
}

// unit is one concatenated token stream (a split, or one domain of it).
type unit struct {
	name    string
	shards  []*shardReader
	starts  []int64 // starts[i] = first token of shards[i]; len = len(shards)+1
	windows int64
}

// BlockSlots is the number of examples in one block of the weighted
// schedule; each block holds a fixed number of slots per domain.
const BlockSlots = 4096

// Open opens a stream positioned at cursor at (Cursor{} for the start). It
// verifies the checksum of every shard it will read before parsing it.
func Open(cfg StreamConfig, at Cursor) (*Stream, error) {
	s, err := open(cfg, at)
	if err != nil {
		return nil, err
	}
	s.ch = make(chan item, s.cfg.Prefetch)
	s.done = make(chan struct{})
	s.wg.Add(1)
	go s.run(at)
	return s, nil
}

// open does all of Open but start the read-ahead goroutine.
func open(cfg StreamConfig, at Cursor) (*Stream, error) {
	if cfg.Split == "" {
		cfg.Split = Train
	}
	if cfg.Split != Train && cfg.Split != Validation {
		return nil, fmt.Errorf("open stream: split %q, want %q or %q", cfg.Split, Train, Validation)
	}
	if cfg.SeqLen < 1 || cfg.Batch < 1 {
		return nil, fmt.Errorf("open stream: seq_len %d and batch %d must be positive", cfg.SeqLen, cfg.Batch)
	}
	if cfg.Epochs < 0 {
		return nil, fmt.Errorf("open stream: epochs %d is negative", cfg.Epochs)
	}
	if cfg.Prefetch <= 0 {
		cfg.Prefetch = 4
	}
	man, err := LoadManifest(cfg.Dir)
	if err != nil {
		return nil, err
	}
	if cfg.Vocab != 0 {
		if err := man.CheckVocab(cfg.Vocab); err != nil {
			return nil, fmt.Errorf("open stream %s: %w", cfg.Dir, err)
		}
	}
	s := &Stream{cfg: cfg, man: man, shuffle: cfg.Split == Train, weighted: cfg.Weights != nil}
	ok := false
	defer func() {
		if !ok {
			s.closeFiles()
		}
	}()
	var mix []Share
	if s.weighted {
		if mix, err = man.Mixture(cfg.Weights); err != nil {
			return nil, fmt.Errorf("open stream %s: %w", cfg.Dir, err)
		}
		s.slots = []int64{0}
		for _, sh := range mix {
			s.units = append(s.units, &unit{name: sh.Domain})
			s.slots = append(s.slots, s.slots[len(s.slots)-1]+sh.Slots)
		}
	} else {
		s.units = []*unit{{name: cfg.Split}}
	}
	for _, u := range s.units {
		domain := ""
		if s.weighted {
			domain = u.name
		}
		u.starts = []int64{0}
		for _, info := range man.ShardsOf(cfg.Split, domain) {
			r, err := s.openShard(info)
			if err != nil {
				return nil, err
			}
			u.shards = append(u.shards, r)
			u.starts = append(u.starts, u.starts[len(u.starts)-1]+info.Tokens)
		}
		tokens := u.starts[len(u.starts)-1]
		T := int64(cfg.SeqLen)
		if tokens < T+1 {
			what := "split " + cfg.Split
			if s.weighted {
				what += " domain " + u.name
			}
			fix := "lower seq_len or prepare more text"
			if tokens == 0 && cfg.Split == Validation {
				fix = "prepare with --val-fraction > 0"
			}
			return nil, fmt.Errorf("open stream %s: %s has %d tokens, fewer than seq_len+1 = %d; %s", cfg.Dir, what, tokens, T+1, fix)
		}
		u.windows = (tokens - 1) / T
		s.epochLen += u.windows
	}
	if at.Epoch < 0 || at.Position < 0 || at.Position >= s.epochLen {
		return nil, fmt.Errorf("open stream %s: cursor %+v outside an epoch of %d examples (was it saved for another dataset, split or seq_len?)", cfg.Dir, at, s.epochLen)
	}
	ok = true
	return s, nil
}

// ErrWeights is wrapped by Open when the mixture weights do not fit the
// dataset (a domain it does not have, no positive weight): a config mistake.
var ErrWeights = errors.New("the domain weights do not fit the dataset")

// OtherDomains is the Weights key that stands for every domain not named.
const OtherDomains = "*"

// Share is one domain's part of a weighted stream: the number of the
// BlockSlots examples of every block that come from Domain.
type Share struct {
	Domain string
	Slots  int64
}

// Mixture resolves weights against the dataset's domains as Open does: the
// domains with a positive weight, in manifest order, each with its slots
// (in proportion to the weights by largest remainders, ties to the earlier
// domain). It is what a weighted stream reads, so two weight maps with the
// same Mixture ({"*": 1} and {"prose": 1, "code": 1}, or {"a": 1} and
// {"a": 2}) give the same stream. Errors wrap ErrWeights, except a weight
// too small for one slot. nil weights mean the unweighted stream: nil.
func (m *Manifest) Mixture(weights map[string]float64) ([]Share, error) {
	if weights == nil {
		return nil, nil
	}
	known := map[string]bool{}
	for _, d := range m.Domains {
		known[d] = true
	}
	var errs []error
	for _, d := range slices.Sorted(maps.Keys(weights)) {
		w := weights[d]
		if !known[d] && d != OtherDomains {
			errs = append(errs, fmt.Errorf("weights name domain %q, but the dataset's domains are %s", d, strings.Join(m.Domains, ", ")))
		}
		if !(w >= 0) || math.IsInf(w, 0) {
			errs = append(errs, fmt.Errorf("weight of domain %q is %v; weights must be finite and >= 0", d, w))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrWeights, err)
	}
	var names []string
	var ws []float64
	for _, d := range m.Domains {
		w, ok := weights[d]
		if !ok {
			w = weights[OtherDomains]
		}
		if w > 0 {
			names = append(names, d)
			ws = append(ws, w)
		}
	}
	if len(ws) == 0 {
		return nil, fmt.Errorf("%w: every domain weight is zero; give at least one domain a positive weight", ErrWeights)
	}
	counts, err := apportion(ws, BlockSlots, names)
	if err != nil {
		return nil, err
	}
	mix := make([]Share, len(names))
	for i, d := range names {
		mix[i] = Share{Domain: d, Slots: counts[i]}
	}
	return mix, nil
}

// apportion splits k slots among the named units in proportion to weights
// by largest remainders (ties to the earlier unit) and returns the counts.
func apportion(weights []float64, k int64, names []string) ([]int64, error) {
	var sum float64
	for _, w := range weights {
		sum += w
	}
	counts := make([]int64, len(weights))
	type rem struct {
		i int
		r float64
	}
	rems := make([]rem, len(weights))
	var used int64
	for i, w := range weights {
		q := w / sum * float64(k)
		counts[i] = int64(math.Floor(q))
		used += counts[i]
		rems[i] = rem{i, q - math.Floor(q)}
	}
	sort.SliceStable(rems, func(a, b int) bool { return rems[a].r > rems[b].r })
	for j := 0; used < k; j++ {
		counts[rems[j%len(rems)].i]++
		used++
	}
	for i, c := range counts {
		if c == 0 {
			return nil, fmt.Errorf("weight of domain %q is below 1/%d of the total; raise it or set it to 0", names[i], k)
		}
	}
	return counts, nil
}

func (s *Stream) openShard(info ShardInfo) (*shardReader, error) {
	f, r, err := openVerifiedShard(s.cfg.Dir, s.man, info)
	if f != nil {
		s.files = append(s.files, f)
	}
	if r != nil {
		s.readers = append(s.readers, r)
	}
	return r, err
}

// VerifySplit checks every shard of one split of the dataset at dir as Open
// does (size, SHA-256, schema), without reading it for training: a run
// calls it at launch for the split it reads only later (validation), so that
// a damaged shard stops it before the training, not after.
func VerifySplit(dir string, man *Manifest, split string) error {
	for _, info := range man.ShardsOf(split, "") {
		f, r, err := openVerifiedShard(dir, man, info)
		if r != nil {
			r.close()
		}
		if f != nil {
			f.Close()
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// openVerifiedShard checks a shard's size and SHA-256 against its manifest
// entry, then parses it and checks its schema metadata against the
// manifest. The caller closes f (returned even on some errors) and r.
func openVerifiedShard(dir string, man *Manifest, info ShardInfo) (*os.File, *shardReader, error) {
	path := filepath.Join(dir, info.File)
	fix := "re-run 'moetrain prepare --force' to rebuild the dataset"
	st, err := os.Stat(path)
	if err != nil {
		return nil, nil, fmt.Errorf("open shard %s: %w; %s", path, err, fix)
	}
	if st.Size() != info.Bytes {
		return nil, nil, fmt.Errorf("%w %s: %d bytes, the manifest says %d (truncated or replaced); %s", ErrCorruptShard, path, st.Size(), info.Bytes, fix)
	}
	sum, _, err := fileSHA256(path)
	if err != nil {
		return nil, nil, fmt.Errorf("checksum shard %s: %w", path, err)
	}
	if sum != info.SHA256 {
		return nil, nil, fmt.Errorf("%w %s: SHA-256 %s, the manifest says %s (the file changed after prepare); %s", ErrCorruptShard, path, sum, info.SHA256, fix)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, fmt.Errorf("open shard %s: %w", path, err)
	}
	r, err := openShardReader(f, st.Size(), path)
	if err != nil {
		return f, nil, fmt.Errorf("%w; %s", err, fix)
	}
	h, t := r.hdr, man.Tokenizer
	if h.TokenizerHash != t.Hash || h.Vocab != t.VocabSize || h.EOS != t.EOS || h.Domain != info.Domain ||
		h.Split != info.Split || h.RecordTokens != man.RecordTokens || (h.Uint32 != (man.TokenType == "uint32")) {
		return f, r, fmt.Errorf("%w %s: its schema metadata %+v disagrees with the manifest entry %+v; %s", ErrCorruptShard, path, h, info, fix)
	}
	if err := r.setTokens(info.Tokens); err != nil {
		return f, r, fmt.Errorf("%w; %s", err, fix)
	}
	return f, r, nil
}

// Manifest returns the dataset's manifest.
func (s *Stream) Manifest() *Manifest { return s.man }

// EpochLen is the number of examples in one epoch.
func (s *Stream) EpochLen() int64 { return s.epochLen }

// Next returns the next batch. It returns io.EOF after the last batch of a
// stream with an epoch limit; any other error is sticky.
func (s *Stream) Next() (Batch, error) {
	if s.err != nil {
		return Batch{}, s.err
	}
	it, ok := <-s.ch
	if !ok {
		s.err = io.EOF
		return Batch{}, s.err
	}
	if it.err != nil {
		s.err = it.err
		return Batch{}, it.err
	}
	return it.b, nil
}

// Close stops the read-ahead goroutine and closes the shard files.
func (s *Stream) Close() error {
	if s.done != nil {
		close(s.done)
		s.wg.Wait()
		s.done = nil
	}
	s.err = errors.New("data: Next on a closed stream")
	return s.closeFiles()
}

func (s *Stream) closeFiles() error {
	var errs []error
	for _, r := range s.readers {
		r.close()
	}
	for _, f := range s.files {
		errs = append(errs, f.Close())
	}
	s.readers, s.files = nil, nil
	return errors.Join(errs...)
}

func (s *Stream) run(at Cursor) {
	defer s.wg.Done()
	defer close(s.ch)
	sc := s.scheduler()
	cur := at
	for {
		b, err := s.batch(sc, cur)
		if err == nil && b.B == 0 {
			return // epoch limit reached
		}
		select {
		case s.ch <- item{b, err}:
		case <-s.done:
			return
		}
		if err != nil {
			return
		}
		cur = b.Cursor
	}
}

// batch builds the batch that starts at cur.
func (s *Stream) batch(sc *scheduler, cur Cursor) (Batch, error) {
	T := s.cfg.SeqLen
	rows := s.cfg.Batch
	toks := make([]int32, 0, rows*(T+1))
	b := 0
	for ; b < rows; b++ {
		if s.cfg.Epochs > 0 && cur.Epoch >= s.cfg.Epochs {
			break
		}
		u, w := sc.locate(cur)
		toks = toks[:(b+1)*(T+1)]
		if err := s.units[u].read(w*int64(T), toks[b*(T+1):]); err != nil {
			return Batch{}, err
		}
		cur.Position++
		if cur.Position == s.epochLen {
			cur = Cursor{Epoch: cur.Epoch + 1}
		}
	}
	return Batch{Tokens: toks, B: b, T: T, Cursor: cur}, nil
}

// scheduler maps cursors to windows. It memoises the slot pattern of the
// current weighted block, so each goroutine needs its own (Stream.scheduler).
type scheduler struct {
	s      *Stream
	patBlk uint64
	pat    []slotRef // weighted: domain and rank of each slot of block patBlk
}

type slotRef struct{ unit, rank int32 }

func (s *Stream) scheduler() *scheduler { return &scheduler{s: s, patBlk: math.MaxUint64} }

// locate maps a cursor to (unit, window). It is a pure function of the
// configuration and the cursor: this is what makes resuming exact.
//
// Weighted: the global example index g = epoch*EpochLen + position falls in
// block g/4096, whose 4096 slots are shuffled by a keyed permutation and
// owned by the domains in proportion to their weights. A domain's k-th
// example overall (k = block*slots + rank within the block, so k grows with
// g) is window k mod W of the domain's pass k/W, in that pass's own
// permuted order: every window of a domain is used once before any repeats.
func (sc *scheduler) locate(c Cursor) (int, int64) {
	s := sc.s
	if !s.weighted {
		u := s.units[0]
		if !s.shuffle {
			return 0, c.Position
		}
		return 0, int64(perm.New(uint64(u.windows), perm.HashKey(s.cfg.Seed, perm.TagNatural, uint64(c.Epoch))).At(uint64(c.Position)))
	}
	g := uint64(c.Epoch)*uint64(s.epochLen) + uint64(c.Position)
	blk, j := g/BlockSlots, g%BlockSlots
	if blk != sc.patBlk {
		sc.fillPattern(blk)
	}
	ref := sc.pat[j]
	u := int(ref.unit)
	k := uint64(s.slots[u+1] - s.slots[u])
	local := blk*k + uint64(ref.rank)
	un := s.units[u]
	pass, i := local/uint64(un.windows), local%uint64(un.windows)
	if !s.shuffle {
		return u, int64(i)
	}
	return u, int64(perm.New(uint64(un.windows), perm.HashKey(s.cfg.Seed, perm.TagDomain, perm.StrKey(un.name), pass)).At(i))
}

func (sc *scheduler) fillPattern(blk uint64) {
	s := sc.s
	if sc.pat == nil {
		sc.pat = make([]slotRef, BlockSlots)
	}
	p := perm.New(BlockSlots, perm.HashKey(s.cfg.Seed, perm.TagBlock, blk))
	if !s.shuffle {
		p = perm.New(1, 0) // identity below
	}
	rank := make([]int32, len(s.units))
	for j := uint64(0); j < BlockSlots; j++ {
		slot := int64(j)
		if s.shuffle {
			slot = int64(p.At(j))
		}
		u := sort.Search(len(s.units), func(i int) bool { return s.slots[i+1] > slot })
		sc.pat[j] = slotRef{int32(u), rank[u]}
		rank[u]++
	}
	sc.patBlk = blk
}

// read copies tokens [off, off+len(dst)) of the unit's stream into dst.
func (u *unit) read(off int64, dst []int32) error {
	i := sort.Search(len(u.shards), func(i int) bool { return u.starts[i+1] > off })
	for len(dst) > 0 {
		sh := u.shards[i]
		n := u.starts[i+1] - off
		if n > int64(len(dst)) {
			n = int64(len(dst))
		}
		if err := sh.read(off-u.starts[i], dst[:n]); err != nil {
			return err
		}
		dst, off = dst[n:], off+n
		i++
	}
	return nil
}
