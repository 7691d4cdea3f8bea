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
	m := &Model{Cfg: cfg, Layout: Layout(cfg), Dtype: dtype}
	m.Values = make([]*tensor.Dense, len(m.Layout))
	for i, p := range m.Layout {
		if p.Int {
			m.Values[i] = tensor.New(tensor.WithShape(p.Shape...), tensor.WithBacking(make([]int, p.Size())))
		} else {
			m.Values[i] = tensor.New(tensor.Of(dtype), tensor.WithShape(p.Shape...))
		}
	}
	m.Init(cfg.InitSeed)
	return m, nil
}

// paramSeed derives a per-tensor seed from the model seed and the tensor's
// name, so that adding a tensor never changes how another is drawn.
func paramSeed(seed uint64, name string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(name))
	return h.Sum64() ^ (seed * 0x9E3779B97F4A7C15)
}

// Init redraws every weight from seed.
func (m *Model) Init(seed uint64) {
	std := m.Cfg.InitStd
	for i, p := range m.Layout {
		r := rand.New(rand.NewPCG(paramSeed(seed, p.Name), 0x6d6f657472616e))
		switch {
		case p.Int:
			copy(m.Values[i].Data().([]int), ops.HashTable(m.Cfg.VocabSize, m.Cfg.RoutedExperts, paramSeed(seed, p.Name)))
		case p.Kind == "norm":
			m.fill(i, func() float64 { return 1 })
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
