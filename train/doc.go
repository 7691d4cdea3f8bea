// Package train runs moetrain's main job: it trains a model from a resolved
// config to a token budget, and running it again on the same run directory
// continues the run exactly as if it had never stopped.
//
// # Run directory
//
// The run directory's format (config, metrics, checkpoints and their
// state.json) is package rundir's.
//
// # One optimizer step
//
// batch_size sequences are read from the data stream (the same on every
// rank; each rank takes its share) and train/step runs them: forward and
// backward per micro-batch, gradients averaged in a fixed order and reduced
// over ranks, a non-finite loss or norm stops the run (or skips the step
// when train.non_finite is skip), clipping, and AdamW with the learning
// rate the schedule gives for the tokens trained after the
// step. Checkpoints are written only at step boundaries, so the saved state
// (weights, AdamW moments and step, data cursor, token count) is the whole
// state: with the same kernels (the BLAS kernel and the AVX-512 tile paths,
// ops.BitsKernel) and thread count, a resumed run produces the same bytes
// as an uninterrupted one.
package train
