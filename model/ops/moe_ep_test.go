package ops

import (
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"sync"
	"testing"

	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"

	"github.com/moetrain/moetrain/dist"
	"github.com/moetrain/moetrain/dist/mpitest"
	"github.com/moetrain/moetrain/internal/tol"
)

// epTol is the bound: expert-parallel against the single-process
// op, per tensor (max |Δ| <= 1e-5 · max |reference|).
const epTol = 1e-5

// fakeComm is an in-process world of ranks joined by channels, for testing
// the op without MPI: every pair of ranks has a FIFO, and collectives are
// called in the same order by every rank, as under MPI.
type fakeComm struct {
	rank int
	ch   [][]chan []float32 // ch[from][to]
}

func fakeWorld(n int) []*fakeComm {
	ch := make([][]chan []float32, n)
	for i := range ch {
		ch[i] = make([]chan []float32, n)
		for j := range ch[i] {
			ch[i][j] = make(chan []float32, 64)
		}
	}
	out := make([]*fakeComm, n)
	for r := range out {
		out[r] = &fakeComm{rank: r, ch: ch}
	}
	return out
}

func (c *fakeComm) Rank() int { return c.rank }
func (c *fakeComm) Size() int { return len(c.ch) }

func (c *fakeComm) AlltoallInts(send []int) ([]int, error) {
	n := c.Size()
	if len(send) != n {
		return nil, fmt.Errorf("fake: %d ints for %d ranks", len(send), n)
	}
	for to, v := range send {
		c.ch[c.rank][to] <- []float32{float32(v)}
	}
	out := make([]int, n)
	for from := range out {
		out[from] = int((<-c.ch[from][c.rank])[0])
	}
	return out, nil
}

func (c *fakeComm) AlltoallvF32(send []float32, sc []int, recv []float32, rc []int) error {
	off := 0
	for to, n := range sc {
		c.ch[c.rank][to] <- append([]float32(nil), send[off:off+n]...)
		off += n
	}
	off = 0
	for from, n := range rc {
		b := <-c.ch[from][c.rank]
		if len(b) != n {
			return fmt.Errorf("fake: rank %d expected %d values from %d, got %d", c.rank, n, from, len(b))
		}
		copy(recv[off:], b)
		off += n
	}
	return nil
}

// epCase is one rank group's data: per-rank tokens, probabilities and
// upstream gradients, and the full expert weights.
type epCase struct {
	R, n, d, e, w, k int
	renorm           bool
	scale            float64     // gate scale (0: 1)
	bias             []float32   // selection bias [E], or nil
	u, probs, dy     [][]float32 // per rank
	wg, wu, wd       []float32   // all experts
}

func (c *epCase) gating() Gating { return Gating{K: c.k, Renorm: c.renorm, Scale: c.scale} }

// withBias appends the case's bias (if any) to an op's inputs.
func (c *epCase) withBias(vs ...G.Value) []G.Value {
	if c.bias != nil {
		vs = append(vs, t32(c.bias, c.e))
	}
	return vs
}

func newEPCase(seed uint64, R, n, d, e, w, k int, renorm bool) *epCase {
	rng := rand.New(rand.NewPCG(seed, 7))
	randn := func(m int, s float64) []float32 {
		x := make([]float32, m)
		for i := range x {
			x[i] = float32(rng.NormFloat64() * s)
		}
		return x
	}
	c := &epCase{R: R, n: n, d: d, e: e, w: w, k: k, renorm: renorm}
	for r := 0; r < R; r++ {
		c.u = append(c.u, randn(n*d, 1))
		c.dy = append(c.dy, randn(n*d, 1))
		p := randn(n*e, 1.5)
		for t := 0; t < n; t++ {
			row := p[t*e : (t+1)*e]
			var z float64
			for i, v := range row {
				row[i] = float32(math.Exp(float64(v)))
				z += float64(row[i])
			}
			for i := range row {
				row[i] /= float32(z)
			}
		}
		if r == R-1 {
			// Skew the last rank towards expert 0 so that loads differ
			// between ranks and some expert may get no token at all.
			for t := 0; t < n; t++ {
				p[t*e] += 1
			}
		}
		c.probs = append(c.probs, p)
	}
	s := 1 / math.Sqrt(float64(d))
	c.wg, c.wu, c.wd = randn(e*w*d, s), randn(e*w*d, s), randn(e*d*w, 1/math.Sqrt(float64(w)))
	return c
}

func t32(data []float32, shape ...int) *tensor.Dense {
	return tensor.New(tensor.WithShape(shape...), tensor.WithBacking(data))
}

func cat(xs [][]float32) []float32 {
	var out []float32
	for _, x := range xs {
		out = append(out, x...)
	}
	return out
}

// epReference runs the single-process MoE op over all ranks' tokens
// concatenated in rank order: y and the packed gradients.
func epReference(t *testing.T, c *epCase) (y, du, dprobs, dwg, dwu, dwd []float32) {
	t.Helper()
	N := c.R * c.n
	in := []*tensor.Dense{t32(cat(c.u), N, c.d), t32(cat(c.probs), N, c.e), t32(c.wg, c.e, c.w, c.d), t32(c.wu, c.e, c.w, c.d), t32(c.wd, c.e, c.d, c.w)}
	op := &moeOp{base: base{name: "MoE", arity: 5}, k: c.k, gating: c.gating(), bias: c.bias != nil, cache: &expertCache{}, differentiated: true}
	yv, err := op.Do(c.withBias(in[0], in[1], in[2], in[3], in[4])...)
	if err != nil {
		t.Fatal(err)
	}
	bwd := &moeBackward{base: base{name: "MoEBackward", arity: 6}, k: op.k, gating: op.gating, bias: op.bias, cache: op.cache}
	pv, err := bwd.Do(c.withBias(in[0], in[1], in[2], in[3], in[4], t32(cat(c.dy), N, c.d))...)
	if err != nil {
		t.Fatal(err)
	}
	g := split(pv.(*tensor.Dense).Float32s(), []int{N * c.d, N * c.e, c.e * c.w * c.d, c.e * c.w * c.d, c.e * c.d * c.w})
	return yv.(*tensor.Dense).Float32s(), g[0], g[1], g[2], g[3], g[4]
}

// epRank runs the expert-parallel op as rank comm.Rank() of c and checks
// its output and gradients against the reference. Group ranks index c's
// per-rank data.
func epRank(c *epCase, comm EPComm, ref [6][]float32, steps int) error {
	r, R := comm.Rank(), comm.Size()
	el := c.e / R
	a, b := r*el*c.w*c.d, (r+1)*el*c.w*c.d
	in := []*tensor.Dense{t32(c.u[r], c.n, c.d), t32(c.probs[r], c.n, c.e),
		t32(c.wg[a:b], el, c.w, c.d), t32(c.wu[a:b], el, c.w, c.d), t32(c.wd[a:b], el, c.d, c.w)}
	rec := &RouteRecord{}
	op := &moeEPOp{base: base{name: "MoEExpertParallel", arity: 5}, k: c.k, gating: c.gating(), bias: c.bias != nil, comm: comm, rec: rec, st: &epState{}}
	bwd := &moeEPBackward{base: base{name: "MoEExpertParallelBackward", arity: 6}, fwd: op}
	// Several runs: buffers are reused between runs and must not leak state.
	for s := 0; s < steps; s++ {
		yv, err := op.Do(c.withBias(in[0], in[1], in[2], in[3], in[4])...)
		if err != nil {
			return err
		}
		pv, err := bwd.Do(c.withBias(in[0], in[1], in[2], in[3], in[4], t32(c.dy[r], c.n, c.d))...)
		if err != nil {
			return err
		}
		g := split(pv.(*tensor.Dense).Float32s(), []int{c.n * c.d, c.n * c.e, el * c.w * c.d, el * c.w * c.d, el * c.d * c.w})
		rows := func(x []float32, width int) []float32 { return x[r*c.n*width : (r+1)*c.n*width] }
		checks := []struct {
			name      string
			got, want []float32
		}{
			{"y", yv.(*tensor.Dense).Float32s(), rows(ref[0], c.d)},
			{"du", g[0], rows(ref[1], c.d)},
			{"dprobs", g[1], rows(ref[2], c.e)},
			{"dwg", g[2], ref[3][a:b]},
			{"dwu", g[3], ref[4][a:b]},
			{"dwd", g[4], ref[5][a:b]},
		}
		for _, ch := range checks {
			if err := tol.CheckScaled(fmt.Sprintf("rank %d/%d step %d %s", r, R, s, ch.name), widen(ch.got), widen(ch.want), epTol); err != nil {
				return err
			}
		}
		if op.st.hits != s+1 {
			return fmt.Errorf("rank %d: backward recomputed the forward exchange (hits %d after %d runs)", r, op.st.hits, s+1)
		}
		if len(rec.Load) != c.e || rec.N != c.n {
			return fmt.Errorf("rank %d: route record of %d tokens over %d experts, want %d over %d", r, rec.N, len(rec.Load), c.n, c.e)
		}
	}
	return nil
}

func epRefs(t *testing.T, c *epCase) [6][]float32 {
	y, du, dp, dwg, dwu, dwd := epReference(t, c)
	return [6][]float32{y, du, dp, dwg, dwu, dwd}
}

// TestMoEExpertParallelInProcess: 2 and 4 ranks of goroutines (and two
// groups of 2 in a world of 4) equal the single-process op.
func TestMoEExpertParallelInProcess(t *testing.T) {
	for _, tc := range []struct {
		world, group, k int
		renorm          bool
		bias            bool // a selection bias and a gate scale (bias balancing)
	}{{2, 2, 3, false, false}, {4, 4, 2, true, false}, {4, 2, 1, false, false}, {2, 2, 2, true, true}} {
		t.Run(fmt.Sprintf("world%d_group%d_k%d_bias%t", tc.world, tc.group, tc.k, tc.bias), func(t *testing.T) {
			cases := make([]*epCase, tc.world/tc.group)
			refs := make([][6][]float32, len(cases))
			for i := range cases {
				cases[i] = newEPCase(uint64(10+i), tc.group, 12, 8, 8, 6, tc.k, tc.renorm)
				if tc.bias {
					// Against the skew towards expert 0: the bias must change
					// the choice on every rank alike.
					cases[i].bias = []float32{-0.5, 0.1, 0, 0.2, -0.1, 0.3, 0, 0.05}
					cases[i].scale = 2.5
				}
				refs[i] = epRefs(t, cases[i])
			}
			world := fakeWorld(tc.world)
			errs := make([]error, tc.world)
			var wg sync.WaitGroup
			for r := range world {
				wg.Add(1)
				go func(r int) {
					defer wg.Done()
					g := fakeGroup(world[r], tc.group)
					errs[r] = epRank(cases[r/tc.group], g, refs[r/tc.group], 2)
				}(r)
			}
			wg.Wait()
			for _, err := range errs {
				if err != nil {
					t.Error(err)
				}
			}
		})
	}
}

// TestMoEExpertParallelUnderMPI is the acceptance test: 2 MPI ranks
// equal the single-process op in forward and backward within 1e-5.
func TestMoEExpertParallelUnderMPI(t *testing.T) {
	if os.Getenv("OMPI_COMM_WORLD_SIZE") != "" {
		t.Skip("inside mpirun")
	}
	mpitest.Run(t, 2, "TestMoEExpertParallelWorker")
}

func TestMoEExpertParallelWorker(t *testing.T) {
	if !mpitest.Worker(t) {
		t.Skip("runs under mpirun from TestMoEExpertParallelUnderMPI")
	}
	t.Cleanup(func() {
		if err := dist.Finalize(); err != nil {
			t.Error(err)
		}
	})
	c, err := dist.World()
	if err != nil {
		t.Fatal(err)
	}
	// Every rank builds the same case and reference (same seed).
	ec := newEPCase(42, c.Size(), 16, 8, 8, 6, 3, false)
	if err := epRank(ec, c, epRefs(t, ec), 2); err != nil {
		t.Fatal(err)
	}
	ec = newEPCase(43, c.Size(), 16, 8, 4, 6, 2, true)
	if err := epRank(ec, c, epRefs(t, ec), 1); err != nil {
		t.Fatal(err)
	}
}

// fakeGroup is the expert-parallel group of size ranks of an in-process
// world that world's rank belongs to: the consecutive ranks [r − r%size,
// r − r%size + size), as dist.Comm.Grid forms them. Its all-to-alls are
// world all-to-alls with empty blocks for the ranks outside the group.
func fakeGroup(world EPComm, size int) EPComm {
	if size == world.Size() {
		return world
	}
	if size < 1 || world.Size()%size != 0 {
		panic(fmt.Sprintf("ops: expert-parallel group of %d in a world of %d", size, world.Size()))
	}
	return &fakeGroupComm{world: world, size: size, base: world.Rank() - world.Rank()%size}
}

type fakeGroupComm struct {
	world      EPComm
	size, base int
}

func (g *fakeGroupComm) Rank() int { return g.world.Rank() - g.base }
func (g *fakeGroupComm) Size() int { return g.size }

func (g *fakeGroupComm) widen(c []int) []int {
	w := make([]int, g.world.Size())
	copy(w[g.base:], c)
	return w
}

func (g *fakeGroupComm) AlltoallInts(send []int) ([]int, error) {
	if len(send) != g.size {
		return nil, fmt.Errorf("ops: all-to-all of %d ints in a group of %d", len(send), g.size)
	}
	r, err := g.world.AlltoallInts(g.widen(send))
	if err != nil {
		return nil, err
	}
	return r[g.base : g.base+g.size], nil
}

func (g *fakeGroupComm) AlltoallvF32(send []float32, sc []int, recv []float32, rc []int) error {
	if len(sc) != g.size || len(rc) != g.size {
		return fmt.Errorf("ops: all-to-all with %d/%d counts in a group of %d", len(sc), len(rc), g.size)
	}
	return g.world.AlltoallvF32(send, g.widen(sc), recv, g.widen(rc))
}
