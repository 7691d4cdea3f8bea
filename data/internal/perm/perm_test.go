package perm

import "testing"

// TestPermBijective: every n (including non-powers of two) is permuted onto
// itself, and different keys give different orders.
func TestPermBijective(t *testing.T) {
	ns := []uint64{0, 1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 100, 255, 256, 257, 344, 1000, 4096, 5000, 65537}
	for _, n := range ns {
		for key := uint64(0); key < 3; key++ {
			p := New(n, key)
			seen := make([]bool, n)
			for i := uint64(0); i < n; i++ {
				v := p.At(i)
				if v >= n || seen[v] {
					t.Fatalf("n=%d key=%d: at(%d) = %d repeats or is out of range", n, key, i, v)
				}
				seen[v] = true
			}
		}
		if n >= 16 {
			a, b := New(n, 1), New(n, 2)
			same, fixed := 0, 0
			for i := uint64(0); i < n; i++ {
				if a.At(i) == b.At(i) {
					same++
				}
				if a.At(i) == i {
					fixed++
				}
			}
			// A random permutation has on average one match and one fixed point.
			if same > int(n/4) || fixed > int(n/4) {
				t.Errorf("n=%d: keys 1 and 2 agree at %d places, key 1 fixes %d points: not shuffled", n, same, fixed)
			}
		}
	}
}

func TestPermPanicsOutOfRange(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Fatal("at(n) did not panic")
		}
	}()
	New(10, 1).At(10)
}
