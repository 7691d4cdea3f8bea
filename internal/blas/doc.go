// Package blas is moetrain's matrix-multiply entry point. Every GEMM in the
// model goes through Gemm, which dispatches float32 products to the active
// single-precision kernel (OpenBLAS loaded at run time, or gonum's pure-Go
// code as the fallback) and float64 products to gonum (used by gradient
// checks, where speed does not matter).
//
// All matrices are row-major. Gemm computes
//
//	C = alpha * op(A) * op(B) + beta * C
//
// with op(X) = X or Xᵀ, op(A) m×k, op(B) k×n, C m×n.
//
// # Choosing the kernel
//
// Until Init (or Load) runs, float32 products use pure Go. Init loads
// Debian's libopenblas.so.0 through purego, so CGO_ENABLED=0 builds work,
// after pointing OPENBLAS_CORETYPE at this CPU (Debian's 0.3.21 takes
// AVX-512 machines for Prescott and runs ~5× slower) and setting
// OPENBLAS_THREAD_TIMEOUT=4 (idle OpenBLAS workers otherwise spin and take
// a core from Go); variables the user set are left alone. It checks a few
// products against gonum and falls back to pure Go, without an error, when
// the library is missing or wrong; Info says which kernel runs and why.
// Print Info at start-up.
//
// # Threads and determinism
//
// By default OpenBLAS runs one thread per call and Gemm cuts large float32
// products into parallel.Workers parts along the longer side of C; at most
// parallel.Workers library calls run at once, also when Gemm is called from
// several goroutines (the model's row loops), so the cores are never
// oversubscribed. Part boundaries depend only on the shape, so results do
// not depend on goroutine timing. docs/BENCHMARKS.md ("BLAS") has the
// measurements behind this choice.
//
// # Peak and fallback
//
// MachinePeak is the fp32 peak MFU is quoted against (DESIGN.md §7.3): the
// best 2048³ sgemm rate, measured once per machine and cached in the user's
// cache directory, keyed by CPU model, cores and kernel (PeakKey);
// measurements taken while other processes held the cores are measured
// again at the next launch. With the pure-Go kernel there is no peak and
// Info.FallbackWarning is the warning compute commands print first.
// MOETRAIN_OPENBLAS (LibraryEnv) names the library to load, or "none".
package blas
