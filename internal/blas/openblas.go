package blas

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"unsafe"

	"github.com/ebitengine/purego"
	"golang.org/x/sys/cpu"
	"gonum.org/v1/gonum/blas"

	"github.com/moetrain/moetrain/internal/parallel"
	"github.com/moetrain/moetrain/internal/tol"
)

// pureGoName is the kernel name reported when OpenBLAS is not in use.
const pureGoName = "gonum (pure Go)"

// CBLAS enums (cblas.h). gonum's blas.Transpose is a byte ('N', 'T'), so it
// has to be mapped; passing it through would select a garbage layout.
const (
	cblasRowMajor = 101
	cblasNoTrans  = 111
	cblasTrans    = 112
)

// Options selects how Load finds and drives OpenBLAS. The zero value means
// the defaults.
type Options struct {
	// Paths lists candidate library files, tried in order. Nil means
	// DefaultPaths().
	Paths []string
	// Threads is the number of OpenBLAS threads per call. Zero means the
	// measured default (one OpenBLAS thread per call, with Gemm splitting
	// large products over parallel.Workers goroutines; see
	// docs/BENCHMARKS.md, "BLAS"), or OPENBLAS_NUM_THREADS when the user set
	// it. A value above 1 turns the Go-side split off and serialises calls,
	// so the library's own threads never compete with each other.
	Threads int
}

// Info describes the float32 GEMM kernel that Load installed.
type Info struct {
	Kernel   string   // e.g. "OpenBLAS 0.3.21 SkylakeX" or "gonum (pure Go)"
	Library  string   // the file that was loaded; empty for pure Go
	Config   string   // openblas_get_config()
	CoreName string   // openblas_get_corename()
	Threads  int      // OpenBLAS threads per call (0 for pure Go)
	Split    int      // goroutines Gemm splits one large product over (1: no split)
	Fallback string   // why pure Go is in use; empty when OpenBLAS is active
	Warnings []string // things the user should see (wrong results, a detected core that differs from the one asked for)
	// SlowCore, when not empty, says that OPENBLAS_CORETYPE from the
	// environment holds OpenBLAS to an older kernel than this CPU runs
	// (see slowCoreNote); compute commands print it, and String ends with it.
	SlowCore string
}

// LibraryEnv names the environment variable that overrides DefaultPaths:
// the path of the OpenBLAS library to load, or "none" for pure Go.
const LibraryEnv = "MOETRAIN_OPENBLAS"

// FallbackWarning is the warning every compute command prints first when
// the pure-Go kernel is active (empty when OpenBLAS is): matrix products
// are then about 8× slower (dense-small trained at 377 instead of 3,097
// tokens/s, docs/BENCHMARKS.md) and there is no MFU.
func (i Info) FallbackWarning() string {
	if i.Library != "" {
		return ""
	}
	return "WARNING: OpenBLAS is not in use (" + i.Fallback + ").\n" +
		"WARNING: matrix products run in pure Go, about 8× slower (training, eval and generation alike); no MFU is reported.\n" +
		"WARNING: install the libopenblas0 package (Debian/Ubuntu: apt install libopenblas0), or set " + LibraryEnv + " to the library's path."
}

// String is a one-line summary for start-up logs.
func (i Info) String() string {
	var b strings.Builder
	b.WriteString(i.Kernel)
	if i.Library != "" {
		fmt.Fprintf(&b, " (%s, %d thread(s) per call, split over %d)", i.Library, i.Threads, i.Split)
	}
	if i.Fallback != "" {
		fmt.Fprintf(&b, "; fallback: %s", i.Fallback)
	}
	for _, w := range i.Warnings {
		fmt.Fprintf(&b, "; warning: %s", w)
	}
	if i.SlowCore != "" {
		fmt.Fprintf(&b, "; %s", i.SlowCore)
	}
	return b.String()
}

// DefaultPaths returns where Debian and common source builds put OpenBLAS,
// ending with the bare soname so the dynamic loader's own search
// (LD_LIBRARY_PATH, ld.so.cache) gets a turn.
func DefaultPaths() []string {
	var triplet string
	switch runtime.GOARCH {
	case "amd64":
		triplet = "x86_64-linux-gnu"
	case "arm64":
		triplet = "aarch64-linux-gnu"
	case "ppc64le":
		triplet = "powerpc64le-linux-gnu"
	case "riscv64":
		triplet = "riscv64-linux-gnu"
	}
	var ps []string
	if triplet != "" {
		dir := "/usr/lib/" + triplet + "/"
		ps = append(ps,
			dir+"libopenblas.so.0",
			dir+"openblas-pthread/libopenblas.so.0",
			dir+"openblas-openmp/libopenblas.so.0",
		)
	}
	return append(ps,
		"/usr/lib64/libopenblas.so.0",
		"/usr/local/lib/libopenblas.so.0",
		"/opt/OpenBLAS/lib/libopenblas.so.0",
		"libopenblas.so.0",
	)
}

var (
	loadMu  sync.Mutex
	current = Info{Kernel: pureGoName, Fallback: "blas.Init not called"}
	libs    = map[string]*openBLAS{} // dlopen'ed libraries by path; never closed
)

// Init loads OpenBLAS with the default options; see Load.
func Init() (Info, error) { return Load(Options{}) }

// Current returns the Info of the last Load (pure Go before any).
func Current() Info {
	loadMu.Lock()
	defer loadMu.Unlock()
	return current
}

// Load installs the fastest float32 GEMM kernel available. It loads OpenBLAS
// through purego (no cgo), after setting OPENBLAS_CORETYPE to this CPU's
// core (Debian's 0.3.21 mis-detects AVX-512 CPUs as Prescott, ~5× slower)
// and OPENBLAS_THREAD_TIMEOUT=4 (idle workers otherwise spin and steal a
// core from Go), each only when the user has not set it. It then checks a
// few products against gonum's. A missing library or a wrong result is not
// an error: pure Go is installed and Info.Fallback says why. Load returns
// an error only for invalid options.
//
// Load must not run while products are running. The environment only
// matters the first time a library is opened in a process.
func Load(opts Options) (Info, error) {
	if opts.Threads < 0 {
		return Info{}, fmt.Errorf("blas: threads %d: must be >= 0", opts.Threads)
	}
	loadMu.Lock()
	defer loadMu.Unlock()
	info := load(opts)
	if info.Library == "" {
		SetSgemm(pureGo, pureGoName)
	}
	current = info
	return info, nil
}

func load(opts Options) Info {
	info := Info{Kernel: pureGoName}
	paths := opts.Paths
	if paths == nil {
		paths = DefaultPaths()
		switch v := os.Getenv(LibraryEnv); {
		case v == "none":
			info.Fallback = LibraryEnv + "=none"
			return info
		case v != "":
			paths = []string{v}
		}
	}
	userCore, userSet := os.LookupEnv("OPENBLAS_CORETYPE")
	wantCore := setDefaultEnv()

	var lib *openBLAS
	var errs []error
	for _, p := range paths {
		l, err := open(p)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		lib, info.Library = l, p
		break
	}
	if lib == nil {
		info.Fallback = "OpenBLAS not found: " + errors.Join(errs...).Error()
		if len(errs) == 0 {
			info.Fallback = "OpenBLAS not found: no paths given"
		}
		return info
	}

	info.Config = strings.TrimSpace(lib.getConfig())
	info.CoreName = strings.TrimSpace(lib.getCorename())
	if wantCore != "" && !strings.EqualFold(wantCore, info.CoreName) {
		info.Warnings = append(info.Warnings, fmt.Sprintf(
			"asked OpenBLAS for core %s, it runs %s (OPENBLAS_CORETYPE=%s; the library may have been opened before Load)",
			wantCore, info.CoreName, os.Getenv("OPENBLAS_CORETYPE")))
	}
	if userSet {
		if n := slowCoreNote(userCore, info.CoreName, coreType()); n != "" {
			info.SlowCore = n
		}
	}
	info.Kernel = "OpenBLAS"
	if f := strings.Fields(info.Config); len(f) > 1 && f[0] == "OpenBLAS" {
		info.Kernel += " " + f[1]
	}
	info.Kernel += " " + info.CoreName

	threads, split := opts.Threads, 0
	if threads == 0 {
		if n, err := strconv.Atoi(os.Getenv("OPENBLAS_NUM_THREADS")); err == nil && n > 0 {
			threads = n
		}
	}
	if threads == 0 {
		threads, split = 1, parallel.Workers
	}
	lib.configure(threads, split)
	info.Threads, info.Split = threads, lib.split

	if err := selfCheck(lib); err != nil {
		info.Warnings = append(info.Warnings, err.Error())
		info.Fallback = fmt.Sprintf("%s at %s gave wrong results", info.Kernel, info.Library)
		info.Kernel, info.Library, info.Threads, info.Split = pureGoName, "", 0, 0
		return info
	}
	SetSgemm(lib, info.Kernel)
	return info
}

// setDefaultEnv sets OPENBLAS_CORETYPE and OPENBLAS_THREAD_TIMEOUT unless
// the user did, and returns the core name OpenBLAS should report ("" when
// this process does not choose it).
func setDefaultEnv() string {
	if _, ok := os.LookupEnv("OPENBLAS_THREAD_TIMEOUT"); !ok {
		os.Setenv("OPENBLAS_THREAD_TIMEOUT", "4")
	}
	if v, ok := os.LookupEnv("OPENBLAS_CORETYPE"); ok {
		return v
	}
	core := coreType()
	if core != "" {
		os.Setenv("OPENBLAS_CORETYPE", core)
	}
	return core
}

// coreType names OpenBLAS's kernel family for this CPU, or "" to let
// OpenBLAS detect it (non-x86, or nothing newer than SSE3).
func coreType() string {
	x := cpu.X86
	switch {
	case x.HasAVX512F && x.HasAVX512BW && x.HasAVX512VL && x.HasAVX512DQ && x.HasAVX512CD:
		return "SkylakeX"
	case x.HasAVX2 && x.HasFMA:
		return "Haswell"
	case x.HasAVX:
		return "Sandybridge"
	}
	return ""
}

// vectorBits is the widest float32 vector OpenBLAS's x86 kernel family
// core uses (0 for families not listed: nothing to compare).
func vectorBits(core string) int {
	switch strings.ToLower(core) {
	case "skylakex", "cooperlake", "sapphirerapids":
		return 512
	case "haswell", "zen", "excavator":
		return 256 // with FMA
	case "sandybridge", "bulldozer", "piledriver", "steamroller":
		return 255 // AVX without FMA: below Haswell
	}
	return 0
}

// slowCoreNote returns a note when the kernel OpenBLAS runs (running, as
// set through OPENBLAS_CORETYPE=user) uses narrower vectors than the one
// this CPU supports (best, coreType()), else "". On the AMD EPYC (Zen 5)
// of docs/BENCHMARKS.md an environment that set OPENBLAS_CORETYPE=Haswell
// made every science-size training step 1.7-2× slower in CPU time.
func slowCoreNote(user, running, best string) string {
	r, b := vectorBits(running), vectorBits(best)
	if r == 0 || b == 0 || r >= b {
		return ""
	}
	return fmt.Sprintf("note: OPENBLAS_CORETYPE=%s in the environment holds OpenBLAS to its %s kernel; this CPU runs %s, "+
		"whose products are up to 2× faster at small model sizes (docs/BENCHMARKS.md). Unset OPENBLAS_CORETYPE "+
		"unless a run must keep %s's rounding (a run resumed under another kernel is not bit-identical to an uninterrupted one)",
		user, running, best, running)
}

// openBLAS is the float32 kernel backed by a loaded libopenblas.
type openBLAS struct {
	sgemm         func(order, tA, tB, m, n, k int32, alpha float32, a *float32, lda int32, b *float32, ldb int32, beta float32, c *float32, ldc int32)
	sgemmF        uintptr // the Fortran sgemm_, 0 when the library lacks it (see call)
	setNumThreads func(n int32)
	getNumThreads func() int32
	getConfig     func() string
	getCorename   func() string
	split         int // parts a large product is cut into (1: none)
	// gate bounds concurrent library calls to the cores we mean to use: a
	// call takes one of its split argument blocks and puts it back after,
	// so sgemm_'s by-reference arguments need no allocation per call.
	gate           chan *fortranArgs
	minSplitFlops  int // a part must be at least this much work
	splitAlignment int // part boundaries fall on multiples of this (kernel tile)
	rowBias        int // split rows while m*rowBias >= n, else columns (1: the larger side)
}

var _ Sgemmer = (*openBLAS)(nil)

// open dlopens path once per process and resolves the symbols used.
func open(path string) (l *openBLAS, err error) {
	if l, ok := libs[path]; ok {
		return l, nil
	}
	h, err := purego.Dlopen(path, purego.RTLD_NOW|purego.RTLD_LOCAL)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	for _, s := range []string{"cblas_sgemm", "openblas_set_num_threads", "openblas_get_num_threads", "openblas_get_config", "openblas_get_corename"} {
		if _, err := purego.Dlsym(h, s); err != nil {
			return nil, fmt.Errorf("open %s: symbol %s: %w", path, s, err)
		}
	}
	l = &openBLAS{minSplitFlops: 1 << 22, splitAlignment: 16, rowBias: 1}
	purego.RegisterLibFunc(&l.sgemm, h, "cblas_sgemm")
	if f, err := purego.Dlsym(h, "sgemm_"); err == nil {
		l.sgemmF = f
	}
	purego.RegisterLibFunc(&l.setNumThreads, h, "openblas_set_num_threads")
	purego.RegisterLibFunc(&l.getNumThreads, h, "openblas_get_num_threads")
	purego.RegisterLibFunc(&l.getConfig, h, "openblas_get_config")
	purego.RegisterLibFunc(&l.getCorename, h, "openblas_get_corename")
	l.configure(1, 1)
	libs[path] = l
	return l, nil
}

// configure sets OpenBLAS's thread count and how Sgemm splits work.
// split 0 or 1 means no Go-side split. With threads > 1, calls are
// serialised: two multi-threaded calls at once would oversubscribe the cores.
func (l *openBLAS) configure(threads, split int) {
	if split < 1 {
		split = 1
	}
	if threads > 1 {
		split = 1
	}
	l.setNumThreads(int32(threads))
	l.split = split
	l.gate = make(chan *fortranArgs, split)
	for range split {
		l.gate <- new(fortranArgs)
	}
}

// Sgemm computes C = alpha*op(A)*op(B) + beta*C (row-major). Products of at
// least 2·minSplitFlops are cut into up to l.split parts along the rows of
// C, or along its columns when C has more columns than rows, at fixed,
// tile-aligned boundaries. Splitting the longer side means each part
// re-packs the smaller operand (a row split re-reads all of op(B), a column
// split all of op(A)), which measured fastest (docs/BENCHMARKS.md);
// every element of C is computed by exactly one call whose shape depends
// only on (m, n, k) and l.split, so results never depend on goroutine
// timing.
func (l *openBLAS) Sgemm(tA, tB blas.Transpose, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	transA, transB := isTrans(tA), isTrans(tB)
	if sgemmTrivial(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc) {
		return
	}
	parts := 1
	if l.split > 1 {
		parts = min(l.split, 2*m*n*k/l.minSplitFlops)
	}
	al := l.splitAlignment
	switch {
	case parts >= 2 && m >= 2*al*parts && (m*l.rowBias >= n || n < 2*al*parts):
		size := alignedPart(m, parts, al)
		parallel.For(parts, 1, func(lo, hi int) {
			for p := lo; p < hi; p++ {
				r0, r1 := p*size, min((p+1)*size, m)
				if r0 >= r1 {
					continue
				}
				aOff := r0 * lda // rows of op(A) are rows of A...
				if transA {
					aOff = r0 // ...or columns of A
				}
				l.call(transA, transB, r1-r0, n, k, alpha, a[aOff:], lda, b, ldb, beta, c[r0*ldc:], ldc)
			}
		})
	case parts >= 2 && n >= 2*al*parts:
		size := alignedPart(n, parts, al)
		parallel.For(parts, 1, func(lo, hi int) {
			for p := lo; p < hi; p++ {
				c0, c1 := p*size, min((p+1)*size, n)
				if c0 >= c1 {
					continue
				}
				bOff := c0 // columns of op(B) are columns of B...
				if transB {
					bOff = c0 * ldb // ...or rows of B
				}
				l.call(transA, transB, m, c1-c0, k, alpha, a, lda, b[bOff:], ldb, beta, c[c0:], ldc)
			}
		})
	default:
		l.call(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
	}
}

// SgemmSerial is Sgemm as a single library call on the calling goroutine
// (see GemmSerial).
func (l *openBLAS) SgemmSerial(tA, tB blas.Transpose, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	transA, transB := isTrans(tA), isTrans(tB)
	if sgemmTrivial(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc) {
		return
	}
	l.call(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
}

// alignedPart is the size of each of parts chunks of n, rounded up to a
// multiple of al so the kernel's tiles are not cut.
func alignedPart(n, parts, al int) int {
	size := (n + parts - 1) / parts
	return (size + al - 1) / al * al
}

// call runs one product. Sizes were checked by checkSgemm, so the
// pointers handed to C cover every element the library touches.
//
// It calls the Fortran sgemm_ when the library has it: every argument is a
// pointer, so purego.SyscallN passes them without the reflection that a
// registered cblas_sgemm (with its float arguments) costs on every call,
// 2-3% of a step of the science MoE (1,500 expert products per step). The
// row-major product is the column-major Cᵀ = op(B)ᵀ·op(A)ᵀ, the very
// arguments cblas_sgemm hands OpenBLAS's driver for row-major data, so the
// results are the same bits (TestFortranCallMatchesCBLAS).
func (l *openBLAS) call(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	args := <-l.gate
	if l.sgemmF != 0 {
		*args = fortranArgs{transA: fortranOp(transB), transB: fortranOp(transA), m: int32(n), n: int32(m), k: int32(k),
			alpha: alpha, lda: int32(ldb), ldb: int32(lda), beta: beta, ldc: int32(ldc)}
		purego.SyscallN(l.sgemmF, uintptr(unsafe.Pointer(&args.transA)), uintptr(unsafe.Pointer(&args.transB)),
			uintptr(unsafe.Pointer(&args.m)), uintptr(unsafe.Pointer(&args.n)), uintptr(unsafe.Pointer(&args.k)),
			uintptr(unsafe.Pointer(&args.alpha)), uintptr(unsafe.Pointer(&b[0])), uintptr(unsafe.Pointer(&args.lda)),
			uintptr(unsafe.Pointer(&a[0])), uintptr(unsafe.Pointer(&args.ldb)), uintptr(unsafe.Pointer(&args.beta)),
			uintptr(unsafe.Pointer(&c[0])), uintptr(unsafe.Pointer(&args.ldc)))
		runtime.KeepAlive(args)
	} else {
		l.sgemm(cblasRowMajor, cblasOp(transA), cblasOp(transB), int32(m), int32(n), int32(k),
			alpha, &a[0], int32(lda), &b[0], int32(ldb), beta, &c[0], int32(ldc))
	}
	l.gate <- args
	runtime.KeepAlive(a)
	runtime.KeepAlive(b)
	runtime.KeepAlive(c)
}

// fortranArgs holds the by-reference arguments of one sgemm_ call.
type fortranArgs struct {
	transA, transB byte
	m, n, k        int32
	alpha, beta    float32
	lda, ldb, ldc  int32
}

func fortranOp(t bool) byte {
	if t {
		return 'T'
	}
	return 'N'
}

func cblasOp(t bool) int32 {
	if t {
		return cblasTrans
	}
	return cblasNoTrans
}

// isTrans maps gonum's Transpose byte; for real matrices 'C' equals 'T'.
func isTrans(t blas.Transpose) bool {
	switch t {
	case blas.NoTrans:
		return false
	case blas.Trans, blas.ConjTrans:
		return true
	}
	panic(fmt.Sprintf("blas: bad transpose %q", byte(t)))
}

// checkSgemm panics (an internal invariant, like gonum) when a slice or a
// leading dimension cannot hold the matrix it describes: C code would read
// or write past the Go slice instead of failing.
// sgemmTrivial checks the arguments and finishes the products that need no
// library call (empty C, or k = 0 or alpha = 0: C = beta·C), reporting
// whether it did.
func sgemmTrivial(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) bool {
	checkSgemm(transA, transB, m, n, k, a, lda, b, ldb, c, ldc)
	if m == 0 || n == 0 {
		return true
	}
	if k == 0 || alpha == 0 {
		scaleC(m, n, beta, c, ldc)
		return true
	}
	return false
}

func checkSgemm(transA, transB bool, m, n, k int, a []float32, lda int, b []float32, ldb int, c []float32, ldc int) {
	if m < 0 || n < 0 || k < 0 {
		panic(fmt.Sprintf("blas: negative size m=%d n=%d k=%d", m, n, k))
	}
	if m > 1<<31-1 || n > 1<<31-1 || k > 1<<31-1 || lda > 1<<31-1 || ldb > 1<<31-1 || ldc > 1<<31-1 {
		panic("blas: size exceeds int32 (LP64 OpenBLAS)")
	}
	rowsA, colsA := m, k
	if transA {
		rowsA, colsA = k, m
	}
	rowsB, colsB := k, n
	if transB {
		rowsB, colsB = n, k
	}
	checkMat("a", rowsA, colsA, len(a), lda)
	checkMat("b", rowsB, colsB, len(b), ldb)
	checkMat("c", m, n, len(c), ldc)
}

func checkMat(name string, rows, cols, length, ld int) {
	if ld < max(1, cols) {
		panic(fmt.Sprintf("blas: ld%s %d < %d columns", name, ld, cols))
	}
	if rows > 0 && cols > 0 && length < (rows-1)*ld+cols {
		panic(fmt.Sprintf("blas: %s has %d elements, %d×%d with ld %d needs %d", name, length, rows, cols, ld, (rows-1)*ld+cols))
	}
}

// scaleC sets C = beta*C (BLAS semantics: beta 0 overwrites, even NaN).
func scaleC(m, n int, beta float32, c []float32, ldc int) {
	for i := range m {
		row := c[i*ldc : i*ldc+n]
		if beta == 0 {
			clear(row)
			continue
		}
		for j := range row {
			row[j] *= beta
		}
	}
}

// selfCheck compares l with gonum on all transpose pairs, non-packed leading
// dimensions and a product large enough to take the split path.
func selfCheck(l *openBLAS) error {
	shapes := [][3]int{{37, 29, 41}, {192, 160, 144}, {24, 300, 320}}
	for si, s := range shapes {
		m, n, k := s[0], s[1], s[2]
		for ti := range 4 {
			tA, tB := ti&1 == 1, ti&2 == 2
			got, want := checkProduct(l, tA, tB, m, n, k, uint64(si*4+ti+1))
			if err := tol.CheckScaled(fmt.Sprintf("self-check %d×%d×%d tA=%v tB=%v", m, n, k, tA, tB), got, want, 1e-4); err != nil {
				return fmt.Errorf("OpenBLAS disagrees with gonum: %w", err)
			}
		}
	}
	return nil
}

// checkProduct runs one product through l and gonum on the same
// pseudo-random inputs (padded leading dimensions, alpha and beta not 0/1).
func checkProduct(l Sgemmer, tA, tB bool, m, n, k int, seed uint64) (got, want []float64) {
	rowsA, colsA := m, k
	if tA {
		rowsA, colsA = k, m
	}
	rowsB, colsB := k, n
	if tB {
		rowsB, colsB = n, k
	}
	lda, ldb, ldc := colsA+3, colsB+1, n+2
	a := lcg(seed, rowsA*lda)
	b := lcg(seed+100, rowsB*ldb)
	c0 := lcg(seed+200, m*ldc)
	c1 := append([]float32(nil), c0...)
	l.Sgemm(tr(tA), tr(tB), m, n, k, 0.75, a, lda, b, ldb, -0.5, c0, ldc)
	pureGo.Sgemm(tr(tA), tr(tB), m, n, k, 0.75, a, lda, b, ldb, -0.5, c1, ldc)
	got, want = make([]float64, 0, m*n), make([]float64, 0, m*n)
	for i := range m {
		for j := range n {
			got = append(got, float64(c0[i*ldc+j]))
			want = append(want, float64(c1[i*ldc+j]))
		}
	}
	return got, want
}

// lcg fills n values in [-1, 1) from a fixed 64-bit linear congruential
// sequence: deterministic, dependency-free, never all zero.
func lcg(seed uint64, n int) []float32 {
	x := seed*0x9E3779B97F4A7C15 + 1
	v := make([]float32, n)
	for i := range v {
		x = x*6364136223846793005 + 1442695040888963407
		v[i] = float32(int32(x>>32)) / (1 << 31) // the high bits are the random ones
	}
	return v
}
