// Package evaluate scores a model on held-out text and on task files. It is
// the one held-out evaluation: the trainer's periodic evaluation, `moetrain
// eval` and the analyses all stream the validation split through Scorer,
// so they score the same windows the same way.
//
// Held-out scores are the mean cross-entropy per predicted token (nats) and
// bits per byte (loss·tokens / (bytes·ln 2), independent of the tokenizer),
// overall and per domain.
package evaluate
