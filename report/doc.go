// Package report compares finished training runs: it reads each run
// directory's config.yaml and metrics.jsonl and turns them into a table
// (markdown or CSV, one column per run, laid out like the paper's Table 1)
// and into figures (PNG and SVG): training and held-out loss against
// training tokens and against training FLOPs, per-task score curves in a
// grid of panels with their chance lines, the average task score against
// activated parameters, and each MoE run's per-layer expert load over
// training as a heatmap. Runs that differ only in model.init_seed are a
// Group, drawn as the mean over seeds with a min–max band.
//
// # Conventions
//
//   - A run's value of a metric is its last eval line for that task and
//     metric (metrics.jsonl is in token order; a resume drops the lines it
//     retrains).
//   - A task's score is its main metric: "acc" for multiple choice, else
//     "exact_match" for generation (see MainMetric). The average is over the
//     tasks every compared run has, so that averages compare like with like.
//   - FLOPs follow model.FLOPsPerToken (DESIGN.md §7.3) at the run's seq_len.
//
// The series every figure is drawn from are exported (LossCurves, TaskCurves,
// ScoreScatter, ...) so that tests can check the plotted numbers against
// the metrics.
package report
