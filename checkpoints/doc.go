// Package checkpoints saves and loads training checkpoints: named tensors in
// safetensors files plus an opaque JSON state, written so that a crash at any
// moment leaves the previous checkpoint loadable. It knows nothing about
// models, optimizers or gorgonia; callers hand it []Tensor and JSON.
//
// # Files
//
// WriteSafetensors and ReadSafetensors implement the Hugging Face safetensors
// format (also used for the HF export of DESIGN.md §8). Tensors hold their
// values in one Go slice matching the dtype; BF16 and F16 tensors are held as
// float32 and rounded to nearest-even when written.
//
// # Checkpoints
//
// A run's checkpoints live in RUN/checkpoints/tokens-<N>/ (N = training
// tokens, 15 digits). Save writes a complete checkpoint into a hidden
// temporary directory, fsyncs it and renames it into place, then prunes old
// ones by a Policy. LoadLatest reads each file once, hashing every byte as
// it decodes, returns nothing unless every size and SHA-256 sum matches, and
// falls back to older checkpoints, with a warning, when the newest is
// damaged. docs/FORMAT.md describes the on-disk format.
//
// # Partial reads and streamed writes
//
// LoadPart and LoadLatestPart keep only what a Select chooses (rows of a
// tensor's leading dimension, or nothing), dropping the rest as it is read
// and verified; a Tensor with a Stream instead of values is written piece by
// piece when the writer reaches it. Together they let each process of a
// sharded job hold only its part while the files keep the single-process
// layout.
//
// # Concurrency
//
// One process writes a run directory at a time (the trainer holds the run's
// lock). Save and Recover clean up after interrupted saves, so only that
// process calls them. List, Load and LoadLatest only read and are safe while
// the trainer saves and prunes: LoadLatest lists again when a checkpoint it
// was reading is pruned under it. LoadLatest returns an error wrapping
// ErrNoIntact when checkpoints exist but none is intact: whether to start
// again from zero is the caller's decision.
//
// # Example
//
//	dir, err := checkpoints.Save(run, checkpoints.Checkpoint{Tokens: n, Model: ts, State: st},
//		checkpoints.Policy{KeepLast: 3, KeepEveryTokens: 1_000_000_000})
//	ck, dir, warnings, err := checkpoints.LoadLatest(run) // ck == nil: start fresh
package checkpoints
