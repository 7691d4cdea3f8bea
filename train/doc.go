// Package train runs moetrain's main job: it trains a model from a resolved
// config to a token budget, and running it again on the same run directory
// continues the run exactly as if it had never stopped.
//
// # Run directory
//
//	RUN/config.yaml       the resolved config (the launch's; a resume must match it
//	                      except for keys documented as safe to change)
//	RUN/metrics.jsonl     one JSON object per log or eval point, in training tokens
//	RUN/train.log         the human-readable log
//	RUN/checkpoints/      tokens-<N>/ directories (checkpoints package, docs/FORMAT.md)
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
// state: with the same BLAS kernel and thread count, a resumed run produces
// the same bytes as an uninterrupted one.
package train
