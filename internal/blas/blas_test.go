package blas

import (
	"fmt"
	"math"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moetrain/moetrain/internal/cputime"
	"github.com/moetrain/moetrain/internal/parallel"
	"github.com/moetrain/moetrain/internal/tol"
)

// Tests here swap the package-wide kernel, so none of them calls t.Parallel.

type gemmCase struct {
	tA, tB           bool
	m, n, k          int
	padA, padB, padC int // extra columns beyond the packed leading dimension
	alpha, beta      float64
}

func gemmCases() []gemmCase {
	var cs []gemmCase
	shapes := [][3]int{{1, 1, 1}, {3, 5, 7}, {17, 1, 9}, {1, 23, 4}, {33, 47, 65}, {64, 16, 1}, {5, 6, 0}}
	for _, s := range shapes {
		for ti := range 4 {
			cs = append(cs,
				gemmCase{tA: ti&1 == 1, tB: ti&2 == 2, m: s[0], n: s[1], k: s[2], alpha: 1, beta: 0},
				gemmCase{tA: ti&1 == 1, tB: ti&2 == 2, m: s[0], n: s[1], k: s[2], padA: 3, padB: 1, padC: 2, alpha: -0.75, beta: 0.5},
			)
		}
	}
	return cs
}

// splitCases is gemmCases plus shapes that take the row split and the
// column split.
func splitCases() []gemmCase {
	cases := gemmCases()
	for ti := range 4 {
		cases = append(cases,
			gemmCase{tA: ti&1 == 1, tB: ti&2 == 2, m: 100, n: 20, k: 30, padA: 2, padB: 3, padC: 1, alpha: 0.5, beta: 2},
			gemmCase{tA: ti&1 == 1, tB: ti&2 == 2, m: 10, n: 110, k: 30, padA: 2, padB: 3, padC: 1, alpha: 0.5, beta: 2})
	}
	return cases
}

func (c gemmCase) String() string {
	return fmt.Sprintf("tA=%v,tB=%v,%dx%dx%d,pad=%d/%d/%d,alpha=%g,beta=%g", c.tA, c.tB, c.m, c.n, c.k, c.padA, c.padB, c.padC, c.alpha, c.beta)
}

// naiveGemm is the reference: a float64 triple loop over the definition.
func naiveGemm[F Float](tA, tB bool, m, n, k int, alpha float64, a []F, lda int, b []F, ldb int, beta float64, c []F, ldc int) []float64 {
	out := make([]float64, 0, m*n)
	for i := range m {
		for j := range n {
			var s float64
			for p := range k {
				var av, bv F
				if tA {
					av = a[p*lda+i]
				} else {
					av = a[i*lda+p]
				}
				if tB {
					bv = b[j*ldb+p]
				} else {
					bv = b[p*ldb+j]
				}
				s += float64(av) * float64(bv)
			}
			out = append(out, alpha*s+beta*float64(c[i*ldc+j]))
		}
	}
	return out
}

// runCase checks Gemm on one case against the naive loop. rel bounds
// max|got-want| relative to max|want|. It also checks that the padding
// columns of C are left untouched.
func runCase[F Float](t *testing.T, c gemmCase, rel float64) {
	t.Helper()
	runCaseWith(t, c, rel, Gemm[F])
}

func runCaseWith[F Float](t *testing.T, c gemmCase, rel float64, gemm func(transA, transB bool, m, n, k int, alpha F, a []F, lda int, b []F, ldb int, beta F, c []F, ldc int)) {
	t.Helper()
	rowsA, colsA := stored(c.tA, c.m, c.k)
	rowsB, colsB := stored(c.tB, c.k, c.n)
	lda, ldb, ldc := max(1, colsA+c.padA), max(1, colsB+c.padB), c.n+c.padC
	a, b, cc := convert[F](lcg(11, rowsA*lda)), convert[F](lcg(12, rowsB*ldb)), convert[F](lcg(13, c.m*ldc))
	want := naiveGemm(c.tA, c.tB, c.m, c.n, c.k, c.alpha, a, lda, b, ldb, c.beta, cc, ldc)
	orig := append([]F(nil), cc...)
	gemm(c.tA, c.tB, c.m, c.n, c.k, F(c.alpha), a, lda, b, ldb, F(c.beta), cc, ldc)
	got := make([]float64, 0, c.m*c.n)
	for i := range c.m {
		for j := range ldc {
			if j < c.n {
				got = append(got, float64(cc[i*ldc+j]))
			} else if cc[i*ldc+j] != orig[i*ldc+j] {
				t.Fatalf("%v: padding C[%d,%d] changed from %g to %g", c, i, j, orig[i*ldc+j], cc[i*ldc+j])
			}
		}
	}
	if err := tol.CheckScaled(c.String(), got, want, rel); err != nil {
		t.Error(err)
	}
}

func convert[F Float](v []float32) []F {
	out := make([]F, len(v))
	for i, x := range v {
		out[i] = F(x)
	}
	return out
}

// withKernel runs fn with k installed as the float32 kernel, then restores
// the previous one.
func withKernel(k Sgemmer, name string, fn func()) {
	prevK, prevName := sgemm, kernel
	SetSgemm(k, name)
	defer SetSgemm(prevK, prevName)
	fn()
}

// useLibrary installs library ("openblas" or "onednn") as the float32
// kernel for the rest of the test, then restores the default. It skips the
// test when the library is not installed, except under CI=true, where the
// CI script installs both.
func useLibrary(t testing.TB, library string) Sgemmer {
	t.Helper()
	info, err := Load(Options{Library: library})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { Init() }) //nolint:errcheck // Init only fails on bad options
	if info.Library == "" && strings.Contains(info.Fallback, "not found") && len(info.Warnings) == 0 {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s not installed under CI=true (Debian: apt-get install libopenblas0 libdnnl2): %s", library, info)
		}
		t.Skipf("%s not installed: %s", library, info)
	}
	if info.Library == "" || len(info.Warnings) > 0 {
		t.Fatalf("%s found but not usable: %s", library, info)
	}
	return sgemm
}

// loaded returns the OpenBLAS kernel, installed (see useLibrary).
func loaded(t testing.TB) *openBLAS {
	t.Helper()
	return useLibrary(t, "openblas").(*openBLAS)
}

// loadedOneDNN returns the oneDNN kernel, installed (see useLibrary).
func loadedOneDNN(t testing.TB) *oneDNN {
	t.Helper()
	return useLibrary(t, "onednn").(*oneDNN)
}

// libraries are the library kernels the split tests run on, by name.
var libraries = []string{"openblas", "onednn"}

// splitsOf returns the Go-side split of the kernel useLibrary installed.
func splitsOf(k Sgemmer) *products {
	switch l := k.(type) {
	case *openBLAS:
		return &l.products
	case *oneDNN:
		return &l.products
	}
	panic(fmt.Sprintf("no products in %T", k))
}

func TestGemmFloat32OpenBLAS(t *testing.T) {
	l := loaded(t)
	defer l.configure(1, parallel.Workers)
	defer func(f int) { l.minSplitFlops = f }(l.minSplitFlops)
	designs := []struct {
		name           string
		threads, split int
		minSplitFlops  int
	}{
		{"1thread", 1, 1, 1 << 22},
		{"2threads", 2, 0, 1 << 22},
		// A tiny split threshold sends every case with room for two
		// 16-row (or column) parts through the split path.
		{"split", 1, 2, 1},
		{"split3", 1, 3, 1},
	}
	for _, d := range designs {
		t.Run(d.name, func(t *testing.T) {
			l.configure(d.threads, d.split)
			l.minSplitFlops = d.minSplitFlops
			for _, c := range splitCases() {
				runCase[float32](t, c, 2e-6)
			}
		})
	}
}

// splitEverything installs library and makes it split every product in
// two for the rest of the test.
func splitEverything(t *testing.T, library string) {
	l := splitsOf(useLibrary(t, library))
	f, split := l.minSplitFlops, l.split
	t.Cleanup(func() { l.setSplit(split); l.minSplitFlops = f })
	l.setSplit(2)
	l.minSplitFlops = 1
}

// TestGemmSerial: with a split threshold that would cut every product,
// GemmSerial still computes each case correctly (one call, no split), for
// each library, pure Go and float64.
func TestGemmSerial(t *testing.T) {
	cases := append(gemmCases(), gemmCase{m: 100, n: 20, k: 30, padA: 2, padB: 3, padC: 1, alpha: 0.5, beta: 2})
	for _, lib := range libraries {
		t.Run(lib, func(t *testing.T) {
			splitEverything(t, lib)
			for _, c := range cases {
				runCaseWith(t, c, 2e-6, GemmSerial[float32])
				runCaseWith(t, c, 1e-12, GemmSerial[float64])
			}
		})
	}
	withKernel(pureGo, pureGoName, func() {
		for _, c := range cases {
			runCaseWith(t, c, 2e-6, GemmSerial[float32])
		}
	})
}

// TestGemmFloat32OneDNN runs every case through oneDNN, whole and split
// over two and three parts, and checks that a product's bits do not depend
// on where its operands sit in memory (oneDNN's kernels are generated for
// this CPU; a resumed run must compute what an uninterrupted one did).
func TestGemmFloat32OneDNN(t *testing.T) {
	l := loadedOneDNN(t)
	defer func(f, s int) { l.minSplitFlops = f; l.setSplit(s) }(l.minSplitFlops, l.split)
	for _, d := range []struct {
		name         string
		split, flops int
	}{{"whole", 1, 1 << 22}, {"split", 2, 1}, {"split3", 3, 1}} {
		t.Run(d.name, func(t *testing.T) {
			l.setSplit(d.split)
			l.minSplitFlops = d.flops
			for _, c := range splitCases() {
				runCase[float32](t, c, 2e-6)
			}
		})
	}
	// The same values at other offsets (in floats) from 64-byte alignment.
	const m, n, k = 228, 172, 128
	a, b := lcg(31, m*k), lcg(32, n*k)
	ref := make([]float32, m*n)
	MatMul(false, true, m, n, k, a, b, ref, false)
	for off := 1; off < 5; off++ {
		ao, bo := make([]float32, off+m*k)[off:], make([]float32, 2*off+n*k)[2*off:]
		copy(ao, a)
		copy(bo, b)
		c := make([]float32, 3*off+m*n)[3*off:]
		MatMul(false, true, m, n, k, ao, bo, c, false)
		for i := range c {
			if math.Float32bits(c[i]) != math.Float32bits(ref[i]) {
				t.Fatalf("offset %d: C[%d] = %g, %g at offset 0", off, i, c[i], ref[i])
			}
		}
	}
}

// TestSplitIsDeterministic runs one split product serially and from several
// goroutines at once (as the model's row loops do); every result must be
// bit-identical.
func TestSplitIsDeterministic(t *testing.T) {
	for _, lib := range libraries {
		t.Run(lib, func(t *testing.T) { testSplitIsDeterministic(t, lib) })
	}
}

func testSplitIsDeterministic(t *testing.T, lib string) {
	splitEverything(t, lib)
	const m, n, k = 96, 80, 70
	a, b := lcg(21, m*k), lcg(22, k*n)
	ref := make([]float32, m*n)
	MatMul(false, false, m, n, k, a, b, ref, false)
	outs := make([][]float32, 6)
	var wg sync.WaitGroup
	for g := range outs {
		outs[g] = make([]float32, m*n)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 5 {
				MatMul(false, false, m, n, k, a, b, outs[g], false)
			}
		}()
	}
	wg.Wait()
	for g, o := range outs {
		for i := range o {
			if math.Float32bits(o[i]) != math.Float32bits(ref[i]) {
				t.Fatalf("goroutine %d: C[%d] = %g, serial run gave %g", g, i, o[i], ref[i])
			}
		}
	}
}

// Init installs oneDNN when it is there, else OpenBLAS, and reports it.
func TestInitReportsKernel(t *testing.T) {
	info, err := Init()
	if err != nil {
		t.Fatal(err)
	}
	if info.Kernel != Kernel() {
		t.Errorf("Info.Kernel %q, Kernel() %q: want the same", info.Kernel, Kernel())
	}
	if len(info.Warnings) > 0 {
		t.Errorf("loaded with warnings %q", info.Warnings)
	}
	switch sgemm.(type) {
	case *oneDNN:
		if !strings.HasPrefix(info.Kernel, "oneDNN ") {
			t.Errorf("oneDNN installed as %q", info.Kernel)
		}
	case *openBLAS:
		if _, err := os.Stat(libDir() + "libdnnl.so.2"); err == nil {
			t.Errorf("OpenBLAS (%s) chosen with oneDNN installed", info)
		}
	default:
		if os.Getenv("CI") == "true" {
			t.Errorf("no library under CI=true: %s", info)
		}
	}
}

// oneDNN reports its version, the instruction set it runs and one thread
// per call, split over the workers.
func TestOneDNNReportsKernel(t *testing.T) {
	l := loadedOneDNN(t)
	info := Current()
	if info.Threads != 1 || info.Split != parallel.Workers || int(l.maxThreads()) != 1 {
		t.Errorf("threads %d (omp_get_max_threads %d), split %d; want 1, 1, %d", info.Threads, l.maxThreads(), info.Split, parallel.Workers)
	}
	if strings.Contains(info.Kernel, "isa 0x") || !strings.HasPrefix(info.Kernel, "oneDNN 2.") && !strings.HasPrefix(info.Kernel, "oneDNN 3.") {
		t.Errorf("kernel %q: want oneDNN's version and a named instruction set", info.Kernel)
	}
}

// OpenBLAS runs the core this CPU and the environment allow.
func TestOpenBLASReportsCore(t *testing.T) {
	l := loaded(t)
	info := Current()
	if !strings.HasPrefix(info.Kernel, "OpenBLAS") {
		t.Errorf("Info.Kernel %q: want OpenBLAS", info.Kernel)
	}
	// The core may be below coreType()'s: the user's OPENBLAS_CORETYPE wins
	// (this AMD EPYC's environment sets Haswell; unset, OpenBLAS 0.3.21 runs
	// SkylakeX here), but it must never fall back to the generic Prescott
	// kernel, which is ~5x slower.
	if want := coreType(); want != "" {
		ok := map[string][]string{"SkylakeX": {"SkylakeX", "Haswell", "Zen"}, "Haswell": {"Haswell", "Zen"}, "Sandybridge": {"Sandybridge"}}[want]
		found := false
		for _, c := range ok {
			found = found || strings.EqualFold(info.CoreName, c)
		}
		if !found {
			t.Errorf("core %q, want one of %q for this CPU", info.CoreName, ok)
		}
	}
	if got := int(l.getNumThreads()); got != info.Threads {
		t.Errorf("openblas_get_num_threads() = %d, Info.Threads = %d", got, info.Threads)
	}
}

func TestLoadFallsBackWhenLibraryMissing(t *testing.T) {
	defer Init() //nolint:errcheck // restores the default kernel for later tests
	info, err := Load(Options{Library: "/nonexistent/libopenblas.so.0"})
	if err != nil {
		t.Fatalf("Load with a bad path: %v, want fallback without error", err)
	}
	if info.Kernel != pureGoName || Kernel() != pureGoName || info.Library != "" {
		t.Errorf("after a bad path: Info.Kernel %q, Kernel() %q, Library %q; want %q", info.Kernel, Kernel(), info.Library, pureGoName)
	}
	if !strings.Contains(info.Fallback, "/nonexistent/libopenblas.so.0") {
		t.Errorf("Fallback %q does not name the path tried", info.Fallback)
	}
	if sgemm != Sgemmer(pureGo) {
		t.Errorf("%T still installed after fallback", sgemm)
	}
	runCase[float32](t, gemmCase{m: 9, n: 7, k: 5, padA: 1, alpha: 1, beta: 1}, 2e-6)
}

// Options.Library and MOETRAIN_BLAS pick the library by name or path.
func TestLoadChoosesLibrary(t *testing.T) {
	useLibrary(t, "openblas") // both installed, or skipped
	openblasPath := Current().Library
	useLibrary(t, "onednn")
	dnnlPath := Current().Library
	for _, tc := range []struct{ option, env, want string }{
		{"openblas", "", "OpenBLAS"},
		{"onednn", "", "oneDNN"},
		{"auto", "openblas", "oneDNN"}, // the option wins over the variable
		{"", "", "oneDNN"},
		{"", "auto", "oneDNN"},
		{"", "openblas", "OpenBLAS"},
		{openblasPath, "", "OpenBLAS"},
		{"", dnnlPath, "oneDNN"},
		{"", "none", pureGoName},
	} {
		t.Setenv(LibraryEnv, tc.env)
		info, err := Load(Options{Library: tc.option})
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(info.Kernel, tc.want) || Kernel() != info.Kernel {
			t.Errorf("Library %q, %s=%q: kernel %q (installed %q), want %s", tc.option, LibraryEnv, tc.env, info.Kernel, Kernel(), tc.want)
		}
	}
}

// The variable of earlier releases still works, with a warning, unless
// MOETRAIN_BLAS is set.
func TestOldLibraryVariable(t *testing.T) {
	defer Init() //nolint:errcheck // restores the default kernel
	t.Setenv(LibraryEnv, "")
	t.Setenv(oldLibraryEnv, "none")
	info, _ := Load(Options{})
	if info.Library != "" || len(info.Warnings) != 1 || !strings.Contains(info.Warnings[0], LibraryEnv+"=none") {
		t.Errorf("%s=none: %s (warnings %q), want pure Go and a warning naming %s=none", oldLibraryEnv, info, info.Warnings, LibraryEnv)
	}
	t.Setenv(LibraryEnv, "auto")
	if info, _ := Load(Options{}); len(info.Warnings) != 0 || info.Fallback == LibraryEnv+"=none" {
		t.Errorf("with %s=auto the old variable is still read: %s", LibraryEnv, info)
	}
}

func TestLoadRejectsNegativeThreads(t *testing.T) {
	if _, err := Load(Options{Threads: -1}); err == nil {
		t.Error("Load(Threads: -1) returned no error")
	}
}

func TestSelfCheckCatchesWrongKernel(t *testing.T) {
	for _, lib := range libraries {
		t.Run(lib, func(t *testing.T) {
			l := splitsOf(useLibrary(t, lib))
			bad := newProducts(func(args *callArgs, tA, tB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
				l.run(args, tA, tB, m, n, k, alpha*1.001, a, lda, b, ldb, beta, c, ldc) // 0.1% off
			})
			if err := selfCheck(&bad); err == nil {
				t.Error("selfCheck accepted a kernel 0.1% off")
			}
			if err := selfCheck(l); err != nil {
				t.Errorf("selfCheck rejected the real kernel: %v", err)
			}
		})
	}
}

func TestCheckSgemmPanicsOnShortSlices(t *testing.T) {
	l := loaded(t)
	tests := []struct {
		name          string
		a, b, c       int // slice lengths for a 4×3 · 3×5 product
		lda, ldb, ldc int
	}{
		{"short a", 11, 15, 20, 3, 5, 5},
		{"short b", 12, 14, 20, 3, 5, 5},
		{"short c", 12, 15, 19, 3, 5, 5},
		{"small lda", 12, 15, 20, 2, 5, 5},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Error("no panic")
				}
			}()
			l.Sgemm('N', 'N', 4, 5, 3, 1, make([]float32, tc.a), tc.lda, make([]float32, tc.b), tc.ldb, 0, make([]float32, tc.c), tc.ldc)
		})
	}
}

// Benchmarks: the model's GEMM shapes (d=256, F=1024, 2048 tokens, vocab
// 8192, fine-grained experts of 256) under each threading design.
type benchShape struct {
	name    string
	tA, tB  bool
	m, n, k int
}

var benchShapes = []benchShape{
	{"up_2048x256x1024", false, false, 2048, 1024, 256},
	{"down_2048x1024x256", false, false, 2048, 256, 1024},
	{"lmhead_2048x256x8192", false, false, 2048, 8192, 256},
	{"expert_228x256x256", false, false, 228, 256, 256},
	{"dW_AT_256x2048x1024", true, false, 256, 1024, 2048},
	{"dX_BT_2048x1024x256", false, true, 2048, 256, 1024},
}

var benchDesigns = []struct {
	name           string
	threads, split int
}{
	{"omp2", 2, 0},   // design 1: OpenBLAS's own 2 threads, calls serialised
	{"split2", 1, 2}, // design 2: 1 OpenBLAS thread, Gemm splits over 2 goroutines
}

func BenchmarkGemm(b *testing.B) {
	l := loaded(b)
	defer l.configure(1, parallel.Workers)
	for _, s := range benchShapes {
		for _, d := range benchDesigns {
			b.Run(s.name+"/"+d.name, func(b *testing.B) {
				l.configure(d.threads, d.split)
				benchGemm(b, s, 1)
			})
		}
		if s.m*s.n*s.k <= 1<<24 {
			b.Run(s.name+"/gonum", func(b *testing.B) {
				withKernel(pureGo, pureGoName, func() { benchGemm(b, s, 1) })
			})
		}
	}
}

// sciShapes are the GEMMs of the science yardsticks (configs/bench/sci-*.yaml:
// d = 128, 2048 tokens, experts of width 86 with ~228 tokens each, their
// gate and up products stacked; GShard's twin, 16 experts of width 344 with
// ~256 tokens each) and of the regime (d = 64, width 43), with
// a 512³ product for the kernel's rate on a large one.
var sciShapes = []benchShape{
	{"square_512", false, false, 512, 512, 512},
	{"linear_2048x128x128", false, true, 2048, 128, 128},
	{"linear_dW_128x2048x128", true, false, 128, 128, 2048},
	{"expert_gu_228x128x172", false, true, 228, 172, 128},
	{"expert_down_228x86x128", false, true, 228, 128, 86},
	{"expert_dW_172x228x128", true, false, 172, 128, 228},
	{"expert_dd_228x128x86", false, false, 228, 86, 128},
	{"expert_dWd_128x228x86", true, false, 128, 86, 228},
	{"expert_dx_228x172x128", false, false, 228, 128, 172},
	{"gshard_expert_gu_256x128x688", false, true, 256, 688, 128},
	{"gshard_expert_down_256x344x128", false, true, 256, 128, 344},
	{"gshard_expert_dd_256x128x344", false, false, 256, 344, 128},
	{"gshard_expert_dWd_128x256x344", true, false, 128, 344, 256},
	{"gshard_expert_dWgu_688x256x128", true, false, 688, 128, 256},
	{"gshard_expert_dx_256x688x128", false, false, 256, 128, 688},
	{"regime_expert_gu_228x64x86", false, true, 228, 86, 64},
	{"regime_linear_2048x64x64", false, true, 2048, 64, 64},
	{"attention_64x32x128", false, true, 64, 128, 32},
	{"router_2048x128x63", false, false, 2048, 63, 128},
	{"router_padded_2048x128x64", false, false, 2048, 64, 128},
	{"gshard_router_2048x128x16", false, false, 2048, 16, 128},
}

// BenchmarkGemmSci times the science shapes as the MoE layer runs its
// expert products: one library call each on one goroutine (run with
// GOMAXPROCS=1 to match the science runs), reporting GFLOP/s.
func BenchmarkGemmSci(b *testing.B) {
	l := loaded(b)
	defer l.configure(1, parallel.Workers)
	l.configure(1, 1)
	for _, s := range sciShapes {
		b.Run(s.name, func(b *testing.B) { benchGemm(b, s, 1) })
	}
}

// BenchmarkGemmLibraries times the science shapes through each library in
// turn, one product each per round, as one library call on the calling
// goroutine (as the MoE layer runs its expert products), and reports each
// library's best time as GFLOP/s: interleaved, so load that drifts hurts
// both alike. Run with a fixed count, e.g. -benchtime=200x.
func BenchmarkGemmLibraries(b *testing.B) {
	kernels := make([]*products, len(libraries))
	for i, lib := range libraries {
		kernels[i] = splitsOf(useLibrary(b, lib))
		kernels[i].setSplit(1) // Init in useLibrary's clean-up restores the split
	}
	for _, s := range sciShapes {
		b.Run(s.name, func(b *testing.B) {
			run := gemmRunner(s, 1)
			best := make([]time.Duration, len(kernels))
			for i := range best {
				best[i] = time.Hour
			}
			for b.Loop() {
				for i, k := range kernels {
					SetSgemm(k, libraries[i])
					t0 := time.Now()
					run()
					best[i] = min(best[i], time.Since(t0))
				}
			}
			for i, lib := range libraries {
				b.ReportMetric(2*float64(s.m*s.n*s.k)/best[i].Seconds()/1e9, lib+"_GFLOP/s")
			}
		})
	}
}

// BenchmarkGemmConcurrent calls Gemm from parallel.For workers, as the MoE
// layer does for its experts: 16 expert products per iteration.
func BenchmarkGemmConcurrent(b *testing.B) {
	l := loaded(b)
	defer l.configure(1, parallel.Workers)
	for _, s := range []benchShape{benchShapes[3], {"expert_up_228x256x512", false, false, 228, 512, 256}} {
		for _, d := range benchDesigns {
			b.Run(s.name+"/"+d.name, func(b *testing.B) {
				l.configure(d.threads, d.split)
				benchGemm(b, s, 16)
			})
		}
	}
}

func benchGemm(b *testing.B, s benchShape, products int) {
	run := gemmRunner(s, products)
	run() // warm up: page faults, OpenBLAS buffers
	iters := 0
	for b.Loop() {
		run()
		iters++
	}
	b.ReportMetric(2*float64(s.m*s.n*s.k*products)*float64(iters)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
}

// gemmRunner allocates inputs for products copies of shape s and returns a
// function computing them all (through parallel.For when more than one).
func gemmRunner(s benchShape, products int) func() {
	rowsA, colsA := stored(s.tA, s.m, s.k)
	rowsB, colsB := stored(s.tB, s.k, s.n)
	as := make([][]float32, products)
	bs := make([][]float32, products)
	cs := make([][]float32, products)
	for i := range products {
		as[i], bs[i], cs[i] = lcg(uint64(3*i+1), rowsA*colsA), lcg(uint64(3*i+2), rowsB*colsB), make([]float32, s.m*s.n)
	}
	return func() {
		if products == 1 {
			MatMul(s.tA, s.tB, s.m, s.n, s.k, as[0], bs[0], cs[0], false)
			return
		}
		parallel.For(products, 1, func(lo, hi int) {
			for i := lo; i < hi; i++ {
				MatMul(s.tA, s.tB, s.m, s.n, s.k, as[i], bs[i], cs[i], false)
			}
		})
	}
}

// forwardShapes are forward products x·wᵀ of the science and bench models,
// each at the rows one call gets: 32-row blocks of an evaluation SwiGLU,
// an expert's tokens (sciShapes' rows), or half of 2048 rows where a
// product is split over two workers. Names are m×k×n, as in sciShapes.
var forwardShapes = append([]benchShape{
	{"swiglu_eval_gu_32x128x688", false, true, 32, 688, 128},
	{"swiglu_eval_down_32x344x128", false, true, 32, 128, 344},
}, append(sciShapesNamed("expert_gu_228x128x172", "expert_down_228x86x128", "gshard_expert_gu_256x128x688", "gshard_expert_down_256x344x128"),
	benchShape{"linear_1024x128x128", false, true, 1024, 128, 128},
	benchShape{"ffn_gu_1024x128x688", false, true, 1024, 688, 128},
	benchShape{"ffn_down_1024x344x128", false, true, 1024, 128, 344},
	benchShape{"bench_linear_1024x256x256", false, true, 1024, 256, 256},
	benchShape{"bench_ffn_gu_1024x256x2048", false, true, 1024, 2048, 256},
	benchShape{"bench_ffn_down_1024x1024x256", false, true, 1024, 256, 1024},
)...)

// sciShapesNamed returns the sciShapes of these names, in this order.
func sciShapesNamed(names ...string) []benchShape {
	var out []benchShape
	for _, name := range names {
		i := slices.IndexFunc(sciShapes, func(s benchShape) bool { return s.name == name })
		if i < 0 {
			panic("no science shape " + name)
		}
		out = append(out, sciShapes[i])
	}
	return out
}

// BenchmarkRightOperandLayout times each forward product two ways on one
// goroutine, alternated: reading the weights [n, k] transposed (as stored,
// PyTorch layout) and reading a [k, n] copy untransposed (what
// mulTransposed and the SwiGLU do in model/ops; the experts' products keep
// reading w transposed, docs/BENCHMARKS.md round 12 says why). It reports
// each one's best GFLOP/s and their ratio; the copy itself is not timed.
// Run with e.g.
//
//	go test ./internal/blas -run '^$' -bench RightOperandLayout -benchtime 200x
func BenchmarkRightOperandLayout(b *testing.B) {
	if _, err := Init(); err != nil {
		b.Fatal(err)
	}
	for _, s := range forwardShapes {
		b.Run(s.name, func(b *testing.B) {
			x, w, y := lcg(1, s.m*s.k), lcg(2, s.n*s.k), make([]float32, s.m*s.n)
			wt := make([]float32, s.k*s.n)
			for i := range s.n {
				for j := range s.k {
					wt[j*s.n+i] = w[i*s.k+j]
				}
			}
			best := [2]time.Duration{time.Hour, time.Hour}
			for b.Loop() {
				for i, run := range []func(){
					func() { MatMulSerial(false, true, s.m, s.n, s.k, x, w, y, false) },
					func() { MatMulSerial(false, false, s.m, s.n, s.k, x, wt, y, false) },
				} {
					t0 := time.Now()
					run()
					best[i] = min(best[i], time.Since(t0))
				}
			}
			flop := 2 * float64(s.m*s.n*s.k) / 1e9
			b.ReportMetric(flop/best[0].Seconds(), "transposed_GFLOP/s")
			b.ReportMetric(flop/best[1].Seconds(), "untransposed_GFLOP/s")
			b.ReportMetric(best[0].Seconds()/best[1].Seconds(), "speedup")
		})
	}
}

// BenchmarkConcurrentSerialProducts runs back-to-back serial products of
// one expert shape on one goroutine and on two at once, as the expert
// queue does, and reports the cores kept busy (process CPU time over wall
// time) and the wall time per call, with oneDNN called on the calls' own
// stacks (direct, the default) and through runtime.cgocall. Two goroutines
// should keep close to two cores busy at about the one-goroutine time per
// call. Through cgocall they fell short of it on a Zen 4, DeepSeekMoE's
// shorter products more than GShard's (docs/BENCHMARKS.md, rounds 12 and
// 13). Run with e.g.
//
//	go test ./internal/blas -run '^$' -bench ConcurrentSerialProducts -benchtime 10x
func BenchmarkConcurrentSerialProducts(b *testing.B) {
	if _, err := Init(); err != nil {
		b.Fatal(err)
	}
	for _, s := range sciShapesNamed("expert_gu_228x128x172", "gshard_expert_gu_256x128x688") {
		for _, run := range []struct {
			goroutines int
			direct     bool
		}{{1, true}, {2, true}, {1, false}, {2, false}} {
			path := map[bool]string{true: "direct", false: "cgocall"}[run.direct]
			b.Run(fmt.Sprintf("%s/%s/%d", s.name, path, run.goroutines), func(b *testing.B) {
				defer SetDirectCalls(true)
				SetDirectCalls(run.direct)
				calls := 2e9 / (2 * s.m * s.n * s.k) // about 20 ms of products per goroutine
				var x, w, y [2][]float32
				for g := range run.goroutines {
					x[g], w[g], y[g] = lcg(uint64(2*g+1), s.m*s.k), lcg(uint64(2*g+2), s.n*s.k), make([]float32, s.m*s.n)
				}
				var wall, cpu time.Duration
				for b.Loop() {
					c0, t0 := cputime.Process(), time.Now()
					var wg sync.WaitGroup
					for g := range run.goroutines {
						wg.Go(func() {
							for range calls {
								MatMulSerial(s.tA, s.tB, s.m, s.n, s.k, x[g], w[g], y[g], false)
							}
						})
					}
					wg.Wait()
					wall, cpu = wall+time.Since(t0), cpu+cputime.Process()-c0
				}
				b.ReportMetric(cpu.Seconds()/wall.Seconds(), "cores")
				b.ReportMetric(wall.Seconds()*1e6/float64(b.N*calls), "us/call")
			})
		}
	}
}

// BenchmarkColdExpertWeights runs an MoE layer's expert products (gate and
// up as one product against the stacked [wg; wu], then down, both reading
// their weights transposed) over every expert in turn on one goroutine, as
// an expert worker does, and reports GFLOP/s. "warm" multiplies by one
// expert's weights every time; the others by each expert's own, which a
// step finds in L3 or memory: read as they lie ("cold"), after a copy of
// [wg; wu] into a reused buffer ("stacked", as the expert loop does), and
// after a copy of wd_e too ("stacked+down"). Run with e.g.
//
//	go test ./internal/blas -run '^$' -bench ColdExpertWeights -benchtime 50x -count 2
func BenchmarkColdExpertWeights(b *testing.B) {
	if _, err := Init(); err != nil {
		b.Fatal(err)
	}
	const d = 128
	for _, sh := range []struct {
		name          string
		experts, m, w int
	}{{"deepseekmoe_63x228_w86", 63, 228, 86}, {"gshard_16x256_w344", 16, 256, 344}} {
		x := lcg(1, sh.m*d)
		wgu, wd := make([][]float32, sh.experts), make([][]float32, sh.experts)
		for e := range sh.experts {
			wgu[e], wd[e] = lcg(uint64(2*e+2), 2*sh.w*d), lcg(uint64(2*e+3), d*sh.w)
		}
		gu, y := make([]float32, sh.m*2*sh.w), make([]float32, sh.m*d)
		stacked, down := make([]float32, 2*sh.w*d), make([]float32, d*sh.w)
		for _, mode := range []string{"warm", "cold", "stacked", "stacked+down"} {
			b.Run(sh.name+"/"+mode, func(b *testing.B) {
				for b.Loop() {
					for e := range sh.experts {
						if mode == "warm" {
							e = 0
						}
						a, c := wgu[e], wd[e]
						if mode == "stacked" || mode == "stacked+down" {
							copy(stacked, a)
							a = stacked
						}
						if mode == "stacked+down" {
							copy(down, c)
							c = down
						}
						MatMulSerial(false, true, sh.m, 2*sh.w, d, x, a, gu, false)
						MatMulSerial(false, true, sh.m, d, sh.w, gu[:sh.m*sh.w], c, y, false)
					}
				}
				flops := float64(b.N*sh.experts) * 2 * float64(sh.m*3*sh.w*d)
				b.ReportMetric(flops/b.Elapsed().Seconds()/1e9, "GFLOP/s")
			})
		}
	}
}

func BenchmarkPeakGFLOPS(b *testing.B) {
	info, _ := Init()
	b.Logf("kernel: %s", info)
	for b.Loop() {
		b.ReportMetric(PeakGFLOPS(), "GFLOP/s")
	}
}

// BenchmarkGemmDesigns times the threading designs interleaved, one product
// each in turn, and reports each design's best time as GFLOP/s: on a machine
// shared with other jobs, best-of interleaved runs is the fair comparison.
// Run with a fixed count, e.g. -benchtime=30x.
func BenchmarkGemmDesigns(b *testing.B) {
	l := loaded(b)
	defer l.configure(1, parallel.Workers)
	defer func(r int) { l.rowBias = r }(l.rowBias)
	designs := []struct {
		name           string
		threads, split int
		rowBias        int
	}{
		{"omp2", 2, 0, 1},
		{"split2", 1, 2, 1},           // the default: split the longer side of C
		{"split2rows", 1, 2, 1 << 20}, // rows unless m is too small for two parts
	}
	shapes := append(benchShapes[:len(benchShapes):len(benchShapes)],
		benchShape{"concurrent16_expert_228x256x512", false, false, 228, 512, 256})
	for _, s := range shapes {
		b.Run(s.name, func(b *testing.B) {
			products := 1
			if strings.HasPrefix(s.name, "concurrent16") {
				products = 16
			}
			runs := make([]func(), len(designs))
			for i := range designs {
				runs[i] = gemmRunner(s, products)
			}
			best := make([]time.Duration, len(designs))
			for i := range best {
				best[i] = time.Hour
			}
			for b.Loop() {
				for i, d := range designs {
					l.configure(d.threads, d.split)
					l.rowBias = d.rowBias
					t0 := time.Now()
					runs[i]()
					best[i] = min(best[i], time.Since(t0))
				}
			}
			for i, d := range designs {
				b.ReportMetric(2*float64(s.m*s.n*s.k*products)/best[i].Seconds()/1e9, d.name+"_GFLOP/s")
			}
		})
	}
}

func TestSetDefaultEnvRespectsUserValues(t *testing.T) {
	t.Setenv("OPENBLAS_THREAD_TIMEOUT", "7")
	t.Setenv("OPENBLAS_CORETYPE", "Haswell")
	if got := setDefaultEnv(); got != "Haswell" {
		t.Errorf("setDefaultEnv() = %q, want the user's Haswell", got)
	}
	if v := os.Getenv("OPENBLAS_THREAD_TIMEOUT"); v != "7" {
		t.Errorf("OPENBLAS_THREAD_TIMEOUT = %q, want the user's 7", v)
	}
	if v := os.Getenv("OPENBLAS_CORETYPE"); v != "Haswell" {
		t.Errorf("OPENBLAS_CORETYPE = %q, want the user's Haswell", v)
	}

	// Unset (t.Setenv above restores the originals afterwards).
	os.Unsetenv("OPENBLAS_THREAD_TIMEOUT")
	os.Unsetenv("OPENBLAS_CORETYPE")
	want := coreType()
	if got := setDefaultEnv(); got != want {
		t.Errorf("setDefaultEnv() = %q, want %q for this CPU", got, want)
	}
	if v := os.Getenv("OPENBLAS_THREAD_TIMEOUT"); v != "4" {
		t.Errorf("OPENBLAS_THREAD_TIMEOUT = %q, want 4", v)
	}
	if v, ok := os.LookupEnv("OPENBLAS_CORETYPE"); want != "" && v != want || want == "" && ok {
		t.Errorf("OPENBLAS_CORETYPE = %q (set %v), want %q", v, ok, want)
	}
}

func TestCoreTypeOnAVX512(t *testing.T) {
	flags, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		t.Skip("no /proc/cpuinfo")
	}
	has := func(f string) bool {
		return strings.Contains(string(flags), " "+f+" ") || strings.Contains(string(flags), " "+f+"\n")
	}
	if has("avx512f") && has("avx512bw") && has("avx512vl") && has("avx512dq") && has("avx512cd") {
		if got := coreType(); got != "SkylakeX" {
			t.Errorf("coreType() = %q on an AVX-512 CPU, want SkylakeX", got)
		}
	}
}

// A user's OPENBLAS_CORETYPE that picks narrower vectors than the CPU has
// gets a note naming both kernels; an equal or wider choice, or a family
// not ranked, gets none.
func TestSlowCoreNote(t *testing.T) {
	for _, tc := range []struct {
		user, running, best string
		note                bool
	}{
		{"Haswell", "Haswell", "SkylakeX", true},
		{"haswell", "Haswell", "SkylakeX", true},
		{"Sandybridge", "Sandybridge", "Haswell", true},
		{"Zen", "Zen", "SkylakeX", true},
		{"SkylakeX", "SkylakeX", "SkylakeX", false},
		{"Haswell", "Haswell", "Haswell", false},
		{"Cooperlake", "Cooperlake", "SkylakeX", false},
		{"Prescott", "Prescott", "SkylakeX", false}, // not ranked: the core-mismatch warning covers odd cases
		{"Haswell", "Haswell", "", false},           // non-x86 or unknown CPU
	} {
		n := slowCoreNote(tc.user, tc.running, tc.best)
		if (n != "") != tc.note {
			t.Errorf("slowCoreNote(%q, %q, %q) = %q, want a note: %v", tc.user, tc.running, tc.best, n, tc.note)
		}
		if n != "" && (!strings.Contains(n, "OPENBLAS_CORETYPE="+tc.user) || !strings.Contains(n, tc.best) || strings.Contains(n, "WARNING")) {
			t.Errorf("note %q does not name OPENBLAS_CORETYPE=%s and %s (or shouts WARNING, which CLI tests read as pure Go)", n, tc.user, tc.best)
		}
	}
}

// The Fortran sgemm_ call, on the call's own stack and through cgocall,
// gives cblas_sgemm's bits for row-major data: every transpose pair,
// padded leading dimensions, alpha and beta not 0/1, and the shapes of the
// models (thin, square, expert-sized).
func TestFortranCallMatchesCBLAS(t *testing.T) {
	l := loaded(t)
	if l.sgemmF == 0 {
		t.Skip("the library has no sgemm_")
	}
	f := l.sgemmF
	defer func() { l.sgemmF = f; SetDirectCalls(true) }()
	paths := []struct {
		name   string
		fn     uintptr
		direct bool
	}{{"cblas_sgemm", 0, false}, {"sgemm_ on its own stack", f, true}, {"sgemm_ through cgocall", f, false}}
	shapes := [][3]int{{1, 1, 1}, {37, 29, 41}, {228, 172, 128}, {128, 86, 228}, {2048, 128, 128}, {5, 300, 7}}
	for si, s := range shapes {
		for ti := range 4 {
			tA, tB := ti&1 == 1, ti&2 == 2
			var outs [3][]float64
			for i, p := range paths {
				l.sgemmF = p.fn
				SetDirectCalls(p.direct)
				outs[i], _ = checkProduct(l, tA, tB, s[0], s[1], s[2], uint64(si*4+ti+1))
			}
			for p := 1; p < len(paths); p++ {
				for i := range outs[0] {
					if math.Float64bits(outs[p][i]) != math.Float64bits(outs[0][i]) {
						t.Fatalf("%v tA=%v tB=%v: C[%d] = %g through %s, %g through %s", s, tA, tB, i, outs[p][i], paths[p].name, outs[0][i], paths[0].name)
					}
				}
			}
		}
	}
}
