package dist

import (
	"bytes"
	"fmt"
	"os"
	"testing"

	"github.com/moetrain/moetrain/dist/mpitest"
)

func TestMain(m *testing.M) {
	code := m.Run()
	if err := Finalize(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		code = 1
	}
	os.Exit(code)
}

func TestSingleIsIdentity(t *testing.T) {
	c := Single()
	if c.Rank() != 0 || c.Size() != 1 || c.Distributed() {
		t.Fatalf("single: rank %d size %d", c.Rank(), c.Size())
	}
	buf := []float32{1, 2, 3}
	if err := c.AllreduceF32(buf); err != nil || buf[0] != 1 || buf[2] != 3 {
		t.Fatalf("all-reduce changed a single process's buffer: %v %v", buf, err)
	}
	if err := c.IallreduceF32(buf).Wait(); err != nil || buf[1] != 2 {
		t.Fatalf("async all-reduce: %v %v", buf, err)
	}
	b, err := c.BcastBytes([]byte("x"), 0)
	if err != nil || string(b) != "x" {
		t.Fatalf("bcast: %q %v", b, err)
	}
	if _, err := c.BcastBytes(nil, 1); err == nil {
		t.Fatal("bcast from root 1 of a world of 1 did not fail")
	}
	recv := make([]float32, 2)
	if err := c.AlltoallvF32([]float32{4, 5}, []int{2}, recv, []int{2}); err != nil || recv[1] != 5 {
		t.Fatalf("all-to-all: %v %v", recv, err)
	}
	if err := c.AlltoallvF32([]float32{4}, []int{2}, recv, []int{2}); err == nil {
		t.Fatal("all-to-all with counts beyond the buffer did not fail")
	}
	ep, dp, err := c.Grid(1)
	if err != nil || ep.Size() != 1 || dp.Size() != 1 || ep.Free() != nil || dp.Free() != nil {
		t.Fatalf("grid of a single process: %v", err)
	}
}

func TestLaunchedFromEnvironment(t *testing.T) {
	t.Setenv("OMPI_COMM_WORLD_SIZE", "2")
	if !Launched() {
		t.Fatal("OMPI_COMM_WORLD_SIZE set, but Launched is false")
	}
	t.Setenv("MOETRAIN_MPI", "0")
	if Launched() {
		t.Fatal("MOETRAIN_MPI=0 did not force a single process")
	}
}

// TestCollectivesUnderMPI checks every collective's result against what it
// must be, on 2 and on 4 ranks.
func TestCollectivesUnderMPI(t *testing.T) {
	if os.Getenv("OMPI_COMM_WORLD_SIZE") != "" {
		t.Skip("inside mpirun")
	}
	for _, np := range []int{2, 4} {
		mpitest.Run(t, np, "TestCollectivesWorker")
	}
}

func TestCollectivesWorker(t *testing.T) {
	if !mpitest.Worker(t) {
		t.Skip("runs under mpirun from TestCollectivesUnderMPI")
	}
	c, err := World()
	if err != nil {
		t.Fatal(err)
	}
	r, n := c.Rank(), c.Size()
	if n < 2 || r < 0 || r >= n {
		t.Fatalf("rank %d of %d", r, n)
	}
	t.Logf("rank %d of %d: %s", r, n, c.Version())
	// All-reduce: rank r contributes r+1+i at element i.
	buf := make([]float32, 1000)
	for i := range buf {
		buf[i] = float32(r + 1 + i)
	}
	if err := c.AllreduceF32(buf); err != nil {
		t.Fatal(err)
	}
	for i, v := range buf {
		if want := float32(n*(n+1)/2 + n*i); v != want {
			t.Fatalf("all-reduce[%d] = %v, want %v", i, v, want)
		}
	}
	a, b := []float32{float32(r)}, []float64{float64(r) * 0.5}
	p := c.IallreduceF32(a)
	if err := c.AllreduceF64(b); err != nil {
		t.Fatal(err)
	}
	if err := p.Wait(); err != nil || a[0] != float32(n*(n-1)/2) || b[0] != float64(n*(n-1))/4 {
		t.Fatalf("async all-reduce %v, f64 %v: %v", a, b, err)
	}
	m := []float64{float64(r)}
	if err := c.MaxF64(m); err != nil || m[0] != float64(n-1) {
		t.Fatalf("max %v %v", m, err)
	}
	// Broadcast from the last rank.
	w := make([]float32, 5)
	if r == n-1 {
		w = []float32{1, 2, 3, 4, 5}
	}
	if err := c.BcastF32(w, n-1); err != nil || w[4] != 5 {
		t.Fatalf("bcast %v %v", w, err)
	}
	msg, err := c.BcastBytes([]byte(fmt.Sprintf("from %d", r)), 1)
	if err != nil || string(msg) != "from 1" {
		t.Fatalf("bcast bytes %q %v", msg, err)
	}
	all, err := c.AllgatherBytes(bytes.Repeat([]byte{byte(r)}, r))
	if err != nil {
		t.Fatal(err)
	}
	for i, x := range all {
		if !bytes.Equal(x, bytes.Repeat([]byte{byte(i)}, i)) {
			t.Fatalf("all-gather[%d] = %v", i, x)
		}
	}
	// All-to-all: rank r sends j+1 values (r·100+j) to rank j.
	sc := make([]int, n)
	var send []float32
	for j := range sc {
		sc[j] = j + 1
		for k := 0; k <= j; k++ {
			send = append(send, float32(r*100+j))
		}
	}
	rc, err := c.AlltoallInts(sc)
	if err != nil {
		t.Fatal(err)
	}
	total := 0
	for j, x := range rc {
		if x != r+1 {
			t.Fatalf("count from rank %d = %d, want %d", j, x, r+1)
		}
		total += x
	}
	recv := make([]float32, total)
	if err := c.AlltoallvF32(send, sc, recv, rc); err != nil {
		t.Fatal(err)
	}
	for j := 0; j < n; j++ {
		for k := 0; k <= r; k++ {
			if v := recv[j*(r+1)+k]; v != float32(j*100+r) {
				t.Fatalf("all-to-all from %d = %v, want %v", j, v, j*100+r)
			}
		}
	}
	if err := c.Barrier(); err != nil {
		t.Fatal(err)
	}
	checkGrid(t, c)
}

// checkGrid splits the world into expert- and data-parallel groups of 2
// and checks that each collective stays within its group.
func checkGrid(t *testing.T, c *Comm) {
	const R = 2
	r, n := c.Rank(), c.Size()
	ep, dp, err := c.Grid(R)
	if err != nil {
		t.Fatal(err)
	}
	if ep.Size() != R || ep.Rank() != r%R || dp.Size() != n/R || dp.Rank() != r/R {
		t.Fatalf("world rank %d: ep rank %d of %d, dp rank %d of %d", r, ep.Rank(), ep.Size(), dp.Rank(), dp.Size())
	}
	// Sums over the group: the world ranks R·(r/R) + i, and r%R + R·j.
	x := []float64{float64(r)}
	if err := ep.AllreduceF64(x); err != nil || x[0] != float64(R*(r/R)*R+R*(R-1)/2) {
		t.Fatalf("ep all-reduce at rank %d: %v %v", r, x, err)
	}
	y := []float32{float32(r)}
	if err := dp.IallreduceF32(y).Wait(); err != nil || y[0] != float32((r%R)*(n/R)+R*(n/R)*(n/R-1)/2) {
		t.Fatalf("dp all-reduce at rank %d: %v %v", r, y, err)
	}
	// All-to-all within the EP group: rank i sends 10·r + j to group rank j.
	send := make([]float32, R)
	for j := range send {
		send[j] = float32(10*r + j)
	}
	recv := make([]float32, R)
	ones := []int{1, 1}
	if err := ep.AlltoallvF32(send, ones, recv, ones); err != nil {
		t.Fatal(err)
	}
	for j, v := range recv {
		if want := float32(10*(R*(r/R)+j) + r%R); v != want {
			t.Fatalf("ep all-to-all at rank %d from %d: %v, want %v", r, j, v, want)
		}
	}
	msg, err := dp.BcastBytes([]byte(fmt.Sprint(r)), dp.Size()-1)
	if err != nil || string(msg) != fmt.Sprint(n-R+r%R) {
		t.Fatalf("dp broadcast at rank %d: %q %v", r, msg, err)
	}
	if err := ep.Free(); err != nil {
		t.Fatal(err)
	}
	if err := ep.Free(); err != nil { // a second Free does nothing
		t.Fatal(err)
	}
	// dp is left for Finalize to free (TestMain).
	if _, _, err := c.Grid(3); n%3 != 0 && err == nil {
		t.Fatal("groups of 3 in a world of", n, "did not fail")
	}
}
