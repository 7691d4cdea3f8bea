// Package bench measures training speed: it runs full training steps
// (forward, backward, global-norm clipping, AdamW) of a model on random
// tokens after a warm-up and reports the median tokens per second, step
// time, achieved GFLOP/s and MFU (DESIGN.md §7.3), peak RSS next to the analytic
// memory estimate, allocation per step, and a per-op time breakdown taken
// with model/ops' profiling switch. `moetrain bench` prints its Result.
package bench
