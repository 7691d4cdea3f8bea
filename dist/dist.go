package dist

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"sync"
)

// Comm is a communicator over all processes of a run (MPI_COMM_WORLD), a
// subset of them made by Split, or the trivial communicator of a single
// process. Collectives must be called by every rank of the communicator in
// the same order with matching sizes, as in MPI. A Comm is safe for use by
// several goroutines; calls (on any communicator of the process) are
// executed one at a time in the order they arrive, on one thread, so every
// rank must also interleave its communicators' collectives in an order that
// cannot deadlock: the same program order on every rank.
type Comm struct {
	rank, size int
	lib        *mpiLib  // nil: single process
	handle     uintptr  // the MPI_Comm
	sub        *uintptr // made by Split: freed by Free (or Finalize)
	version    string
}

var (
	worldOnce sync.Once
	world     *Comm
	worldErr  error
	finalized bool
	finMu     sync.Mutex
)

// Launched reports whether this process was started by an MPI launcher
// (Open MPI's mpirun/mpiexec, or srun with PMIx), unless MOETRAIN_MPI=0
// forces a single process.
func Launched() bool {
	if os.Getenv("MOETRAIN_MPI") == "0" {
		return false
	}
	_, ompi := os.LookupEnv("OMPI_COMM_WORLD_SIZE")
	_, pmix := os.LookupEnv("PMIX_RANK")
	return ompi || pmix
}

// World returns the process-wide communicator: over MPI when Launched, else
// a single-process one. MPI is initialised on the first call; later calls
// return the same Comm (or the same error).
func World() (*Comm, error) {
	worldOnce.Do(func() {
		if !Launched() {
			world = Single()
			return
		}
		world, worldErr = initMPI()
	})
	return world, worldErr
}

// Single returns a communicator of one process: rank 0 of size 1.
func Single() *Comm { return &Comm{rank: 0, size: 1, version: "single process"} }

// Finalize shuts MPI down if World initialised it. Call it once, at the end
// of the process (Open MPI reports a rank that exits without it as failed).
// It is a no-op for a single process and after the first call.
func Finalize() error {
	finMu.Lock()
	defer finMu.Unlock()
	if finalized || world == nil || world.lib == nil {
		return nil
	}
	finalized = true
	return world.lib.finalize()
}

// Rank is this process's index in [0, Size).
func (c *Comm) Rank() int { return c.rank }

// Size is the number of processes.
func (c *Comm) Size() int { return c.size }

// Distributed reports whether there is more than one process.
func (c *Comm) Distributed() bool { return c.size > 1 }

// Version describes the MPI library ("single process" without MPI).
func (c *Comm) Version() string { return c.version }

// Abort ends every process of the run with the given exit code (MPI_Abort);
// for a single process it exits.
func (c *Comm) Abort(code int) {
	if c.lib != nil {
		c.lib.abort(code)
	}
	os.Exit(code)
}

// Split partitions c's ranks into communicators (MPI_Comm_split): ranks
// passing the same colour form one, numbered by increasing key (ties by
// rank in c). Every rank of c must call it, in the same order relative to
// c's other collectives. Free it with Free before Finalize (Finalize frees
// any left). On a single process it returns a single process.
func (c *Comm) Split(colour, key int) (*Comm, error) {
	if colour < 0 {
		return nil, fmt.Errorf("dist: split colour %d: must be >= 0", colour)
	}
	if c.lib == nil {
		return &Comm{rank: 0, size: 1, version: c.version}, nil
	}
	h, rank, size, err := c.lib.split(c.handle, colour, key)
	if err != nil {
		return nil, err
	}
	return &Comm{rank: rank, size: size, lib: c.lib, handle: *h, sub: h, version: c.version}, nil
}

// Grid splits the world c into its expert-parallel and data-parallel groups
// for expert-parallel degree R (R divides c.Size()):
//
//   - ep: the R consecutive ranks holding all experts once between them,
//     colour w/R, key w (so ep.Rank() = w mod R, the shard this rank holds);
//   - dp: the c.Size()/R ranks holding the same expert shard, colour w mod
//     R, key w (so dp.Rank() = w/R, the group's index).
//
// Every rank makes ep first, then dp. R = 1 gives ep of one rank per group
// and dp = the whole world (as a communicator of its own).
func (c *Comm) Grid(R int) (ep, dp *Comm, err error) {
	if R < 1 || c.size%R != 0 {
		return nil, nil, fmt.Errorf("dist: expert-parallel groups of %d ranks in a world of %d", R, c.size)
	}
	w := c.rank
	if ep, err = c.Split(w/R, w); err != nil {
		return nil, nil, err
	}
	if dp, err = c.Split(w%R, w); err != nil {
		ep.Free()
		return nil, nil, err
	}
	return ep, dp, nil
}

// Free releases a communicator made by Split (MPI_Comm_free, collective over
// its ranks). It is a no-op for the world, a single process and after the
// first call. c must not be used after it.
func (c *Comm) Free() error {
	if c.lib == nil || c.sub == nil || c.lib.done {
		return nil
	}
	err := c.lib.free(c.sub)
	c.sub = nil
	return err
}

// Barrier waits until every rank has called it.
func (c *Comm) Barrier() error {
	if c.lib == nil {
		return nil
	}
	return c.lib.barrier(c.handle)
}

// AllreduceF32 replaces buf on every rank by the element-wise sum of all
// ranks' bufs. Every rank receives bit-identical values (Open MPI's
// reduction algorithms for a fixed size and world size are deterministic).
func (c *Comm) AllreduceF32(buf []float32) error {
	if c.lib == nil || len(buf) == 0 {
		return nil
	}
	return c.lib.allreduce(c.handle, ptrF32(buf), len(buf), c.lib.tFloat, c.lib.opSum)
}

// AllreduceF64 is AllreduceF32 for float64 (routing counts, norms, losses).
func (c *Comm) AllreduceF64(buf []float64) error {
	if c.lib == nil || len(buf) == 0 {
		return nil
	}
	return c.lib.allreduce(c.handle, ptrF64(buf), len(buf), c.lib.tDouble, c.lib.opSum)
}

// MaxF64 replaces buf by the element-wise maximum over ranks.
func (c *Comm) MaxF64(buf []float64) error {
	if c.lib == nil || len(buf) == 0 {
		return nil
	}
	return c.lib.allreduce(c.handle, ptrF64(buf), len(buf), c.lib.tDouble, c.lib.opMax)
}

// BcastF32 copies root's buf into every rank's buf (same length on all).
func (c *Comm) BcastF32(buf []float32, root int) error {
	if err := c.checkRoot(root); err != nil || c.lib == nil || len(buf) == 0 {
		return err
	}
	return c.lib.bcast(c.handle, ptrF32(buf), len(buf)*4, root)
}

// BcastBytes returns root's b on every rank; other ranks' b is ignored.
func (c *Comm) BcastBytes(b []byte, root int) ([]byte, error) {
	if err := c.checkRoot(root); err != nil || c.lib == nil {
		return b, err
	}
	n := []float64{float64(len(b))}
	if c.rank != root {
		n[0] = 0
	}
	if err := c.lib.bcast(c.handle, ptrF64(n), 8, root); err != nil {
		return nil, err
	}
	out := b
	if c.rank != root {
		out = make([]byte, int(n[0]))
	}
	if len(out) == 0 {
		return out, nil
	}
	return out, c.lib.bcast(c.handle, ptrU8(out), len(out), root)
}

// AllgatherBytes returns every rank's b, indexed by rank (lengths may differ).
func (c *Comm) AllgatherBytes(b []byte) ([][]byte, error) {
	if c.lib == nil {
		return [][]byte{b}, nil
	}
	lens := make([]float64, c.size)
	lens[c.rank] = float64(len(b))
	if err := c.AllreduceF64(lens); err != nil {
		return nil, err
	}
	max := 0
	for _, l := range lens {
		max = maxInt(max, int(l))
	}
	out := make([][]byte, c.size)
	if max == 0 {
		for i := range out {
			out[i] = []byte{}
		}
		return out, nil
	}
	send := make([]byte, max)
	copy(send, b)
	recv := make([]byte, max*c.size)
	if err := c.lib.allgather(c.handle, ptrU8(send), ptrU8(recv), max); err != nil {
		return nil, err
	}
	for i := range out {
		out[i] = recv[i*max : i*max+int(lens[i])]
	}
	return out, nil
}

// AlltoallvF32 sends send[sdispl[r] : sdispl[r]+sendCounts[r]] to rank r and
// receives rank r's block for this rank into recv at the running sum of
// recvCounts (blocks in rank order). Counts are in elements; every rank's
// sendCounts[r] must equal rank r's recvCounts[this rank]. Blocks of send
// are also consecutive in rank order.
func (c *Comm) AlltoallvF32(send []float32, sendCounts []int, recv []float32, recvCounts []int) error {
	if len(sendCounts) != c.size || len(recvCounts) != c.size {
		return fmt.Errorf("dist: all-to-all with %d send and %d receive counts in a world of %d", len(sendCounts), len(recvCounts), c.size)
	}
	sd, ok1 := displs(sendCounts, len(send))
	rd, ok2 := displs(recvCounts, len(recv))
	if !ok1 || !ok2 {
		return fmt.Errorf("dist: all-to-all counts %v / %v do not fit buffers of %d / %d", sendCounts, recvCounts, len(send), len(recv))
	}
	if c.lib == nil {
		copy(recv[:recvCounts[0]], send[:sendCounts[0]])
		return nil
	}
	return c.lib.alltoallv(c.handle, send, sendCounts, sd, recv, recvCounts, rd)
}

// AlltoallInts sends send[r] (one int per rank) to rank r and returns what
// every rank sent to this one: the usual exchange of counts before an
// AlltoallvF32.
func (c *Comm) AlltoallInts(send []int) ([]int, error) {
	if len(send) != c.size {
		return nil, fmt.Errorf("dist: all-to-all of %d ints in a world of %d", len(send), c.size)
	}
	if c.lib == nil {
		return append([]int(nil), send...), nil
	}
	s := make([]float64, c.size)
	for i, v := range send {
		s[i] = float64(v)
	}
	r := make([]float64, c.size)
	if err := c.lib.alltoall(c.handle, ptrF64(s), ptrF64(r), 8); err != nil {
		return nil, err
	}
	out := make([]int, c.size)
	for i, v := range r {
		out[i] = int(v)
	}
	return out, nil
}

// Pending is a collective started with Start.
type Pending struct{ done chan error }

// Wait blocks until the collective finished and returns its error.
func (p *Pending) Wait() error {
	if p == nil {
		return nil
	}
	return <-p.done
}

// IallreduceF32 starts AllreduceF32(buf) and returns at once, so the
// caller can keep computing (e.g. accumulating the next bucket of
// gradients) while MPI communicates. buf must not be touched until Wait
// returns. Collectives run in the order they were started or called.
func (c *Comm) IallreduceF32(buf []float32) *Pending {
	p := &Pending{done: make(chan error, 1)}
	if c.lib == nil || len(buf) == 0 {
		p.done <- nil
		return p
	}
	c.lib.post(func() { p.done <- c.lib.allreduceNow(c.handle, ptrF32(buf), len(buf), c.lib.tFloat, c.lib.opSum) })
	return p
}

func (c *Comm) checkRoot(root int) error {
	if root < 0 || root >= c.size {
		return fmt.Errorf("dist: root %d outside a world of %d", root, c.size)
	}
	return nil
}

func displs(counts []int, n int) ([]int, bool) {
	d := make([]int, len(counts))
	off := 0
	for i, c := range counts {
		if c < 0 {
			return nil, false
		}
		d[i] = off
		off += c
	}
	return d, off <= n
}

func maxInt(a, b int) int {
	if a > b {
		return a
	}
	return b
}

// envInt reads an integer environment variable (ok false when unset or bad).
func envInt(name string) (int, bool) {
	v, err := strconv.Atoi(os.Getenv(name))
	return v, err == nil
}

var errFinalized = errors.New("dist: MPI already finalized")
