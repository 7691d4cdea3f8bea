package ops

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/moetrain/moetrain/internal/tol"
)

// TestRoPERelativePosition checks the property RoPE exists for: the dot
// product of a query rotated to position p and a key rotated to position s
// depends only on p−s, and every (j, j+dh/2) pair keeps its length.
func TestRoPERelativePosition(t *testing.T) {
	const heads, dh, theta = 2, 8, 10000.0
	r := rand.New(rand.NewPCG(1, 1))
	q, k := make([]float64, heads*dh), make([]float64, heads*dh)
	for i := range q {
		q[i], k[i] = 2*r.Float64()-1, 2*r.Float64()-1
	}
	dot := func(p, s int) []float64 {
		qp, ks := append([]float64(nil), q...), append([]float64(nil), k...)
		ApplyRoPE(qp, p, heads, dh, theta)
		ApplyRoPE(ks, s, heads, dh, theta)
		out := make([]float64, heads)
		for h := range heads {
			for j := h * dh; j < (h+1)*dh; j++ {
				out[h] += qp[j] * ks[j]
			}
		}
		return out
	}
	if err := tol.Float64.CheckSlice("q·k at (9,4) vs (5,0)", dot(9, 4), dot(5, 0)); err != nil {
		t.Error(err)
	}
	if err := tol.Float64.CheckSlice("q·k at (130,7) vs (123,0)", dot(130, 7), dot(123, 0)); err != nil {
		t.Error(err)
	}
	if tol.Float64.CheckSlice("q·k at (3,0) vs (0,0)", dot(3, 0), dot(0, 0)) == nil {
		t.Error("rotation by 3 positions left q·k unchanged")
	}
	x := append([]float64(nil), q...)
	ApplyRoPE(x, 37, heads, dh, theta)
	for h := range heads {
		for j := range dh / 2 {
			a, b := h*dh+j, h*dh+j+dh/2
			if !tol.Float64.Close(math.Hypot(x[a], x[b]), math.Hypot(q[a], q[b])) {
				t.Errorf("head %d pair %d: length %g, want %g", h, j, math.Hypot(x[a], x[b]), math.Hypot(q[a], q[b]))
			}
		}
	}
}

// TestRoPEInverse checks that unrotate undoes rotate (the rotation is
// orthogonal, so its transpose, used by the backward, is its inverse) and
// that position 0 is the identity.
func TestRoPEInverse(t *testing.T) {
	const seq, dh = 5, 6
	tab := newRopeTable(seq, dh, 10000)
	r := rand.New(rand.NewPCG(2, 2))
	x := make([]float64, dh)
	for i := range x {
		x[i] = 2*r.Float64() - 1
	}
	y, z := make([]float64, dh), make([]float64, dh)
	for p := range seq {
		cos, sin := ropeAt[float64](tab, p)
		rotate(y, x, cos, sin)
		unrotate(z, y, cos, sin)
		if err := tol.Float64.CheckSlice("unrotate(rotate(x))", z, x); err != nil {
			t.Errorf("position %d: %v", p, err)
		}
		if p == 0 {
			if err := (tol.Tol{}).CheckSlice("rotate at position 0", y, x); err != nil {
				t.Error(err)
			}
		}
	}
}
