package ops

import (
	"fmt"

	"github.com/chewxy/hm"
	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"

	"github.com/moetrain/moetrain/internal/parallel"
)

// Embed returns the rows of table [V, d] picked by the token ids [N] (an Int
// vector): y[n,:] = table[ids[n],:], so y is [N, d]. An id outside [0, V) is
// an error from the run, not a panic. Only the table is differentiated.
func Embed(ids, table *G.Node) (*G.Node, error) {
	return G.ApplyOp(newEmbedOp(), ids, table)
}

type embedOp struct{ base }

func newEmbedOp() *embedOp { return &embedOp{base{name: "Embed", arity: 2}} }

func (op *embedOp) Type() hm.Type { return fnType(-1, 2, 2) }

func (op *embedOp) InferShape(ds ...G.DimSizer) (tensor.Shape, error) {
	s, err := shapesOf(ds)
	if err != nil {
		return nil, err
	}
	if s[0].Dims() != 1 || s[1].Dims() != 2 {
		return nil, fmt.Errorf("Embed: ids %v and table %v: want [N] and [V, d]", s[0], s[1])
	}
	return tensor.Shape{s[0][0], s[1][1]}, nil
}

func (op *embedOp) Do(vs ...G.Value) (G.Value, error) {
	if profiling.Load() {
		defer record(op.name, startClock())
	}
	in, err := inputs(op.name, vs)
	if err != nil {
		return nil, err
	}
	idt, table := in[0], in[1]
	ids, err := checkIDs(op.name, "id", idt, table.Shape()[0])
	if err != nil {
		return nil, err
	}
	n, d := len(ids), table.Shape()[1]
	y := op.outputOver(table.Dtype(), n, d)
	switch table.Dtype() {
	case tensor.Float32:
		embedGather(slice[float32](y), slice[float32](table), ids, d)
	case tensor.Float64:
		embedGather(slice[float64](y), slice[float64](table), ids, d)
	default:
		return nil, fmt.Errorf("Embed: table dtype %v", table.Dtype())
	}
	return y, nil
}

func (op *embedOp) DiffWRT(int) []bool { return []bool{false, true} }

func (op *embedOp) SymDiff(in G.Nodes, _, grad *G.Node) (G.Nodes, error) {
	dt, err := G.ApplyOp(&embedBackward{base{name: "EmbedBackward", arity: 3}}, in[0], in[1], grad)
	if err != nil {
		return nil, err
	}
	return G.Nodes{nil, dt}, nil
}

// embedBackward computes dtable [V, d] from (ids, table, dy); the table is a
// child only for its shape and dtype.
type embedBackward struct{ base }

func (op *embedBackward) Type() hm.Type { return fnType(-1, 2, 2, 2) }

func (op *embedBackward) InferShape(ds ...G.DimSizer) (tensor.Shape, error) {
	s, err := shapesOf(ds)
	if err != nil {
		return nil, err
	}
	return s[1].Clone(), nil
}

func (op *embedBackward) Do(vs ...G.Value) (G.Value, error) {
	if profiling.Load() {
		defer record(op.name, startClock())
	}
	in, err := inputs(op.name, vs)
	if err != nil {
		return nil, err
	}
	idt, table, dy := in[0], in[1], in[2]
	if err := sameFloat(op.name, table, dy); err != nil {
		return nil, err
	}
	v, d := table.Shape()[0], table.Shape()[1]
	ids, err := checkIDs(op.name, "id", idt, v)
	if err != nil {
		return nil, err
	}
	dt := op.output(table.Dtype(), v, d)
	switch table.Dtype() {
	case tensor.Float32:
		embedScatter(slice[float32](dt), slice[float32](dy), ids, v, d)
	case tensor.Float64:
		embedScatter(slice[float64](dt), slice[float64](dy), ids, v, d)
	}
	return dt, nil
}

// checkIDs returns the data of an Int vector after checking that every entry
// lies in [0, v); what names the entries in the error ("id", "target").
func checkIDs(op, what string, t *tensor.Dense, v int) ([]int, error) {
	ids, ok := t.Data().([]int)
	if !ok {
		return nil, fmt.Errorf("%s: %ss have dtype %v, want int", op, what, t.Dtype())
	}
	for i, id := range ids {
		if id < 0 || id >= v {
			return nil, fmt.Errorf("%s: %s %d at position %d is outside [0, %d)", op, what, id, i, v)
		}
	}
	return ids, nil
}

func embedGather[F Float](y, table []F, ids []int, d int) {
	parallel.For(len(ids), denseRowsGrain(d), func(lo, hi int) {
		for i := lo; i < hi; i++ {
			copy(y[i*d:(i+1)*d], table[ids[i]*d:(ids[i]+1)*d])
		}
	})
}

// embedScatter adds dy[n,:] into dt[ids[n],:]. Workers own disjoint ranges
// of table rows and every worker scans the ids in token order, so each row
// receives its additions in token order whatever the worker count.
func embedScatter[F Float](dt, dy []F, ids []int, v, d int) {
	parallel.For(v, 1, func(lo, hi int) {
		for n, id := range ids {
			if id < lo || id >= hi {
				continue
			}
			dst, src := dt[id*d:(id+1)*d], dy[n*d:(n+1)*d]
			for j := range dst {
				dst[j] += src[j]
			}
		}
	})
}
