package model

import (
	"bytes"
	"slices"
	"strings"
	"testing"

	"gorgonia.org/tensor"

	"github.com/moetrain/moetrain/checkpoints"
	"github.com/moetrain/moetrain/configs"
)

// A sharded model holds exactly its part of every expert stack, with the
// values the whole model draws there, and everything else whole.
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

// A shard's HF tensors are the whole model's for its own experts; listed
// with the other shards' experts fetched on demand they write the whole
// model's file byte for byte; and the keys it does not hold are exactly
// the other shards' experts, which LoadHF then neither wants nor accepts.
func TestShardHFTensors(t *testing.T) {
	cfg := tinyModel(configs.FFNGShard) // 6 routed experts
	whole, err := New(cfg, tensor.Float32)
	if err != nil {
		t.Fatal(err)
	}
	var want bytes.Buffer
	if err := checkpoints.WriteSafetensors(&want, whole.HFTensors(), nil); err != nil {
		t.Fatal(err)
	}
	m, err := NewSharded(cfg, 1, 3)
	if err != nil {
		t.Fatal(err)
	}
	fetched := map[string]bool{}
	fetch := func(i, e int) ([]float32, error) {
		p := whole.Layout[i]
		per := int(p.Size()) / p.Experts
		fetched[p.HFName(e)] = true
		return whole.Values[i].Data().([]float32)[e*per : (e+1)*per], nil
	}
	var got bytes.Buffer
	if err := checkpoints.WriteSafetensors(&got, m.HFTensorsFrom(fetch), nil); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Bytes(), want.Bytes()) {
		t.Fatal("the shard's file with fetched experts differs from the whole model's")
	}
	foreign := m.HFForeign()
	own := map[string]bool{}
	for _, ts := range m.HFTensors() {
		own[ts.Name] = true
		if foreign(ts.Name) {
			t.Errorf("%s is the shard's own and foreign", ts.Name)
		}
	}
	var kept []checkpoints.Tensor
	for _, ts := range whole.HFTensors() {
		if fetched[ts.Name] != foreign(ts.Name) || fetched[ts.Name] == own[ts.Name] {
			t.Errorf("%s: fetched %v, foreign %v, own %v", ts.Name, fetched[ts.Name], foreign(ts.Name), own[ts.Name])
		}
		if !foreign(ts.Name) {
			kept = append(kept, ts)
		}
	}
	fresh, _ := NewSharded(cfg, 1, 3)
	fresh.Values[0].Data().([]float32)[0] = 7 // LoadHF must overwrite it
	if err := fresh.LoadHF(kept); err != nil {
		t.Fatal(err)
	}
	for i := range m.Values {
		if !slices.Equal(fresh.Values[i].Data().([]float32), m.Values[i].Data().([]float32)) {
			t.Fatalf("%s differs after LoadHF", m.Layout[i].Name)
		}
	}
	if err := fresh.LoadHF(whole.HFTensors()); err == nil || !strings.Contains(err.Error(), "unexpected") {
		t.Errorf("LoadHF of every expert into a shard: got %v, want unexpected keys", err)
	}
}
