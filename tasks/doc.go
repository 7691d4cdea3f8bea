// Package tasks reads, validates and scores evaluation task files: JSONL
// files of multiple-choice examples (scored by the log-likelihood of each
// choice, as lm-eval-harness does) or generation examples (greedy decoding,
// exact match). The format is documented in docs/TASKS.md.
//
// The package knows nothing about models: scoring goes through the small LM
// interface (the infer package implements it over a trained model), so the
// format and the metrics are tested on their own.
package tasks
