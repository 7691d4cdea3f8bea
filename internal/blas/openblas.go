package blas

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"unsafe"

	"github.com/ebitengine/purego"
	"golang.org/x/sys/cpu"

	"github.com/moetrain/moetrain/internal/parallel"
)

// CBLAS enums (cblas.h). gonum's blas.Transpose is a byte ('N', 'T'), so it
// has to be mapped; passing it through would select a garbage layout.
const (
	cblasRowMajor = 101
	cblasNoTrans  = 111
	cblasTrans    = 112
)

// openBLASPaths returns where Debian and common source builds put OpenBLAS,
// ending with the bare soname so the dynamic loader's own search
// (LD_LIBRARY_PATH, ld.so.cache) gets a turn.
func openBLASPaths() []string {
	var ps []string
	if dir := libDir(); dir != "" {
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

// libs holds the libraries dlopen'ed so far, by path; never closed (a
// library is opened once per process: its environment is read then).
var libs = map[string]Sgemmer{}

// loadOpenBLAS opens the first OpenBLAS of paths, after setting
// OPENBLAS_CORETYPE to this CPU's core (Debian's 0.3.21 mis-detects AVX-512
// CPUs as Prescott, ~5× slower) and OPENBLAS_THREAD_TIMEOUT=4 (idle workers
// otherwise spin and steal a core from Go), each only when the user has not
// set it, configures its threads and checks it against gonum. It returns
// the kernel and its Info, or an error saying why it cannot be used (info
// then still carries any warnings).
func loadOpenBLAS(paths []string, opts Options) (Sgemmer, Info, error) {
	var info Info
	userCore, userSet := os.LookupEnv("OPENBLAS_CORETYPE")
	wantCore := setDefaultEnv()
	lib, path, err := openFirst("OpenBLAS", paths, open)
	if err != nil {
		return nil, info, err
	}
	info.Library = path

	info.Config = strings.TrimSpace(lib.getConfig())
	info.CoreName = strings.TrimSpace(lib.getCorename())
	if wantCore != "" && !strings.EqualFold(wantCore, info.CoreName) {
		info.Warnings = append(info.Warnings, fmt.Sprintf(
			"asked OpenBLAS for core %s, it runs %s (OPENBLAS_CORETYPE=%s; the library may have been opened before Load)",
			wantCore, info.CoreName, os.Getenv("OPENBLAS_CORETYPE")))
	}
	if userSet {
		info.SlowCore = slowCoreNote(userCore, info.CoreName, coreType())
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
		return nil, info, fmt.Errorf("%s at %s gave wrong results", info.Kernel, info.Library)
	}
	return lib, info, nil
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
		"whose products are up to 2× faster at small model sizes (docs/BENCHMARKS.md). Install oneDNN (Debian: libdnnl2), "+
		"which moetrain prefers and which uses this CPU's widest vectors, or unset OPENBLAS_CORETYPE "+
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
	products      // how products are split over workers
}

var _ Sgemmer = (*openBLAS)(nil)

// open dlopens path once per process and resolves the symbols used.
func open(path string) (l *openBLAS, err error) {
	if l, ok := libs[path].(*openBLAS); ok {
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
	l = &openBLAS{}
	l.products = newProducts(l.run)
	ensureCallStacks()
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
	l.setSplit(split)
}

// run is one library call (see products.call).
//
// It calls the Fortran sgemm_ when the library has it: every argument is a
// pointer, so callFortran passes them (fortranTrampoline on amd64,
// purego.SyscallN elsewhere) without the reflection that a registered
// cblas_sgemm (with its float arguments) costs on every call,
// 2-3% of a step of the science MoE (1,500 expert products per step). The
// row-major product is the column-major Cᵀ = op(B)ᵀ·op(A)ᵀ, the very
// arguments cblas_sgemm hands OpenBLAS's driver for row-major data, so the
// results are the same bits (TestFortranCallMatchesCBLAS).
func (l *openBLAS) run(ca *callArgs, transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	if l.sgemmF != 0 {
		args := &ca.fortran
		*args = fortranArgs{transA: fortranOp(transB), transB: fortranOp(transA), m: int32(n), n: int32(m), k: int32(k),
			alpha: alpha, lda: int32(ldb), ldb: int32(lda), beta: beta, ldc: int32(ldc)}
		ca.call13 = cCall13{fn: l.sgemmF, args: [13]uintptr{uintptr(unsafe.Pointer(&args.transA)), uintptr(unsafe.Pointer(&args.transB)),
			uintptr(unsafe.Pointer(&args.m)), uintptr(unsafe.Pointer(&args.n)), uintptr(unsafe.Pointer(&args.k)),
			uintptr(unsafe.Pointer(&args.alpha)), uintptr(unsafe.Pointer(&b[0])), uintptr(unsafe.Pointer(&args.lda)),
			uintptr(unsafe.Pointer(&a[0])), uintptr(unsafe.Pointer(&args.ldb)), uintptr(unsafe.Pointer(&args.beta)),
			uintptr(unsafe.Pointer(&c[0])), uintptr(unsafe.Pointer(&args.ldc))}}
		callFortran(&ca.call13) // products.call keeps a, b and c alive, ca the rest
	} else {
		l.sgemm(cblasRowMajor, cblasOp(transA), cblasOp(transB), int32(m), int32(n), int32(k),
			alpha, &a[0], int32(lda), &b[0], int32(ldb), beta, &c[0], int32(ldc))
	}
}

// cCall13 is one call of a C function taking 13 integer or pointer
// arguments (OpenBLAS's sgemm_): callFortran makes it.
type cCall13 struct {
	fn   uintptr
	args [13]uintptr
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
