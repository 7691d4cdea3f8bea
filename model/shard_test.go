package model

import (
	"slices"
	"testing"

	"gorgonia.org/tensor"

	"github.com/moetrain/moetrain/configs"
)

// A sharded model holds exactly its part of every expert stack, with the
// values the whole model draws there, and everything else whole; a shard
// view is the same part of the whole model's memory.
func TestNewShardedIsTheWholeModelsPart(t *testing.T) {
	cfg := tinyModel(configs.FFNGShard) // 6 routed experts
	whole, err := New(cfg, tensor.Float32)
	if err != nil {
		t.Fatal(err)
	}
	for _, size := range []int{2, 3} {
		for rank := range size {
			m, err := NewSharded(cfg, rank, size)
			if err != nil {
				t.Fatal(err)
			}
			view, err := whole.ShardView(rank, size)
			if err != nil {
				t.Fatal(err)
			}
			held := 0
			for i, p := range m.Layout {
				got, all := m.Values[i].Data().([]float32), whole.Values[i].Data().([]float32)
				lo, hi := m.Own(i)
				if p.Experts > 0 && (hi-lo != len(all)/size || m.Values[i].Shape()[0] != p.Experts/size) {
					t.Fatalf("%s shard %d/%d: [%d, %d) of %d, shape %v", p.Name, rank, size, lo, hi, len(all), m.Values[i].Shape())
				}
				if !slices.Equal(got, all[lo:hi]) {
					t.Fatalf("%s shard %d/%d differs from the whole model's [%d, %d)", p.Name, rank, size, lo, hi)
				}
				if got := view.Values[i].Data().([]float32); !slices.Equal(got, all[lo:hi]) || &got[0] != &all[lo] || !slices.Equal(view.Values[i].Shape(), m.Values[i].Shape()) {
					t.Fatalf("%s: the view of shard %d/%d is not the whole model's [%d, %d)", p.Name, rank, size, lo, hi)
				}
				held += len(got)
			}
			var routed int64
			for _, p := range m.Layout {
				if p.Experts > 0 {
					routed += p.Size()
				}
			}
			if want := Count(cfg).Total - routed + routed/int64(size); int64(held) != want {
				t.Errorf("shard %d/%d holds %d values, want %d", rank, size, held, want)
			}
		}
	}
	if _, err := NewSharded(cfg, 0, 4); err == nil {
		t.Error("4 shards of 6 experts did not fail")
	}
	m, _ := NewSharded(cfg, 1, 2)
	if _, err := m.Build(GraphOptions{Batch: 1, Seq: 4}); err == nil {
		t.Error("a sharded model built a graph without its expert-parallel communicator")
	}
}
