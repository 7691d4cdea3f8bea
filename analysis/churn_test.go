package analysis

import (
	"strings"
	"testing"

	"gorgonia.org/tensor"

	"github.com/moetrain/moetrain/configs"
	"github.com/moetrain/moetrain/model"
	"github.com/moetrain/moetrain/rundir"
)

// withRouterRowsShifted returns a copy of l whose layer-1 router has row e
// of l's router in row e−1 (mod E): every token's top-1 expert there moves
// to the previous index, and layer 0 routes as before.
func withRouterRowsShifted(t *testing.T, l *rundir.Loaded, tokens int64) *rundir.Loaded {
	t.Helper()
	m, err := model.New(l.Model.Cfg, tensor.Float32)
	if err != nil {
		t.Fatal(err)
	}
	for i := range m.Values {
		m.Values[i] = l.Model.Values[i].Clone().(*tensor.Dense)
	}
	i := m.Index("model.layers.1.mlp.gate.weight")
	w := m.Values[i].Data().([]float32)
	old := l.Model.Values[i].Data().([]float32)
	e, d := l.Model.Cfg.RoutedExperts, l.Model.Cfg.Hidden
	for r := 0; r < e; r++ {
		copy(w[r*d:(r+1)*d], old[((r+1)%e)*d:((r+1)%e+1)*d])
	}
	st := l.State
	st.Tokens = tokens
	return &rundir.Loaded{Model: m, State: st}
}

// The same weights route the same held-out tokens the same way (no churn);
// a router whose rows are rotated sends every token of its layer to another
// expert (churn 1 there, 0 in the untouched layer), and the last
// checkpoint's column compares each with the last.
func TestChurnCountsMovedSlots(t *testing.T) {
	a := untrained(t, configs.FFNSwitch, 8, 1)
	b := withRouterRowsShifted(t, a, 100)
	c := withRouterRowsShifted(t, a, 200)
	c.Model = a.Model
	res, err := Churn(3, models(a, b, c), opts)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Points) != 3 || len(res.Layers) != 2 || res.K != 1 || res.Tokens == 0 {
		t.Fatalf("result shape: %d points, layers %v, K %d, %d tokens", len(res.Points), res.Layers, res.K, res.Tokens)
	}
	// want[i] = {previous layer 0, previous layer 1, final layer 0, final layer 1}; -1: NaN
	want := [][4]float64{{-1, -1, 0, 0}, {0, 1, 0, 1}, {0, 1, 0, 0}}
	for i, p := range res.Points {
		got := [4]float64{p.Previous[0], p.Previous[1], p.Final[0], p.Final[1]}
		for j := range got {
			if want[i][j] < 0 {
				if got[j] == got[j] {
					t.Errorf("point %d value %d = %g, want NaN (no previous checkpoint)", i, j, got[j])
				}
			} else if got[j] != want[i][j] {
				t.Errorf("point %d value %d = %g, want %g", i, j, got[j], want[i][j])
			}
		}
	}
	if res.Experts != 8 {
		t.Errorf("experts %d, want 8", res.Experts)
	}
	if got := res.Table(); len(got.Rows) != 6 || !strings.Contains(got.Notes, "K = 1 of N' = 8") || !strings.Contains(got.Notes, "0.8750") {
		t.Errorf("table: %d rows, notes %q", len(got.Rows), got.Notes)
	}
}

// moved compares expert sets per token, not positions: K = 2 slots listed
// in another order have not moved.
func TestMovedComparesSets(t *testing.T) {
	a := []int32{0, 1, 2, 3, 4, 5}
	for _, c := range []struct {
		b    []int32
		want float64
	}{
		{[]int32{1, 0, 3, 2, 5, 4}, 0},
		{[]int32{0, 7, 2, 3, 4, 5}, 1.0 / 6},
		{[]int32{6, 7, 0, 1, 2, 3}, 1},
	} {
		if got := moved(a, c.b, 2); got != c.want {
			t.Errorf("moved(%v, %v) = %g, want %g", a, c.b, got, c.want)
		}
	}
}

func TestChurnRefusals(t *testing.T) {
	sw := untrained(t, configs.FFNSwitch, 8, 1)
	gs := untrained(t, configs.FFNGShard, 8, 2)
	for _, c := range []struct {
		name string
		ms   []*rundir.Loaded
		want string
	}{
		{"one checkpoint", []*rundir.Loaded{sw}, "needs at least 2 checkpoints"},
		{"dense", []*rundir.Loaded{untrained(t, configs.FFNDense, 0, 0), untrained(t, configs.FFNDense, 0, 0)}, "dense model has no experts"},
		{"two models", []*rundir.Loaded{sw, gs}, "has another model"},
	} {
		if _, err := Churn(len(c.ms), models(c.ms...), opts); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want one containing %q", c.name, err, c.want)
		}
	}
}

// models is Churn's loader over models already in memory.
func models(ms ...*rundir.Loaded) func(int) (*rundir.Loaded, error) {
	return func(i int) (*rundir.Loaded, error) { return ms[i], nil }
}
