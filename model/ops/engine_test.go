package ops

import (
	"fmt"
	"math"
	"testing"

	"gorgonia.org/tensor"
)

// engine.Add gives StdEng.Add's bits and StdEng's result tensor for every
// option gorgonia passes (a new tensor, in place, into a reuse tensor, that
// one being an operand too), and leaves increments to StdEng.
func TestEngineAddMatchesStdEng(t *testing.T) {
	for _, dt := range []tensor.Dtype{tensor.Float32, tensor.Float64} {
		mk := func(seed int) *tensor.Dense {
			x := tensor.New(tensor.Of(dt), tensor.WithShape(3, 70000), tensor.WithEngine(Engine)) // above addGrain: split over workers
			switch d := x.Data().(type) {
			case []float32:
				for i := range d {
					d[i] = float32(math.Sin(float64(i*seed))) * 1e3
				}
			case []float64:
				for i := range d {
					d[i] = math.Sin(float64(i*seed)) * 1e3
				}
			}
			return x
		}
		want := func(a, b *tensor.Dense) *tensor.Dense {
			r, err := tensor.StdEng{}.Add(a.Clone().(*tensor.Dense), b.Clone().(*tensor.Dense))
			if err != nil {
				t.Fatal(err)
			}
			return r.(*tensor.Dense)
		}
		same := func(name string, got tensor.Tensor, w *tensor.Dense) {
			t.Helper()
			if fmt.Sprint(got.Shape()) != fmt.Sprint(w.Shape()) {
				t.Fatalf("%v %s: shape %v, want %v", dt, name, got.Shape(), w.Shape())
			}
			for i, n := 0, w.Shape().TotalSize(); i < n; i++ {
				g, _ := got.(*tensor.Dense).At(i/70000, i%70000)
				v, _ := w.At(i/70000, i%70000)
				if fmt.Sprint(g) != fmt.Sprint(v) {
					t.Fatalf("%v %s: element %d = %v, want %v", dt, name, i, g, v)
				}
			}
		}
		a, b := mk(1), mk(2)
		// Every option below but the increment takes the engine's own path
		// (checked on copies, which it writes), not gorgonia's.
		for _, o := range [][]tensor.FuncOpt{nil, {tensor.WithReuse(mk(3))}, {tensor.UseUnsafe()}} {
			if _, took, err := addWhole(a.Clone().(*tensor.Dense), b, tensor.ParseFuncOpts(o...)); !took || err != nil {
				t.Fatalf("%v: options %v left to gorgonia (%v)", dt, o, err)
			}
		}
		if _, took, _ := addWhole(a, b, tensor.ParseFuncOpts(tensor.WithIncr(mk(4)))); took {
			t.Fatalf("%v: an increment taken by the engine's own path", dt)
		}
		w := want(a, b)
		got, err := Engine.(tensor.Adder).Add(a, b)
		if err != nil || got == tensor.Tensor(a) {
			t.Fatalf("%v safe: %v (result is a: %v)", dt, err, got == tensor.Tensor(a))
		}
		same("safe", got, w)
		reuse := mk(3)
		got, err = Engine.(tensor.Adder).Add(a, b, tensor.WithReuse(reuse))
		if err != nil || got != tensor.Tensor(reuse) {
			t.Fatalf("%v reuse: %v (result is the reuse tensor: %v)", dt, err, got == tensor.Tensor(reuse))
		}
		same("reuse", got, w)
		got, err = Engine.(tensor.Adder).Add(a, b, tensor.WithReuse(a)) // reuse = a
		if err != nil || got != tensor.Tensor(a) {
			t.Fatalf("%v reuse a: %v", dt, err)
		}
		same("reuse a", got, w)
		a = mk(1)
		got, err = Engine.(tensor.Adder).Add(a, b, tensor.UseUnsafe())
		if err != nil || got != tensor.Tensor(a) {
			t.Fatalf("%v unsafe: %v", dt, err)
		}
		same("unsafe", got, w)
		// An increment: incr += a + b, through StdEng.
		a, incr := mk(1), mk(4)
		w2 := want(mk(4), w)
		if _, err = Engine.(tensor.Adder).Add(a, b, tensor.WithIncr(incr)); err != nil {
			t.Fatalf("%v incr: %v", dt, err)
		}
		same("incr", incr, w2)
	}
}
