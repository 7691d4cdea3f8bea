package train

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/moetrain/moetrain/dist"
	"github.com/moetrain/moetrain/internal/intmath"
	"github.com/moetrain/moetrain/optim"
	"github.com/moetrain/moetrain/rundir"
)

// Data parallelism (docs/DISTRIBUTED.md). Every rank holds the whole model
// and steps the same data stream, so all ranks see the same global batch of
// train.batch_size sequences at the same cursor; rank r trains on rows
// [r·B/R, (r+1)·B/R) of it, in micro-batches of gcd(micro_batch_size, B/R)
// rows. Each micro-batch's mean gradient is scaled by 1/(B/micro) and the
// ranks' sums are all-reduced, which is the single-process mean over the
// same B sequences (equal up to float summation order). Rank 0 alone writes
// files (log, metrics, checkpoints, evaluation); the others discard their
// output. The checkpoint format is the single-process one, so a run resumes
// at any world size that divides the batch.

// distBucket is the all-reduce bucket size in float32 elements (16 MiB):
// large enough that per-call latency is negligible, small enough that the
// first buckets' reductions overlap with accumulating the last ones.
const distBucket = 1 << 22

// distState is the data-parallel part of a trainer (nil comm: one process).
type distState struct {
	comm     *dist.Comm
	local    int // rows of the global batch this rank trains on
	micro    int // rows per local micro-batch
	flat     []float32
	buckets  [][2]int // [lo, hi) of flat per all-reduce bucket, ending at parameter boundaries
	bucketOf []int    // parameter index → bucket that it completes, or -1
	comms    time.Duration
	ep       *epState // expert parallelism (dist_ep.go); nil without
}

// initDist picks the communicator (Options.Comm, else dist.World()) and
// checks that the world size divides the batch.
func (t *trainer) initDist() error {
	c := t.opt.Comm
	if c == nil {
		var err error
		if c, err = dist.World(); err != nil {
			return err
		}
	}
	t.dist.comm = c
	if !c.Distributed() {
		if R := t.cfg.Model.ExpertRanks(); R > 1 {
			return fmt.Errorf("model.expert_parallel %d needs a multiple of %d MPI ranks, got 1 process (run under mpirun -np %d, or set model.expert_parallel=1)", R, R, R)
		}
		return nil
	}
	B, R := t.cfg.Train.BatchSize, c.Size()
	if B%R != 0 {
		return fmt.Errorf("train.batch_size %d is not divisible by the %d MPI ranks: each rank trains on an equal share of every batch", B, R)
	}
	t.dist.local = B / R
	t.dist.micro = intmath.GCD(t.cfg.Train.MicroBatch(), t.dist.local)
	return t.initEP()
}

// distributed reports whether several ranks train together.
func (t *trainer) distributed() bool { return t.dist.comm != nil && t.dist.comm.Distributed() }

// root reports whether this rank writes files and logs (rank 0, or a
// single process).
func (t *trainer) root() bool { return t.dist.comm == nil || t.dist.comm.Rank() == 0 }

// localMicroBatch is the number of rows of the training graph.
func (t *trainer) localMicroBatch() int {
	if t.distributed() {
		return t.dist.micro
	}
	return t.cfg.Train.MicroBatch()
}

// agree makes every rank return an error when any rank has one, so that no
// rank waits forever in a collective that a failed rank will never join.
func (t *trainer) agree(err error) error {
	if !t.distributed() {
		return err
	}
	msg := ""
	if err != nil {
		msg = err.Error()
	}
	all, gerr := t.dist.comm.AllgatherBytes([]byte(msg))
	if gerr != nil {
		return errors.Join(err, gerr)
	}
	if err != nil {
		return err
	}
	for r, m := range all {
		if len(m) > 0 {
			return fmt.Errorf("rank %d failed: %s", r, m)
		}
	}
	return nil
}

// shareConfig gives every rank rank 0's resolved config (the schedule's
// horizon may come from the run directory, which only rank 0 reads).
func (t *trainer) shareConfig() error {
	if !t.distributed() {
		return nil
	}
	raw, err := json.Marshal(t.cfg)
	if err != nil {
		return err
	}
	if raw, err = t.dist.comm.BcastBytes(raw, 0); err != nil {
		return err
	}
	return json.Unmarshal(raw, &t.cfg)
}

// shareState gives every rank rank 0's state (from its checkpoint, or a
// fresh one) before the data stream is opened at its cursor.
func (t *trainer) shareState() error {
	if !t.distributed() {
		return nil
	}
	raw, err := json.Marshal(t.state)
	if err != nil {
		return err
	}
	if raw, err = t.dist.comm.BcastBytes(raw, 0); err != nil {
		return err
	}
	if t.root() {
		return nil
	}
	var st rundir.State
	if err := json.Unmarshal(raw, &st); err != nil {
		return fmt.Errorf("state from rank 0: %w", err)
	}
	t.state = st
	return nil
}

// shareWeights broadcasts rank 0's weights (initialised or loaded) and
// AdamW moments, and lays the gradients out in one flat buffer for
// bucketed all-reduces. Under expert parallelism the expert shards are not
// sent: every rank initialised its own, or read it from the checkpoint
// (loadShard), moments included.
func (t *trainer) shareWeights() error {
	if !t.distributed() {
		return nil
	}
	c := t.dist.comm
	for i, p := range t.m.Layout {
		if t.dist.ep != nil && p.Experts > 0 {
			continue
		}
		switch d := t.m.Values[i].Data().(type) {
		case []float32:
			if err := c.BcastF32(d, 0); err != nil {
				return err
			}
		case []int:
			// Hash tables: small, sent as float64 (exact below 2^53).
			f := make([]float64, len(d))
			for j, v := range d {
				f[j] = float64(v)
			}
			raw := f64Bytes(f)
			raw, err := c.BcastBytes(raw, 0)
			if err != nil {
				return err
			}
			for j := range d {
				d[j] = int(math.Float64frombits(binary.LittleEndian.Uint64(raw[8*j:])))
			}
		default:
			return fmt.Errorf("broadcast %s: dtype %T", p.Name, d)
		}
	}
	// Received in place into the optimizer's own moments: no second copy.
	st := t.step.Adam.Moments()
	for _, s := range st.Slices {
		if t.dist.ep != nil && t.expertMoment(s.Name) >= 0 {
			continue
		}
		if err := c.BcastF32(s.Data, 0); err != nil {
			return err
		}
	}
	st.Step = t.state.OptimizerStep
	if err := t.step.Adam.SetState(st); err != nil {
		return err
	}
	if err := t.shardExperts(); err != nil {
		return err
	}
	// One flat gradient buffer; buckets end at parameter boundaries. Expert
	// shards are reduced apart (reduceExpertGrads).
	n, last := 0, -1
	for j, p := range t.step.Params {
		if !t.isExpert(j) {
			n += len(p.Data)
			last = j
			t.step.Params[j].Grad = nil // free before the flat buffer replaces it
		}
	}
	t.dist.flat = make([]float32, n)
	t.dist.bucketOf = make([]int, len(t.step.Params))
	off, lo := 0, 0
	for j := range t.step.Params {
		t.dist.bucketOf[j] = -1
		if t.isExpert(j) {
			continue
		}
		l := len(t.step.Params[j].Data)
		t.step.Params[j].Grad = t.dist.flat[off : off+l : off+l]
		off += l
		if off-lo >= distBucket || j == last {
			t.dist.bucketOf[j] = len(t.dist.buckets)
			t.dist.buckets = append(t.dist.buckets, [2]int{lo, off})
			lo = off
		}
	}
	// MFU is measured against the peak of all ranks together.
	t.peak *= float64(c.Size())
	t.logf("data parallel: %d ranks (%s), %d of %d sequences per rank in micro-batches of %d, gradients all-reduced in %d bucket(s)",
		c.Size(), c.Version(), t.dist.local, t.cfg.Train.BatchSize, t.dist.micro, len(t.dist.buckets))
	return nil
}

func f64Bytes(f []float64) []byte {
	b := make([]byte, 8*len(f))
	for i, v := range f {
		binary.LittleEndian.PutUint64(b[8*i:], math.Float64bits(v))
	}
	return b
}

// reducer is the step's gradient reduction under data parallelism: each
// bucket of the flat gradient buffer is all-reduced as soon as its last
// parameter's gradient is accumulated, while the later ones accumulate;
// expert shards are reduced apart (reduceExpertGrads).
type reducer struct {
	t       *trainer
	pending []*dist.Pending
}

func (r *reducer) GradReady(j int) {
	d := &r.t.dist
	if bk := d.bucketOf[j]; bk >= 0 {
		b := d.buckets[bk]
		r.pending = append(r.pending, d.comm.IallreduceF32(d.flat[b[0]:b[1]]))
	}
}

func (r *reducer) Reduce(sums []float64) error {
	t0 := time.Now()
	defer func() { r.t.dist.comms += time.Since(t0) }()
	pending := r.pending
	r.pending = r.pending[:0]
	for _, p := range pending {
		if err := p.Wait(); err != nil {
			return err
		}
	}
	if err := r.t.dist.comm.AllreduceF64(sums); err != nil {
		return err
	}
	return r.t.reduceExpertGrads()
}

func (r *reducer) Norm(params []optim.Param) float64 {
	if r.t.dist.ep == nil {
		return optim.GlobalNorm(params)
	}
	return r.t.expertParallelNorm()
}

// reduceCounts sums the batch-level routing counts over ranks: a
// batch-level balance loss needs the whole global batch's f.
func (t *trainer) reduceCounts(loads [][]float64, tokens *int) error {
	if !t.distributed() {
		return nil
	}
	var flat []float64
	for _, l := range loads {
		flat = append(flat, l...)
	}
	flat = append(flat, float64(*tokens))
	if err := t.dist.comm.AllreduceF64(flat); err != nil {
		return err
	}
	off := 0
	for _, l := range loads {
		copy(l, flat[off:off+len(l)])
		off += len(l)
	}
	*tokens = int(flat[off])
	return nil
}

// stopAgreed makes the stop decision collective: every rank stops at the
// same step when any rank was asked to (a signal may reach only some).
func (t *trainer) stopAgreed(local bool) (bool, error) {
	if !t.distributed() {
		return local, nil
	}
	v := []float64{0}
	if local {
		v[0] = 1
	}
	if err := t.dist.comm.MaxF64(v); err != nil {
		return false, err
	}
	return v[0] > 0, nil
}

// checkReplicas verifies that every rank holds bit-identical weights and
// optimizer moments before rank 0 saves them for all.
func (t *trainer) checkReplicas() error {
	if !t.distributed() {
		return nil
	}
	h := sha256.New()
	var buf [4]byte
	put := func(xs []float32) {
		for _, x := range xs {
			binary.LittleEndian.PutUint32(buf[:], math.Float32bits(x))
			h.Write(buf[:])
		}
	}
	for _, p := range t.step.Params {
		put(p.Data)
	}
	for _, s := range t.step.Adam.Moments().Slices {
		put(s.Data)
	}
	all, err := t.dist.comm.AllgatherBytes(h.Sum(nil))
	if err != nil {
		return err
	}
	for r, x := range all {
		if string(x) != string(all[0]) {
			return fmt.Errorf("data parallel: rank %d's weights differ from rank 0's (a non-deterministic all-reduce?); not saving", r)
		}
	}
	return nil
}

// beforeSave checks, before a data-parallel checkpoint, that the replicas
// agree (under expert parallelism: the non-expert state on all ranks, each
// shard on the ranks holding it).
func (t *trainer) beforeSave() error {
	if t.dist.ep == nil {
		return t.checkReplicas()
	}
	return t.checkShards()
}

// logDist reports the time spent waiting for gradient all-reduces.
func (t *trainer) logDist(train time.Duration) {
	if !t.distributed() || train <= 0 {
		return
	}
	t.logf("data parallel: waited %.2f s of %.2f s training for all-reduces (%.1f%%)",
		t.dist.comms.Seconds(), train.Seconds(), 100*t.dist.comms.Seconds()/train.Seconds())
	if ep := t.dist.ep; ep != nil {
		t.logf("expert parallel: %.2f s of %.2f s training in MoE all-to-alls (%.1f%%, rank 0)",
			ep.alltoall.Seconds(), train.Seconds(), 100*ep.alltoall.Seconds()/train.Seconds())
	}
}
