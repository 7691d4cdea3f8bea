package train

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/moetrain/moetrain/checkpoints"
	"github.com/moetrain/moetrain/dist"
	"github.com/moetrain/moetrain/model/ops"
	"github.com/moetrain/moetrain/optim"
	"github.com/moetrain/moetrain/rundir"
)

// Expert parallelism (docs/DISTRIBUTED.md). With model.expert_parallel R
// > 1 the W ranks form W/R groups of R consecutive ranks; rank w holds
// experts [q·E/R, (q+1)·E/R) of every MoE layer, q = w mod R, and trains
// them on the tokens of its whole group (the MoE op's all-to-alls). Every
// rank still trains on its own B/W sequences, as under data parallelism.
//
//   - Weights: every rank, 0 included, allocates only its shard of each
//     expert stack (model.NewSharded, initialised as the matching part of
//     the whole model). The graph, the optimizer parameters, the gradients
//     and the AdamW moments cover the shard alone.
//   - Communicators: dist.Comm.Grid splits the world into the group's
//     communicator (ep: all-to-alls, norm) and the communicator of the
//     W/R ranks holding the same shard (dp: expert gradients). Both are
//     made once at start, in that order on every rank, and freed at the end.
//   - Gradients: non-expert gradients are all-reduced over all W ranks as
//     under data parallelism; an expert shard's gradient already sums its
//     group's tokens and is all-reduced over dp (none when W = R).
//   - Clipping: the global norm (expertParallelNorm) sums the non-expert
//     squares once and every shard's squares once (over ep).
//   - Checkpoints: rank 0 writes the single-process layout, streamed: each
//     expert tensor another rank holds is fetched from its owner in the
//     first group when the writer reaches it (fetch / serveExperts), so no
//     rank ever holds more than its shard plus one expert's tensor. Loading:
//     every rank reads the checkpoint rank 0 chose, keeping only the
//     replicated tensors and its own experts' rows (checkpoints.LoadPart),
//     so a checkpoint moves between any expert_parallel values.
//   - Evaluation: the ranks of the first group evaluate together with the
//     expert-parallel graph, all on the same held-out windows.

// epState is the expert-parallel part of a trainer (R = 1: none).
type epState struct {
	group    ops.EPComm    // this rank's group: ep, timed
	ep, dp   *dist.Comm    // the group; the ranks holding the same shard
	rank, R  int           // rank within the group, group size
	expert   []bool        // per t.step.Params entry: an expert shard
	flat     []float32     // the expert shards' gradients, contiguous
	fetched  []float32     // rank 0: the buffer fetch receives into
	alltoall time.Duration // time in the MoE ops' all-to-alls (timed comm)
}

// initEP checks the world against model.expert_parallel and forms the
// groups (called by initDist).
func (t *trainer) initEP() error {
	R := t.cfg.Model.ExpertRanks()
	if R <= 1 {
		return nil
	}
	c := t.dist.comm
	if c.Size()%R != 0 {
		return fmt.Errorf("model.expert_parallel %d needs a multiple of %d MPI ranks, got %d (run under mpirun -np %d, or resume with --set model.expert_parallel=1)", R, R, c.Size(), R)
	}
	ep, dp, err := c.Grid(R)
	if err != nil {
		return err
	}
	t.dist.ep = &epState{R: R, rank: ep.Rank(), ep: ep, dp: dp}
	t.dist.ep.group = &timedComm{EPComm: ep, spent: &t.dist.ep.alltoall}
	return nil
}

// freeComms frees the expert- and data-parallel communicators (every rank,
// in the same order), before dist.Finalize.
func (t *trainer) freeComms() {
	if ep := t.dist.ep; ep != nil {
		ep.ep.Free()
		ep.dp.Free()
	}
}

// timedComm adds the time spent in all-to-alls to spent.
type timedComm struct {
	ops.EPComm
	spent *time.Duration
}

func (c *timedComm) AlltoallInts(send []int) ([]int, error) {
	t0 := time.Now()
	defer func() { *c.spent += time.Since(t0) }()
	return c.EPComm.AlltoallInts(send)
}

func (c *timedComm) AlltoallvF32(send []float32, sc []int, recv []float32, rc []int) error {
	t0 := time.Now()
	defer func() { *c.spent += time.Since(t0) }()
	return c.EPComm.AlltoallvF32(send, sc, recv, rc)
}

// expertComm is GraphOptions.ExpertComm for the training graphs.
func (t *trainer) expertComm() ops.EPComm {
	if t.dist.ep == nil {
		return nil
	}
	return t.dist.ep.group
}

// shardExperts lays the expert shards' gradients out in one flat buffer
// (they are reduced apart from the rest) and marks them.
func (t *trainer) shardExperts() error {
	if t.dist.ep == nil {
		return nil
	}
	t.dist.ep.expert = make([]bool, len(t.step.Params))
	n := 0
	for j, p := range t.step.Params {
		if i := t.step.Layout[j]; t.m.Layout[i].Experts > 0 {
			t.dist.ep.expert[j] = true
			n += len(p.Data)
			t.step.Params[j].Grad = nil // free before the flat buffer replaces it
		}
	}
	t.dist.ep.flat = make([]float32, n)
	off := 0
	for j := range t.step.Params {
		if t.dist.ep.expert[j] {
			l := len(t.step.Params[j].Data)
			t.step.Params[j].Grad = t.dist.ep.flat[off : off+l : off+l]
			off += l
		}
	}
	t.logf("expert parallel: %d groups of %d ranks; this rank holds experts [%d, %d) of each MoE layer (%d expert values)",
		t.dist.comm.Size()/t.dist.ep.R, t.dist.ep.R, t.dist.ep.rank*t.cfg.Model.RoutedExperts/t.dist.ep.R, (t.dist.ep.rank+1)*t.cfg.Model.RoutedExperts/t.dist.ep.R, n)
	// What is actually allocated, by the capacity of the arrays (a view of
	// a larger array would count whole): tested at EP 2.
	var weights, moments, whole int
	for i, p := range t.m.Layout {
		if p.Experts > 0 {
			weights += cap(t.m.Values[i].Data().([]float32))
			whole += int(p.Size())
		}
	}
	for _, s := range t.step.Adam.Moments().Slices {
		if t.expertMoment(s.Name) >= 0 {
			moments += cap(s.Data)
		}
	}
	t.logf("expert parallel: this rank allocates %d routed-expert weights, %d gradients and %d AdamW moments (the whole model has %d routed-expert weights)",
		weights, cap(t.dist.ep.flat), moments, whole)
	return nil
}

// isExpert reports whether t.step.Params[j] is an expert shard.
func (t *trainer) isExpert(j int) bool { return t.dist.ep != nil && t.dist.ep.expert[j] }

// reduceExpertGrads sums the expert shards' gradients over the ranks that
// hold the same shard (one per group): an all-reduce over dp.
func (t *trainer) reduceExpertGrads() error {
	if t.dist.ep == nil {
		return nil
	}
	return t.dist.ep.dp.AllreduceF32(t.dist.ep.flat)
}

// expertParallelNorm is the global gradient norm of the whole model: it
// includes every shard once (its group's, summed over ep; every group holds
// the same reduced shards), so every rank gets the same norm and clipping
// scale.
func (t *trainer) expertParallelNorm() float64 {
	var dense, experts []optim.Param
	for j, p := range t.step.Params {
		if t.dist.ep.expert[j] {
			experts = append(experts, p)
		} else {
			dense = append(dense, p)
		}
	}
	nd, ne := optim.GlobalNorm(dense), optim.GlobalNorm(experts)
	sq := []float64{ne * ne}
	if err := t.dist.ep.ep.AllreduceF64(sq); err != nil {
		return math.NaN() // a non-finite step for the caller
	}
	return math.Sqrt(nd*nd + sq[0])
}

// epHashes returns the SHA-256 of the non-expert weights and moments and
// of this rank's expert shards and their moments.
func (t *trainer) epHashes() (dense, experts []byte) {
	hd, he := sha256.New(), sha256.New()
	var buf [4]byte
	put := func(h interface{ Write([]byte) (int, error) }, xs []float32) {
		for _, x := range xs {
			binary.LittleEndian.PutUint32(buf[:], math.Float32bits(x))
			h.Write(buf[:])
		}
	}
	expertName := map[string]bool{}
	for j, p := range t.step.Params {
		if t.dist.ep.expert[j] {
			expertName[p.Name] = true
			put(he, p.Data)
		} else {
			put(hd, p.Data)
		}
	}
	for _, s := range t.step.Adam.Moments().Slices {
		name := strings.TrimSuffix(strings.TrimSuffix(s.Name, ".exp_avg_sq"), ".exp_avg")
		if expertName[name] {
			put(he, s.Data)
		} else {
			put(hd, s.Data)
		}
	}
	return hd.Sum(nil), he.Sum(nil)
}

// checkShards verifies that every rank holds the same non-expert weights
// and moments and the ranks holding the same expert shard agree on it.
func (t *trainer) checkShards() error {
	d, e := t.epHashes()
	all, err := t.dist.comm.AllgatherBytes(append(d, e...))
	if err != nil {
		return err
	}
	for r, x := range all {
		if string(x[:len(d)]) != string(all[0][:len(d)]) {
			return fmt.Errorf("expert parallel: rank %d's non-expert weights differ from rank 0's; not saving", r)
		}
		if q := r % t.dist.ep.R; string(x[len(d):]) != string(all[q][len(d):]) {
			return fmt.Errorf("expert parallel: rank %d's expert shard differs from rank %d's; not saving", r, q)
		}
	}
	return nil
}

// epLoad is the share of the routed (token, expert) pairs of the last
// micro-batch that each expert-parallel rank computed, summed over MoE
// layers and all ranks' tokens (nil without expert parallelism).
// Collective.
func (t *trainer) epLoad() []float64 {
	if t.dist.ep == nil {
		return nil
	}
	load := make([]float64, t.dist.ep.R)
	for _, rec := range t.g.Routes {
		per := rec.E / t.dist.ep.R
		for e, l := range rec.Load {
			load[e/per] += float64(l)
		}
	}
	if err := t.dist.comm.AllreduceF64(load); err != nil {
		return nil
	}
	var total float64
	for _, l := range load {
		total += l
	}
	if total > 0 {
		for i := range load {
			load[i] /= total
		}
	}
	return load
}

// expertMoment returns the Layout index of the expert stack whose AdamW
// moment name is (p.exp_avg or p.exp_avg_sq), or -1.
func (t *trainer) expertMoment(name string) int {
	base := strings.TrimSuffix(strings.TrimSuffix(name, ".exp_avg_sq"), ".exp_avg")
	if base == name {
		return -1
	}
	if i := t.m.Index(base); i >= 0 && t.m.Layout[i].Experts > 0 {
		return i
	}
	return -1
}

// checkpointPart is what this rank reads of a checkpoint: everything
// without expert parallelism; else the replicated tensors and its own
// experts: their weights (one HF key per expert) and its rows of their
// stacked AdamW moments.
func (t *trainer) checkpointPart() checkpoints.Select {
	if t.dist.ep == nil {
		return nil
	}
	foreign := t.m.HFForeign()
	return func(name string, shape []int) (int, int, bool) {
		rows := 1
		if len(shape) > 0 {
			rows = shape[0]
		}
		if foreign(name) {
			return 0, 0, false
		}
		if i := t.expertMoment(name); i >= 0 && len(shape) == 1 && int64(rows) == t.m.Layout[i].Size() {
			lo, hi := t.m.Own(i)
			return lo, hi, true
		}
		return 0, rows, true // a mismatch is left to LoadHF and SetState to report
	}
}

// loadShard makes the ranks other than 0 read their part of the checkpoint
// rank 0 resumed from (dir, "" for none) and returns its AdamW moments.
// Collective; rank 0 only sends dir.
func (t *trainer) loadShard(dir string) (*optim.State, error) {
	raw, err := t.dist.comm.BcastBytes([]byte(dir), 0)
	if err != nil || t.root() || len(raw) == 0 {
		return nil, err
	}
	dir = string(raw)
	ck, err := checkpoints.LoadPart(dir, t.checkpointPart())
	if err != nil {
		return nil, err
	}
	if err := t.m.LoadHF(ck.Model); err != nil {
		return nil, fmt.Errorf("checkpoint %s: %w", dir, err)
	}
	st, err := rundir.OptimizerState(t.state.OptimizerStep, ck.Optimizer)
	if err != nil {
		return nil, fmt.Errorf("checkpoint %s: %w", dir, err)
	}
	return &st, nil
}

// modelTensors are the weights a checkpoint stores: the whole model's,
// the experts other ranks hold streamed from them (fetch).
func (t *trainer) modelTensors() []checkpoints.Tensor {
	if t.dist.ep == nil {
		return t.m.HFTensors()
	}
	per := t.cfg.Model.RoutedExperts / t.dist.ep.R // experts per shard
	return t.m.HFTensorsFrom(func(i, e int) ([]float32, error) {
		n := int(t.m.Layout[i].Size()) / t.cfg.Model.RoutedExperts // values per expert
		lo := (e % per) * n
		return t.fetch(i, 0, e/per, lo, lo+n)
	})
}

// optimizerTensors is the AdamW state a checkpoint stores: each expert
// stack's moments whole, shard after shard, the other ranks' streamed from
// them (fetch).
func (t *trainer) optimizerTensors() []checkpoints.Tensor {
	ts := rundir.OptimizerTensors(t.step.Adam.Moments())
	if t.dist.ep == nil {
		return ts
	}
	for k := range ts {
		i := t.expertMoment(ts[k].Name)
		if i < 0 {
			continue
		}
		kind := 1
		if strings.HasSuffix(ts[k].Name, ".exp_avg_sq") {
			kind = 2
		}
		own := ts[k].F32 // shard 0: rank 0's
		ts[k].Shape, ts[k].F32 = []int{int(t.m.Layout[i].Size())}, nil
		ts[k].Stream = func(put func([]float32) error) error {
			if err := put(own); err != nil {
				return err
			}
			for q := 1; q < t.dist.ep.R; q++ {
				v, err := t.fetch(i, kind, q, 0, len(own))
				if err != nil {
					return err
				}
				if err := put(v); err != nil {
					return err
				}
			}
			return nil
		}
	}
	return ts
}

// A fetch request, broadcast by rank 0 over the first group's ep: values
// [lo, hi) of Layout[param]'s shard held by group rank owner, of its
// weights (kind 0) or AdamW first (1) or second (2) moment. param < 0 ends
// the save.
type fetchRequest struct{ param, kind, owner, lo, hi int64 }

// fetch has the owner of a shard in the first group send rank 0 part of it
// (see fetchRequest); rank 0 only. The result is valid until the next
// fetch.
func (t *trainer) fetch(i, kind, owner, lo, hi int) ([]float32, error) {
	ep := t.dist.ep
	if err := t.sendRequest(fetchRequest{int64(i), int64(kind), int64(owner), int64(lo), int64(hi)}); err != nil {
		return nil, err
	}
	if cap(ep.fetched) < hi-lo {
		ep.fetched = make([]float32, hi-lo)
	}
	buf := ep.fetched[:hi-lo]
	sc, rc := make([]int, ep.R), make([]int, ep.R)
	rc[owner] = hi - lo
	return buf, ep.ep.AlltoallvF32(nil, sc, buf, rc)
}

// endFetches tells the first group's other ranks that the save is over
// (rank 0, after a save, whether it succeeded or not).
func (t *trainer) endFetches() error { return t.sendRequest(fetchRequest{param: -1}) }

func (t *trainer) sendRequest(r fetchRequest) error {
	var b []byte
	for _, v := range []int64{r.param, r.kind, r.owner, r.lo, r.hi} {
		b = binary.LittleEndian.AppendUint64(b, uint64(v))
	}
	_, err := t.dist.ep.ep.BcastBytes(b, 0)
	return err
}

func decodeRequest(b []byte) (fetchRequest, error) {
	if len(b) != 40 {
		return fetchRequest{}, fmt.Errorf("expert parallel: a fetch request of %d bytes", len(b))
	}
	v := func(k int) int64 { return int64(binary.LittleEndian.Uint64(b[8*k:])) }
	return fetchRequest{v(0), v(1), v(2), v(3), v(4)}, nil
}

// servesExperts reports whether this rank answers rank 0's fetches during
// a save: the ranks of the first group other than 0.
func (t *trainer) servesExperts() bool {
	return t.dist.ep != nil && !t.root() && t.dist.comm.Rank() < t.dist.ep.R
}

// serveExperts answers rank 0's fetch requests until it ends the save.
func (t *trainer) serveExperts() error {
	ep := t.dist.ep
	moments := map[string][]float32{}
	for _, s := range t.step.Adam.Moments().Slices {
		moments[s.Name] = s.Data
	}
	for {
		raw, err := ep.ep.BcastBytes(nil, 0)
		if err != nil {
			return err
		}
		r, err := decodeRequest(raw)
		if err != nil {
			return err
		}
		if r.param < 0 {
			return nil
		}
		sc, rc := make([]int, ep.R), make([]int, ep.R)
		var send []float32
		if int(r.owner) == ep.rank {
			i := int(r.param)
			var src []float32
			switch p := t.m.Layout[i]; r.kind {
			case 0:
				src = t.m.Values[i].Data().([]float32)
			case 1:
				src = moments[p.Name+".exp_avg"]
			default:
				src = moments[p.Name+".exp_avg_sq"]
			}
			if r.lo < 0 || r.hi < r.lo || int(r.hi) > len(src) {
				return fmt.Errorf("expert parallel: fetch of [%d, %d) of %d values of %s", r.lo, r.hi, len(src), t.m.Layout[i].Name)
			}
			send = src[r.lo:r.hi]
			sc[0] = len(send)
		}
		if err := ep.ep.AlltoallvF32(send, sc, nil, rc); err != nil {
			return err
		}
	}
}

// evaluates reports whether this rank holds an evaluator: rank 0, and
// under expert parallelism the rest of its group.
func (t *trainer) evaluates() bool {
	return t.root() || t.dist.ep != nil && t.dist.comm.Rank() < t.dist.ep.R
}

// evalComm is the evaluator's expert-parallel group (the untimed ep: its
// all-to-alls are not training's).
func (t *trainer) evalComm() ops.EPComm {
	if t.dist.ep == nil {
		return nil
	}
	return t.dist.ep.ep
}

// shareEval gives the evaluating ranks rank 0's decision: without a
// held-out set or tasks rank 0 has no evaluator, and then none has.
func (t *trainer) shareEval() error {
	if !t.distributed() {
		return nil
	}
	has := []byte{0}
	if t.eval != nil {
		has[0] = 1
	}
	raw, err := t.dist.comm.BcastBytes(has, 0)
	if err != nil {
		return err
	}
	if raw[0] == 0 && t.eval != nil {
		t.eval.Close()
		t.eval = nil
	}
	if raw[0] == 1 && t.eval == nil && t.evaluates() {
		return fmt.Errorf("rank %d has no evaluator while rank 0 has one", t.dist.comm.Rank())
	}
	return nil
}
