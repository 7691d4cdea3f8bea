// Package reference writes what the PyTorch reference of this directory
// (torchref.py, README.md) needs to replay a moetrain run: the resolved
// config as JSON, the initial weights, every micro-batch of the run in the
// order moetrain's trainer reads them, and the held-out windows moetrain's
// evaluation scores. `moetrain reference-inputs` and the agreement tests
// use it; the tests check that the trainer really trains on these batches
// (its loss at every step must match the reference's).
package reference
