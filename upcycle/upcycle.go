package upcycle

import (
	"fmt"
	"strings"

	"gorgonia.org/tensor"

	"github.com/moetrain/moetrain/configs"
	"github.com/moetrain/moetrain/model"
)

// Upcycle returns a float32 MoE model of configuration moe whose weights
// come from the dense model: GShard and Switch experts are each a copy of
// the dense FFN (expert_width = dense_width); DeepSeekMoE's fine-grained
// experts are slices of it. With m = dense_width / expert_width slices, the
// SwiGLU's intermediate dimension [0, F) is cut into slices
// [s·W, (s+1)·W), s < m; the Ks shared experts (merged, width Ks·W) take
// slices 0..Ks−1 and routed expert e takes slice Ks + (e mod (m − Ks)),
// so the routed experts cycle over the remaining slices. Summed over all m
// slices, the slices' SwiGLU outputs are exactly the dense FFN's output.
//
// Every mismatch between the two configs is reported at once, by key.
func Upcycle(dense *model.Model, moe configs.Model) (*model.Model, error) {
	d := dense.Cfg
	var bad []string
	add := func(key, format string, args ...any) {
		bad = append(bad, "model."+key+": "+fmt.Sprintf(format, args...))
	}
	if d.FFN != configs.FFNDense {
		add("ffn", "the model to upcycle is %s; upcycling starts from a dense model", d.FFN)
	}
	switch moe.FFN {
	case configs.FFNGShard, configs.FFNSwitch, configs.FFNDeepSeekMoE:
	default:
		add("ffn", "%s cannot be upcycled (want gshard, switch or deepseekmoe)", moe.FFN)
	}
	same := []struct {
		key  string
		a, b any
	}{
		{"vocab_size", d.VocabSize, moe.VocabSize}, {"hidden", d.Hidden, moe.Hidden}, {"layers", d.Layers, moe.Layers},
		{"heads", d.Heads, moe.Heads}, {"dense_width", d.DenseWidth, moe.DenseWidth},
		{"rope_theta", d.RopeTheta, moe.RopeTheta}, {"norm_eps", d.NormEps, moe.NormEps},
	}
	for _, s := range same {
		if s.a != s.b {
			add(s.key, "%v, the dense model's is %v: the copied weights need the same", s.b, s.a)
		}
	}
	w, f := moe.ExpertWidth, d.DenseWidth
	switch {
	case moe.FFN == configs.FFNGShard || moe.FFN == configs.FFNSwitch:
		if w != f {
			add("expert_width", "%d: a %s expert is a copy of the dense FFN, so it must equal dense_width %d", w, moe.FFN, f)
		}
	case moe.FFN == configs.FFNDeepSeekMoE:
		if w <= 0 || f%w != 0 {
			add("expert_width", "%d must divide dense_width %d: fine-grained experts are slices of the dense FFN", w, f)
		} else if moe.SharedExperts >= f/w {
			add("shared_experts", "%d shared experts take all %d slices of width %d; leave at least one slice for the routed experts", moe.SharedExperts, f/w, w)
		}
	}
	if len(bad) > 0 {
		return nil, &configs.Error{Fields: bad}
	}
	m, err := model.New(moe, tensor.Float32)
	if err != nil {
		return nil, err
	}
	src := func(name string) []float32 {
		i := dense.Index(name)
		if i < 0 {
			panic("upcycle: the dense model has no " + name)
		}
		return float32s(dense, i)
	}
	for i, p := range m.Layout {
		dst := m.Values[i].Data().([]float32)
		pre := fmt.Sprintf("model.layers.%d.mlp.", p.Layer)
		switch {
		case p.Kind == "router" || p.Buffer:
			// Fresh: the router's init, a zero bias.
		case p.Kind == "experts":
			proj := strings.TrimSuffix(strings.TrimPrefix(p.Name, pre+"experts.*."), ".weight")
			full := src(pre + proj + ".weight")
			per := len(dst) / p.Experts
			for e := 0; e < p.Experts; e++ {
				slice := 0
				if moe.FFN == configs.FFNDeepSeekMoE {
					slice = moe.SharedExperts + e%(f/w-moe.SharedExperts)
				}
				copySlice(dst[e*per:(e+1)*per], full, proj, slice, w, f, moe.Hidden)
			}
		case p.Kind == "shared":
			proj := strings.TrimSuffix(strings.TrimPrefix(p.Name, pre+"shared_experts."), ".weight")
			full := src(pre + proj + ".weight")
			for s := 0; s < moe.SharedExperts; s++ {
				// Shared expert s is slice s, and the merged shared SwiGLU
				// is the shared experts side by side.
				copyShared(dst, full, proj, s, w, moe.SharedExperts*w, f, moe.Hidden)
			}
		default:
			copy(dst, src(p.Name))
		}
	}
	return m, nil
}

// copySlice writes into dst ([W, D] for gate/up, [D, W] for down) slice s of
// the dense projection full ([F, D] or [D, F]).
func copySlice(dst, full []float32, proj string, s, w, f, d int) {
	if proj == "down_proj" {
		for r := 0; r < d; r++ {
			copy(dst[r*w:(r+1)*w], full[r*f+s*w:r*f+(s+1)*w])
		}
		return
	}
	copy(dst, full[s*w*d:(s+1)*w*d])
}

// copyShared writes slice s of full into the columns (down) or rows
// (gate, up) [s·W, (s+1)·W) of the merged shared projection dst of width ws.
func copyShared(dst, full []float32, proj string, s, w, ws, f, d int) {
	if proj == "down_proj" {
		for r := 0; r < d; r++ {
			copy(dst[r*ws+s*w:r*ws+(s+1)*w], full[r*f+s*w:r*f+(s+1)*w])
		}
		return
	}
	copy(dst[s*w*d:(s+1)*w*d], full[s*w*d:(s+1)*w*d])
}

func float32s(m *model.Model, i int) []float32 {
	if d, ok := m.Values[i].Data().([]float32); ok {
		return d
	}
	out := make([]float32, 0, m.Values[i].DataSize())
	for _, v := range m.Float64s(i) {
		out = append(out, float32(v))
	}
	return out
}
