// Package intmath holds the integer arithmetic that several packages must
// do the same way: the trainer and the planner split a rank's share of the
// batch into micro-batches of GCD(micro_batch_size, share) rows, and must
// agree on it.
package intmath

// GCD is the greatest common divisor of a and b (Euclid), for a, b >= 0;
// GCD(a, 0) = a.
func GCD(a, b int) int {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}
