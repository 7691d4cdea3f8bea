package main

import (
	"bytes"
	"runtime"
	"strings"
	"testing"

	"github.com/moetrain/moetrain/internal/parallel"
)

// Under mpirun with two ranks on this host, train gives each rank half the
// cores (GOMAXPROCS and the loop workers) and rank 0 says so once; the
// other ranks are quiet, and a GOMAXPROCS from the user wins.
func TestShareHostCores(t *testing.T) {
	procs, workers := runtime.GOMAXPROCS(0), parallel.Workers
	t.Cleanup(func() { runtime.GOMAXPROCS(procs); parallel.Workers = workers })
	t.Setenv("MOETRAIN_MPI", "")
	t.Setenv("GOMAXPROCS", "")
	t.Setenv("OMPI_COMM_WORLD_LOCAL_SIZE", "2")
	want := max(1, runtime.NumCPU()/2)
	for _, rank := range []string{"0", "1"} {
		t.Setenv("OMPI_COMM_WORLD_RANK", rank)
		var out bytes.Buffer
		shareHostCores(&out)
		if runtime.GOMAXPROCS(0) != want || parallel.Workers != want {
			t.Errorf("rank %s: GOMAXPROCS %d, workers %d; want %d each", rank, runtime.GOMAXPROCS(0), parallel.Workers, want)
		}
		if note := out.String(); (rank == "0") != strings.Contains(note, "2 ranks share this host") {
			t.Errorf("rank %s printed %q; want the note on rank 0 only", rank, note)
		}
		runtime.GOMAXPROCS(procs)
		parallel.Workers = workers
	}
	t.Setenv("GOMAXPROCS", "1")
	var out bytes.Buffer
	shareHostCores(&out)
	if runtime.GOMAXPROCS(0) != procs || out.Len() != 0 {
		t.Errorf("with the user's GOMAXPROCS: GOMAXPROCS %d (was %d), printed %q; want no change and no note", runtime.GOMAXPROCS(0), procs, out.String())
	}
}
