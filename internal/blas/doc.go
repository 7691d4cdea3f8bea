// Package blas is moetrain's matrix-multiply entry point. Every GEMM in the
// model but the routed experts' row tiles (below) goes through Gemm, which
// dispatches float32 products to the active single-precision kernel (oneDNN
// or OpenBLAS loaded at run time, or gonum's pure-Go code as the fallback)
// and float64 products to gonum (used by gradient checks, where speed does
// not matter).
//
// All matrices are row-major. Gemm computes
//
//	C = alpha * op(A) * op(B) + beta * C
//
// with op(X) = X or Xᵀ, op(A) m×k, op(B) k×n, C m×n.
//
// # Choosing the kernel
//
// Until Init (or Load) runs, float32 products use pure Go. Init loads,
// through purego so CGO_ENABLED=0 builds work, the first of:
//
//   - oneDNN (Debian's libdnnl.so.3 or .so.2), whose dnnl_sgemm generates its
//     kernel for the widest vectors this CPU has. On the AVX-512 machine of
//     docs/BENCHMARKS.md, whose environment holds OpenBLAS to its AVX2
//     kernel (OPENBLAS_CORETYPE=Haswell), it ran the science models'
//     products 1.45-2.1× faster (BenchmarkGemmLibraries).
//   - OpenBLAS (libopenblas.so.0), after pointing OPENBLAS_CORETYPE at this
//     CPU (Debian's 0.3.21 takes AVX-512 machines for Prescott and runs ~5×
//     slower) and setting OPENBLAS_THREAD_TIMEOUT=4 (idle OpenBLAS workers
//     otherwise spin and take a core from Go); variables the user set are
//     left alone.
//
// MOETRAIN_BLAS (LibraryEnv) overrides the order: "onednn", "openblas",
// "none" (pure Go) or a library file's path. Each library is checked on a
// few products against gonum; a missing or wrong library is skipped, down to
// pure Go, without an error, and Info says which kernel runs and why. Print
// Info at start-up.
//
// # Threads and determinism
//
// By default the library runs one thread per call (OMP_NUM_THREADS=1 for
// oneDNN's OpenMP, set only for its first opening and only when the user
// has not set it) and Gemm cuts large float32 products into
// parallel.Workers parts along the longer side of C; at most
// parallel.Workers library calls run at once, also when Gemm is called from
// several goroutines (the model's row loops), so the cores are never
// oversubscribed. Part boundaries depend only on the shape, so results do
// not depend on goroutine timing. docs/BENCHMARKS.md ("BLAS") has the
// measurements behind this choice. Two libraries, or two kernels of one,
// round differently: a run resumed under another kernel continues, but not
// bit for bit.
//
// # How the libraries are called
//
// Without cgo: purego opens the library, and on amd64 an assembly
// trampoline makes each product's call (dnnl_sgemm, or OpenBLAS's sgemm_;
// ccall_amd64.go). The call runs on a C stack of the goroutine's P, mapped
// once with a guard page, while the goroutine keeps its P; it does not go
// through runtime.cgocall, whose handing-off of the P cost two workers
// making expert-sized products 13-27% of their throughput.
// SetDirectCalls(false) restores cgocall. Other platforms call through
// purego.
//
// # Row tiles: products of rows that lie anywhere
//
// RowsMatMul and OuterSum are moetrain's own float32 kernels, AVX-512
// register tiles (rows_amd64.s; RowsOK says whether the CPU has them)
// for the routed experts' products: RowsMatMul multiplies rows found by
// offset (an expert's token rows in the layer's input or in dy) by a
// packed matrix, OuterSum sums outer products of rows found by offset (an
// expert's weight gradients over its slots), so nothing is gathered into
// a copy first. A last chunk of at most eight columns runs on eight-lane
// registers, half the cost of sixteen lanes on Zen 4 (86 columns cost 88
// lanes, not 96). Each element is one running FMA sum in term order, on
// the calling goroutine. With their operands in cache they match oneDNN
// or beat it at column tails; reading operands that are not, they lost
// to it (docs/BENCHMARKS.md, round 17), so the model uses them only
// where they spare a gather.
//
// # bfloat16 products
//
// SetBF16Products (train.products: bf16) makes every float32 product of the
// oneDNN kernel round both operands to bfloat16 and call
// dnnl_gemm_bf16bf16f32, which accumulates in float32: 1.5-2.2× faster per
// product where the CPU has a bfloat16 kernel, deterministic, but not
// float32's numbers. Load turns it off; float64 products never use it.
//
// # Peak and fallback
//
// MachinePeak is the fp32 peak MFU is quoted against (DESIGN.md §7.3): the
// best 2048³ sgemm rate, measured once per machine and cached in the user's
// cache directory, keyed by CPU model, cores and kernel (PeakKey);
// measurements taken while other processes held the cores are measured
// again at the next launch. The measurement runs float32 products whatever
// train.products says; PeakEnv states a peak instead of measuring one.
// With the pure-Go kernel there is no peak and
// Info.FallbackWarning is the warning compute commands print first.
package blas
