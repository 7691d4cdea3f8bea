// Package dist is moetrain's only link to other processes: it discovers the
// rank and world size of a run launched with Open MPI's mpirun and offers the
// collectives training needs (all-reduce of gradients and routing counts,
// broadcast of initial weights, all-gather for consistency checks and
// per-rank logs, all-to-all for expert parallelism).
//
// libmpi is loaded at run time with purego (no cgo, no MPI at build time), so
// a single-process run needs no MPI at all: World returns a communicator of
// size 1 whose collectives are identities. Every MPI call runs on one
// dedicated, locked OS thread (MPI_THREAD_FUNNELED), which also lets a
// collective run while the caller keeps computing (Comm.Start).
package dist
