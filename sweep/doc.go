// Package sweep runs families of training runs that differ only in the model
// and its initialisation seed, and summarises them.
//
// A sweep file names a base config, overrides for every run, optional named
// variants (each a set of overrides), axes (keys of one axis are tied, axes
// are crossed into a grid) and a list of seeds. Expand turns it into runs,
// each with its own directory under the sweep's out directory, named after
// its overrides ("gshard_seed-1", "granularity-2_shared-1_seed-3"). Expand
// refuses a sweep whose runs would read different training tokens: every run
// reads the same tokens in the same order (fixed data.seed, budget and batch
// geometry), and seeds change only model.init_seed.
//
// The pseudo-keys granularity (m) and shared (Ks) derive expert count, top-k
// and width from the base's granularity-1 layout at fixed total and activated
// parameters with DESIGN.md §4.1's width rule (Derive).
//
// Runner executes the runs as `moetrain train` subprocesses, one at a time
// or N at a time. It is resumable: a run whose directory holds the
// sweep-done.json marker is skipped, an interrupted run resumes from its
// newest checkpoint (train's own resume). Summarise reads the runs' metrics
// and writes a table of every run's and every group's (mean ± std over seeds)
// held-out loss with its total and activated parameters and FLOPs, its MoE
// health (MaxVio, dead experts over training) and time per step, a plot,
// and the verdict on each expected ordering: an ordering holds only where
// every gap exceeds two standard errors. Groups listed under apart
// (expert-choice routing, whose loss is not comparable) get a table of
// their own and take part in no ordering.
package sweep
