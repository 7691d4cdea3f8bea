package dist

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"unsafe"

	"github.com/ebitengine/purego"
)

// Open MPI constants (mpi.h of Open MPI 4 and 5).
const (
	mpiThreadFunneled = 1
	mpiInPlace        = 1 // MPI_IN_PLACE is ((void *) 1)
	maxVersion        = 256
	maxChunk          = 1 << 28 // elements per call: MPI counts are C ints
)

// mpiLib is a loaded Open MPI with the handles of MPI_COMM_WORLD and the
// predefined datatypes and ops, which in Open MPI are the addresses of
// exported globals. All calls run on one locked OS thread (jobs). Every
// collective takes the communicator handle it runs on: world, or one made
// by MPI_Comm_split (an ompi_communicator_t pointer).
type mpiLib struct {
	path                          string
	world, tFloat, tDouble, tByte uintptr
	opSum, opMax                  uintptr
	jobs                          chan func()
	// subs are the live communicators made by split, in creation order;
	// finalize frees what the caller left (MPI_Comm_free must precede
	// MPI_Finalize).
	subsMu             sync.Mutex
	subs               []*uintptr
	commSplitFn        func(comm uintptr, colour, key int32, out *uintptr) int32
	commFreeFn         func(comm *uintptr) int32
	initThread         func(argc, argv unsafe.Pointer, required int32, provided *int32) int32
	finalizeFn         func() int32
	commRank, commSize func(comm uintptr, out *int32) int32
	allreduceFn        func(send uintptr, recv unsafe.Pointer, count int32, dtype, op, comm uintptr) int32
	bcastFn            func(buf unsafe.Pointer, count int32, dtype uintptr, root int32, comm uintptr) int32
	allgatherFn        func(send unsafe.Pointer, scount int32, stype uintptr, recv unsafe.Pointer, rcount int32, rtype, comm uintptr) int32
	alltoallFn         func(send unsafe.Pointer, scount int32, stype uintptr, recv unsafe.Pointer, rcount int32, rtype, comm uintptr) int32
	alltoallvFn        func(send unsafe.Pointer, scounts, sdispls *int32, stype uintptr, recv unsafe.Pointer, rcounts, rdispls *int32, rtype, comm uintptr) int32
	barrierFn          func(comm uintptr) int32
	abortFn            func(comm uintptr, code int32) int32
	versionFn          func(buf *byte, n *int32) int32
	done               bool
}

// libraryPaths lists where Open MPI's libmpi may live: MOETRAIN_MPI_LIB
// first, then OPAL_PREFIX (set by relocated installs), the distributions'
// locations, and the bare sonames for the dynamic loader's own search.
func libraryPaths() []string {
	var ps []string
	if p := os.Getenv("MOETRAIN_MPI_LIB"); p != "" {
		return []string{p}
	}
	if p := os.Getenv("OPAL_PREFIX"); p != "" {
		ps = append(ps, filepath.Join(p, "lib", "libmpi.so.40"))
	}
	triplet := map[string]string{"amd64": "x86_64-linux-gnu", "arm64": "aarch64-linux-gnu", "ppc64le": "powerpc64le-linux-gnu"}[runtime.GOARCH]
	if triplet != "" {
		ps = append(ps, "/usr/lib/"+triplet+"/libmpi.so.40", "/usr/lib/"+triplet+"/openmpi/lib/libmpi.so.40")
	}
	return append(ps, "/usr/lib64/openmpi/lib/libmpi.so.40", "/usr/local/lib/libmpi.so.40", "/opt/openmpi/lib/libmpi.so.40",
		"libmpi.so.40", "libmpi.so")
}

// initMPI loads libmpi, initialises MPI on a dedicated OS thread and reads
// the rank and size of MPI_COMM_WORLD.
func initMPI() (*Comm, error) {
	// Open MPI's own SIGSEGV/SIGBUS/SIGFPE/SIGABRT handlers would replace
	// Go's, turning a Go nil dereference or bounds panic into an opaque
	// crash; an empty opal_signal keeps Go's handlers. The user's setting
	// wins.
	if _, ok := os.LookupEnv("OMPI_MCA_opal_signal"); !ok {
		os.Setenv("OMPI_MCA_opal_signal", "")
	}
	var l *mpiLib
	var errs []error
	for _, p := range libraryPaths() {
		var err error
		if l, err = openMPI(p); err == nil {
			break
		}
		errs = append(errs, err)
	}
	if l == nil {
		return nil, fmt.Errorf("dist: this process was launched by MPI (OMPI_COMM_WORLD_SIZE or PMIX_RANK is set) but Open MPI's libmpi.so.40 cannot be loaded; install Open MPI (Debian: apt-get install openmpi-bin libopenmpi-dev) or set MOETRAIN_MPI_LIB: %w", errors.Join(errs...))
	}
	l.jobs = make(chan func())
	ready := make(chan error, 1)
	var rank, size, provided int32
	var version string
	go func() {
		// MPI_THREAD_FUNNELED: every call comes from the thread that
		// initialised MPI, this one, for the life of the process.
		runtime.LockOSThread()
		if rc := l.initThread(nil, nil, mpiThreadFunneled, &provided); rc != 0 {
			ready <- fmt.Errorf("dist: MPI_Init_thread: error %d", rc)
			return
		}
		if rc := l.commRank(l.world, &rank); rc != 0 {
			ready <- fmt.Errorf("dist: MPI_Comm_rank: error %d", rc)
			return
		}
		if rc := l.commSize(l.world, &size); rc != 0 {
			ready <- fmt.Errorf("dist: MPI_Comm_size: error %d", rc)
			return
		}
		buf := make([]byte, maxVersion)
		var n int32
		if l.versionFn != nil && l.versionFn(&buf[0], &n) == 0 && n > 0 {
			version = strings.TrimSpace(strings.TrimRight(string(buf[:n]), "\x00"))
			if i := strings.IndexByte(version, ','); i > 0 {
				version = version[:i]
			}
		}
		ready <- nil
		for job := range l.jobs {
			job()
		}
	}()
	if err := <-ready; err != nil {
		return nil, err
	}
	if provided < mpiThreadFunneled {
		return nil, fmt.Errorf("dist: MPI provides thread level %d, moetrain needs MPI_THREAD_FUNNELED", provided)
	}
	if want, ok := envInt("OMPI_COMM_WORLD_SIZE"); ok && want != int(size) {
		return nil, fmt.Errorf("dist: mpirun started %d processes but MPI_COMM_WORLD has %d", want, size)
	}
	if version == "" {
		version = "MPI"
	}
	return &Comm{rank: int(rank), size: int(size), lib: l, handle: l.world, version: version + " (" + l.path + ")"}, nil
}

func openMPI(path string) (*mpiLib, error) {
	// RTLD_GLOBAL: Open MPI's plugins (mca_*.so) resolve libmpi's and
	// libopen-pal's symbols from the global namespace.
	h, err := purego.Dlopen(path, purego.RTLD_NOW|purego.RTLD_GLOBAL)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	l := &mpiLib{path: path}
	for _, g := range []struct {
		dst  *uintptr
		name string
	}{{&l.world, "ompi_mpi_comm_world"}, {&l.tFloat, "ompi_mpi_float"}, {&l.tDouble, "ompi_mpi_double"},
		{&l.tByte, "ompi_mpi_byte"}, {&l.opSum, "ompi_mpi_op_sum"}, {&l.opMax, "ompi_mpi_op_max"}} {
		if *g.dst, err = purego.Dlsym(h, g.name); err != nil {
			return nil, fmt.Errorf("open %s: not Open MPI (no %s): %w", path, g.name, err)
		}
	}
	fns := []struct {
		fn   any
		name string
	}{{&l.initThread, "MPI_Init_thread"}, {&l.finalizeFn, "MPI_Finalize"}, {&l.commRank, "MPI_Comm_rank"},
		{&l.commSize, "MPI_Comm_size"}, {&l.allreduceFn, "MPI_Allreduce"}, {&l.bcastFn, "MPI_Bcast"},
		{&l.allgatherFn, "MPI_Allgather"}, {&l.alltoallFn, "MPI_Alltoall"}, {&l.alltoallvFn, "MPI_Alltoallv"},
		{&l.barrierFn, "MPI_Barrier"}, {&l.abortFn, "MPI_Abort"}, {&l.versionFn, "MPI_Get_library_version"},
		{&l.commSplitFn, "MPI_Comm_split"}, {&l.commFreeFn, "MPI_Comm_free"}}
	for _, f := range fns {
		if _, err := purego.Dlsym(h, f.name); err != nil {
			return nil, fmt.Errorf("open %s: symbol %s: %w", path, f.name, err)
		}
		purego.RegisterLibFunc(f.fn, h, f.name)
	}
	return l, nil
}

// post queues job on the MPI thread without waiting.
func (l *mpiLib) post(job func()) { l.jobs <- job }

// call runs fn on the MPI thread and waits for it.
func (l *mpiLib) call(name string, fn func() int32) error {
	if l.done {
		return errFinalized
	}
	rc := make(chan int32, 1)
	l.jobs <- func() { rc <- fn() }
	if c := <-rc; c != 0 {
		return fmt.Errorf("dist: %s: MPI error %d", name, c)
	}
	return nil
}

// finalize frees the sub-communicators still alive, newest first (every
// rank made the same ones in the same order, so the collective frees match),
// then finalises MPI.
func (l *mpiLib) finalize() error {
	var errs []error
	l.subsMu.Lock()
	left := append([]*uintptr(nil), l.subs...)
	l.subsMu.Unlock()
	for i := len(left) - 1; i >= 0; i-- {
		errs = append(errs, l.free(left[i]))
	}
	errs = append(errs, l.call("MPI_Finalize", l.finalizeFn))
	l.done = true
	return errors.Join(errs...)
}

// split runs MPI_Comm_split on comm and returns the new communicator's
// handle, its rank and its size.
func (l *mpiLib) split(comm uintptr, colour, key int) (*uintptr, int, int, error) {
	h := new(uintptr)
	var rank, size int32
	err := l.call("MPI_Comm_split", func() int32 {
		if c := l.commSplitFn(comm, int32(colour), int32(key), h); c != 0 {
			return c
		}
		if c := l.commRank(*h, &rank); c != 0 {
			return c
		}
		return l.commSize(*h, &size)
	})
	if err != nil {
		return nil, 0, 0, err
	}
	l.subsMu.Lock()
	l.subs = append(l.subs, h)
	l.subsMu.Unlock()
	return h, int(rank), int(size), nil
}

// free runs MPI_Comm_free on a communicator made by split (once; later
// calls do nothing).
func (l *mpiLib) free(h *uintptr) error {
	l.subsMu.Lock()
	live := false
	for i, s := range l.subs {
		if s == h {
			l.subs, live = append(l.subs[:i], l.subs[i+1:]...), true
			break
		}
	}
	l.subsMu.Unlock()
	if !live {
		return nil
	}
	return l.call("MPI_Comm_free", func() int32 { return l.commFreeFn(h) })
}

func (l *mpiLib) abort(code int) {
	done := make(chan struct{})
	l.jobs <- func() { l.abortFn(l.world, int32(code)); close(done) }
	<-done
}

func (l *mpiLib) barrier(comm uintptr) error {
	return l.call("MPI_Barrier", func() int32 { return l.barrierFn(comm) })
}

// allreduce sums (or maxes) count elements in place, in chunks of maxChunk.
func (l *mpiLib) allreduce(comm uintptr, buf unsafe.Pointer, count int, dtype, op uintptr) error {
	if l.done {
		return errFinalized
	}
	rc := make(chan error, 1)
	l.jobs <- func() { rc <- l.allreduceNow(comm, buf, count, dtype, op) }
	return <-rc
}

// allreduceNow runs on the MPI thread.
func (l *mpiLib) allreduceNow(comm uintptr, buf unsafe.Pointer, count int, dtype, op uintptr) error {
	size := 4
	if dtype == l.tDouble {
		size = 8
	}
	for off := 0; off < count; off += maxChunk {
		n := min(maxChunk, count-off)
		if c := l.allreduceFn(mpiInPlace, unsafe.Add(buf, off*size), int32(n), dtype, op, comm); c != 0 {
			return fmt.Errorf("dist: MPI_Allreduce: MPI error %d", c)
		}
	}
	return nil
}

// bcast broadcasts n bytes in chunks of maxChunk.
func (l *mpiLib) bcast(comm uintptr, buf unsafe.Pointer, n, root int) error {
	return l.call("MPI_Bcast", func() int32 {
		for off := 0; off < n; off += maxChunk {
			if c := l.bcastFn(unsafe.Add(buf, off), int32(min(maxChunk, n-off)), l.tByte, int32(root), comm); c != 0 {
				return c
			}
		}
		return 0
	})
}

// allgather gathers n bytes from every rank into recv (n·size bytes).
func (l *mpiLib) allgather(comm uintptr, send, recv unsafe.Pointer, n int) error {
	if n > maxChunk {
		return fmt.Errorf("dist: all-gather of %d bytes per rank: too large", n)
	}
	return l.call("MPI_Allgather", func() int32 {
		return l.allgatherFn(send, int32(n), l.tByte, recv, int32(n), l.tByte, comm)
	})
}

// alltoall exchanges n bytes with every rank.
func (l *mpiLib) alltoall(comm uintptr, send, recv unsafe.Pointer, n int) error {
	return l.call("MPI_Alltoall", func() int32 {
		return l.alltoallFn(send, int32(n), l.tByte, recv, int32(n), l.tByte, comm)
	})
}

func (l *mpiLib) alltoallv(comm uintptr, send []float32, sc, sd []int, recv []float32, rc, rd []int) error {
	toC := func(v []int) ([]int32, error) {
		out := make([]int32, len(v))
		for i, x := range v {
			if x > maxChunk*4 {
				return nil, fmt.Errorf("dist: all-to-all offset %d: too large", x)
			}
			out[i] = int32(x)
		}
		return out, nil
	}
	var c [4][]int32
	for i, v := range [][]int{sc, sd, rc, rd} {
		var err error
		if c[i], err = toC(v); err != nil {
			return err
		}
	}
	// Empty Go slices have no element to point at; MPI never reads a
	// buffer whose counts are all zero.
	var one [1]float32
	sp, rp := unsafe.Pointer(&one[0]), unsafe.Pointer(&one[0])
	if len(send) > 0 {
		sp = ptrF32(send)
	}
	if len(recv) > 0 {
		rp = ptrF32(recv)
	}
	return l.call("MPI_Alltoallv", func() int32 {
		return l.alltoallvFn(sp, &c[0][0], &c[1][0], l.tFloat, rp, &c[2][0], &c[3][0], l.tFloat, comm)
	})
}

func ptrF32(b []float32) unsafe.Pointer { return unsafe.Pointer(&b[0]) }
func ptrF64(b []float64) unsafe.Pointer { return unsafe.Pointer(&b[0]) }
func ptrU8(b []byte) unsafe.Pointer     { return unsafe.Pointer(&b[0]) }
