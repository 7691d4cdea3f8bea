package ops

import (
	"errors"
	"testing"

	"gorgonia.org/tensor"

	"github.com/moetrain/moetrain/internal/blas"
)

// Helpers shared by this package's tests.

// toDtype returns a copy of x in dtype dt: float64 tensors are converted,
// anything else (Int tensors, or dt Float64) is cloned as is.
func toDtype(x *tensor.Dense, dt tensor.Dtype) *tensor.Dense {
	if x.Dtype() != tensor.Float64 || dt == tensor.Float64 {
		return x.Clone().(*tensor.Dense)
	}
	src := x.Data().([]float64)
	dst := make([]float32, len(src))
	for i, v := range src {
		dst[i] = float32(v)
	}
	return tensor.New(tensor.WithShape(x.Shape().Clone()...), tensor.WithBacking(dst))
}

// widen copies float data (a slice or a scalar, float32 or float64, or a
// *tensor.Dense holding one) into a new []float64.
func widen(data any) []float64 {
	if t, ok := data.(*tensor.Dense); ok {
		data = t.Data()
	}
	switch d := data.(type) {
	case []float64:
		return append([]float64(nil), d...)
	case []float32:
		out := make([]float64, len(d))
		for i, x := range d {
			out[i] = float64(x)
		}
		return out
	case float64:
		return []float64{d}
	case float32:
		return []float64{float64(d)}
	}
	panic("widen: not float data")
}

// intTensor returns an Int vector holding a copy of ids.
func intTensor(ids ...int) *tensor.Dense {
	return tensor.New(tensor.WithShape(len(ids)), tensor.WithBacking(append([]int(nil), ids...)))
}

// bf16WithRowTiles skips t where the CPU has no row tiles or no bfloat16
// products, else turns bfloat16 products on until t ends, leaving the
// test to switch rowsProducts (restored at the end too).
func bf16WithRowTiles(t *testing.T) {
	t.Helper()
	if !blas.RowsOK() {
		t.Skip("no row tiles on this CPU")
	}
	if _, err := blas.Init(); err != nil {
		t.Fatal(err)
	}
	if err := blas.SetBF16Products(true); errors.Is(err, blas.ErrNoBF16) {
		t.Skip(err)
	} else if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { blas.SetBF16Products(false) })
	r := rowsProducts
	t.Cleanup(func() { rowsProducts = r })
}
