// Package planner estimates, without allocating anything, what training a
// model costs on a cluster of identical devices: memory per rank and the
// time of one optimizer step for every data-parallel × expert-parallel
// layout, under stated training choices (precision, optimizer-state
// sharding, activation recomputation, how attention is computed, micro-batch
// size).
//
// It prices the model package's counts (model.Count, model.CountActivations,
// model.FLOPsPerToken) in bytes and seconds; it has no formula of its own
// for what a model holds. With the default Options it describes moetrain's
// own CPU training (float32, no sharding, no recomputation, attention scores
// materialised), where one process's estimate equals model.EstimateMemory.
// Every formula is written out in docs/DISTRIBUTED.md, "Planning".
package planner
