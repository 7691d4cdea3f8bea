// Package step is moetrain's one optimizer step, shared by the trainer (one
// process, data and expert parallel) and the benchmark:
//
//  1. forward and backward on each of this rank's micro-batches;
//  2. each micro-batch's gradient, scaled by 1/(micro-batches in the whole
//     batch over all ranks), accumulated in a fixed order;
//  3. the ranks' sums reduced (Reducer; nothing in one process), each
//     gradient's reduction started as soon as its last micro-batch is in;
//  4. a non-finite loss or global gradient norm skips the update;
//  5. the gradients clipped to optim.clip by their global norm, the factor
//     folded into the AdamW update.
//
// Reading data, schedules, checkpoints and logs belong to the caller.
package step
