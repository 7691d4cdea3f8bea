package main

import (
	"fmt"
	"io"

	"github.com/moetrain/moetrain/internal/blas"
)

// initBLAS loads a BLAS library (oneDNN or OpenBLAS) for a compute command (train, bench, eval,
// generate, analyze) and, when pure Go runs instead, prints the fallback warning to
// stderr before any work starts: a silent fallback made every product ~8×
// slower and MFU meaningless. Loading never fails on a missing library;
// an error here is an internal one. The loader's warnings (a library that
// gave wrong results, a deprecated variable) follow, one line each, and an
// OpenBLAS kernel held below the CPU's by OPENBLAS_CORETYPE gets a one-line
// note (blas.Info.SlowCore).
func initBLAS(stderr io.Writer) (blas.Info, error) {
	info, err := blas.Init()
	if err != nil {
		return info, fmt.Errorf("load BLAS: %w", err)
	}
	if w := info.FallbackWarning(); w != "" {
		fmt.Fprintln(stderr, w)
	}
	for _, w := range info.Warnings {
		fmt.Fprintln(stderr, "warning: "+w)
	}
	if info.SlowCore != "" {
		fmt.Fprintln(stderr, info.SlowCore)
	}
	return info, nil
}
