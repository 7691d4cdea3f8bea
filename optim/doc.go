// Package optim updates parameters: AdamW with decoupled weight decay,
// global-norm gradient clipping, and the learning-rate schedule as a pure
// function of training tokens.
//
// Parameters are named float32 slices (Param), never model or gorgonia
// types, so the package knows nothing about how they are produced.
//
// # Determinism
//
// Every update is elementwise and every reduction (the global norm) sums
// fixed blocks in a fixed order in float64, so results are bit-identical
// across runs and across worker counts. The optimizer state (step count and
// the two moment slices per parameter) is exported exactly by State and
// restored by SetState: resuming from a checkpoint continues bit for bit.
//
// # Example
//
//	opt, err := optim.NewAdamW(optim.AdamWConfig{Beta1: 0.9, Beta2: 0.95, Eps: 1e-8, WeightDecay: 0.1}, params)
//	norm := optim.ClipGlobalNorm(params, 1.0)
//	err = opt.Step(params, sched.LR(tokens))
package optim
