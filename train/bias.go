package train

// updateBias applies auxiliary-loss-free balancing (model.router.bias_rate)
// after an optimizer step: each MoE layer's bias moves by the loads of the
// step's global batch, the graph's sums over this process's micro-batches
// added up over the data-parallel ranks. Every rank applies the same update
// to its copy. It is called only after a step that updated the weights, so
// a skipped non-finite step moves neither the bias nor any count (the sums
// are reset before every step).
func (t *trainer) updateBias() error {
	if t.cfg.Model.Router.BiasRate <= 0 {
		return nil
	}
	var loads [][]float64
	for _, l := range t.g.StepLoads() {
		loads = append(loads, append([]float64(nil), l...))
	}
	tokens := 0
	if err := t.reduceCounts(loads, &tokens); err != nil {
		return err
	}
	for j, layer := range t.g.RouteOf {
		if err := t.m.UpdateRouterBias(layer, loads[j]); err != nil {
			return err
		}
	}
	return nil
}

// biasRange returns the smallest and largest entry of a router bias
// (float32 or float64 storage); zeros for none.
func biasRange(b any) (lo, hi float64) {
	var xs []float64
	switch d := b.(type) {
	case []float32:
		for _, v := range d {
			xs = append(xs, float64(v))
		}
	case []float64:
		xs = d
	}
	for i, v := range xs {
		if i == 0 || v < lo {
			lo = v
		}
		if i == 0 || v > hi {
			hi = v
		}
	}
	return lo, hi
}
