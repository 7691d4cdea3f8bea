package ops

import (
	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// Engine is the tensor engine for graphs of these ops: give it to the
// machine (G.NewTapeMachine(g, G.WithEngine(ops.Engine))) so the values the
// machine allocates carry it, as the ops' own outputs do.
var Engine tensor.Engine = engine{}

// engine is gorgonia's default engine (G.StandardEngine) with Add run on
// every worker for float tensors of one shape. Where a node feeds several
// ops, gorgonia sums its gradients with tensor.Add, which calls the first
// operand's engine; StdEng's Add runs on one core, and those sums took
// about 4 ms of CPU per sci-moe training step (docs/BENCHMARKS.md, round
// 10) while the other core waited. The sum is the same float additions, so
// the bits do not change. Anything else (and any Add this one does not
// take: increments, other dtypes, views, mixed shapes) goes to gorgonia's.
type engine struct{ G.StandardEngine }

// Add computes a + b: into the reuse tensor when one is given, into a when
// unsafe, else into a new tensor, as StdEng.Add does.
func (e engine) Add(a, b tensor.Tensor, opts ...tensor.FuncOpt) (tensor.Tensor, error) {
	out, took, err := addWhole(a, b, tensor.ParseFuncOpts(opts...))
	if !took {
		return e.StandardEngine.Add(a, b, opts...)
	}
	return out, err
}

// addWhole is engine.Add's own path; took is false, and nothing is
// written, for what it leaves to gorgonia's engine: increments, other
// dtypes, views, mixed shapes.
func addWhole(a, b tensor.Tensor, fo *tensor.OpOpt) (out *tensor.Dense, took bool, err error) {
	ad, okA := a.(*tensor.Dense)
	bd, okB := b.(*tensor.Dense)
	if fo.Incr() != nil || !okA || !okB || !wholeFloat(ad) || !wholeFloat(bd) || ad.Dtype() != bd.Dtype() || !ad.Shape().Eq(bd.Shape()) {
		return nil, false, nil
	}
	switch reuse := fo.Reuse(); {
	case reuse != nil:
		rd, ok := reuse.(*tensor.Dense)
		if !ok || !wholeFloat(rd) || rd.Dtype() != ad.Dtype() || rd.Shape().TotalSize() != ad.Shape().TotalSize() {
			return nil, false, nil
		}
		if !rd.Shape().Eq(ad.Shape()) {
			if err := rd.Reshape(ad.Shape().Clone()...); err != nil {
				return nil, true, err
			}
		}
		out = rd
	case !fo.Safe():
		out = ad
	default:
		out = newOf(ad.Dtype(), ad.Shape().Clone()...)
	}
	addDense(out, ad, bd)
	return out, true, nil
}

// wholeFloat reports whether t is a float32 or float64 tensor whose data is
// its own contiguous backing in memory, not a view with strides.
func wholeFloat(t *tensor.Dense) bool {
	dt := t.Dtype()
	return (dt == tensor.Float32 || dt == tensor.Float64) && !t.IsView() && !t.RequiresIterator() && t.IsNativelyAccessible() && t.DataSize() == t.Shape().TotalSize()
}
