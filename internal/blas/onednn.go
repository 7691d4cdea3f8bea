package blas

import (
	"fmt"
	"os"
	"strconv"
	"unsafe"

	"github.com/ebitengine/purego"

	"github.com/moetrain/moetrain/internal/parallel"
)

// oneDNN is the float32 kernel backed by oneDNN's dnnl_sgemm (Debian:
// libdnnl2 or libdnnl3). Its GEMM is generated at run time for the widest
// vector instructions the CPU reports, whatever OPENBLAS_CORETYPE says, so
// on an AVX-512 machine whose environment holds OpenBLAS to its AVX2
// (Haswell) kernel it runs the science models' products 1.45-2.1× faster
// (BenchmarkGemmLibraries; docs/BENCHMARKS.md, round 9).
type oneDNN struct {
	sgemmFn    uintptr // dnnl_sgemm, for callTrampoline
	sgemm      func(transA, transB byte, m, n, k int64, alpha float32, a *float32, lda int64, b *float32, ldb int64, beta float32, c *float32, ldc int64) int32
	version    func() *dnnlVersion
	isa        func() int32
	maxThreads func() int32 // OpenMP's omp_get_max_threads: the threads one call uses
	products                // how products are split over workers
	// bf16Fn is dnnl_gemm_bf16bf16f32 (0 where missing); bf16 makes run
	// use it (SetBF16Products).
	bf16Fn uintptr
	bf16   bool
}

// dnnlArgs is one dnnl_sgemm call: the function, its arguments (pointers
// as addresses; the caller keeps the slices alive) and the status it
// returned. dnnlTrampoline reads it by field offset.
type dnnlArgs struct {
	fn             uintptr
	transA, transB uintptr // 'N' or 'T'
	m, n, k        int64
	a              uintptr
	lda            int64
	b              uintptr
	ldb            int64
	c              uintptr
	ldc            int64
	alpha, beta    float32
	status         int32
}

// dnnlVersion is dnnl_version_t.
type dnnlVersion struct {
	Major, Minor, Patch int32
	Hash                *byte
	CPURuntime          uint32
	GPURuntime          uint32
}

var _ Sgemmer = (*oneDNN)(nil)

// oneDNNPaths returns where Debian puts oneDNN (the 3.x soname first),
// ending with the bare sonames for the dynamic loader's own search.
func oneDNNPaths() []string {
	var ps []string
	if dir := libDir(); dir != "" {
		ps = append(ps, dir+"libdnnl.so.3", dir+"libdnnl.so.2")
	}
	return append(ps, "libdnnl.so.3", "libdnnl.so.2")
}

// openOneDNN dlopens path once per process and resolves the symbols used.
func openOneDNN(path string) (*oneDNN, error) {
	if l, ok := libs[path].(*oneDNN); ok {
		return l, nil
	}
	h, err := purego.Dlopen(path, purego.RTLD_NOW|purego.RTLD_LOCAL)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	// omp_get_max_threads comes from the OpenMP runtime oneDNN links
	// (dlsym searches a library's dependencies too).
	for _, s := range []string{"dnnl_sgemm", "dnnl_version", "dnnl_get_effective_cpu_isa", "omp_get_max_threads"} {
		if _, err := purego.Dlsym(h, s); err != nil {
			return nil, fmt.Errorf("open %s: symbol %s: %w", path, s, err)
		}
	}
	l := &oneDNN{}
	purego.RegisterLibFunc(&l.sgemm, h, "dnnl_sgemm")
	l.sgemmFn, _ = purego.Dlsym(h, "dnnl_sgemm")
	l.bf16Fn, _ = purego.Dlsym(h, "dnnl_gemm_bf16bf16f32") // optional: SetBF16Products checks
	purego.RegisterLibFunc(&l.version, h, "dnnl_version")
	purego.RegisterLibFunc(&l.isa, h, "dnnl_get_effective_cpu_isa")
	purego.RegisterLibFunc(&l.maxThreads, h, "omp_get_max_threads")
	l.products = newProducts(l.run)
	ensureCallStacks()
	libs[path] = l
	return l, nil
}

// run is one dnnl_sgemm call: row-major, like Gemm, so the arguments pass
// through unchanged. A non-zero status can only mean arguments that
// checkSgemm let through, so it panics like checkSgemm does.
func (l *oneDNN) run(ca *callArgs, transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	if l.bf16 {
		l.runBF16(ca, transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
		return
	}
	var st int32
	if trampolineSgemm {
		args := &ca.dnnl
		*args = dnnlArgs{fn: l.sgemmFn, transA: uintptr(fortranOp(transA)), transB: uintptr(fortranOp(transB)),
			m: int64(m), n: int64(n), k: int64(k), alpha: alpha, beta: beta,
			a: uintptr(unsafe.Pointer(&a[0])), lda: int64(lda), b: uintptr(unsafe.Pointer(&b[0])), ldb: int64(ldb),
			c: uintptr(unsafe.Pointer(&c[0])), ldc: int64(ldc)}
		st = callTrampoline(args) // products.call keeps a, b and c alive
	} else {
		st = l.sgemm(fortranOp(transA), fortranOp(transB), int64(m), int64(n), int64(k),
			alpha, &a[0], int64(lda), &b[0], int64(ldb), beta, &c[0], int64(ldc))
	}
	if st != 0 {
		panic(fmt.Sprintf("blas: dnnl_sgemm(%c, %c, %d, %d, %d, lda %d, ldb %d, ldc %d) returned status %d",
			fortranOp(transA), fortranOp(transB), m, n, k, lda, ldb, ldc, st))
	}
}

// isaNames are dnnl_cpu_isa_t's values for the x86 instruction sets, as
// dnnl_types.h numbers them (Debian's 2.6.3 reports 0xe7 on the AVX-512
// machine of docs/BENCHMARKS.md); a value not listed is named in hex. The
// name in Info.Kernel is the widest set oneDNN may use
// (dnnl_get_effective_cpu_isa); its float32 GEMM uses the float32 part of it.
var isaNames = map[int32]string{
	0x1: "sse41", 0x3: "avx", 0x7: "avx2", 0x407: "avx2_vnni", 0xc07: "avx2_vnni_2",
	0x27: "avx512_core", 0x67: "avx512_core_vnni", 0xe7: "avx512_core_bf16",
	0x1ef: "avx512_core_fp16", 0x3e7: "avx512_core_amx", 0xfef: "avx512_core_amx_fp16",
}

// loadOneDNN opens the first oneDNN of paths, with one OpenMP thread per
// call unless the user set OMP_NUM_THREADS (or opts.Threads asks for more),
// and checks it against gonum. Its threads are fixed when the library is
// first opened (OpenMP reads OMP_NUM_THREADS then), so a later Load that
// asks for others gets a warning and the threads the library has.
func loadOneDNN(paths []string, opts Options) (Sgemmer, Info, error) {
	var info Info
	want := opts.Threads
	if want == 0 {
		if n, err := strconv.Atoi(os.Getenv("OMP_NUM_THREADS")); err == nil && n > 0 {
			want = n
		}
	}
	if want == 0 {
		want = 1
	}
	if _, ok := os.LookupEnv("OMP_NUM_THREADS"); !ok || opts.Threads > 0 {
		// Set for the library's first opening in this process; restored
		// after, so child processes see the user's environment.
		prev, had := os.LookupEnv("OMP_NUM_THREADS")
		os.Setenv("OMP_NUM_THREADS", strconv.Itoa(want))
		defer func() {
			if had {
				os.Setenv("OMP_NUM_THREADS", prev)
			} else {
				os.Unsetenv("OMP_NUM_THREADS")
			}
		}()
	}
	lib, path, err := openFirst("oneDNN", paths, openOneDNN)
	if err != nil {
		return nil, info, err
	}
	info.Library = path
	v := lib.version()
	isa := lib.isa()
	name, ok := isaNames[isa]
	if !ok {
		name = fmt.Sprintf("isa 0x%x", isa)
	}
	info.Kernel = fmt.Sprintf("oneDNN %d.%d.%d %s", v.Major, v.Minor, v.Patch, name)
	info.Threads = int(lib.maxThreads())
	if info.Threads != want {
		info.Warnings = append(info.Warnings, fmt.Sprintf(
			"oneDNN runs %d thread(s) per call, not %d (the library was opened before, with OMP_NUM_THREADS=%s)",
			info.Threads, want, os.Getenv("OMP_NUM_THREADS")))
	}
	split := 1
	if info.Threads == 1 {
		split = parallel.Workers
	}
	lib.setSplit(split)
	info.Split = lib.split
	// A library opened before may have bfloat16 products on: a load
	// installs float32 products (SetBF16Products comes after), and the
	// self-check holds them to float32's accuracy.
	lib.bf16 = false
	if err := selfCheck(lib); err != nil {
		info.Warnings = append(info.Warnings, err.Error())
		return nil, info, fmt.Errorf("%s at %s gave wrong results", info.Kernel, info.Library)
	}
	return lib, info, nil
}
