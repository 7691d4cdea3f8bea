package blas

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"

	"gonum.org/v1/gonum/blas"

	"github.com/moetrain/moetrain/internal/tol"
)

// pureGoName is the kernel name reported when no library is in use.
const pureGoName = "gonum (pure Go)"

// LibraryEnv names the environment variable that chooses the library (see
// Options.Library for its values).
const LibraryEnv = "MOETRAIN_BLAS"

// oldLibraryEnv is the OpenBLAS path (or "none") of earlier releases, still
// read when LibraryEnv is not set, with a warning.
const oldLibraryEnv = "MOETRAIN_OPENBLAS"

// Options selects how Load finds and drives a BLAS library. The zero value
// means the defaults.
type Options struct {
	// Library chooses the float32 kernel: "auto" (the default) tries oneDNN,
	// then OpenBLAS, then falls back to pure Go; "onednn" or "openblas" tries
	// only that library at its usual paths; "none" is pure Go; anything else
	// is the path of a library file, oneDNN when its name contains "dnnl",
	// OpenBLAS otherwise. Empty means the LibraryEnv variable, or "auto".
	Library string
	// Threads is the number of the library's own threads per call. Zero
	// means the measured default (one thread per call, with Gemm splitting
	// large products over parallel.Workers goroutines; see
	// docs/BENCHMARKS.md, "BLAS"), or the library's own variable when the
	// user set it (OPENBLAS_NUM_THREADS, OMP_NUM_THREADS for oneDNN). A value
	// above 1 turns the Go-side split off and serialises calls, so the
	// library's own threads never compete with each other.
	Threads int
}

// Info describes the float32 GEMM kernel that Load installed.
type Info struct {
	Kernel   string   // e.g. "oneDNN 2.6.3 avx512_core_bf16", "OpenBLAS 0.3.21 SkylakeX" or "gonum (pure Go)"
	Library  string   // the file that was loaded; empty for pure Go
	Config   string   // openblas_get_config() (OpenBLAS only)
	CoreName string   // openblas_get_corename() (OpenBLAS only)
	Threads  int      // the library's threads per call (0 for pure Go)
	Split    int      // goroutines Gemm splits one large product over (1: no split)
	Fallback string   // why pure Go is in use; empty when a library is active
	Warnings []string // things the user should see (wrong results, a detected core that differs from the one asked for)
	// SlowCore, when not empty, says that OPENBLAS_CORETYPE from the
	// environment holds OpenBLAS to an older kernel than this CPU runs
	// (see slowCoreNote); compute commands print it, and String ends with it.
	SlowCore string
}

// FallbackWarning is the warning every compute command prints first when
// the pure-Go kernel is active (empty when a library is): matrix products
// are then about 8× slower (dense-small trained at 377 instead of 3,097
// tokens/s with OpenBLAS, docs/BENCHMARKS.md) and there is no MFU.
func (i Info) FallbackWarning() string {
	if i.Library != "" {
		return ""
	}
	return "WARNING: no BLAS library is in use (" + i.Fallback + ").\n" +
		"WARNING: matrix products run in pure Go, about 8× slower (training, eval and generation alike); no MFU is reported.\n" +
		"WARNING: install oneDNN or OpenBLAS (Debian/Ubuntu: apt install libdnnl2 libopenblas0), or set " + LibraryEnv + " to a library's path."
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

// libDir is where Debian puts this architecture's shared libraries ("" for
// an architecture without a known triplet).
func libDir() string {
	triplet := map[string]string{"amd64": "x86_64-linux-gnu", "arm64": "aarch64-linux-gnu",
		"ppc64le": "powerpc64le-linux-gnu", "riscv64": "riscv64-linux-gnu"}[runtime.GOARCH]
	if triplet == "" {
		return ""
	}
	return "/usr/lib/" + triplet + "/"
}

var (
	loadMu  sync.Mutex
	current = Info{Kernel: pureGoName, Fallback: "blas.Init not called"}
)

// Init loads a library with the default options; see Load.
func Init() (Info, error) { return Load(Options{}) }

// Current returns the Info of the last Load (pure Go before any).
func Current() Info {
	loadMu.Lock()
	defer loadMu.Unlock()
	return current
}

// Load installs the float32 GEMM kernel Options.Library asks for: by
// default oneDNN (its sgemm picks this CPU's widest vectors by itself; on
// the AVX-512 machine of docs/BENCHMARKS.md, round 9, its products at the
// science shapes ran 1.45-2.1× faster than those of the OpenBLAS kernel the
// environment held it to, BenchmarkGemmLibraries), else OpenBLAS, both loaded through purego (no cgo) and checked on a
// few products against gonum. A missing library or a wrong result is not
// an error: the next one is tried, then pure Go is installed and
// Info.Fallback says why. Load returns an error only for invalid options.
//
// Load must not run while products are running. The environment only
// matters the first time a library is opened in a process.
func Load(opts Options) (Info, error) {
	if opts.Threads < 0 {
		return Info{}, fmt.Errorf("blas: threads %d: must be >= 0", opts.Threads)
	}
	loadMu.Lock()
	defer loadMu.Unlock()
	k, info := load(opts)
	if k == nil {
		k = pureGo
	}
	SetSgemm(k, info.Kernel)
	current = info
	return info, nil
}

// loader tries one library at the given paths: the kernel and its Info,
// or why it cannot be used (Info still carrying any warnings).
type loader func(paths []string, opts Options) (Sgemmer, Info, error)

func load(opts Options) (Sgemmer, Info) {
	choice := opts.Library
	if choice == "" {
		choice = os.Getenv(LibraryEnv)
	}
	var warnings []string
	if old := os.Getenv(oldLibraryEnv); old != "" && choice == "" {
		// The variable of the OpenBLAS-only releases: a path or "none",
		// which mean the same under LibraryEnv.
		choice = old
		warnings = append(warnings, oldLibraryEnv+" is read as "+LibraryEnv+" (it will be dropped): set "+LibraryEnv+"="+old+" instead")
	}
	type try struct {
		load  loader
		paths []string
	}
	oneDNN, openBLAS := try{loadOneDNN, oneDNNPaths()}, try{loadOpenBLAS, openBLASPaths()}
	var tries []try
	switch choice {
	case "none":
		return nil, Info{Kernel: pureGoName, Fallback: LibraryEnv + "=none", Warnings: warnings}
	case "", "auto":
		tries = []try{oneDNN, openBLAS}
	case "onednn":
		tries = []try{oneDNN}
	case "openblas":
		tries = []try{openBLAS}
	default:
		if strings.Contains(filepath.Base(choice), "dnnl") {
			tries = []try{{loadOneDNN, []string{choice}}}
		} else {
			tries = []try{{loadOpenBLAS, []string{choice}}}
		}
	}
	var errs []error
	for _, t := range tries {
		k, info, err := t.load(t.paths, opts)
		warnings = append(warnings, info.Warnings...)
		if err == nil {
			info.Warnings = warnings
			return k, info
		}
		errs = append(errs, err)
	}
	return nil, Info{Kernel: pureGoName, Fallback: errors.Join(errs...).Error(), Warnings: warnings}
}

// openFirst opens the first of paths that open accepts; the error names
// every path tried.
func openFirst[L any](name string, paths []string, open func(string) (L, error)) (lib L, path string, err error) {
	var errs []error
	for _, p := range paths {
		l, err := open(p)
		if err == nil {
			return l, p, nil
		}
		errs = append(errs, err)
	}
	return lib, "", fmt.Errorf("%s not found: %w", name, errors.Join(errs...))
}

// stored is the shape in memory of op(X) [rows, cols]: X itself is
// [cols, rows] when transposed.
func stored(trans bool, rows, cols int) (int, int) {
	if trans {
		return cols, rows
	}
	return rows, cols
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

// checkSgemm panics (an internal invariant, like gonum) when a slice or a
// leading dimension cannot hold the matrix it describes: C code would read
// or write past the Go slice instead of failing.
func checkSgemm(transA, transB bool, m, n, k int, a []float32, lda int, b []float32, ldb int, c []float32, ldc int) {
	if m < 0 || n < 0 || k < 0 {
		panic(fmt.Sprintf("blas: negative size m=%d n=%d k=%d", m, n, k))
	}
	if m > 1<<31-1 || n > 1<<31-1 || k > 1<<31-1 || lda > 1<<31-1 || ldb > 1<<31-1 || ldc > 1<<31-1 {
		panic("blas: size exceeds int32 (LP64 OpenBLAS)")
	}
	rowsA, colsA := stored(transA, m, k)
	rowsB, colsB := stored(transB, k, n)
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
func selfCheck(l Sgemmer) error {
	shapes := [][3]int{{37, 29, 41}, {192, 160, 144}, {24, 300, 320}}
	for si, s := range shapes {
		m, n, k := s[0], s[1], s[2]
		for ti := range 4 {
			tA, tB := ti&1 == 1, ti&2 == 2
			got, want := checkProduct(l, tA, tB, m, n, k, uint64(si*4+ti+1))
			if err := tol.CheckScaled(fmt.Sprintf("self-check %d×%d×%d tA=%v tB=%v", m, n, k, tA, tB), got, want, 1e-4); err != nil {
				return fmt.Errorf("the library disagrees with gonum: %w", err)
			}
		}
	}
	return nil
}

// checkProduct runs one product through l and gonum on the same
// pseudo-random inputs (padded leading dimensions, alpha and beta not 0/1).
func checkProduct(l Sgemmer, tA, tB bool, m, n, k int, seed uint64) (got, want []float64) {
	rowsA, colsA := stored(tA, m, k)
	rowsB, colsB := stored(tB, k, n)
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
