package configs

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

func TestShippedConfigsLoad(t *testing.T) {
	files, err := filepath.Glob("*/*.yaml")
	if err != nil || len(files) < 15 {
		t.Fatalf("found %d shipped configs (%v), want at least 15", len(files), err)
	}
	for _, f := range files {
		if strings.HasPrefix(f, "testdata") || strings.HasPrefix(f, "sweeps") { // sweep files, not run configs
			continue
		}
		if _, err := Load(f, nil); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
}

// The routing variants are reachable from --set and off by default.
func TestRouterKeys(t *testing.T) {
	d := Default().Model.Router
	if d != (Router{Score: ScoreSoftmax, Scale: 1, Input: RouterInputHidden}) {
		t.Errorf("default router %+v: want softmax, scale 1, everything else off", d)
	}
	moe := "model:\n  ffn: deepseekmoe\n  routed_experts: 8\n  active_routed: 2\n  expert_width: 16\n"
	cfg, err := Parse([]byte(moe), []string{"model.router.score=sigmoid", "model.router.scale=2.5", "model.router.z_loss=0.001", "model.router.bias_rate=0.001"})
	if err != nil {
		t.Fatal(err)
	}
	if r := cfg.Model.Router; r != (Router{Score: ScoreSigmoid, Scale: 2.5, ZLoss: 0.001, BiasRate: 0.001, Input: RouterInputHidden}) {
		t.Errorf("got %+v", r)
	}
}

func TestOverridesAreYAMLScalars(t *testing.T) {
	cfg, err := Parse([]byte("model:\n  layers: 2\n"), []string{"model.hidden=128", "model.balance.per_sequence=false", "optim.eps=1e-6", "data.weights.code=2"})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Model.Hidden != 128 || cfg.Model.Layers != 2 || cfg.Model.Balance.PerSequence || cfg.Optim.Eps != 1e-6 || cfg.Data.Weights["code"] != 2 {
		t.Errorf("got %+v", cfg)
	}
	if d := Default(); cfg.Model.VocabSize != d.Model.VocabSize {
		t.Errorf("default vocab_size lost: got %d want %d", cfg.Model.VocabSize, d.Model.VocabSize)
	}
}

// Every bad config is reported by the YAML key at fault.
func TestBadConfigsNameTheKey(t *testing.T) {
	moe := "model:\n  ffn: deepseekmoe\n  shared_experts: 1\n  routed_experts: 8\n  active_routed: 2\n  expert_width: 16\n"
	tests := []struct {
		name, yaml string
		set        []string
		key        string
	}{
		{"unknown top-level key", "foo: 1\n", nil, "foo: unknown key"},
		{"unknown model key", "model:\n  hiden: 3\n", nil, "model.hiden: unknown key"},
		{"string for int", "model:\n  heads: \"4\"\n", nil, "model.heads: expected type 'int'"},
		{"bool for float", "model:\n  balance:\n    expert_alpha: true\n", nil, "model.balance.expert_alpha: expected type 'float64'"},
		{"heads do not divide hidden", "model:\n  heads: 3\n", nil, "model.heads: 3 does not divide hidden"},
		{"odd head dim", "model:\n  hidden: 12\n  heads: 4\n", nil, "model.heads: head dim"},
		{"top-k above experts", moe, []string{"model.active_routed=9"}, "model.active_routed: top-k 9 exceeds"},
		{"negative alpha", moe, []string{"model.balance.expert_alpha=-0.1"}, "model.balance.expert_alpha: must be >= 0"},
		{"unknown ffn", "model:\n  ffn: mixture\n", nil, "model.ffn: unknown kind"},
		{"gshard top-1", "model:\n  ffn: gshard\n  routed_experts: 4\n  active_routed: 1\n  expert_width: 8\n", nil, "model.active_routed: gshard routes to exactly 2"},
		{"device groups do not divide", moe, []string{"model.balance.device_alpha=0.05", "model.balance.device_groups=3"}, "model.balance.device_groups: 3 does not divide"},
		{"expert parallel does not divide", moe, []string{"model.expert_parallel=3"}, "model.expert_parallel: 3 does not divide"},
		{"expert parallel zero", moe, []string{"model.expert_parallel=-1"}, "model.expert_parallel: must be >= 1"},
		{"expert parallel dense", "model:\n  expert_parallel: 2\n", nil, "model.expert_parallel: a dense model"},
		{"expert parallel device groups", moe, []string{"model.expert_parallel=2", "model.balance.device_alpha=0.05", "model.balance.device_groups=4"}, "model.balance.device_groups: must equal expert_parallel 2"},
		{"hash with balance loss", "model:\n  ffn: hash\n  routed_experts: 4\n  active_routed: 1\n  expert_width: 8\n  balance:\n    expert_alpha: 0.01\n", nil, "model.balance: hash routing"},
		{"zero layers", "model:\n  layers: 0\n", nil, "model.layers: must be positive"},
		{"beta2 out of range", "optim:\n  beta2: 1.5\n", nil, "optim.beta2: must be in [0, 1)"},
		{"micro batch does not divide", "train:\n  batch_size: 8\n  micro_batch_size: 3\n", nil, "train.micro_batch_size: 3 does not divide"},
		{"unknown schedule", "schedule:\n  kind: linear\n", nil, "schedule.kind: unknown kind"},
		{"zero max lr", "schedule:\n  max_lr: 0\n", nil, "schedule.max_lr: must be positive"},
		{"keep_last zero", "checkpoint:\n  keep_last: 0\n", nil, "checkpoint.keep_last: must be >= 1"},
		{"negative domain weight", "data:\n  weights:\n    code: -1\n", nil, "data.weights.code: must be >= 0"},
		{"unknown --set key", "", []string{"model.widht=3"}, "model.widht: unknown key"},
		{"--set without =", "", []string{"model.hidden"}, "want key=value"},
		{"bad yaml", "model: [\n", nil, "yaml:"},
		{"non-finite policy", "train:\n  non_finite: ignore\n", nil, "train.non_finite: want stop or skip"},
		{"product precision", "train:\n  products: fp16\n", nil, "train.products: want fp32 or bf16"},
		{"unknown router score", moe, []string{"model.router.score=tanh"}, "model.router.score: unknown score"},
		{"zero gate scale", moe, []string{"model.router.scale=0"}, "model.router.scale: must be positive"},
		{"negative z-loss", moe, []string{"model.router.z_loss=-1"}, "model.router.z_loss: must be >= 0"},
		{"negative bias rate", moe, []string{"model.router.bias_rate=-0.1"}, "model.router.bias_rate: must be >= 0"},
		{"router keys on hash", "model:\n  ffn: hash\n  routed_experts: 4\n  active_routed: 1\n  expert_width: 8\n  router:\n    bias_rate: 0.001\n", nil, "model.router.score: ffn hash has no learned router"},
		{"capacity on deepseekmoe", moe, []string{"model.router.capacity_factor=1.25"}, "model.router.capacity_factor: token dropping is GShard's and Switch's"},
		{"negative capacity", "model:\n  ffn: gshard\n  routed_experts: 4\n  active_routed: 2\n  expert_width: 8\n", []string{"model.router.capacity_factor=-1"}, "model.router.capacity_factor: must be >= 0"},
		{"capacity under expert parallelism", "model:\n  ffn: switch\n  routed_experts: 4\n  active_routed: 1\n  expert_width: 8\n", []string{"model.router.capacity_factor=1", "model.expert_parallel=2"}, "model.router.capacity_factor: token dropping is not expert-parallel"},
		{"expert choice under expert parallelism", "model:\n  ffn: gshard\n  routed_experts: 4\n  active_routed: 2\n  expert_width: 8\n", []string{"model.router.expert_choice=true", "model.expert_parallel=2"}, "model.router.expert_choice: expert-choice routing is not expert-parallel (model.expert_parallel 2)"},
		{"expert choice with a balance loss", moe, []string{"model.router.expert_choice=true", "model.balance.expert_alpha=0.01"}, "model.router.expert_choice: every expert takes a fixed number"},
		{"unknown router input", moe, []string{"model.router.input=logits"}, "model.router.input: unknown input \"logits\""},
		{"negative router freeze", moe, []string{"model.router.freeze_after_tokens=-1"}, "model.router.freeze_after_tokens: must be >= 0"},
		{"frozen router with a bias", moe, []string{"model.router.freeze_after_tokens=1024", "model.router.bias_rate=0.001"}, "model.router.freeze_after_tokens: a frozen router's selection bias"},
		{"router input on dense", "model:\n  ffn: dense\n", []string{"model.router.input=embedding"}, "model.router.score: ffn dense has no learned router"},
		{"sigmoid with a balance loss", moe, []string{"model.router.score=sigmoid", "model.balance.expert_alpha=0.01"}, "model.router.score: sigmoid scores with a balance loss"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.yaml), tc.set)
			var ce *Error
			if !errors.As(err, &ce) {
				t.Fatalf("got error %v (%T), want *configs.Error", err, err)
			}
			if !strings.Contains(err.Error(), tc.key) {
				t.Errorf("got %q, want it to contain %q", err.Error(), tc.key)
			}
		})
	}
}

func TestAllErrorsReportedAtOnce(t *testing.T) {
	_, err := Parse([]byte("model:\n  heads: 3\n  layers: -1\noptim:\n  beta1: 2\n"), nil)
	var ce *Error
	if !errors.As(err, &ce) || len(ce.Fields) != 3 {
		t.Fatalf("got %v, want three fields", err)
	}
}

func TestIsMoELayerRule(t *testing.T) {
	m := Default().Model
	m.FFN, m.RoutedExperts, m.FirstDenseLayers, m.MoELayerFreq = FFNDeepSeekMoE, 4, 1, 2
	var got []int
	for i := 0; i < 6; i++ {
		if m.IsMoELayer(i) {
			got = append(got, i)
		}
	}
	if len(got) != 2 || got[0] != 2 || got[1] != 4 {
		t.Errorf("MoE layers %v, want [2 4]", got)
	}
}

// writeFiles writes name → content under a fresh directory and returns it.
func writeFiles(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// A config inherits its base's keys (relative to its own file, through a
// chain), overrides them key by key, and null resets one to its default.
func TestBaseInheritance(t *testing.T) {
	dir := writeFiles(t, map[string]string{
		"root.yaml":     "model:\n  hidden: 128\n  heads: 4\n  balance:\n    expert_alpha: 0.02\n    per_sequence: false\ndata:\n  weights:\n    prose: 1\n    code: 2\ntrain:\n  tokens: 4096\n",
		"sub/mid.yaml":  "base: ../root.yaml\nmodel:\n  hidden: 64\n",
		"sub/leaf.yaml": "base: mid.yaml\nmodel:\n  balance:\n    per_sequence: null\ndata:\n  weights:\n    code: 1\ntrain:\n  tokens: null\n",
	})
	def := Default()
	tests := []struct {
		name string
		got  func(Config) any
		want any
	}{
		{"hidden from the middle file", func(c Config) any { return c.Model.Hidden }, 64},
		{"heads from the root", func(c Config) any { return c.Model.Heads }, 4},
		{"alpha merged from the root's section", func(c Config) any { return c.Model.Balance.ExpertAlpha }, 0.02},
		{"per_sequence: null is the default", func(c Config) any { return c.Model.Balance.PerSequence }, def.Model.Balance.PerSequence},
		{"tokens: null is the default", func(c Config) any { return c.Train.Tokens }, def.Train.Tokens},
		{"weights replaced whole, not merged", func(c Config) any { return c.Data.Weights }, map[string]float64{"code": 1}},
	}
	cfg, err := Load(filepath.Join(dir, "sub/leaf.yaml"), nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range tests {
		if got := tc.got(cfg); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: got %v, want %v", tc.name, got, tc.want)
		}
	}
}

// A bad base is a config error naming the key and the file.
func TestBadBase(t *testing.T) {
	dir := writeFiles(t, map[string]string{
		"missing.yaml": "base: nowhere.yaml\n",
		"a.yaml":       "base: b.yaml\n",
		"b.yaml":       "base: a.yaml\n",
		"list.yaml":    "base: [x]\n",
		"badbase.yaml": "base: bad.yaml\n",
		"bad.yaml":     "model:\n  hiden: 1\n",
	})
	tests := []struct{ file, want string }{
		{"missing.yaml", "base: open"},
		{"a.yaml", "a cycle"},
		{"list.yaml", "base: want the path"},
		{"badbase.yaml", "model.hiden: unknown key"},
	}
	for _, tc := range tests {
		_, err := Load(filepath.Join(dir, tc.file), nil)
		var ce *Error
		if !errors.As(err, &ce) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want a *configs.Error containing %q", tc.file, err, tc.want)
		}
	}
	if _, err := Parse([]byte("base: x.yaml\n"), nil); err == nil || !strings.Contains(err.Error(), "base:") {
		t.Errorf("Parse with a base: got %v, want an error naming base", err)
	}
}

// --set key=null removes the key (its default applies), --set key={...}
// replaces a whole map, --set key.sub=v changes one entry.
func TestSetNullAndMaps(t *testing.T) {
	const file = "model:\n  hidden: 128\n  balance:\n    expert_alpha: 0.02\n    per_sequence: false\ndata:\n  weights:\n    prose: 1\n    code: 1\n"
	def := Default()
	tests := []struct {
		set  string
		got  func(Config) any
		want any
	}{
		{"data.weights=null", func(c Config) any { return c.Data.Weights }, map[string]float64(nil)},
		{"data.weights={}", func(c Config) any { return c.Data.Weights }, map[string]float64(nil)},
		{"data.weights={mydocs: 1}", func(c Config) any { return c.Data.Weights }, map[string]float64{"mydocs": 1}},
		{`data.weights={"*": 1}`, func(c Config) any { return c.Data.Weights }, map[string]float64{"*": 1}},
		{"data.weights.code=3", func(c Config) any { return c.Data.Weights }, map[string]float64{"prose": 1, "code": 3}},
		{"model.hidden=null", func(c Config) any { return c.Model.Hidden }, def.Model.Hidden},
		{"model.balance={expert_alpha: 0.5}", func(c Config) any { return c.Model.Balance }, Balance{ExpertAlpha: 0.5, DeviceGroups: def.Model.Balance.DeviceGroups, PerSequence: def.Model.Balance.PerSequence}},
		{"model.balance.per_sequence=null", func(c Config) any { return c.Model.Balance }, Balance{ExpertAlpha: 0.02, DeviceGroups: 1, PerSequence: true}},
		{"eval.tasks=[next_verse, last_word]", func(c Config) any { return c.Eval.Tasks }, []string{"next_verse", "last_word"}},
	}
	for _, tc := range tests {
		cfg, err := Parse([]byte(file), []string{tc.set})
		if err != nil {
			t.Errorf("--set %s: %v", tc.set, err)
			continue
		}
		if got := tc.got(cfg); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("--set %s: got %#v, want %#v", tc.set, got, tc.want)
		}
	}
	for _, bad := range []struct{ set, want string }{
		{"model.balance={expert_alfa: 1}", "expert_alfa: unknown key"},
		{"modle=null", "modle: unknown key"},
		{"model.hidden={a: 1}", "model.hidden"},
	} {
		if _, err := Parse([]byte(file), []string{bad.set}); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("--set %s: got %v, want an error containing %q", bad.set, err, bad.want)
		}
	}
}

// A stored run config written before a key existed still loads, with the
// key at its default: deleting any one key from a full config gives the
// default config back, so old runs resume.
func TestMissingKeysMeanDefaults(t *testing.T) {
	def := Default()
	for _, key := range Keys() {
		tree, err := parseTree([]byte(def.YAML()))
		if err != nil {
			t.Fatal(err)
		}
		override(tree, key, nil)
		raw, err := yaml.Marshal(tree)
		if err != nil {
			t.Fatal(err)
		}
		got, err := Parse(raw, nil)
		if err != nil {
			t.Errorf("without %s: %v", key, err)
			continue
		}
		if !reflect.DeepEqual(got.Flat(), def.Flat()) {
			t.Errorf("without %s: got %v, want the defaults", key, got.Flat())
		}
	}
}

// Every shipped small config trains on any prepared dataset: its domain
// weights name no domain, or only "*".
func TestSmallConfigsNameNoDomain(t *testing.T) {
	files, _ := filepath.Glob("small/*.yaml")
	for _, f := range files {
		cfg, err := Load(f, nil)
		if err != nil {
			t.Fatal(err)
		}
		for d := range cfg.Data.Weights {
			if d != "*" {
				t.Errorf("%s: data.weights names domain %q; a dataset without it could not train", f, d)
			}
		}
	}
}

// Integer keys refuse fractions and numbers beyond their range instead of
// truncating or wrapping them; an empty --set value is refused instead of
// meaning the default.
func TestNumbersAndEmptyValues(t *testing.T) {
	tests := []struct {
		yaml string
		set  []string
		want string
	}{
		{"", []string{"model.hidden=64.5"}, "model.hidden: must be a whole number, got 64.5"},
		{"model:\n  heads: 4.7\n", nil, "model.heads: must be a whole number, got 4.7"},
		{"", []string{"train.tokens=99999999999999999999"}, "train.tokens: 1e+20 is out of range"},
		{"", []string{"data.path="}, "data.path: --set with an empty value"},
		{"", []string{"model.hidden= "}, "model.hidden: --set with an empty value"},
	}
	for _, tc := range tests {
		_, err := Parse([]byte(tc.yaml), tc.set)
		var ce *Error
		if !errors.As(err, &ce) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q %v: got %v, want a *configs.Error containing %q", tc.yaml, tc.set, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), "-9223372036854775808") {
			t.Errorf("%v: wrapped around: %v", tc.set, err)
		}
	}
	// A whole number written as a float is fine.
	c, err := Parse([]byte("model:\n  hidden: 64.0\n"), []string{"train.tokens=1e6"})
	if err != nil || c.Model.Hidden != 64 || c.Train.Tokens != 1_000_000 {
		t.Errorf("got hidden %d, tokens %d, %v; want 64, 1000000", c.Model.Hidden, c.Train.Tokens, err)
	}
}

// An unknown key does not hide the other mistakes of the same config.
func TestUnknownKeyDoesNotHideOthers(t *testing.T) {
	_, err := Parse([]byte("model:\n  heads: 3\n  bogus: 1\n  hidden: \"x\"\noptim:\n  beta1: 2\n"), nil)
	var ce *Error
	if !errors.As(err, &ce) {
		t.Fatalf("got %v, want *configs.Error", err)
	}
	for _, want := range []string{"model.bogus: unknown key", "model.hidden: expected type 'int'", "optim.beta1: must be in [0, 1)", "model.heads: 3 does not divide hidden"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("missing %q in:\n%v", want, err)
		}
	}
}
