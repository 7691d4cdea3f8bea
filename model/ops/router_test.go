package ops

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"

	"github.com/moetrain/moetrain/internal/gradcheck"
	"github.com/moetrain/moetrain/internal/tol"
)

func TestSigmoidGradient(t *testing.T) {
	in := []gradcheck.Input{{Name: "x", Value: gradcheck.Rand(rand.New(rand.NewPCG(1, 40)), 4, 5, 7), Diff: true}}
	build := func(_ *G.ExprGraph, in []*G.Node) (*G.Node, error) { return Sigmoid(in[0]) }
	gradcheck.Check(t, 41, in, build, gradcheck.Default)
	checkOpFloat32(t, in, build)
}

func TestZLoss(t *testing.T) {
	const alpha = 0.3
	x := gradcheck.Rand(rand.New(rand.NewPCG(2, 40)), 3, 6, 5)
	in := []gradcheck.Input{{Name: "x", Value: x, Diff: true}}
	build := func(_ *G.ExprGraph, in []*G.Node) (*G.Node, error) { return ZLoss(in[0], alpha) }
	gradcheck.Check(t, 42, in, build, gradcheck.Default)
	checkOpFloat32(t, in, build)
	// A router's width, where float32 rows take the eight-lane exponentials.
	checkOpFloat32(t, []gradcheck.Input{{Name: "x", Value: gradcheck.Rand(rand.New(rand.NewPCG(3, 40)), 3, 16, 63), Diff: true}}, build)
	// The value, by the formula: α · mean_t (log Σ_i e^{x_ti})².
	got, _ := runOpGraph(t, tensor.Float64, []gradcheck.Input{{Name: "x", Value: x}}, build)
	d := x.Data().([]float64)
	var want float64
	for r := 0; r < 6; r++ {
		var s float64
		for _, v := range d[r*5 : (r+1)*5] {
			s += math.Exp(v)
		}
		want += math.Log(s) * math.Log(s)
	}
	want *= alpha / 6
	if !tol.Float64.Close(got[0], want) {
		t.Errorf("z-loss %.15g, want %.15g", got[0], want)
	}
}

// biasedCase is a router whose sigmoid scores, shifted by a bias, pick other
// experts than the scores alone for some tokens, with every biased gap at
// the top-k cut far wider than a finite-difference step.
func biasedCase(t *testing.T, n, e, k int) (logits *tensor.Dense, bias []float64) {
	t.Helper()
	r := rand.New(rand.NewPCG(9, 40))
	bias = make([]float64, e)
	for i := range bias {
		bias[i] = 0.15 * float64(i%3)
	}
	for try := 0; try < 1000; try++ {
		x := make([]float64, n*e)
		for tok := 0; tok < n; tok++ {
			for j, i := range r.Perm(e) {
				x[tok*e+i] = 1.5 - 0.5*float64(j)
			}
		}
		ok, differs := true, false
		for tok := 0; tok < n && ok; tok++ {
			s, b := make([]float64, e), make([]float64, e)
			for i := range s {
				s[i] = safeSigmoid(x[tok*e+i])
				b[i] = s[i] + bias[i]
			}
			sorted := slices.Clone(b)
			slices.Sort(sorted)
			ok = sorted[e-k]-sorted[e-k-1] > 1e-3
			if !slices.Equal(sortedTopK(s, k), sortedTopK(b, k)) {
				differs = true
			}
		}
		if ok && differs {
			return tensor.New(tensor.WithShape(n, e), tensor.WithBacking(x)), bias
		}
	}
	t.Fatal("no well-separated biased case found")
	return nil, nil
}

// TestMoEGatedGradient checks the DeepSeek-V3 router end to end: logits →
// sigmoid → top-k on score + bias → gates normalised over the chosen
// unbiased scores and scaled, through the experts. The gradient reaches the
// logits through the gates only; the bias takes none.
func TestMoEGatedGradient(t *testing.T) {
	const n, d, e, w = 6, 4, 6, 3
	for _, k := range []int{1, 2, 3} {
		logits, bias := biasedCase(t, n, e, k)
		r := rand.New(rand.NewPCG(uint64(k), 41))
		ins := []gradcheck.Input{
			{Name: "u", Value: gradcheck.Rand(r, 1, n, d), Diff: true},
			{Name: "logits", Value: logits, Diff: true},
			{Name: "wg", Value: gradcheck.Rand(r, 0.5, e, w, d), Diff: true},
			{Name: "wu", Value: gradcheck.Rand(r, 0.5, e, w, d), Diff: true},
			{Name: "wd", Value: gradcheck.Rand(r, 0.5, e, d, w), Diff: true},
			{Name: "bias", Value: tensor.New(tensor.WithShape(e), tensor.WithBacking(bias))},
		}
		g := Gating{K: k, Renorm: true, Scale: 2.5}
		build := func(_ *G.ExprGraph, in []*G.Node) (*G.Node, error) {
			s, err := Sigmoid(in[1])
			if err != nil {
				return nil, err
			}
			return MoEGated(in[0], s, in[2], in[3], in[4], in[5], g, nil)
		}
		gradcheck.Check(t, 43, ins, build, gradcheck.Default)
		checkOpFloat32(t, ins, build)
	}
}

// TestRouteGated checks the gates by hand: selection by score + bias, gates
// from the unbiased scores, normalised only when k > 1, then scaled.
func TestRouteGated(t *testing.T) {
	scores := []float64{0.5, 0.3, 0.2, 0.9, 0.8, 0.1}
	bias := []float64{0, 0, 0.4, -0.5, 0, 0}
	for _, tc := range []struct {
		name    string
		scores  []float64
		bias    []float64
		g       Gating
		experts []int32
		gates   []float64
	}{
		{"k=1 biased choice, raw gate", scores[:3], bias[:3], Gating{K: 1, Renorm: true, Scale: 2}, []int32{2}, []float64{0.4}},
		{"k=2 biased, renormalised, scaled", scores, bias, Gating{K: 2, Renorm: true, Scale: 3}, []int32{4, 2}, []float64{3 * 0.8 / 1.0, 3 * 0.2 / 1.0}},
		{"k=2 no bias, raw", scores, nil, Gating{K: 2}, []int32{3, 4}, []float64{0.9, 0.8}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := RouteGated(tc.scores, tc.bias, 1, len(tc.scores), tc.g)
			if !slices.Equal(r.Experts, tc.experts) {
				t.Fatalf("experts %v, want %v", r.Experts, tc.experts)
			}
			if err := tol.Float64.CheckSlice("gates", r.Gates, tc.gates); err != nil {
				t.Error(err)
			}
		})
	}
}

// TestBalanceCountsFollowTheBias: with a selection bias, the balance loss's f
// counts the experts the MoE op actually chose.
func TestBalanceCountsFollowTheBias(t *testing.T) {
	// Two tokens over 3 experts, k = 1: probabilities favour expert 0, the
	// bias sends both tokens to expert 2.
	probs := []float64{0.5, 0.3, 0.2, 0.6, 0.1, 0.3}
	bias := []float64{0, 0, 0.5}
	run := func(withBias bool) float64 {
		ins := []gradcheck.Input{{Name: "p", Value: tensor.New(tensor.WithShape(2, 3), tensor.WithBacking(slices.Clone(probs)))}}
		if withBias {
			ins = append(ins, gradcheck.Input{Name: "b", Value: tensor.New(tensor.WithShape(3), tensor.WithBacking(slices.Clone(bias)))})
		}
		got, _ := runOpGraph(t, tensor.Float64, ins, func(_ *G.ExprGraph, in []*G.Node) (*G.Node, error) {
			var b *G.Node
			if withBias {
				b = in[1]
			}
			return ExpertBalanceWithCounts(in[0], b, 1, 2, 1, 1, false, nil)
		})
		return got[0]
	}
	// f_i = count_i·E/(N·k); L = Σ f_i·P_i with P the mean probabilities.
	p := []float64{0.55, 0.2, 0.25}
	if got, want := run(false), 3.0*p[0]; !tol.Float64.Close(got, want) {
		t.Errorf("unbiased loss %g, want %g (both tokens on expert 0)", got, want)
	}
	if got, want := run(true), 3.0*p[2]; !tol.Float64.Close(got, want) {
		t.Errorf("biased loss %g, want %g (both tokens on expert 2)", got, want)
	}
}

// TestRouteCapacity checks token dropping by hand: capacity is per expert
// per sequence, the smallest gates go first (ties: the later token), and a
// dropped slot leaves the expert-major order.
func TestRouteCapacity(t *testing.T) {
	// Two sequences of 4 tokens, 2 experts, k = 1: capacity
	// ⌈1·4·1.0/2⌉ = 2. Sequence 0 sends tokens 0, 1, 2 to expert 0 with
	// gates 0.9, 0.6, 0.8 (token 1 is dropped); sequence 1 sends all four
	// to expert 1 with gates 0.7, 0.7, 0.9, 0.7 (tokens 6 and 4, the
	// earlier of the tied, are kept; 5 and 7 dropped).
	scores := []float64{
		0.9, 0.1, 0.6, 0.4, 0.8, 0.2, 0.3, 0.7,
		0.3, 0.7, 0.3, 0.7, 0.1, 0.9, 0.3, 0.7,
	}
	c := CapacityOf(1, 4, 2, 1.0)
	if c != 2 {
		t.Fatalf("capacity %d, want 2", c)
	}
	r := RouteGated(scores, nil, 8, 2, Gating{K: 1, Capacity: c, Seq: 4})
	want := []bool{false, true, false, false, false, true, false, true}
	if !slices.Equal(r.Dropped, want) || r.NumDropped != 3 {
		t.Fatalf("dropped %v (%d), want %v", r.Dropped, r.NumDropped, want)
	}
	for s, d := range want {
		if d != (r.Pos[s] < 0) {
			t.Errorf("slot %d: Pos %d, dropped %v", s, r.Pos[s], d)
		}
		if !d && r.PosGates[r.Pos[s]] != r.Gates[s] {
			t.Errorf("slot %d: PosGates[%d] = %g, its gate %g", s, r.Pos[s], r.PosGates[r.Pos[s]], r.Gates[s])
		}
	}
	if r.Load(0) != 2 || r.Load(1) != 3 {
		t.Errorf("computed loads %d, %d, want 2, 3", r.Load(0), r.Load(1))
	}
	rec := &RouteRecord{}
	rec.store(&r)
	if !slices.Equal(rec.Load, []int{3, 5}) || rec.Dropped != 3 {
		t.Errorf("record: load %v dropped %d, want the router's demand [3 5] and 3", rec.Load, rec.Dropped)
	}
	// GShard's figure: k = 2, 4 tokens per sequence, 4 experts, factor
	// 1.25: ⌈2·4·1.25/4⌉ = 3.
	if c := CapacityOf(2, 4, 4, 1.25); c != 3 {
		t.Errorf("capacity %d, want 3", c)
	}
}

// TestMoECapacityGradient: with dropping, a dropped slot adds nothing to
// the output, and the gradient (through the renormalised gates of GShard,
// whose sum still includes the dropped choice) matches finite differences.
func TestMoECapacityGradient(t *testing.T) {
	const n, d, e, w, k, seq = 12, 4, 4, 3, 2, 6
	g := Gating{K: k, Renorm: true, Capacity: CapacityOf(k, seq, e, 0.75), Seq: seq}
	var ins []gradcheck.Input
	for seed := uint64(1); ; seed++ {
		r := rand.New(rand.NewPCG(seed, 44))
		probs := separatedProbs(r, n, e)
		rt := RouteGated(probs.Data().([]float64), nil, n, e, g)
		if rt.NumDropped == 0 || !dropMargins(rt, seq, 1e-3) {
			continue
		}
		ins = []gradcheck.Input{
			{Name: "u", Value: gradcheck.Rand(r, 1, n, d), Diff: true},
			{Name: "probs", Value: probs, Diff: true},
			{Name: "wg", Value: gradcheck.Rand(r, 0.5, e, w, d), Diff: true},
			{Name: "wu", Value: gradcheck.Rand(r, 0.5, e, w, d), Diff: true},
			{Name: "wd", Value: gradcheck.Rand(r, 0.5, e, d, w), Diff: true},
		}
		break
	}
	build := func(_ *G.ExprGraph, in []*G.Node) (*G.Node, error) {
		return MoEGated(in[0], in[1], in[2], in[3], in[4], nil, g, nil)
	}
	gradcheck.Check(t, 45, ins, build, gradcheck.Default)
	// The output equals the naive per-token sum over the kept slots.
	p := ins[1].Value.Data().([]float64)
	rt := RouteGated(p, nil, n, e, g)
	u, wg, wu, wd := ins[0].Value.Data().([]float64), ins[2].Value.Data().([]float64), ins[3].Value.Data().([]float64), ins[4].Value.Data().([]float64)
	want := make([]float64, n*d)
	for s, x := range rt.Experts {
		if rt.Dropped[s] {
			continue
		}
		tok := s / k
		one := naiveMoE(u[tok*d:(tok+1)*d], onehot(e, int(x)), wg, wu, wd, 1, d, e, w, 1, false)
		for i := range one {
			want[tok*d+i] += rt.Gates[s] * one[i]
		}
	}
	got, _ := runOpGraph(t, tensor.Float64, ins, build)
	if err := tol.Float64.CheckSlice("output", got, want); err != nil {
		t.Error(err)
	}
}

func onehot(e, x int) []float64 {
	p := make([]float64, e)
	p[x] = 1
	return p
}

// dropMargins reports whether, in every sequence, each over-capacity
// expert's last kept and first dropped gates differ by more than m (so a
// finite-difference step cannot change what is dropped).
func dropMargins(r Routing, seq int, m float64) bool {
	for b := 0; b < r.N/seq; b++ {
		for x := 0; x < r.E; x++ {
			var kept, dropped []float64
			for s := b * seq * r.K; s < (b+1)*seq*r.K; s++ {
				if int(r.Experts[s]) != x {
					continue
				}
				if r.Dropped[s] {
					dropped = append(dropped, r.Gates[s])
				} else {
					kept = append(kept, r.Gates[s])
				}
			}
			if len(dropped) > 0 && slices.Min(kept)-slices.Max(dropped) <= m {
				return false
			}
		}
	}
	return true
}

// TestRouteExpertChoice checks expert choice by hand: each expert takes its
// top-c tokens of each sequence by score, a token may get none or several.
func TestRouteExpertChoice(t *testing.T) {
	// One sequence of 4 tokens, 2 experts, capacity 2 (k = 1:
	// ⌈4·1/2⌉). Expert 0's scores 0.9, 0.2, 0.6, 0.5 → tokens 0, 2;
	// expert 1's 0.1, 0.8, 0.4, 0.5 → tokens 1, 3.
	scores := []float64{0.9, 0.1, 0.2, 0.8, 0.6, 0.4, 0.5, 0.5}
	r := RouteGated(scores, nil, 4, 2, Gating{K: 1, ExpertChoice: true, Capacity: 2, Seq: 4, Scale: 2})
	want := []bool{false, true, true, false, false, true, true, false}
	if !slices.Equal(r.Dropped, want) || r.NumDropped != 4 {
		t.Fatalf("dropped %v (%d), want %v", r.Dropped, r.NumDropped, want)
	}
	if r.Load(0) != 2 || r.Load(1) != 2 || r.Gates[0] != 1.8 || r.Gates[7] != 1 {
		t.Errorf("loads %d, %d, gates %v", r.Load(0), r.Load(1), r.Gates)
	}
	// A token every expert wants gets them all; another gets none.
	scores = []float64{0.9, 0.9, 0.1, 0.1, 0.5, 0.5, 0.2, 0.2}
	r = RouteGated(scores, nil, 4, 2, Gating{K: 1, ExpertChoice: true, Capacity: 2, Seq: 4})
	if want := []bool{false, false, true, true, false, false, true, true}; !slices.Equal(r.Dropped, want) {
		t.Errorf("dropped %v, want %v", r.Dropped, want)
	}
	rec := &RouteRecord{}
	rec.store(&r)
	if !slices.Equal(rec.Load, []int{2, 2}) || rec.Dropped != 0 {
		t.Errorf("record load %v dropped %d, want [2 2] and 0", rec.Load, rec.Dropped)
	}
}

// group, and groupBlocks with 1 to 5 blocks, sort slots as a stable sort
// by expert does: each expert's kept slots in slot order, Pos their
// inverse (−1 for a dropped slot), PosGates their gates; the routing's
// slices come from the pool, holding an earlier routing's values.
func TestGroupIsStableSort(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 70))
	for _, c := range []struct {
		n, e, k int
		drop    bool
	}{{3, 4, 2, false}, {2048, 63, 7, false}, {2048, 16, 2, false}, {1000, 63, 7, true}, {999, 5, 3, true}} {
		for nb := 0; nb <= 5; nb++ { // 0: group's own choice
			got := newRouting(c.n, c.e, c.k)
			for s := range got.Experts {
				// Skewed: half the slots on the first few experts.
				got.Experts[s] = int32(r.IntN(c.e))
				if r.IntN(2) == 0 {
					got.Experts[s] = int32(r.IntN(min(3, c.e)))
				}
				got.Gates[s] = r.Float64()
			}
			if c.drop {
				got.Dropped = make([]bool, len(got.Experts))
				for s := range got.Dropped {
					got.Dropped[s] = r.IntN(4) == 0
				}
			}
			if nb == 0 {
				got.group()
			} else {
				got.groupBlocks(nb)
			}
			var want []int32 // kept slots, stably sorted by expert
			for s := range got.Experts {
				if !c.drop || !got.Dropped[s] {
					want = append(want, int32(s))
				}
			}
			slices.SortStableFunc(want, func(a, b int32) int { return int(got.Experts[a] - got.Experts[b]) })
			if !slices.Equal(got.Slots[:got.Kept()], want) {
				t.Fatalf("n=%d e=%d k=%d drop=%v blocks=%d: slots %v, want %v", c.n, c.e, c.k, c.drop, nb, got.Slots[:min(20, got.Kept())], want[:min(20, len(want))])
			}
			for x := 0; x < c.e; x++ {
				for _, sl := range got.Slots[got.Offsets[x]:got.Offsets[x+1]] {
					if got.Experts[sl] != int32(x) {
						t.Fatalf("n=%d e=%d blocks=%d: slot %d of expert %d in expert %d's run", c.n, c.e, nb, sl, got.Experts[sl], x)
					}
				}
			}
			for s := range got.Experts {
				p := got.Pos[s]
				if c.drop && got.Dropped[s] {
					if p != -1 {
						t.Fatalf("blocks=%d: dropped slot %d at %d, want -1", nb, s, p)
					}
					continue
				}
				if got.Slots[p] != int32(s) || got.PosGates[p] != got.Gates[s] {
					t.Fatalf("blocks=%d: slot %d at %d holds slot %d, gate %g, want gate %g", nb, s, p, got.Slots[p], got.PosGates[p], got.Gates[s])
				}
			}
			got.release() // its slices, values and all, to the next newRouting
		}
	}
}

// An expert-choice routing's own grouping (each expert placing its slots
// on the workers) gives group's offsets, slots and positions, at several
// sequence counts, widths and capacities.
func TestExpertChoiceGroupMatchesGroup(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 50))
	for _, c := range []struct{ n, e, seq, capacity int }{{8, 3, 4, 2}, {64, 7, 16, 5}, {256, 63, 128, 14}, {40, 16, 8, 8}} {
		scores := make([]float32, c.n*c.e)
		for i := range scores {
			scores[i] = r.Float32()
		}
		got := RouteGated(scores, nil, c.n, c.e, Gating{K: 1, ExpertChoice: true, Capacity: c.capacity, Seq: c.seq})
		want := got
		want.Offsets, want.Slots, want.Pos, want.PosGates = make([]int32, c.e+1), make([]int32, len(got.Slots)), make([]int32, len(got.Pos)), make([]float64, len(got.PosGates))
		want.group()
		if !slices.Equal(got.Offsets, want.Offsets) || !slices.Equal(got.Slots[:got.Kept()], want.Slots[:want.Kept()]) || !slices.Equal(got.Pos, want.Pos) || !slices.Equal(got.PosGates[:got.Kept()], want.PosGates[:want.Kept()]) {
			t.Errorf("n=%d e=%d seq=%d c=%d: offsets %v slots %v pos %v, group gives %v %v %v",
				c.n, c.e, c.seq, c.capacity, got.Offsets, got.Slots, got.Pos, want.Offsets, want.Slots, want.Pos)
		}
	}
}

// TestMoEExpertChoiceGradient: the gradient of expert-choice routing (the
// score is the gate) matches finite differences.
func TestMoEExpertChoiceGradient(t *testing.T) {
	const n, d, e, w, seq = 10, 4, 4, 3, 5
	g := Gating{K: 2, ExpertChoice: true, Capacity: CapacityOf(2, seq, e, 1), Seq: seq}
	var ins []gradcheck.Input
	for seed := uint64(1); ins == nil; seed++ {
		r := rand.New(rand.NewPCG(seed, 46))
		probs := separatedProbs(r, n, e)
		if !columnMargins(probs.Data().([]float64), n, e, seq, g.Capacity, 1e-3) {
			continue
		}
		ins = []gradcheck.Input{
			{Name: "u", Value: gradcheck.Rand(r, 1, n, d), Diff: true},
			{Name: "probs", Value: probs, Diff: true},
			{Name: "wg", Value: gradcheck.Rand(r, 0.5, e, w, d), Diff: true},
			{Name: "wu", Value: gradcheck.Rand(r, 0.5, e, w, d), Diff: true},
			{Name: "wd", Value: gradcheck.Rand(r, 0.5, e, d, w), Diff: true},
		}
	}
	build := func(_ *G.ExprGraph, in []*G.Node) (*G.Node, error) {
		return MoEGated(in[0], in[1], in[2], in[3], in[4], nil, g, nil)
	}
	gradcheck.Check(t, 47, ins, build, gradcheck.Default)
	checkOpFloat32(t, ins, build)
}

// columnMargins reports whether, in every sequence and expert column, the
// c-th and (c+1)-th largest scores differ by more than m.
func columnMargins(p []float64, n, e, seq, c int, m float64) bool {
	for b := 0; b < n/seq; b++ {
		for x := 0; x < e; x++ {
			col := make([]float64, seq)
			for t := range col {
				col[t] = p[(b*seq+t)*e+x]
			}
			slices.Sort(col)
			if col[seq-c]-col[seq-c-1] <= m {
				return false
			}
		}
	}
	return true
}
