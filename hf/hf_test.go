package hf

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"gorgonia.org/tensor"

	"github.com/moetrain/moetrain/checkpoints"
	"github.com/moetrain/moetrain/configs"
	"github.com/moetrain/moetrain/data"
	"github.com/moetrain/moetrain/data/prepare"
	"github.com/moetrain/moetrain/internal/tol"
	"github.com/moetrain/moetrain/model"
	"github.com/moetrain/moetrain/rundir"
	"github.com/moetrain/moetrain/train"
)

// dataset is a small synthetic dataset prepared once for the package.
var dataset string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "moetrain-hf-test-")
	if err != nil {
		panic(err)
	}
	dataset = filepath.Join(dir, "data")
	err = prepare.SyntheticDataset(dataset, 7, 200, 300, 0.1)
	if err != nil {
		panic(err)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

var exportable = []string{configs.FFNDense, configs.FFNDeepSeekMoE, configs.FFNGShard, configs.FFNSwitch}

// tinyConfig is a tiny run of each kind on the synthetic data: 4 steps of
// 4×16 tokens. The DeepSeekMoE one has a dense first layer, so both layer
// kinds and the shared experts cross the export.
func tinyConfig(ffn string) configs.Config {
	c := configs.Default()
	m := &c.Model
	m.VocabSize, m.Hidden, m.Layers, m.Heads, m.DenseWidth, m.FFN = 300, 16, 2, 2, 40, ffn
	m.Balance.ExpertAlpha = 0.01
	switch ffn {
	case configs.FFNDense:
		m.Balance.ExpertAlpha = 0
	case configs.FFNDeepSeekMoE:
		m.SharedExperts, m.RoutedExperts, m.ActiveRouted, m.ExpertWidth = 2, 6, 3, 8
		m.FirstDenseLayers = 1
		m.Layers = 3
	case configs.FFNGShard:
		m.RoutedExperts, m.ActiveRouted, m.ExpertWidth = 5, 2, 24
	case configs.FFNSwitch:
		m.RoutedExperts, m.ActiveRouted, m.ExpertWidth = 5, 1, 24
	case configs.FFNHash:
		m.RoutedExperts, m.ActiveRouted, m.ExpertWidth = 5, 1, 24
		m.Balance.ExpertAlpha = 0
	}
	c.Data.Path = dataset
	c.Train.SeqLen, c.Train.BatchSize = 16, 4
	c.Train.Tokens = 4 * 4 * 16
	c.Schedule.MaxLR, c.Schedule.WarmupTokens = 3e-3, 64
	c.Log.EveryTokens = 4 * 16
	c.Checkpoint.EveryTokens = 0
	c.Eval.EveryTokens, c.Eval.Tokens = 0, 512
	return c
}

// trained runs tinyConfig(ffn) in a fresh run directory and returns it.
func trained(t *testing.T, ffn string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "run")
	var out bytes.Buffer
	if _, err := train.Run(context.Background(), train.Options{Config: tinyConfig(ffn), RunDir: dir, Out: &out}); err != nil {
		t.Fatalf("train: %v\n%s", err, out.String())
	}
	return dir
}

func tokenizerPath(t *testing.T) string {
	t.Helper()
	man, err := data.LoadManifest(dataset)
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Join(dataset, man.Tokenizer.File)
}

// heldOutLoss is the mean cross-entropy over the first batches of the
// validation split, as eval computes it.
func heldOutLoss(t *testing.T, m *model.Model, c configs.Config) float64 {
	t.Helper()
	s, err := data.Open(data.StreamConfig{Dir: c.Data.Path, Split: "validation", SeqLen: c.Train.SeqLen,
		Batch: c.Train.MicroBatch(), Epochs: 1, Vocab: c.Model.VocabSize}, data.Cursor{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	g, err := m.Build(model.GraphOptions{Batch: c.Train.MicroBatch(), Seq: c.Train.SeqLen})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	var sum float64
	n := 0
	for n < 4 {
		b, err := s.Next()
		if b.B < c.Train.MicroBatch() || (err != nil && !errors.Is(err, io.EOF)) {
			break
		}
		r, rerr := g.Run(b.Tokens)
		if rerr != nil {
			t.Fatal(rerr)
		}
		sum += r.Loss
		n++
		if err != nil {
			break
		}
	}
	if n == 0 {
		t.Fatal("no validation batch")
	}
	return sum / float64(n)
}

func sameBits(t *testing.T, a, b *model.Model) {
	t.Helper()
	if len(a.Layout) != len(b.Layout) {
		t.Fatalf("layouts differ: %d vs %d tensors", len(a.Layout), len(b.Layout))
	}
	for i, p := range a.Layout {
		if p.Name != b.Layout[i].Name || fmt.Sprint(p.Shape) != fmt.Sprint(b.Layout[i].Shape) {
			t.Fatalf("tensor %d: %s %v vs %s %v", i, p.Name, p.Shape, b.Layout[i].Name, b.Layout[i].Shape)
		}
		x, y := a.Values[i].Data().([]float32), b.Values[i].Data().([]float32)
		for j := range x {
			if math.Float32bits(x[j]) != math.Float32bits(y[j]) {
				t.Fatalf("%s[%d]: %v after the round trip, %v before", p.Name, j, y[j], x[j])
			}
		}
	}
}

// TestRoundTrip: train → export → import gives bit-identical weights, the
// same held-out loss, the same model section, and a run that train
// continues. DeepSeekMoE goes through shards, the others one file.
func TestRoundTrip(t *testing.T) {
	for _, kind := range exportable {
		t.Run(kind, func(t *testing.T) {
			run := trained(t, kind)
			orig, err := rundir.LoadModel(run)
			if err != nil {
				t.Fatal(err)
			}
			out := filepath.Join(t.TempDir(), "hf")
			opt := ExportOptions{Out: out, MaxPositions: orig.State.Config.Train.SeqLen, Tokenizer: tokenizerPath(t)}
			if kind == configs.FFNDeepSeekMoE {
				opt.ShardSize = 4000 // a few KB per file: many shards
			}
			res, err := Export(orig.Model, opt)
			if err != nil {
				t.Fatal(err)
			}
			if kind == configs.FFNDeepSeekMoE && len(res.Files) < 3 {
				t.Fatalf("shard size 4000 gave %d files", len(res.Files))
			}
			if kind != configs.FFNDeepSeekMoE && !reflect.DeepEqual(res.Files, []string{WeightsFile}) {
				t.Fatalf("files %v, want one %s", res.Files, WeightsFile)
			}

			run2 := filepath.Join(t.TempDir(), "imported")
			ir, err := Import(out, ImportOptions{RunDir: run2, Sets: []string{"data.path=" + dataset, "train.batch_size=4"}})
			if err != nil {
				t.Fatal(err)
			}
			back, err := rundir.LoadModel(run2)
			if err != nil {
				t.Fatal(err)
			}
			if back.State.Tokens != 0 {
				t.Errorf("imported checkpoint at %d tokens, want 0", back.State.Tokens)
			}
			sameBits(t, orig.Model, back.Model)
			if ir.Tensors != res.Tensors || ir.Experts != res.Experts || ir.MoELayers != res.MoELayers {
				t.Errorf("import read %d tensors, %d experts in %d layers; export wrote %d, %d in %d",
					ir.Tensors, ir.Experts, ir.MoELayers, res.Tensors, res.Experts, res.MoELayers)
			}

			// The model section survives except what HF cannot hold.
			want := orig.State.Config.Model
			want.InitSeed = configs.Default().Model.InitSeed
			if got := back.State.Config.Model; !reflect.DeepEqual(got, want) {
				t.Errorf("model section after the round trip:\n got %+v\nwant %+v", got, want)
			}
			if got := back.State.Config.Train.SeqLen; got != orig.State.Config.Train.SeqLen {
				t.Errorf("train.seq_len %d after the round trip, want %d (max_position_embeddings)", got, orig.State.Config.Train.SeqLen)
			}

			// Same eval loss, bit for bit: same weights, same windows.
			a, b := heldOutLoss(t, orig.Model, orig.State.Config), heldOutLoss(t, back.Model, back.State.Config)
			if a != b || math.IsNaN(a) {
				t.Errorf("held-out loss %v after the round trip, %v before", b, a)
			}

			if kind != configs.FFNDeepSeekMoE {
				return
			}
			// train continues the imported run from its checkpoint.
			c := back.State.Config
			c.Train.Tokens = 2 * int64(c.Train.BatchSize*c.Train.SeqLen)
			c.Log.EveryTokens = int64(c.Train.BatchSize * c.Train.SeqLen)
			var log bytes.Buffer
			sum, err := train.Run(context.Background(), train.Options{Config: c, RunDir: run2, Out: &log})
			if err != nil {
				t.Fatalf("train on the imported run: %v\n%s", err, log.String())
			}
			if !strings.Contains(log.String(), "resumed from") || sum.Tokens != c.Train.Tokens {
				t.Errorf("train did not continue the import (tokens %d):\n%s", sum.Tokens, log.String())
			}
			if strings.Contains(log.String(), "warning: the checkpoint was written with kernels") {
				t.Errorf("continuing an import warned about a kernel change:\n%s", log.String())
			}
			ms, err := rundir.ReadMetrics(filepath.Join(run2, "metrics.jsonl"))
			if err != nil {
				t.Fatal(err)
			}
			var first float64
			for _, mt := range ms {
				if mt.Kind == "train" {
					first = mt.Loss
					break
				}
			}
			// Training started from the imported weights: its first loss is
			// the imported model's loss on the first training batch.
			s, err := data.Open(data.StreamConfig{Dir: c.Data.Path, Split: "train", SeqLen: c.Train.SeqLen,
				Batch: c.Train.MicroBatch(), Seed: c.Data.Seed, Weights: c.Data.Weights, Vocab: c.Model.VocabSize}, data.Cursor{})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			batch, err := s.Next()
			if err != nil {
				t.Fatal(err)
			}
			g, err := back.Model.Build(model.GraphOptions{Batch: batch.B, Seq: batch.T})
			if err != nil {
				t.Fatal(err)
			}
			defer g.Close()
			r, err := g.Run(batch.Tokens)
			if err != nil {
				t.Fatal(err)
			}
			if err := tol.CheckScaled("first training loss", []float64{first}, []float64{r.Loss}, 1e-6); err != nil {
				t.Error(err)
			}
		})
	}
}

// TestExportFiles checks what transformers reads: config.json's fields,
// generation_config.json, the tokenizer, the shard index, and that every
// routed expert of every MoE layer has its three matrices in the export.
func TestExportFiles(t *testing.T) {
	for _, kind := range exportable {
		t.Run(kind, func(t *testing.T) {
			c := tinyConfig(kind)
			m, err := model.New(c.Model, tensor.Float32)
			if err != nil {
				t.Fatal(err)
			}
			out := filepath.Join(t.TempDir(), "hf")
			if _, err := Export(m, ExportOptions{Out: out, MaxPositions: 16, Tokenizer: tokenizerPath(t), ShardSize: 3000, DType: BFloat16}); err != nil {
				t.Fatal(err)
			}
			var hc map[string]any
			readJSON(t, filepath.Join(out, ConfigFile), &hc)
			for _, k := range []string{"aux_loss_alpha", "seq_aux", "norm_topk_prob", "first_k_dense_replace", "moe_layer_freq", "n_shared_experts", "n_routed_experts", "num_experts_per_tok"} {
				if _, ok := hc[k]; !ok {
					t.Errorf("config.json lacks %s", k)
				}
			}
			if hc["model_type"] != "deepseek" || fmt.Sprint(hc["architectures"]) != "[DeepseekForCausalLM]" || hc["torch_dtype"] != "bfloat16" {
				t.Errorf("model_type %v, architectures %v, torch_dtype %v", hc["model_type"], hc["architectures"], hc["torch_dtype"])
			}
			if hc["max_position_embeddings"] != 16.0 {
				t.Errorf("max_position_embeddings %v, want 16", hc["max_position_embeddings"])
			}
			wantShared := any(nil)
			if kind == configs.FFNDeepSeekMoE {
				wantShared = 2.0
			}
			if hc["n_shared_experts"] != wantShared {
				t.Errorf("n_shared_experts %v, want %v", hc["n_shared_experts"], wantShared)
			}
			if want := kind == configs.FFNGShard; hc["norm_topk_prob"] != want {
				t.Errorf("norm_topk_prob %v, want %v", hc["norm_topk_prob"], want)
			}

			tokRaw, _ := os.ReadFile(tokenizerPath(t))
			gotTok, err := os.ReadFile(filepath.Join(out, TokenizerFile))
			if err != nil || !bytes.Equal(gotTok, tokRaw) {
				t.Errorf("tokenizer.json is not the dataset's (err %v)", err)
			}
			man, _ := data.LoadManifest(dataset)
			var gc map[string]any
			readJSON(t, filepath.Join(out, GenerationConfigFile), &gc)
			if gc["eos_token_id"] != float64(man.Tokenizer.EOS) || gc["bos_token_id"] != float64(man.Tokenizer.EOS) || hc["eos_token_id"] != float64(man.Tokenizer.EOS) {
				t.Errorf("generation_config %v, config eos %v; want bos = eos = %d", gc, hc["eos_token_id"], man.Tokenizer.EOS)
			}

			// The index maps every tensor to a shard that holds it, and the
			// shards hold exactly the keys DESIGN.md §8 lists for this config.
			var idx struct {
				Metadata  map[string]any    `json:"metadata"`
				WeightMap map[string]string `json:"weight_map"`
			}
			readJSON(t, filepath.Join(out, IndexFile), &idx)
			var total int64
			for _, f := range uniq(idx.WeightMap) {
				raw, err := os.ReadFile(filepath.Join(out, f))
				if err != nil {
					t.Fatal(err)
				}
				ts, meta, err := checkpoints.ReadSafetensors(raw)
				if err != nil {
					t.Fatal(err)
				}
				if meta["format"] != "pt" {
					t.Errorf("%s: metadata %v lacks format pt", f, meta)
				}
				for _, x := range ts {
					if idx.WeightMap[x.Name] != f {
						t.Errorf("%s in %s, index says %q", x.Name, f, idx.WeightMap[x.Name])
					}
					if x.DType != checkpoints.BF16 {
						t.Errorf("%s: dtype %v, want BF16", x.Name, x.DType)
					}
					total += 2 * int64(len(x.F32))
				}
			}
			if idx.Metadata["total_size"] != float64(total) {
				t.Errorf("total_size %v, shards hold %d bytes", idx.Metadata["total_size"], total)
			}
			want := specKeys(c.Model)
			if len(want) != len(idx.WeightMap) {
				t.Errorf("%d tensors exported, DESIGN.md §8 lists %d", len(idx.WeightMap), len(want))
			}
			for k := range want {
				if _, ok := idx.WeightMap[k]; !ok {
					t.Errorf("export lacks %s", k)
				}
			}
		})
	}
}

// specKeys lists DESIGN.md §8's keys for m, written out from the spec rather
// than from model.Layout, so that a layout bug cannot hide an expert.
func specKeys(m configs.Model) map[string]bool {
	keys := map[string]bool{"model.embed_tokens.weight": true, "model.norm.weight": true, "lm_head.weight": true}
	for i := 0; i < m.Layers; i++ {
		p := fmt.Sprintf("model.layers.%d.", i)
		for _, s := range []string{"input_layernorm.weight", "post_attention_layernorm.weight",
			"self_attn.q_proj.weight", "self_attn.k_proj.weight", "self_attn.v_proj.weight", "self_attn.o_proj.weight"} {
			keys[p+s] = true
		}
		moe := m.RoutedExperts > 0 && i >= m.FirstDenseLayers && i%m.MoELayerFreq == 0
		if !moe {
			for _, s := range []string{"gate_proj", "up_proj", "down_proj"} {
				keys[p+"mlp."+s+".weight"] = true
			}
			continue
		}
		keys[p+"mlp.gate.weight"] = true
		for e := 0; e < m.RoutedExperts; e++ {
			for _, s := range []string{"gate_proj", "up_proj", "down_proj"} {
				keys[fmt.Sprintf("%smlp.experts.%d.%s.weight", p, e, s)] = true
			}
		}
		if m.SharedExperts > 0 {
			for _, s := range []string{"gate_proj", "up_proj", "down_proj"} {
				keys[p+"mlp.shared_experts."+s+".weight"] = true
			}
		}
	}
	return keys
}

func uniq(m map[string]string) []string {
	seen := map[string]bool{}
	var out []string
	for _, v := range m {
		if !seen[v] {
			seen[v] = true
			out = append(out, v)
		}
	}
	return out
}

func readJSON(t *testing.T, path string, v any) {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

// TestBF16 exports in bfloat16 and imports: every weight comes back as its
// nearest bfloat16 (8 significant bits: relative error at most 2^-8).
func TestBF16(t *testing.T) {
	c := tinyConfig(configs.FFNDeepSeekMoE)
	m, err := model.New(c.Model, tensor.Float32)
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "hf")
	if _, err := Export(m, ExportOptions{Out: out, DType: BFloat16, MaxPositions: 16}); err != nil {
		t.Fatal(err)
	}
	l, err := Load(out)
	if err != nil {
		t.Fatal(err)
	}
	changed := 0
	for i, p := range m.Layout {
		x, y := m.Values[i].Data().([]float32), l.Model.Values[i].Data().([]float32)
		for j := range x {
			if d := math.Abs(float64(x[j] - y[j])); d > math.Abs(float64(x[j]))/256 {
				t.Fatalf("%s[%d]: %v came back as %v", p.Name, j, x[j], y[j])
			}
			if math.Float32bits(y[j])&0xffff != 0 {
				t.Fatalf("%s[%d]: %v is not a bfloat16", p.Name, j, y[j])
			}
			if x[j] != y[j] {
				changed++
			}
		}
	}
	if changed == 0 {
		t.Error("bf16 export changed no weight: not rounded")
	}
}

func TestHashIsRefused(t *testing.T) {
	m, err := model.New(tinyConfig(configs.FFNHash).Model, tensor.Float32)
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "hf")
	_, err = Export(m, ExportOptions{Out: out, MaxPositions: 16})
	if !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), "hash") {
		t.Fatalf("got %v, want ErrUnsupported explaining hash routing", err)
	}
	if _, serr := os.Stat(out); !errors.Is(serr, os.ErrNotExist) {
		t.Errorf("a refused export left %s behind", out)
	}
}

// Models with router variants DeepseekForCausalLM cannot express are
// refused, naming the setting; the z-loss (training only) exports.
func TestRouterVariantsRefusedByName(t *testing.T) {
	for _, tc := range []struct {
		set  func(*configs.Router)
		want string // "" : exports
	}{
		{func(r *configs.Router) { r.Score = configs.ScoreSigmoid }, "model.router.score"},
		{func(r *configs.Router) { r.Scale = 2.5 }, "model.router.scale"},
		{func(r *configs.Router) { r.BiasRate = 0.001 }, "model.router.bias_rate"},
		{func(r *configs.Router) { r.ZLoss = 0.001 }, ""},
		{func(r *configs.Router) { r.ExpertChoice = true }, "model.router.expert_choice"},
	} {
		c := tinyConfig(configs.FFNDeepSeekMoE)
		if tc.want == "model.router.score" || tc.want == "model.router.expert_choice" {
			c.Model.Balance.ExpertAlpha = 0
		}
		tc.set(&c.Model.Router)
		m, err := model.New(c.Model, tensor.Float32)
		if err != nil {
			t.Fatal(err)
		}
		out := filepath.Join(t.TempDir(), "hf")
		_, err = Export(m, ExportOptions{Out: out, MaxPositions: 16})
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("z-loss model: %v", err)
		case tc.want != "" && (!errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("got %v, want ErrUnsupported naming %s", err, tc.want)
		}
	}
}

func TestExportRefusesNonEmptyOut(t *testing.T) {
	m, _ := model.New(tinyConfig(configs.FFNDense).Model, tensor.Float32)
	out := t.TempDir()
	os.WriteFile(filepath.Join(out, "keep.txt"), []byte("x"), 0o644)
	if _, err := Export(m, ExportOptions{Out: out, MaxPositions: 16}); !errors.Is(err, ErrExists) {
		t.Fatalf("got %v, want ErrExists", err)
	}
	if b, _ := os.ReadFile(filepath.Join(out, "keep.txt")); string(b) != "x" {
		t.Error("export touched an existing file")
	}
	// An empty directory is fine.
	empty := t.TempDir()
	if _, err := Export(m, ExportOptions{Out: empty + "/", MaxPositions: 16}); err != nil {
		t.Fatal(err)
	}
}

// TestConfigMapping: every exportable config maps to config.json and back
// to the same model section (init_seed and the device-level loss aside,
// which HF cannot hold).
func TestConfigMapping(t *testing.T) {
	for _, kind := range exportable {
		for _, first := range []int{0, 1} {
			c := tinyConfig(kind).Model
			c.FirstDenseLayers, c.InitSeed = first, 1
			hc, err := model.HFConfig(c, 77)
			if err != nil {
				t.Fatal(err)
			}
			raw, _ := json.Marshal(hc)
			got, err := model.ParseHFConfig(raw)
			if err != nil {
				t.Fatalf("%s: %v\n%s", kind, err, raw)
			}
			if !reflect.DeepEqual(got.Model, c) || got.MaxPositions != 77 {
				t.Errorf("%s first=%d:\n got %+v (max pos %d)\nwant %+v", kind, first, got.Model, got.MaxPositions, c)
			}
		}
	}
}

func hfJSON(t *testing.T, kind string, edit func(map[string]any)) []byte {
	t.Helper()
	hc, err := model.HFConfig(tinyConfig(kind).Model, 16)
	if err != nil {
		t.Fatal(err)
	}
	if edit != nil {
		edit(hc)
	}
	raw, _ := json.Marshal(hc)
	return raw
}

func TestParseConfigCases(t *testing.T) {
	zeroShared, err := model.ParseHFConfig(hfJSON(t, configs.FFNGShard, func(c map[string]any) { c["n_shared_experts"] = 0 }))
	if err != nil {
		t.Fatal(err)
	}
	nullShared, err := model.ParseHFConfig(hfJSON(t, configs.FFNGShard, nil))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(zeroShared, nullShared) || nullShared.Model.FFN != configs.FFNGShard {
		t.Errorf("n_shared_experts 0 gave %+v, null gave %+v", zeroShared.Model, nullShared.Model)
	}
	// The DeepSeek code's defaults fill absent optional fields.
	sparse, err := model.ParseHFConfig([]byte(`{"model_type":"deepseek","vocab_size":300,"hidden_size":16,"num_hidden_layers":2,
		"num_attention_heads":2,"intermediate_size":40,"n_routed_experts":4,"num_experts_per_tok":2,"moe_intermediate_size":8,"n_shared_experts":1}`))
	if err != nil {
		t.Fatal(err)
	}
	if m := sparse.Model; m.FFN != configs.FFNDeepSeekMoE || m.Balance.ExpertAlpha != 0.001 || !m.Balance.PerSequence ||
		m.NormEps != 1e-6 || m.RopeTheta != 10000 || m.MoELayerFreq != 1 || m.FirstDenseLayers != 0 || sparse.BOS != nil {
		t.Errorf("defaults: %+v", sparse)
	}
	bad := []struct {
		name string
		edit func(map[string]any)
		want []string
	}{
		{"unknown model_type", func(c map[string]any) { c["model_type"] = "llama" }, []string{`model_type: unknown model type "llama"`}},
		{"no model_type", func(c map[string]any) { delete(c, "model_type") }, []string{"model_type: missing"}},
		{"missing sizes", func(c map[string]any) { delete(c, "hidden_size"); delete(c, "num_experts_per_tok") },
			[]string{"hidden_size: missing", "num_experts_per_tok: missing"}},
		{"gqa", func(c map[string]any) { c["num_key_value_heads"] = 1 }, []string{"num_key_value_heads"}},
		{"rope scaling", func(c map[string]any) { c["rope_scaling"] = map[string]any{"type": "linear", "factor": 2} }, []string{"rope_scaling"}},
		{"tied", func(c map[string]any) { c["tie_word_embeddings"] = true }, []string{"tie_word_embeddings"}},
		{"gelu", func(c map[string]any) { c["hidden_act"] = "gelu" }, []string{"hidden_act"}},
		{"sigmoid router", func(c map[string]any) { c["scoring_func"] = "sigmoid" }, []string{"scoring_func"}},
		{"renormalised top-3", func(c map[string]any) { c["num_experts_per_tok"] = 3 }, []string{"norm_topk_prob"}},
		{"heads", func(c map[string]any) { c["num_attention_heads"], c["num_key_value_heads"] = 3, 3 }, []string{"num_attention_heads (model.heads)"}},
		{"type", func(c map[string]any) { c["hidden_size"] = "16" }, []string{"hidden_size"}},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			_, err := model.ParseHFConfig(hfJSON(t, configs.FFNGShard, tc.edit))
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}

// writeDir writes m's weights (with edit applied to the tensor list) and
// config.json into a fresh directory.
func writeDir(t *testing.T, m *model.Model, edit func([]checkpoints.Tensor) []checkpoints.Tensor) string {
	t.Helper()
	dir := t.TempDir()
	ts, err := exportTensors(m, Float32)
	if err != nil {
		t.Fatal(err)
	}
	if edit != nil {
		ts = edit(ts)
	}
	if err := writeSafetensors(filepath.Join(dir, WeightsFile), ts); err != nil {
		t.Fatal(err)
	}
	hc, _ := model.HFConfig(m.Cfg, 16)
	if err := writeJSON(filepath.Join(dir, ConfigFile), hc); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestLoadBadInput(t *testing.T) {
	m, err := model.New(tinyConfig(configs.FFNDeepSeekMoE).Model, tensor.Float32)
	if err != nil {
		t.Fatal(err)
	}
	drop := func(name string) func([]checkpoints.Tensor) []checkpoints.Tensor {
		return func(ts []checkpoints.Tensor) []checkpoints.Tensor {
			var out []checkpoints.Tensor
			for _, x := range ts {
				if x.Name != name {
					out = append(out, x)
				}
			}
			return out
		}
	}
	tests := []struct {
		name  string
		setup func(t *testing.T) string
		want  []string
	}{
		{"no config.json", func(t *testing.T) string {
			d := writeDir(t, m, nil)
			os.Remove(filepath.Join(d, ConfigFile))
			return d
		}, []string{"config.json", "no such file"}},
		{"no weights", func(t *testing.T) string {
			d := writeDir(t, m, nil)
			os.Remove(filepath.Join(d, WeightsFile))
			return d
		}, []string{"no weights in", "model.safetensors"}},
		{"unreadable safetensors", func(t *testing.T) string {
			d := writeDir(t, m, nil)
			os.WriteFile(filepath.Join(d, WeightsFile), []byte("\x10\x00\x00\x00\x00\x00\x00\x00{not json at all"), 0o644)
			return d
		}, []string{"model.safetensors", "malformed"}},
		{"missing expert and unexpected key", func(t *testing.T) string {
			return writeDir(t, m, func(ts []checkpoints.Tensor) []checkpoints.Tensor {
				ts = drop("model.layers.2.mlp.experts.5.up_proj.weight")(ts)
				return append(ts, checkpoints.Tensor{Name: "model.layers.2.mlp.experts.6.up_proj.weight", DType: checkpoints.F32, Shape: []int{8, 16}, F32: make([]float32, 128)})
			})
		}, []string{"missing model.layers.2.mlp.experts.5.up_proj.weight", "unexpected model.layers.2.mlp.experts.6.up_proj.weight", "model.safetensors"}},
		{"shape mismatch", func(t *testing.T) string {
			return writeDir(t, m, func(ts []checkpoints.Tensor) []checkpoints.Tensor {
				for i := range ts {
					if ts[i].Name == "model.layers.1.mlp.gate.weight" {
						ts[i].Shape = []int{ts[i].Shape[1], ts[i].Shape[0]}
					}
				}
				return ts
			})
		}, []string{"model.layers.1.mlp.gate.weight: shape [16 6], want [6 16]"}},
		{"two files, no index", func(t *testing.T) string {
			d := writeDir(t, m, nil)
			os.Rename(filepath.Join(d, WeightsFile), filepath.Join(d, "a.safetensors"))
			os.WriteFile(filepath.Join(d, "b.safetensors"), nil, 0o644)
			return d
		}, []string{"a.safetensors, b.safetensors"}},
		{"index names a missing shard", func(t *testing.T) string {
			d := writeDir(t, m, nil)
			writeJSON(filepath.Join(d, IndexFile), map[string]any{"weight_map": map[string]string{"lm_head.weight": "model-00002-of-00002.safetensors"}})
			return d
		}, []string{"model-00002-of-00002.safetensors"}},
		{"index path escapes", func(t *testing.T) string {
			d := writeDir(t, m, nil)
			writeJSON(filepath.Join(d, IndexFile), map[string]any{"weight_map": map[string]string{"lm_head.weight": "../model.safetensors"}})
			return d
		}, []string{"not a file name"}},
		{"index disagrees with shard", func(t *testing.T) string {
			d := writeDir(t, m, nil)
			writeJSON(filepath.Join(d, IndexFile), map[string]any{"weight_map": map[string]string{"lm_head.weight": WeightsFile, "model.norm.weight": "other.safetensors", "extra.weight": WeightsFile}})
			os.WriteFile(filepath.Join(d, "other.safetensors"), emptySafetensors(t), 0o644)
			return d
		}, []string{"model.norm.weight is in model.safetensors but the index maps it to other.safetensors", "the index maps extra.weight to model.safetensors, which does not hold it"}},
		{"unknown model_type", func(t *testing.T) string {
			d := writeDir(t, m, nil)
			os.WriteFile(filepath.Join(d, ConfigFile), hfJSON(t, configs.FFNDense, func(c map[string]any) { c["model_type"] = "mixtral" }), 0o644)
			return d
		}, []string{"config.json", `unknown model type "mixtral"`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Load(tc.setup(t))
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}

func emptySafetensors(t *testing.T) []byte {
	var b bytes.Buffer
	if err := checkpoints.WriteSafetensors(&b, nil, nil); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func TestImportRefusals(t *testing.T) {
	m, _ := model.New(tinyConfig(configs.FFNSwitch).Model, tensor.Float32)
	src := writeDir(t, m, nil)
	run := filepath.Join(t.TempDir(), "run")
	// Keys that change what the weights compute come from config.json.
	_, err := Import(src, ImportOptions{RunDir: run, Sets: []string{"model.hidden=32", "model.rope_theta=500"}})
	var ce *configs.Error
	if !errors.As(err, &ce) || !strings.Contains(err.Error(), "model.hidden") || !strings.Contains(err.Error(), "model.rope_theta") {
		t.Fatalf("got %v, want a config error naming model.hidden and model.rope_theta", err)
	}
	if _, err := os.Stat(run); !errors.Is(err, os.ErrNotExist) {
		t.Error("a refused import created the run directory")
	}
	// Training knobs may be set.
	res, err := Import(src, ImportOptions{RunDir: run, Sets: []string{"model.balance.expert_alpha=0.05", "train.seq_len=8", "data.path=" + dataset}})
	if err != nil {
		t.Fatal(err)
	}
	if res.Config.Model.Balance.ExpertAlpha != 0.05 || res.Config.Train.SeqLen != 8 || res.Config.Data.Path != dataset {
		t.Errorf("overrides not applied: %+v", res.Config)
	}
	raw, err := os.ReadFile(filepath.Join(run, "config.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if c, err := configs.Parse(raw, nil); err != nil || !reflect.DeepEqual(c, res.Config) {
		t.Errorf("config.yaml does not parse back to the import's config: %v", err)
	}
	// A second import into the same run is refused.
	if _, err := Import(src, ImportOptions{RunDir: run}); !errors.Is(err, ErrRunExists) {
		t.Errorf("got %v, want ErrRunExists", err)
	}
}
