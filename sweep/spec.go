package sweep

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/moetrain/moetrain/configs"
	"github.com/moetrain/moetrain/data"
)

// Pseudo-keys of a sweep: not config keys, but expanded by Derive into
// model.ffn, shared_experts, routed_experts, active_routed and expert_width.
const (
	KeyGranularity = "granularity"
	KeyShared      = "shared"
)

// Spec is a sweep file.
type Spec struct {
	// Name labels the sweep in reports.
	Name string `yaml:"name"`
	// Base is the config every run starts from (relative to the sweep
	// file); a variant may name its own.
	Base string `yaml:"base"`
	// Out is the sweep's directory (relative to the working directory):
	// one run directory per run under it, plus the summary.
	Out string `yaml:"out"`
	// Seeds multiply the runs: each run is trained once per seed, which
	// sets model.init_seed and nothing else. Empty means [1].
	Seeds []uint64 `yaml:"seeds"`
	// Set overrides every run (applied first).
	Set yaml.Node `yaml:"set"`
	// Variants, when given, are named run families: each its own overrides
	// (and optionally base), crossed with Axes.
	Variants []Variant `yaml:"variants"`
	// Axes form a grid. Each axis is a mapping key → list of values; keys of
	// one axis are tied (their lists have one length and advance together),
	// different axes are crossed.
	Axes []yaml.Node `yaml:"axes"`
	// Expect lists the paper's orderings to test, each a list of group names
	// (a run's name without its seed), lowest held-out loss first.
	Expect [][]string `yaml:"expect"`
	// Apart names groups reported in a table of their own, apart from the
	// ranking (expert-choice routing, whose loss is not comparable), and
	// allowed in no Expect ordering.
	Apart []string `yaml:"apart"`
	// Notes is free text copied into the summary (why the sizes and budget).
	Notes string `yaml:"notes"`

	dir   string     // directory of the sweep file, for Base paths
	extra []Override // SetOverrides: applied last
}

// Variant is one named family of overrides.
type Variant struct {
	Name string    `yaml:"name"`
	Base string    `yaml:"base"`
	Set  yaml.Node `yaml:"set"`
}

// Override is one key = value (value as written in YAML).
type Override struct{ Key, Value string }

func (o Override) String() string { return o.Key + "=" + o.Value }

// Run is one training run of an expanded sweep.
type Run struct {
	Name  string // directory name under the sweep's Out, unique in the sweep
	Group string // Name without the seed: the runs of a group differ only in model.init_seed
	Seed  uint64
	Dir   string // Out/Name
	// Base is the absolute path of the config file the run starts from.
	Base string
	// Sets are the overrides passed to `moetrain train` (--set), in order:
	// the sweep's, the variant's, the axes' (derived keys expanded), then
	// model.init_seed.
	Sets []string
	// Labels are the overrides that tell the run apart from the others
	// (variant name first, pseudo-keys as written), used for its name.
	Labels []Override
	Config configs.Config
}

// Load reads and checks a sweep file.
func Load(path string) (*Spec, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read sweep: %w", err)
	}
	s, err := Parse(raw, filepath.Dir(path))
	if err != nil {
		return nil, fmt.Errorf("sweep %s: %w", path, err)
	}
	return s, nil
}

// Parse decodes a sweep file strictly (unknown keys are errors); dir is
// where relative base paths start.
func Parse(raw []byte, dir string) (*Spec, error) {
	var s Spec
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	dec.KnownFields(true)
	if err := dec.Decode(&s); err != nil {
		return nil, fmt.Errorf("decode: %w", err)
	}
	s.dir = dir
	var bad []string
	if s.Base == "" {
		for _, v := range s.Variants {
			if v.Base == "" {
				bad = append(bad, "base: required (or a base on every variant)")
				break
			}
		}
		if len(s.Variants) == 0 {
			bad = append(bad, "base: required")
		}
	}
	if s.Out == "" {
		bad = append(bad, "out: required")
	}
	seen := map[uint64]bool{}
	for _, sd := range s.Seeds {
		if seen[sd] {
			bad = append(bad, fmt.Sprintf("seeds: %d listed twice", sd))
		}
		seen[sd] = true
	}
	names := map[string]bool{}
	for i, v := range s.Variants {
		if !nameRE.MatchString(v.Name) {
			bad = append(bad, fmt.Sprintf("variants[%d].name: %q must match %s", i, v.Name, nameRE))
		}
		if names[v.Name] {
			bad = append(bad, fmt.Sprintf("variants[%d].name: %q used twice", i, v.Name))
		}
		names[v.Name] = true
	}
	if len(bad) > 0 {
		return nil, errors.New(strings.Join(bad, "; "))
	}
	// Decode the override maps and axes once so mistakes surface here.
	if _, err := overrides(&s.Set, "set"); err != nil {
		return nil, err
	}
	for i := range s.Variants {
		if _, err := overrides(&s.Variants[i].Set, fmt.Sprintf("variants[%d].set", i)); err != nil {
			return nil, err
		}
	}
	if _, err := s.axes(); err != nil {
		return nil, err
	}
	return &s, nil
}

var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9.+-]*$`)

// overrides reads a YAML mapping of key → scalar, keeping its order.
func overrides(n *yaml.Node, where string) ([]Override, error) {
	if n.Kind == 0 {
		return nil, nil
	}
	if n.Kind != yaml.MappingNode {
		return nil, fmt.Errorf("%s: want a mapping of config key → value", where)
	}
	var out []Override
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if v.Kind != yaml.ScalarNode {
			return nil, fmt.Errorf("%s.%s: want a scalar value", where, k.Value)
		}
		if err := checkKey(k.Value); err != nil {
			return nil, fmt.Errorf("%s: %w", where, err)
		}
		out = append(out, Override{k.Value, v.Value})
	}
	return out, nil
}

// checkKey accepts config keys and the pseudo-keys; model.init_seed is set
// by seeds only.
func checkKey(k string) error {
	switch {
	case k == KeyGranularity || k == KeyShared:
		return nil
	case k == "model.init_seed":
		return errors.New("model.init_seed: use the sweep's seeds list")
	}
	if configs.IsKey(k) {
		return nil
	}
	return fmt.Errorf("%s: unknown config key", k)
}

// axis is one tied axis: keys advancing together through n values.
type axis struct {
	keys   []string
	values [][]string // values[i][j]: value i of key j
}

func (s *Spec) axes() ([]axis, error) {
	var out []axis
	for i, n := range s.Axes {
		where := fmt.Sprintf("axes[%d]", i)
		if n.Kind != yaml.MappingNode || len(n.Content) == 0 {
			return nil, fmt.Errorf("%s: want a mapping of key → list of values", where)
		}
		var a axis
		length := -1
		for j := 0; j+1 < len(n.Content); j += 2 {
			k, v := n.Content[j], n.Content[j+1]
			if err := checkKey(k.Value); err != nil {
				return nil, fmt.Errorf("%s: %w", where, err)
			}
			if v.Kind != yaml.SequenceNode || len(v.Content) == 0 {
				return nil, fmt.Errorf("%s.%s: want a non-empty list of values", where, k.Value)
			}
			if length >= 0 && len(v.Content) != length {
				return nil, fmt.Errorf("%s: tied keys need lists of one length; %s has %d values, the first key %d", where, k.Value, len(v.Content), length)
			}
			length = len(v.Content)
			a.keys = append(a.keys, k.Value)
			for r, x := range v.Content {
				if x.Kind != yaml.ScalarNode {
					return nil, fmt.Errorf("%s.%s[%d]: want a scalar", where, k.Value, r)
				}
				if len(a.values) <= r {
					a.values = append(a.values, nil)
				}
				a.values[r] = append(a.values[r], x.Value)
			}
		}
		out = append(out, a)
	}
	return out, nil
}

// Expand returns every run of the sweep: variants × grid of axes × seeds,
// each with its config resolved and validated. It fails if two runs would
// read different training tokens (fairness: only the model and its seed may
// vary), or if two runs would get the same name.
func (s *Spec) Expand() ([]Run, error) {
	common, err := overrides(&s.Set, "set")
	if err != nil {
		return nil, err
	}
	axes, err := s.axes()
	if err != nil {
		return nil, err
	}
	variants := s.Variants
	if len(variants) == 0 {
		variants = []Variant{{}}
	}
	seeds := s.Seeds
	if len(seeds) == 0 {
		seeds = []uint64{1}
	}
	// Points of the grid: one index per axis, the last axis fastest.
	points := [][]int{{}}
	for _, a := range axes {
		var next [][]int
		for _, p := range points {
			for i := range a.values {
				next = append(next, append(append([]int(nil), p...), i))
			}
		}
		points = next
	}
	short := shortKeys(s, axes)
	var runs []Run
	byName := map[string]bool{}
	for vi, v := range variants {
		vset, err := overrides(&variants[vi].Set, fmt.Sprintf("variants[%d].set", vi))
		if err != nil {
			return nil, err
		}
		base := v.Base
		if base == "" {
			base = s.Base
		}
		if !filepath.IsAbs(base) {
			base = filepath.Join(s.dir, base)
		}
		if abs, err := filepath.Abs(base); err == nil {
			base = abs
		}
		for _, p := range points {
			var sets []Override
			sets = append(sets, common...)
			sets = append(sets, vset...)
			var labels []Override
			if v.Name != "" {
				labels = append(labels, Override{"variant", v.Name})
			}
			for ai, a := range axes {
				for j, k := range a.keys {
					o := Override{k, a.values[p[ai]][j]}
					sets = append(sets, o)
					labels = append(labels, o)
				}
			}
			sets = append(sets, s.extra...)
			for _, seed := range seeds {
				r, err := resolve(base, sets, seed)
				if err != nil {
					return nil, fmt.Errorf("run %s: %w", describe(labels, seed), err)
				}
				r.Labels = labels
				r.Group = groupName(labels, short)
				r.Name = r.Group + "_seed-" + strconv.FormatUint(seed, 10)
				if r.Group == "" {
					r.Name = "seed-" + strconv.FormatUint(seed, 10)
				}
				if byName[r.Name] {
					return nil, fmt.Errorf("two runs are named %s; give the variants distinct names", r.Name)
				}
				byName[r.Name] = true
				r.Dir = filepath.Join(s.Out, r.Name)
				runs = append(runs, r)
			}
		}
	}
	if err := checkFair(runs); err != nil {
		return nil, err
	}
	return runs, nil
}

func describe(labels []Override, seed uint64) string {
	var parts []string
	for _, l := range labels {
		parts = append(parts, l.String())
	}
	return strings.Join(append(parts, fmt.Sprintf("seed=%d", seed)), ",")
}

// resolve applies sets (expanding the pseudo-keys against the base with the
// other overrides applied) and the seed, and validates the result.
func resolve(base string, sets []Override, seed uint64) (Run, error) {
	var plain []string
	gran, shared, derive := 1, 0, false
	for _, o := range sets {
		switch o.Key {
		case KeyGranularity, KeyShared:
			n, err := strconv.Atoi(o.Value)
			if err != nil {
				return Run{}, fmt.Errorf("%s: %q is not an integer", o.Key, o.Value)
			}
			if o.Key == KeyGranularity {
				gran = n
			} else {
				shared = n
			}
			derive = true
		default:
			plain = append(plain, o.String())
		}
	}
	plain = append(plain, fmt.Sprintf("model.init_seed=%d", seed))
	cfg, err := configs.Load(base, plain)
	if err != nil {
		return Run{}, err
	}
	if derive {
		m := cfg.Model
		std := Standard{Experts: m.RoutedExperts + m.SharedExperts, Active: m.ActiveRouted + m.SharedExperts, Width: m.ExpertWidth}
		e, err := Derive(std, gran, shared)
		if err != nil {
			return Run{}, err
		}
		ffn := configs.FFNDeepSeekMoE
		if gran == 1 && shared == 0 {
			ffn = m.FFN
		}
		plain = append(plain[:len(plain)-1],
			"model.ffn="+ffn,
			fmt.Sprintf("model.shared_experts=%d", e.Shared),
			fmt.Sprintf("model.routed_experts=%d", e.Routed),
			fmt.Sprintf("model.active_routed=%d", e.Active),
			fmt.Sprintf("model.expert_width=%d", e.Width),
			fmt.Sprintf("model.init_seed=%d", seed))
		if cfg, err = configs.Load(base, plain); err != nil {
			return Run{}, err
		}
	}
	return Run{Seed: seed, Base: base, Sets: plain, Config: cfg}, nil
}

// shortKeys maps each labelled key to the shortest unambiguous name: its
// last dotted component unless two keys share it.
func shortKeys(s *Spec, axes []axis) map[string]string {
	byLast := map[string][]string{}
	seen := map[string]bool{}
	for _, a := range axes {
		for _, k := range a.keys {
			if seen[k] {
				continue
			}
			seen[k] = true
			last := k[strings.LastIndex(k, ".")+1:]
			byLast[last] = append(byLast[last], k)
		}
	}
	out := map[string]string{"variant": ""}
	for last, ks := range byLast {
		for _, k := range ks {
			if len(ks) == 1 {
				out[k] = last
			} else {
				out[k] = strings.ReplaceAll(k, ".", "-")
			}
		}
	}
	return out
}

var unsafeChars = regexp.MustCompile(`[^A-Za-z0-9.+-]+`)

// groupName names a run family from its labels: the variant name, then
// key-value per axis, joined by "_".
func groupName(labels []Override, short map[string]string) string {
	var parts []string
	for _, l := range labels {
		v := unsafeChars.ReplaceAllString(l.Value, "-")
		if k := short[l.Key]; k != "" {
			parts = append(parts, k+"-"+v)
		} else {
			parts = append(parts, v)
		}
	}
	return strings.Join(parts, "_")
}

// StreamKey is every config field that decides which training tokens a run
// reads and in which order. Runs of a fair sweep share it.
type StreamKey struct {
	Path string
	Seed uint64
	// Weights are data.weights as the stream resolves them on the dataset
	// (data.Manifest.Mixture: each read domain's slots of a block), so
	// maps that read the same stream ({"*": 1}, {prose: 1, code: 1}) give
	// one key; as written when the dataset cannot be read yet.
	Weights   map[string]float64
	Tokens    int64
	BatchSize int
	SeqLen    int
	Vocab     int
}

// KeyOf returns the stream key of a config.
func KeyOf(c configs.Config) StreamKey {
	return StreamKey{Path: c.Data.Path, Seed: c.Data.Seed, Weights: resolvedWeights(c.Data), Tokens: c.Train.Tokens,
		BatchSize: c.Train.BatchSize, SeqLen: c.Train.SeqLen, Vocab: c.Model.VocabSize}
}

// resolvedWeights is d.Weights as the mixture it gives on the dataset at
// d.Path (domain → slots), or d.Weights itself when that cannot be worked
// out (no dataset yet, or weights the stream would refuse).
func resolvedWeights(d configs.Data) map[string]float64 {
	if d.Weights == nil {
		return nil
	}
	man, err := data.LoadManifest(d.Path)
	if err != nil {
		return d.Weights
	}
	mix, err := man.Mixture(d.Weights)
	if err != nil {
		return d.Weights
	}
	out := make(map[string]float64, len(mix))
	for _, sh := range mix {
		out[sh.Domain] = float64(sh.Slots)
	}
	return out
}

func checkFair(runs []Run) error {
	if len(runs) == 0 {
		return nil
	}
	ref := KeyOf(runs[0].Config)
	var bad []string
	for _, r := range runs[1:] {
		if k := KeyOf(r.Config); !reflect.DeepEqual(k, ref) {
			bad = append(bad, fmt.Sprintf("%s reads %+v, %s reads %+v", r.Name, k, runs[0].Name, ref))
		}
	}
	if len(bad) > 0 {
		sort.Strings(bad)
		return fmt.Errorf("unfair sweep: every run must read the same training tokens (data.path, data.seed, the mixture data.weights give, train.tokens, train.batch_size, train.seq_len, model.vocab_size may not vary):\n  %s", strings.Join(bad, "\n  "))
	}
	return nil
}

// SetOverrides adds key=value overrides applied to every run after all
// of the sweep's own (the --set flag of moetrain sweep, e.g. a smaller
// train.tokens for a reduced run).
func (s *Spec) SetOverrides(sets []string) error {
	for _, o := range sets {
		k, v, ok := strings.Cut(o, "=")
		if !ok || strings.TrimSpace(k) == "" {
			return fmt.Errorf("--set %q: want key=value", o)
		}
		k = strings.TrimSpace(k)
		if err := checkKey(k); err != nil {
			return err
		}
		s.extra = append(s.extra, Override{k, v})
	}
	return nil
}
