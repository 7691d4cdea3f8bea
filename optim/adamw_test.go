package optim

import (
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/moetrain/moetrain/internal/tol"
)

// f32 is the tolerance for float32 results against float64 arithmetic:
// a few float32 roundings (ulp ≈ 6e-8 relative).
var f32 = tol.Tol{Abs: 1e-7, Rel: 1e-6}

var testCfg = AdamWConfig{Beta1: 0.9, Beta2: 0.95, Eps: 1e-8, WeightDecay: 0.1}

// TestAdamWMatchesHandComputedSteps applies two steps to three scalars and
// compares with the AdamW formula written out by hand in float64.
func TestAdamWMatchesHandComputedSteps(t *testing.T) {
	params := []Param{
		{Name: "a", Data: []float32{0.5}, Grad: []float32{0.1}, Decay: true},
		{Name: "b", Data: []float32{-1.5}, Grad: []float32{0.3}, Decay: false},
		{Name: "c", Data: []float32{2}, Grad: []float32{0}, Decay: true},
	}
	opt, err := NewAdamW(testCfg, params)
	if err != nil {
		t.Fatal(err)
	}
	const lr = 0.01
	if err := opt.Step(params, lr); err != nil {
		t.Fatal(err)
	}
	// Step 1: m = 0.1·g, v = 0.05·g², bias corrections 1−0.9 = 0.1 and
	// 1−0.95 = 0.05, decay factor 1 − 0.01·0.1 = 0.999.
	want1 := []float64{
		0.5*0.999 - lr/0.1*(0.1*0.1)/(math.Sqrt(0.05*0.1*0.1)/math.Sqrt(0.05)+1e-8), // ≈ 0.4995 − 0.01
		-1.5 - lr/0.1*(0.1*0.3)/(math.Sqrt(0.05*0.3*0.3)/math.Sqrt(0.05)+1e-8),      // no decay: ≈ −1.51
		2 * 0.999, // zero gradient: only decay moves it
	}
	checkData(t, "step 1", params, want1)

	// Step 2 with new gradients: g_a = −0.2, g_b = 0.05, g_c = 0.
	params[0].Grad[0], params[1].Grad[0] = -0.2, 0.05
	if err := opt.Step(params, lr); err != nil {
		t.Fatal(err)
	}
	mA := 0.9*(0.1*0.1) + 0.1*(-0.2)
	vA := 0.95*(0.05*0.1*0.1) + 0.05*(0.2*0.2)
	mB := 0.9*(0.1*0.3) + 0.1*0.05
	vB := 0.95*(0.05*0.3*0.3) + 0.05*(0.05*0.05)
	bc1, bc2 := 1-0.9*0.9, 1-0.95*0.95
	want2 := []float64{
		want1[0]*0.999 - lr/bc1*mA/(math.Sqrt(vA)/math.Sqrt(bc2)+1e-8),
		want1[1] - lr/bc1*mB/(math.Sqrt(vB)/math.Sqrt(bc2)+1e-8),
		2 * 0.999 * 0.999,
	}
	checkData(t, "step 2", params, want2)
	if opt.Steps() != 2 {
		t.Errorf("Steps() = %d, want 2", opt.Steps())
	}
}

func checkData(t *testing.T, label string, params []Param, want []float64) {
	t.Helper()
	got := make([]float64, len(params))
	for i, p := range params {
		got[i] = float64(p.Data[0])
	}
	if err := f32.CheckSlice(label, got, want); err != nil {
		t.Error(err)
	}
}

func TestAdamWSkipsDecayWhereOff(t *testing.T) {
	// Zero gradients: Adam's update is 0/(0+ε) = 0, so only decay can move a weight.
	params := []Param{
		{Name: "norm.weight", Data: []float32{1, -2, 3}, Grad: make([]float32, 3), Decay: false},
		{Name: "w", Data: []float32{1, -2, 3}, Grad: make([]float32, 3), Decay: true},
	}
	opt, err := NewAdamW(testCfg, params)
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if err := opt.Step(params, 0.5); err != nil {
			t.Fatal(err)
		}
	}
	for j, w := range params[0].Data {
		if want := []float32{1, -2, 3}[j]; w != want {
			t.Errorf("norm.weight[%d] = %g, want %g (no decay)", j, w, want)
		}
	}
	keep := math.Pow(1-0.5*0.1, 3)
	for j, w := range params[1].Data {
		if want := []float64{1, -2, 3}[j] * keep; !f32.Close(float64(w), want) {
			t.Errorf("w[%d] = %g, want %g (decayed 3 times)", j, w, want)
		}
	}
}

func randomParams(rng *rand.Rand, sizes ...int) []Param {
	ps := make([]Param, len(sizes))
	for i, n := range sizes {
		ps[i] = Param{Name: string(rune('a'+i)) + ".weight", Data: make([]float32, n), Grad: make([]float32, n), Decay: i%2 == 0}
		for j := range n {
			ps[i].Data[j] = float32(rng.NormFloat64())
		}
	}
	return ps
}

func fillGrads(rng *rand.Rand, ps []Param) {
	for _, p := range ps {
		for j := range p.Grad {
			p.Grad[j] = float32(rng.NormFloat64() * 0.01)
		}
	}
}

func cloneParams(ps []Param) []Param {
	out := make([]Param, len(ps))
	for i, p := range ps {
		out[i] = Param{Name: p.Name, Data: append([]float32(nil), p.Data...), Grad: append([]float32(nil), p.Grad...), Decay: p.Decay}
	}
	return out
}

// TestAdamWStateRoundTripIsBitExact: 3 steps, save, restore into a fresh
// optimizer, 3 more steps must equal 6 uninterrupted steps bit for bit.
func TestAdamWStateRoundTripIsBitExact(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	straight := randomParams(rng, 7, 40000, 3) // 40000 > one parallel chunk
	opt, err := NewAdamW(testCfg, straight)
	if err != nil {
		t.Fatal(err)
	}
	grads := rand.New(rand.NewPCG(3, 4))
	var saved State
	var resumed []Param
	for step := range 6 {
		fillGrads(grads, straight)
		if step == 3 {
			saved = opt.State()
			resumed = cloneParams(straight)
		}
		if err := opt.Step(straight, 1e-3); err != nil {
			t.Fatal(err)
		}
	}
	if saved.Step != 3 || len(saved.Slices) != 6 || saved.Slices[0].Name != "a.weight.exp_avg" || saved.Slices[1].Name != "a.weight.exp_avg_sq" {
		t.Fatalf("saved state: step %d, %d slices, first %q, %q", saved.Step, len(saved.Slices), saved.Slices[0].Name, saved.Slices[1].Name)
	}
	opt2, err := NewAdamW(testCfg, resumed)
	if err != nil {
		t.Fatal(err)
	}
	// Reverse the slice order: SetState matches by name.
	rev := State{Step: saved.Step}
	for i := len(saved.Slices) - 1; i >= 0; i-- {
		rev.Slices = append(rev.Slices, saved.Slices[i])
	}
	if err := opt2.SetState(rev); err != nil {
		t.Fatal(err)
	}
	grads = rand.New(rand.NewPCG(3, 4))
	for step := range 6 {
		fillGrads(grads, resumed) // same gradient stream; the first 3 draws are discarded below
		if step < 3 {
			continue
		}
		if err := opt2.Step(resumed, 1e-3); err != nil {
			t.Fatal(err)
		}
	}
	for i := range straight {
		for j := range straight[i].Data {
			if math.Float32bits(straight[i].Data[j]) != math.Float32bits(resumed[i].Data[j]) {
				t.Fatalf("%s[%d]: straight %g, resumed %g", straight[i].Name, j, straight[i].Data[j], resumed[i].Data[j])
			}
		}
	}
	s1, s2 := opt.State(), opt2.State()
	if s1.Step != s2.Step {
		t.Errorf("steps: straight %d, resumed %d", s1.Step, s2.Step)
	}
	for i := range s1.Slices {
		for j := range s1.Slices[i].Data {
			if math.Float32bits(s1.Slices[i].Data[j]) != math.Float32bits(s2.Slices[i].Data[j]) {
				t.Fatalf("%s[%d] differs after resume", s1.Slices[i].Name, j)
			}
		}
	}
}

func TestAdamWSetStateRejectsMismatches(t *testing.T) {
	ps := randomParams(rand.New(rand.NewPCG(5, 6)), 4, 2)
	opt, err := NewAdamW(testCfg, ps)
	if err != nil {
		t.Fatal(err)
	}
	fillGrads(rand.New(rand.NewPCG(7, 8)), ps)
	if err := opt.Step(ps, 1e-3); err != nil {
		t.Fatal(err)
	}
	good := opt.State()
	edit := func(f func(s *State)) State {
		s := opt.State()
		f(&s)
		return s
	}
	tests := []struct {
		name, want string
		s          State
	}{
		{"negative step", "step -1", edit(func(s *State) { s.Step = -1 })},
		{"short slice", "3 values, want 4", edit(func(s *State) { s.Slices[0].Data = s.Slices[0].Data[:3] })},
		{"missing slice", "b.weight.exp_avg_sq: missing", edit(func(s *State) { s.Slices = s.Slices[:3] })},
		{"unknown slice", "z.exp_avg: no such", edit(func(s *State) { s.Slices = append(s.Slices, NamedSlice{Name: "z.exp_avg"}) })},
		{"duplicate slice", "given twice", edit(func(s *State) { s.Slices = append(s.Slices, s.Slices[0]) })},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := opt.SetState(tc.s)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error containing %q", err, tc.want)
			}
			after := opt.State()
			if after.Step != good.Step || after.Slices[0].Data[0] != good.Slices[0].Data[0] {
				t.Error("failed SetState changed the optimizer")
			}
		})
	}
}

func TestAdamWStepRejectsMismatchedParams(t *testing.T) {
	ps := randomParams(rand.New(rand.NewPCG(9, 10)), 4, 2)
	opt, err := NewAdamW(testCfg, ps)
	if err != nil {
		t.Fatal(err)
	}
	renamed := cloneParams(ps)
	renamed[1].Name = "other"
	shorter := cloneParams(ps)
	shorter[0].Grad = shorter[0].Grad[:3]
	flipped := cloneParams(ps)
	flipped[0].Decay = !flipped[0].Decay
	for name, bad := range map[string][]Param{"renamed": renamed, "short grad": shorter, "decay flipped": flipped, "missing": ps[:1]} {
		if err := opt.Step(bad, 1e-3); err == nil {
			t.Errorf("%s: Step accepted mismatched params", name)
		}
	}
	for _, lr := range []float64{-1, math.NaN(), math.Inf(1)} {
		if err := opt.Step(ps, lr); err == nil {
			t.Errorf("Step accepted lr %g", lr)
		}
	}
	if opt.Steps() != 0 {
		t.Errorf("rejected steps were counted: Steps() = %d", opt.Steps())
	}
	if _, err := NewAdamW(AdamWConfig{Beta1: 1, Beta2: 0.95, Eps: 1e-8}, ps); err == nil {
		t.Error("NewAdamW accepted beta1 = 1")
	}
	dup := cloneParams(ps)
	dup[1].Name = dup[0].Name
	if _, err := NewAdamW(testCfg, dup); err == nil {
		t.Error("NewAdamW accepted duplicate names")
	}
}

// TestAdamWStepScaledEqualsScaledGradients: folding the clipping factor
// into the update must give bit for bit what scaling the gradients in place
// and then stepping gives, and leave the gradients alone.
func TestAdamWStepScaledEqualsScaledGradients(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	a := randomParams(rng, 5, 70000, 3)
	b := cloneParams(a)
	oa, _ := NewAdamW(testCfg, a)
	ob, _ := NewAdamW(testCfg, b)
	for step := range 3 {
		fillGrads(rng, a)
		for i := range a {
			copy(b[i].Grad, a[i].Grad)
		}
		norm := GlobalNorm(a)
		maxNorm := norm / float64(step+2)
		scale := ClipScale(norm, maxNorm)
		if scale == 1 {
			t.Fatalf("norm %g, max %g: no clipping", norm, maxNorm)
		}
		if got := ClipGlobalNorm(b, maxNorm); got != norm {
			t.Fatalf("ClipGlobalNorm returned %g, GlobalNorm %g", got, norm)
		}
		before := cloneParams(a)
		if err := oa.StepScaled(a, 0.01, scale); err != nil {
			t.Fatal(err)
		}
		if err := ob.Step(b, 0.01); err != nil {
			t.Fatal(err)
		}
		for i := range a {
			for j := range a[i].Data {
				if a[i].Data[j] != b[i].Data[j] {
					t.Fatalf("step %d: %s[%d] = %g fused, %g scaled first", step, a[i].Name, j, a[i].Data[j], b[i].Data[j])
				}
				if a[i].Grad[j] != before[i].Grad[j] {
					t.Fatalf("step %d: StepScaled changed gradient %s[%d]", step, a[i].Name, j)
				}
			}
		}
	}
	if err := oa.StepScaled(a, 0.01, float32(math.Inf(1))); err == nil {
		t.Error("StepScaled accepted an infinite scale")
	}
}

// TestAdamWMatchesFloat64Arithmetic runs several steps on many random
// elements against the formula in float64 (state rounded to float32 after
// each step, as stored): the float32 arithmetic stays within a few ulp of
// the update.
func TestAdamWMatchesFloat64Arithmetic(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	ps := randomParams(rng, 1000, 777)
	ref := cloneParams(ps)
	opt, _ := NewAdamW(testCfg, ps)
	m := [][]float32{make([]float32, 1000), make([]float32, 777)}
	v := [][]float32{make([]float32, 1000), make([]float32, 777)}
	const lr = 1e-3
	for step := 1; step <= 4; step++ {
		fillGrads(rng, ps)
		for i := range ps {
			copy(ref[i].Grad, ps[i].Grad)
		}
		if err := opt.Step(ps, lr); err != nil {
			t.Fatal(err)
		}
		b1, b2 := testCfg.Beta1, testCfg.Beta2
		bc1, bc2 := 1-math.Pow(b1, float64(step)), 1-math.Pow(b2, float64(step))
		for i, p := range ref {
			keep := 1.0
			if p.Decay {
				keep = 1 - lr*testCfg.WeightDecay
			}
			for j := range p.Data {
				g := float64(p.Grad[j])
				mj := b1*float64(m[i][j]) + (1-b1)*g
				vj := b2*float64(v[i][j]) + (1-b2)*g*g
				upd := lr / bc1 * mj / (math.Sqrt(vj)/math.Sqrt(bc2) + testCfg.Eps)
				want := float64(p.Data[j])*keep - upd
				// A few float32 roundings of w and of the update.
				tl := tol.Tol{Abs: 4e-7 * math.Abs(upd), Rel: 2e-7}
				if got := float64(ps[i].Data[j]); !tl.Close(got, want) {
					t.Fatalf("step %d: %s[%d] = %.9g, float64 formula %.9g", step, p.Name, j, got, want)
				}
				m[i][j], v[i][j] = float32(mj), float32(vj)
				p.Data[j] = ps[i].Data[j] // follow the tested path's rounding
			}
		}
	}
}

// adamUpdate's vector kernel gives the scalar loop's bits for w, m and v,
// over random states, steps, scales and lengths with a scalar tail.
func TestAdamUpdateVectorMatchesScalarBits(t *testing.T) {
	if !adamVecOK {
		t.Skip("no vector AdamW on this CPU")
	}
	r := rand.New(rand.NewPCG(5, 6))
	for trial := range 40 {
		n := 1 + r.IntN(3000)
		step := 1 + r.IntN(10000)
		b1, b2 := 0.9, 0.95
		k := adamConsts{
			b1: float32(b1), c1: float32(1 - b1), b2: float32(b2), c2: float32(1 - b2),
			stepSize: float32(1e-3 / (1 - math.Pow(b1, float64(step)))),
			sqrtBc2:  float32(math.Sqrt(1 - math.Pow(b2, float64(step)))),
			eps:      1e-8,
			scale:    float32(r.Float64() * 2),
		}
		keep := float32(1 - 1e-4*r.Float64())
		w, g, m, v := make([]float32, n), make([]float32, n), make([]float32, n), make([]float32, n)
		for i := range w {
			w[i] = float32(r.NormFloat64() * 0.02)
			g[i] = float32(r.NormFloat64() * math.Pow(10, float64(r.IntN(9)-6)))
			m[i] = float32(r.NormFloat64() * 1e-3)
			v[i] = float32(math.Abs(r.NormFloat64()) * math.Pow(10, float64(r.IntN(12)-14)))
			if r.IntN(50) == 0 {
				g[i], m[i], v[i] = 0, 0, 0
			}
		}
		w2, m2, v2 := append([]float32(nil), w...), append([]float32(nil), m...), append([]float32(nil), v...)
		adamUpdate(&k, keep, w, g, m, v)
		adamUpdateScalar(&k, keep, w2, g, m2, v2)
		for i := range w {
			if math.Float32bits(w[i]) != math.Float32bits(w2[i]) || math.Float32bits(m[i]) != math.Float32bits(m2[i]) || math.Float32bits(v[i]) != math.Float32bits(v2[i]) {
				t.Fatalf("trial %d, n=%d, element %d: vector w,m,v = %g,%g,%g; scalar %g,%g,%g", trial, n, i, w[i], m[i], v[i], w2[i], m2[i], v2[i])
			}
		}
	}
}

// AdoptState on a new optimizer keeps the given slices as its moments (a
// resumed run holds them once) and then steps exactly as SetState's copy
// does; once the optimizer has its own moments, AdoptState copies.
func TestAdamWAdoptState(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	ps := randomParams(rng, 5, 300, 2)
	st := State{Step: 4}
	for _, p := range ps {
		for _, suf := range []string{".exp_avg", ".exp_avg_sq"} {
			d := make([]float32, len(p.Data))
			for j := range d {
				d[j] = float32(rng.Float64())
			}
			st.Slices = append(st.Slices, NamedSlice{Name: p.Name + suf, Data: d})
		}
	}
	copied := State{Step: st.Step}
	for _, s := range st.Slices {
		copied.Slices = append(copied.Slices, NamedSlice{Name: s.Name, Data: append([]float32(nil), s.Data...)})
	}
	a, b := cloneParams(ps), cloneParams(ps)
	adopter, err := NewAdamW(testCfg, a)
	if err != nil {
		t.Fatal(err)
	}
	copier, err := NewAdamW(testCfg, b)
	if err != nil {
		t.Fatal(err)
	}
	if err := adopter.AdoptState(st); err != nil {
		t.Fatal(err)
	}
	if err := copier.SetState(copied); err != nil {
		t.Fatal(err)
	}
	for k, s := range adopter.Moments().Slices {
		if &s.Data[0] != &st.Slices[k].Data[0] {
			t.Fatalf("%s: not the adopted slice", s.Name)
		}
	}
	for k, s := range copier.Moments().Slices {
		if &s.Data[0] == &copied.Slices[k].Data[0] {
			t.Fatalf("%s: SetState kept the caller's slice", s.Name)
		}
	}
	grads := rand.New(rand.NewPCG(9, 10))
	fillGrads(grads, a)
	for i := range a {
		copy(b[i].Grad, a[i].Grad)
	}
	if err := adopter.Step(a, 1e-3); err != nil {
		t.Fatal(err)
	}
	if err := copier.Step(b, 1e-3); err != nil {
		t.Fatal(err)
	}
	for i := range a {
		for j := range a[i].Data {
			if math.Float32bits(a[i].Data[j]) != math.Float32bits(b[i].Data[j]) {
				t.Fatalf("%s[%d]: adopted %g, copied %g", a[i].Name, j, a[i].Data[j], b[i].Data[j])
			}
		}
	}
	// Now the optimizer owns its moments: adopting again copies.
	if err := adopter.AdoptState(copied); err != nil {
		t.Fatal(err)
	}
	if m := adopter.Moments().Slices[0]; &m.Data[0] == &copied.Slices[0].Data[0] || &m.Data[0] != &st.Slices[0].Data[0] {
		t.Error("AdoptState replaced moments the optimizer already held")
	}
}

// TestAdamWLeavesFrozenParams: two steps with the second parameter frozen
// from the second step leave its values and moments as the first step made
// them, while the other parameter steps exactly as when optimized alone;
// GlobalNorm leaves the frozen gradient out.
func TestAdamWLeavesFrozenParams(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	both := randomParams(rng, 40, 24)
	alone := cloneParams(both[:1])
	opt, err := NewAdamW(testCfg, both)
	if err != nil {
		t.Fatal(err)
	}
	optAlone, err := NewAdamW(testCfg, alone)
	if err != nil {
		t.Fatal(err)
	}
	var frozenData, frozenM []float32
	for step := range 2 {
		fillGrads(rng, both)
		copy(alone[0].Grad, both[0].Grad)
		if step == 1 {
			frozenData = append([]float32(nil), both[1].Data...)
			frozenM = append([]float32(nil), opt.State().Slices[2].Data...)
			both[1].Frozen = true
			if got, want := GlobalNorm(both), GlobalNorm(alone); got != want {
				t.Errorf("norm with a frozen parameter = %g, want %g (the others' alone)", got, want)
			}
		}
		if err := opt.Step(both, 0.01); err != nil {
			t.Fatal(err)
		}
		if err := optAlone.Step(alone, 0.01); err != nil {
			t.Fatal(err)
		}
	}
	if !slices.Equal(both[0].Data, alone[0].Data) {
		t.Errorf("the trained parameter differs from its run alone")
	}
	if !slices.Equal(both[1].Data, frozenData) {
		t.Errorf("the frozen parameter moved")
	}
	if got := opt.State().Slices[2].Data; !slices.Equal(got, frozenM) {
		t.Errorf("the frozen parameter's first moment moved")
	}
}
