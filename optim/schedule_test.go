package optim

import (
	"math"
	"math/big"
	"strings"
	"testing"

	"github.com/moetrain/moetrain/internal/tol"
)

func TestStepSchedule(t *testing.T) {
	s := Schedule{Kind: KindStep, MaxLR: 2e-3, WarmupTokens: 100, TotalTokens: 1000}
	if err := s.Validate(); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		tokens int64
		want   float64
	}{
		{0, 0},
		{25, 2e-3 * 0.25},
		{99, 2e-3 * 0.99},
		{100, 2e-3},
		{799, 2e-3},
		{800, 2e-3 * 0.316},
		{899, 2e-3 * 0.316},
		{900, 2e-3 * 0.316 * 0.316},
		{1000, 2e-3 * 0.316 * 0.316},
		{5000, 2e-3 * 0.316 * 0.316},
	}
	for _, tc := range tests {
		if got := s.LR(tc.tokens); !tol.Float64.Close(got, tc.want) {
			t.Errorf("LR(%d) = %g, want %g", tc.tokens, got, tc.want)
		}
	}
}

func TestStepBoundariesAreFloors(t *testing.T) {
	const perStep = 4194304 // DESIGN.md §5, 2B: 25,000 steps of 4M tokens
	tests := []struct {
		total, first, second int64
	}{
		{25000 * perStep, 20000 * perStep, 22500 * perStep},
		{1001, 800, 900},
		{19, 15, 17},
	}
	// Near the int64 limit, where 8·total would overflow.
	huge := int64(math.MaxInt64 - 3)
	f := func(num int64) int64 {
		r := new(big.Int).Mul(big.NewInt(huge), big.NewInt(num))
		return r.Quo(r, big.NewInt(10)).Int64()
	}
	tests = append(tests, struct{ total, first, second int64 }{huge, f(8), f(9)})
	for _, tc := range tests {
		a, b := Schedule{TotalTokens: tc.total}.StepBoundaries()
		if a != tc.first || b != tc.second {
			t.Errorf("total %d: boundaries %d, %d; want %d, %d", tc.total, a, b, tc.first, tc.second)
		}
	}
}

func TestCosineSchedule(t *testing.T) {
	s := Schedule{Kind: KindCosine, MaxLR: 1e-3, WarmupTokens: 200, TotalTokens: 1200, MinLRRatio: 0.1}
	if err := s.Validate(); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		tokens int64
		want   float64
	}{
		{0, 0},
		{100, 0.5e-3},
		{200, 1e-3},
		{700, (1e-3 + 1e-4) / 2}, // halfway through the decay
		{1200, 1e-4},
		{99999, 1e-4},
	}
	for _, tc := range tests {
		if got := s.LR(tc.tokens); !tol.Float64.Close(got, tc.want) {
			t.Errorf("LR(%d) = %g, want %g", tc.tokens, got, tc.want)
		}
	}
	if a, b := s.LR(600), s.LR(601); !(b < a) {
		t.Errorf("cosine not decreasing: LR(600) = %g, LR(601) = %g", a, b)
	}
}

func TestConstantSchedule(t *testing.T) {
	s := Schedule{Kind: KindConstant, MaxLR: 3e-4, WarmupTokens: 10}
	if err := s.Validate(); err != nil {
		t.Fatal(err)
	}
	for tokens, want := range map[int64]float64{0: 0, 5: 1.5e-4, 10: 3e-4, 1 << 40: 3e-4} {
		if got := s.LR(tokens); !tol.Float64.Close(got, want) {
			t.Errorf("LR(%d) = %g, want %g", tokens, got, want)
		}
	}
	noWarmup := Schedule{Kind: KindConstant, MaxLR: 3e-4}
	if got := noWarmup.LR(0); got != 3e-4 {
		t.Errorf("no warmup: LR(0) = %g, want 3e-4", got)
	}
}

func TestScheduleValidate(t *testing.T) {
	good := Schedule{Kind: KindStep, MaxLR: 1e-3, WarmupTokens: 10, TotalTokens: 100}
	tests := []struct {
		name  string
		edit  func(*Schedule)
		field string
	}{
		{"kind", func(s *Schedule) { s.Kind = "linear" }, "schedule.kind"},
		{"zero lr", func(s *Schedule) { s.MaxLR = 0 }, "schedule.max_lr"},
		{"NaN lr", func(s *Schedule) { s.MaxLR = math.NaN() }, "schedule.max_lr"},
		{"negative warmup", func(s *Schedule) { s.WarmupTokens = -1 }, "schedule.warmup_tokens"},
		{"warmup past total", func(s *Schedule) { s.WarmupTokens = 100 }, "schedule.warmup_tokens"},
		{"no total", func(s *Schedule) { s.TotalTokens = 0 }, "schedule.total_tokens"},
		{"min ratio", func(s *Schedule) { s.MinLRRatio = 1.5 }, "schedule.min_lr_ratio"},
	}
	if err := good.Validate(); err != nil {
		t.Fatalf("valid schedule rejected: %v", err)
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := good
			tc.edit(&s)
			err := s.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.field) {
				t.Errorf("got %v, want an error naming %s", err, tc.field)
			}
		})
	}
}
