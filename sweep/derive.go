package sweep

import "fmt"

// Standard describes the granularity-1 MoE a ladder starts from: Experts
// standard FFNs of width Width in total (shared + routed), Active of them
// activated per token (shared + routed).
type Standard struct {
	Experts, Active, Width int
}

// Experts is the expert layout of one point of a ladder.
type Experts struct {
	Shared, Routed, Active, Width int // Active counts routed experts only (K')
}

// Derive applies fine-grained segmentation with factor m and shared expert
// isolation with ks shared experts to std, at fixed total and activated
// expert parameters (DESIGN.md §2.2-2.3, §4.1): m·N experts in total of which ks
// are shared, so N' = m·N − ks routed, K' = m·K − ks of them activated, each
// of width floor(r·f) for relative size r = 1/m (DESIGN.md §4.1's width rule;
// f=3413 gives 3413, 1706, 853 for m = 1, 2, 4).
func Derive(std Standard, m, ks int) (Experts, error) {
	if std.Experts < 1 || std.Active < 1 || std.Width < 1 {
		return Experts{}, fmt.Errorf("derive experts: the granularity-1 model needs experts, active experts and a width (got %d, %d, %d)", std.Experts, std.Active, std.Width)
	}
	if m < 1 {
		return Experts{}, fmt.Errorf("granularity %d: want >= 1", m)
	}
	if ks < 0 {
		return Experts{}, fmt.Errorf("shared %d: want >= 0", ks)
	}
	e := Experts{Shared: ks, Routed: m*std.Experts - ks, Active: m*std.Active - ks, Width: std.Width / m}
	if e.Active < 1 || e.Routed < e.Active {
		return Experts{}, fmt.Errorf("granularity %d with %d shared experts leaves %d of %d routed experts active; want at least 1", m, ks, e.Active, e.Routed)
	}
	if e.Width < 1 {
		return Experts{}, fmt.Errorf("granularity %d: expert width floor(%d/%d) is 0", m, std.Width, m)
	}
	return e, nil
}
