package train

import (
	"math"

	"github.com/moetrain/moetrain/model/ops"
	"github.com/moetrain/moetrain/rundir"
)

// routeStats summarises each MoE layer's routing in the last micro-batch
// for the metrics.
func (t *trainer) routeStats() []rundir.LayerStats {
	var out []rundir.LayerStats
	for j, rec := range t.g.Routes {
		var mean float64
		if sum, ok := t.g.RouterEntropy(j); ok && rec.N > 0 {
			mean = sum / float64(rec.N)
		}
		st := layerStats(t.g.RouteOf[j], rec, mean)
		v := maxVio(t.g.StepLoads()[j])
		st.MaxVio = &v
		if t.cfg.Model.Router.CapacityFactor > 0 {
			d := t.g.StepDropped(j)
			st.Dropped = &d
		}
		if b := t.m.RouterBias(st.Layer); b != nil {
			lo, hi := biasRange(b)
			st.BiasMin, st.BiasMax = &lo, &hi
		}
		out = append(out, st)
	}
	return out
}

func layerStats(layer int, rec *ops.RouteRecord, entropy float64) rundir.LayerStats {
	s := rundir.LayerStats{Layer: layer, RouterEntropy: entropy}
	if rec == nil || rec.E == 0 {
		return s
	}
	var mx, sum, dead int
	for _, l := range rec.Load {
		sum += l
		if l > mx {
			mx = l
		}
		if l == 0 {
			dead++
		}
	}
	if sum > 0 {
		s.LoadMaxOverMean = float64(mx) / (float64(sum) / float64(rec.E))
		s.Load = make([]float64, len(rec.Load))
		for e, l := range rec.Load {
			s.Load[e] = math.Round(1e5*float64(l)/float64(sum)) / 1e5
		}
	}
	s.DeadShare = float64(dead) / float64(rec.E)
	return s
}

// maxVio is max(load) / mean(load) − 1 (0 for no load).
func maxVio(load []float64) float64 {
	var mx, sum float64
	for _, l := range load {
		sum += l
		mx = max(mx, l)
	}
	if sum == 0 {
		return 0
	}
	return mx/(sum/float64(len(load))) - 1
}
