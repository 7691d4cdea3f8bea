package ops

import (
	"fmt"
	"math/rand/v2"

	"github.com/chewxy/hm"
	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// HashMoE is the Hash layer (DESIGN.md §3.4): token t goes to the single expert
// table[ids[t]] with gate 1, y_t = SwiGLU_{table[ids[t]]}(u_t). u [N, D],
// ids Int [N] (the current token ids), table Int [V] (token id → expert,
// stored with the weights), wg and wu [E, W, D], wd [E, D, W]. There is no
// router; the gradient reaches u and the expert weights only. An id outside
// [0, V) or a table entry outside [0, E) is a run-time error.
func HashMoE(u, ids, table, wg, wu, wd *G.Node) (*G.Node, error) {
	return HashMoEWithRecord(u, ids, table, wg, wu, wd, nil)
}

// HashMoEWithRecord is HashMoE that also writes each forward pass's routing
// into rec (nil for none).
func HashMoEWithRecord(u, ids, table, wg, wu, wd *G.Node, rec *RouteRecord) (*G.Node, error) {
	op := &hashOp{base: base{name: "HashMoE", arity: 6}, rec: rec, cache: &expertCache{}}
	return G.ApplyOp(op, u, ids, table, wg, wu, wd)
}

// HashTable draws the random token-id → expert table of a Hash layer:
// entry i is the i-th draw of IntN(experts) from math/rand/v2's PCG seeded
// with (seed, 0). The same seed always gives the same table. It panics if
// vocab < 0 or experts < 1 (configs are validated before models are built).
func HashTable(vocab, experts int, seed uint64) []int {
	if vocab < 0 || experts < 1 {
		panic(fmt.Sprintf("ops: HashTable of %d ids over %d experts", vocab, experts))
	}
	r := rand.New(rand.NewPCG(seed, 0))
	t := make([]int, vocab)
	for i := range t {
		t[i] = r.IntN(experts)
	}
	return t
}

type hashOp struct {
	base
	rec   *RouteRecord
	cache *expertCache
}

func (op *hashOp) Type() hm.Type { return fnType(2, -1, -1, 3, 3, 3, 2) }

func (op *hashOp) InferShape(ds ...G.DimSizer) (tensor.Shape, error) {
	s, err := shapesOf(ds)
	if err != nil {
		return nil, err
	}
	if err := checkExpertShapes("HashMoE", s[0], s[3], s[4], s[5]); err != nil {
		return nil, err
	}
	if s[1].TotalSize() != s[0][0] || s[1].Dims() > 1 || s[2].Dims() > 1 {
		return nil, fmt.Errorf("HashMoE: ids %v and table %v with u %v: want [N] and [V]", s[1], s[2], s[0])
	}
	return s[0].Clone(), nil
}

// hashRouting maps each token id through the table, checking both ranges.
func hashRouting(ids, table *tensor.Dense, e int) (Routing, error) {
	id, tb := ints(ids), ints(table)
	ex := make([]int32, len(id))
	for t, v := range id {
		if v < 0 || v >= len(tb) {
			return Routing{}, fmt.Errorf("HashMoE: token id %d at position %d outside the table [0, %d)", v, t, len(tb))
		}
		x := tb[v]
		if x < 0 || x >= e {
			return Routing{}, fmt.Errorf("HashMoE: table[%d] = %d outside [0, %d) experts", v, x, e)
		}
		ex[t] = int32(x)
	}
	return fixedRouting(ex, e), nil
}

func (op *hashOp) Do(vs ...G.Value) (G.Value, error) {
	if profiling.Load() {
		defer record(op.name, startClock())
	}
	in, err := inputs(op.name, vs)
	if err != nil {
		return nil, err
	}
	if err := checkHashDtypes(op.name, in); err != nil {
		return nil, err
	}
	u := in[0]
	n, d := u.Shape()[0], u.Shape()[1]
	e, w := in[3].Shape()[0], in[3].Shape()[1]
	pt := startPhases(op.name)
	r, err := hashRouting(in[1], in[2], e)
	if err != nil {
		return nil, err
	}
	pt.mark("routing")
	y := op.outputOver(u.Dtype(), n, d) // expertsForward writes every row
	switch u.Dtype() {
	case tensor.Float32:
		expertsForward(op.cache, true, in, r, slice[float32](y), false, d, w, pt)
	case tensor.Float64:
		expertsForward(op.cache, true, in, r, slice[float64](y), false, d, w, pt)
	}
	op.rec.store(&r)
	return y, nil
}

func checkHashDtypes(name string, in []*tensor.Dense) error {
	if in[1].Dtype() != tensor.Int || in[2].Dtype() != tensor.Int {
		return fmt.Errorf("%s: ids %v and table %v, want Int", name, in[1].Dtype(), in[2].Dtype())
	}
	dt := in[0].Dtype()
	if dt != tensor.Float32 && dt != tensor.Float64 {
		return fmt.Errorf("%s: dtype %v", name, dt)
	}
	for _, t := range in[3:] {
		if t.Dtype() != dt {
			return fmt.Errorf("%s: mixed dtypes %v and %v", name, dt, t.Dtype())
		}
	}
	return nil
}

func (op *hashOp) DiffWRT(int) []bool { return []bool{true, false, false, true, true, true} }

func (op *hashOp) SymDiff(in G.Nodes, out, grad *G.Node) (G.Nodes, error) {
	bwd := &hashBackward{base: base{name: "HashMoEBackward", arity: 7}, cache: op.cache}
	diff := []bool{true, false, false, true, true, true}
	return packedGrads(bwd, G.Nodes{in[0], in[1], in[2], in[3], in[4], in[5], grad}, in, diff)
}

// hashBackward packs [du (N·D) | dwg | dwu | dwd] from
// (u, ids, table, wg, wu, wd, dy).
type hashBackward struct {
	base
	cache *expertCache
}

func (op *hashBackward) Type() hm.Type { return fnType(2, -1, -1, 3, 3, 3, 2, 1) }

func (op *hashBackward) InferShape(ds ...G.DimSizer) (tensor.Shape, error) {
	s, err := shapesOf(ds)
	if err != nil {
		return nil, err
	}
	return tensor.Shape{packedSize(s[:6], []bool{true, false, false, true, true, true})}, nil
}

func (op *hashBackward) Do(vs ...G.Value) (G.Value, error) {
	if profiling.Load() {
		defer record(op.name, startClock())
	}
	in, err := inputs(op.name, vs)
	if err != nil {
		return nil, err
	}
	if err := checkHashDtypes(op.name, in); err != nil {
		return nil, err
	}
	if in[6].Dtype() != in[0].Dtype() {
		return nil, fmt.Errorf("%s: dy dtype %v, want %v", op.name, in[6].Dtype(), in[0].Dtype())
	}
	u := in[0]
	n, d := u.Shape()[0], u.Shape()[1]
	e, w := in[3].Shape()[0], in[3].Shape()[1]
	sizes := []int{n * d, e * w * d, e * w * d, e * d * w}
	// Not zeroed here: expertsBackward writes du whole and the weight
	// gradients of every expert with tokens; hashBackwardTyped clears those
	// of the others (as MoE's backward does).
	p := op.outputOver(u.Dtype(), sizes[0]+sizes[1]+sizes[2]+sizes[3])
	switch u.Dtype() {
	case tensor.Float32:
		err = hashBackwardTyped(op, in, slice[float32](in[6]), split(slice[float32](p), sizes), e, d, w)
	case tensor.Float64:
		err = hashBackwardTyped(op, in, slice[float64](in[6]), split(slice[float64](p), sizes), e, d, w)
	}
	if err != nil {
		return nil, err
	}
	return p, nil
}

func hashBackwardTyped[F Float](op *hashBackward, in []*tensor.Dense, dy []F, g [][]F, e, d, w int) error {
	r, act := op.cache.load(in[:6])
	if act == nil {
		var err error
		if r, err = hashRouting(in[1], in[2], e); err != nil {
			return err
		}
		act = expertsActivations[F](nil, r, slice[F](in[0]), slice[F](in[3]), slice[F](in[4]), d, w)
	}
	a, ok := act.(*expertAct[F])
	if !ok {
		panic(fmt.Sprintf("ops: HashMoE cache holds %T", act))
	}
	clearIdleExperts(g[1], g[2], g[3], r, w, d)
	expertsBackward(g[0], false, nil, g[1], g[2], g[3], a, r, slice[F](in[0]), dy, slice[F](in[3]), slice[F](in[4]), slice[F](in[5]), d, w, startPhases(op.name))
	return nil
}
