package model

import "math"

// RouterEntropy returns the entropy (nats) of the router's softmax of MoE
// layer entry j of the last Run, summed over its tokens (divide by
// Routes[j].N for the mean; ln E is uniform), and false for a hash layer,
// which has no router. Training metrics and the analyses both use it.
func (gr *Graph) RouterEntropy(j int) (float64, bool) {
	p := gr.RouterProbs(j)
	if p == nil {
		return 0, false
	}
	var total float64
	switch x := p.Data().(type) {
	case []float32:
		for _, v := range x {
			if v > 0 {
				total -= float64(v) * math.Log(float64(v))
			}
		}
	case []float64:
		for _, v := range x {
			if v > 0 {
				total -= v * math.Log(v)
			}
		}
	}
	return total, true
}
