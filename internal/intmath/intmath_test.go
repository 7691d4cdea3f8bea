package intmath

import "testing"

func TestGCD(t *testing.T) {
	tests := []struct{ a, b, want int }{
		{16, 4, 4}, {4, 16, 4}, {12, 18, 6}, {7, 5, 1}, {8, 8, 8}, {9, 0, 9}, {0, 9, 9}, {1, 1024, 1},
	}
	for _, tc := range tests {
		if got := GCD(tc.a, tc.b); got != tc.want {
			t.Errorf("GCD(%d, %d) = %d, want %d", tc.a, tc.b, got, tc.want)
		}
	}
}
