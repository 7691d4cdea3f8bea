// Package rundir reads and writes moetrain's run directories, the one
// format the trainer, evaluation, export, reports, analyses and sweeps share:
//
//	RUN/config.yaml       the resolved config (the launch's; a resume must match it
//	                      except for keys documented as safe to change)
//	RUN/metrics.jsonl     one JSON object per log or eval point, in training tokens (Metrics)
//	RUN/train.log         the human-readable log
//	RUN/checkpoints/      tokens-<N>/ directories (checkpoints package, docs/FORMAT.md):
//	                      model tensors under their Hugging Face names, AdamW moments,
//	                      and state.json (State)
//
// It does not train: readers of a run need not link the trainer.
package rundir
