package ops

import "math"

// exp64Table holds exp64x4's constants (vexp64_amd64.s), written as the
// Go runtime's math.archExp writes them.
var exp64Table = [14]uint64{
	math.Float64bits(1.4426950408889634073599246810018920),                  // log2e
	math.Float64bits(0.69314718055966295651160180568695068359375),           // ln2, upper half
	math.Float64bits(0.28235290563031577122588448175013436025525412068e-12), // ln2, lower half
	math.Float64bits(0.0625),
	math.Float64bits(2.4801587301587301587e-5),
	math.Float64bits(1.9841269841269841270e-4),
	math.Float64bits(1.3888888888888888889e-3),
	math.Float64bits(8.3333333333333333333e-3),
	math.Float64bits(4.1666666666666666667e-2),
	math.Float64bits(1.6666666666666666667e-1),
	math.Float64bits(0.5),
	math.Float64bits(1.0),
	math.Float64bits(2.0),
	1023,
}

// expRow sets x[i] = math.Exp(x[i]): with exp64x4 over the leading
// multiple of four when the CPU allows and every value lies in its range,
// else one at a time; the same bits either way.
func expRow(x []float64) {
	i := 0
	if vexp64OK && inExp64Range(x) {
		if i = len(x) &^ 3; i > 0 {
			exp64x4(&x[0], i)
		}
	}
	for ; i < len(x); i++ {
		x[i] = math.Exp(x[i])
	}
}

// inExp64Range reports whether exp64x4 takes every value of x (false for
// NaN).
func inExp64Range(x []float64) bool {
	for _, v := range x {
		if !(v >= -700 && v <= 700) {
			return false
		}
	}
	return true
}
