package train

import (
	"os"
	"runtime/debug"
)

// trainGCPercent is the heap growth, in percent of the live heap, that
// triggers a collection while training (unless GOGC is set). The weights,
// gradients and AdamW moments are long-lived and dominate the heap; at Go's
// default of 100 the garbage of a checkpoint or an evaluation (encoded
// tensors, evaluation batches) could grow the process to twice them before
// a collection. Collections are cheap here: the big buffers hold no
// pointers, so a collection scans little.
const trainGCPercent = 5

// limitGarbage sets the collector for training and returns what restores
// it.
func limitGarbage() (restore func()) {
	if _, set := os.LookupEnv("GOGC"); set {
		return func() {}
	}
	old := debug.SetGCPercent(trainGCPercent)
	return func() { debug.SetGCPercent(old) }
}
