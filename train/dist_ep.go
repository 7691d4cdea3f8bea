package train

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/moetrain/moetrain/dist"
	"github.com/moetrain/moetrain/model/ops"
	"github.com/moetrain/moetrain/optim"
)

// Expert parallelism (docs/DISTRIBUTED.md). With model.expert_parallel R
// > 1 the W ranks form W/R groups of R consecutive ranks; rank w holds
// experts [q·E/R, (q+1)·E/R) of every MoE layer, q = w mod R, and trains
// them on the tokens of its whole group (the MoE op's all-to-alls). Every
// rank still trains on its own B/W sequences, as under data parallelism.
//
//   - Weights: a rank other than 0 allocates only its shard of each expert
//     stack (model.NewSharded) and receives it from rank 0 (scatterExperts);
//     rank 0 keeps the whole model's weights (it loads, evaluates and saves
//     them) and trains a view of its shard (model.Model.ShardView). The
//     graph, the optimizer parameters, the gradients and the AdamW moments
//     cover the shard alone on every rank.
//   - Communicators: dist.Comm.Grid splits the world into the group's
//     communicator (ep: all-to-alls, norm) and the communicator of the
//     W/R ranks holding the same shard (dp: expert gradients). Both are
//     made once at start, in that order on every rank, and freed at the end.
//   - Gradients: non-expert gradients are all-reduced over all W ranks as
//     under data parallelism; an expert shard's gradient already sums its
//     group's tokens and is all-reduced over dp (none when W = R).
//   - Clipping: the global norm (expertParallelNorm) sums the non-expert
//     squares once and every shard's squares once (over ep).
//   - Checkpoints: the first group's shards (weights and moments) are
//     gathered to rank 0, which writes the single-process layout; loading
//     is the data-parallel broadcast followed by slicing, so a checkpoint
//     moves between any expert_parallel values.

// epState is the expert-parallel part of a trainer (R = 1: none).
type epState struct {
	group    ops.EPComm // this rank's group: ep, timed
	ep, dp   *dist.Comm // the group; the ranks holding the same shard
	rank, R  int        // rank within the group, group size
	expert   []bool     // per t.step.Params entry: an expert shard
	flat     []float32  // the expert shards' gradients, contiguous
	saveOpt  *optim.State
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

// ownMoments cuts a whole-model AdamW state (a checkpoint's) to the
// moments of this rank's parameters: its shard of each expert stack.
func (t *trainer) ownMoments(st optim.State) optim.State {
	if t.dist.ep == nil {
		return st
	}
	out := optim.State{Step: st.Step}
	for _, s := range st.Slices {
		name := strings.TrimSuffix(strings.TrimSuffix(s.Name, ".exp_avg_sq"), ".exp_avg")
		if i := t.m.Index(name); i >= 0 && t.m.Layout[i].Experts > 0 {
			lo, hi := t.m.Own(i)
			s.Data = s.Data[lo:hi]
		}
		out.Slices = append(out.Slices, s)
	}
	return out
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
	return nil
}

// scatterExperts sends every rank its experts' part of rank 0's whole
// expert tensor buf (rank r gets shard r mod R); on the other ranks buf is
// that shard and receives it. Rank 0's own part stays in place. A world
// collective, one tensor at a time, so no rank but 0 ever holds more than
// its shard.
func (t *trainer) scatterExperts(buf []float32) error {
	c, R := t.dist.comm, t.dist.ep.R
	W := c.Size()
	sc, rc := make([]int, W), make([]int, W)
	if !t.root() {
		rc[0] = len(buf)
		return c.AlltoallvF32(nil, sc, buf, rc)
	}
	n := len(buf) / R
	send := make([]float32, 0, (W-1)*n)
	for r := 1; r < W; r++ {
		q := r % R
		sc[r] = n
		send = append(send, buf[q*n:(q+1)*n]...)
	}
	return c.AlltoallvF32(send, sc, nil, rc)
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

// gatherExperts copies the first group's expert shards into rank 0's full
// weight tensors and, with moments, returns the full-layout AdamW state
// for a checkpoint (rank 0; nil elsewhere). Collective over the first
// group's ep; the other groups have nothing to do.
func (t *trainer) gatherExperts(moments bool) (*optim.State, error) {
	if t.dist.ep == nil || t.dist.comm.Rank() >= t.dist.ep.R {
		return nil, nil
	}
	c := t.dist.ep.ep
	W, me := c.Size(), c.Rank()
	var st optim.State
	var local map[string][]float32
	if moments {
		s := t.step.Adam.Moments()
		st.Step = s.Step
		local = map[string][]float32{}
		for _, ns := range s.Slices {
			local[ns.Name] = ns.Data
		}
	}
	// gather sends shard (this rank's, from ranks 1..R-1 of the first
	// group) to rank 0, which assembles full.
	gather := func(full, shard []float32) error {
		n := len(shard)
		sc, rc := make([]int, W), make([]int, W)
		if me > 0 {
			sc[0] = n
		}
		if me == 0 {
			for q := 1; q < t.dist.ep.R; q++ {
				rc[q] = n
			}
			copy(full[:n], shard)
		}
		var recv []float32
		if me == 0 {
			recv = full[n:]
		}
		return c.AlltoallvF32(shard, sc, recv, rc)
	}
	for j, p := range t.step.Params {
		name := p.Name
		i := t.step.Layout[j]
		if !t.dist.ep.expert[j] {
			if moments {
				st.Slices = append(st.Slices, optim.NamedSlice{Name: name + ".exp_avg", Data: local[name+".exp_avg"]},
					optim.NamedSlice{Name: name + ".exp_avg_sq", Data: local[name+".exp_avg_sq"]})
			}
			continue
		}
		var full []float32
		if me == 0 {
			full = t.whole.Values[i].Data().([]float32)
		}
		// Rank 0's shard is already in place: its Data is a view of it.
		if err := gather(full, append([]float32(nil), p.Data...)); err != nil {
			return nil, err
		}
		if !moments {
			continue
		}
		for _, suf := range []string{".exp_avg", ".exp_avg_sq"} {
			var buf []float32
			if me == 0 {
				buf = make([]float32, len(full))
			}
			if err := gather(buf, local[name+suf]); err != nil {
				return nil, err
			}
			st.Slices = append(st.Slices, optim.NamedSlice{Name: name + suf, Data: buf})
		}
	}
	if !moments || me != 0 {
		return nil, nil
	}
	return &st, nil
}

// optimizerStateForSave is the AdamW state a checkpoint stores: the
// gathered full layout under expert parallelism.
func (t *trainer) optimizerStateForSave() optim.State {
	if t.dist.ep != nil && t.dist.ep.saveOpt != nil {
		return *t.dist.ep.saveOpt
	}
	return t.step.Adam.Moments()
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
