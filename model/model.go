package model

import (
	"fmt"
	"hash/fnv"
	"math"
	"math/rand/v2"

	"gorgonia.org/tensor"

	"github.com/moetrain/moetrain/configs"
	"github.com/moetrain/moetrain/model/ops"
)

// Model holds the configuration and the weights of one model.
type Model struct {
	Cfg    configs.Model
	Layout []Param
	// Values is parallel to Layout: float32 (training) or float64 (gradient
	// checks) tensors, and tensor.Int for hash tables.
	Values []*tensor.Dense
	Dtype  tensor.Dtype
	// ShardRank and ShardSize, with ShardSize > 1, make a model of one
	// expert-parallel rank (NewSharded): each routed-expert stack holds
	// only experts [ShardRank·E/ShardSize, (ShardRank+1)·E/ShardSize), as
	// a [E/ShardSize, out, in] tensor; Layout still describes the whole
	// model.
	ShardRank, ShardSize int
}

// New validates cfg, allocates the weights in dtype (Float32 or Float64) and
// initialises them from cfg.InitSeed: every matrix ~ N(0, init_std²), norm
// weights 1 (DESIGN.md §1), hash tables drawn from the seed (DESIGN.md §3.4).
func New(cfg configs.Model, dtype tensor.Dtype) (*Model, error) {
	if bad := cfg.Validate(); len(bad) > 0 {
		return nil, &configs.Error{Fields: bad}
	}
	if dtype != tensor.Float32 && dtype != tensor.Float64 {
		return nil, fmt.Errorf("model: dtype %v: want float32 or float64", dtype)
	}
	return newModel(cfg, dtype, 0, 1), nil
}

// NewSharded is New (float32) for expert-parallel rank rank of size: the
// routed experts of every MoE layer other ranks hold are never allocated.
// Its values equal the matching part of New's.
func NewSharded(cfg configs.Model, rank, size int) (*Model, error) {
	if bad := cfg.Validate(); len(bad) > 0 {
		return nil, &configs.Error{Fields: bad}
	}
	if size < 1 || rank < 0 || rank >= size || cfg.RoutedExperts%size != 0 {
		return nil, fmt.Errorf("model: expert shard %d of %d for %d routed experts", rank, size, cfg.RoutedExperts)
	}
	return newModel(cfg, tensor.Float32, rank, size), nil
}

func newModel(cfg configs.Model, dtype tensor.Dtype, rank, size int) *Model {
	m := &Model{Cfg: cfg, Layout: Layout(cfg), Dtype: dtype}
	if size > 1 {
		m.ShardRank, m.ShardSize = rank, size
	}
	m.Values = make([]*tensor.Dense, len(m.Layout))
	for i, p := range m.Layout {
		switch {
		case p.Int:
			m.Values[i] = tensor.New(tensor.WithShape(p.Shape...), tensor.WithBacking(make([]int, p.Size())))
		case p.Experts > 0 && size > 1:
			shape := append([]int{p.Experts / size}, p.Shape[1:]...)
			m.Values[i] = tensor.New(tensor.Of(dtype), tensor.WithShape(shape...))
		default:
			m.Values[i] = tensor.New(tensor.Of(dtype), tensor.WithShape(p.Shape...))
		}
	}
	m.Init(cfg.InitSeed)
	return m
}

// Sharded reports whether m holds only some routed experts (NewSharded).
func (m *Model) Sharded() bool { return m.ShardSize > 1 }

// Own returns the element range [lo, hi) of parameter i's whole tensor
// that m holds: ExpertShard's range of a sharded model's expert stack,
// else all of it.
func (m *Model) Own(i int) (lo, hi int) {
	return ExpertShard(m.Layout[i], m.ShardRank, m.ShardSize)
}

// paramSeed derives a per-tensor seed from the model seed and the tensor's
// name, so that adding a tensor never changes how another is drawn.
func paramSeed(seed uint64, name string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(name))
	return h.Sum64() ^ (seed * 0x9E3779B97F4A7C15)
}

// Init redraws every weight from seed (a sharded model draws the whole
// sequence of each expert stack and keeps its part).
func (m *Model) Init(seed uint64) {
	std := m.Cfg.InitStd
	for i, p := range m.Layout {
		r := rand.New(rand.NewPCG(paramSeed(seed, p.Name), 0x6d6f657472616e))
		if lo, _ := m.Own(i); lo > 0 {
			for range lo {
				r.NormFloat64()
			}
		}
		switch {
		case p.Int:
			copy(m.Values[i].Data().([]int), ops.HashTable(m.Cfg.VocabSize, m.Cfg.RoutedExperts, paramSeed(seed, p.Name)))
		case p.Kind == "norm":
			m.fill(i, func() float64 { return 1 })
		case p.Buffer:
			m.fill(i, func() float64 { return 0 })
		default:
			m.fill(i, func() float64 { return r.NormFloat64() * std })
		}
	}
}

func (m *Model) fill(i int, f func() float64) {
	switch d := m.Values[i].Data().(type) {
	case []float32:
		for j := range d {
			d[j] = float32(f())
		}
	case []float64:
		for j := range d {
			d[j] = f()
		}
	}
}

// Index returns the position of the named tensor in Layout, or -1.
func (m *Model) Index(name string) int {
	for i, p := range m.Layout {
		if p.Name == name {
			return i
		}
	}
	return -1
}

// Float64s returns a copy of tensor i as float64 (tests and comparisons).
func (m *Model) Float64s(i int) []float64 {
	switch d := m.Values[i].Data().(type) {
	case []float32:
		out := make([]float64, len(d))
		for j, v := range d {
			out[j] = float64(v)
		}
		return out
	case []float64:
		return append([]float64(nil), d...)
	case []int:
		out := make([]float64, len(d))
		for j, v := range d {
			out[j] = float64(v)
		}
		return out
	}
	return nil
}

// Finite reports whether every weight is finite.
func (m *Model) Finite() bool {
	for _, v := range m.Values {
		switch d := v.Data().(type) {
		case []float32:
			for _, x := range d {
				if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
					return false
				}
			}
		case []float64:
			for _, x := range d {
				if math.IsNaN(x) || math.IsInf(x, 0) {
					return false
				}
			}
		}
	}
	return true
}

// RouterBias returns the selection bias of MoE layer l (auxiliary-loss-free
// balancing, model.router.bias_rate), as the model's float32 or float64
// storage, or nil when the layer has none.
func (m *Model) RouterBias(l int) any {
	i := m.Index(fmt.Sprintf("model.layers.%d.%s", l, BiasSuffix))
	if i < 0 {
		return nil
	}
	return m.Values[i].Data()
}

// UpdateRouterBias applies one step of auxiliary-loss-free balancing
// (DeepSeek-V3, Wang et al. 2024, arXiv 2408.15664) to layer l's selection
// bias, given load[e], the (token, slot) pairs routed to expert e over the
// optimizer step's global batch:
//
//	b_e ← b_e + γ · sign(mean_i load_i − load_e)
//
// so overloaded experts become less likely to be chosen and idle ones more.
// The update is computed in the model's dtype, so every process applying it
// to the same loads holds the same bias bit for bit.
func (m *Model) UpdateRouterBias(l int, load []float64) error {
	b := m.RouterBias(l)
	if b == nil {
		return fmt.Errorf("model: layer %d has no router bias", l)
	}
	if len(load) != m.Cfg.RoutedExperts {
		return fmt.Errorf("model: layer %d: %d loads for %d experts", l, len(load), m.Cfg.RoutedExperts)
	}
	var mean float64
	for _, v := range load {
		mean += v
	}
	mean /= float64(len(load))
	rate := m.Cfg.Router.BiasRate
	step := func(e int) float64 {
		switch {
		case load[e] < mean:
			return rate
		case load[e] > mean:
			return -rate
		}
		return 0
	}
	switch d := b.(type) {
	case []float32:
		for e := range d {
			d[e] += float32(step(e))
		}
	case []float64:
		for e := range d {
			d[e] += step(e)
		}
	}
	return nil
}
