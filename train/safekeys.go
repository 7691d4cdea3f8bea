package train

import (
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"

	"github.com/moetrain/moetrain/configs"
	"github.com/moetrain/moetrain/data"
)

// safeKeys may differ between a run's stored config and a resume's: they
// change when and how often things happen, never what is computed.
var safeKeys = []string{"checkpoint.", "eval.", "log.", "train.tokens", "train.non_finite", "model.expert_parallel"}

func isSafe(key string) bool {
	for _, s := range safeKeys {
		if key == s || (strings.HasSuffix(s, ".") && strings.HasPrefix(key, s)) {
			return true
		}
	}
	return false
}

// changedKeys lists the keys whose values differ and are not safe to change.
// data.weights compare by the stream they read (weightsChange).
func changedKeys(stored, now configs.Config) []string {
	same, line := weightsChange(stored.Data, now.Data)
	if same {
		stored.Data.Weights = now.Data.Weights
	}
	a, b := stored.Flat(), now.Flat()
	var out []string
	seen := map[string]bool{}
	for k := range a {
		seen[k] = true
	}
	for k := range b {
		seen[k] = true
	}
	for k := range seen {
		if isSafe(k) {
			continue
		}
		if line != "" && strings.HasPrefix(k, "data.weights.") {
			continue
		}
		if fmt.Sprint(a[k]) != fmt.Sprint(b[k]) {
			out = append(out, fmt.Sprintf("%s: %v → %v", k, a[k], b[k]))
		}
	}
	if line != "" {
		out = append(out, line)
	}
	sortStrings(out)
	return out
}

// weightsChange compares the data.weights of two configs by what they mean
// on the dataset at data.path: the mixture the stream resolves them to
// (data.Manifest.Mixture). Maps that read the same stream, such as a
// round-1 config's {prose: 1, code: 1} and today's {"*": 1} on a dataset
// with those two domains, are the same. When the mixtures differ, line
// says how, in the dataset's terms. When the dataset or either map cannot
// be resolved (the stream reports that when it opens), neither is set and
// the maps compare key by key.
func weightsChange(stored, now configs.Data) (same bool, line string) {
	if reflect.DeepEqual(stored.Weights, now.Weights) {
		return true, ""
	}
	if stored.Path != now.Path {
		return false, ""
	}
	man, err := data.LoadManifest(now.Path)
	if err != nil {
		return false, ""
	}
	a, errA := man.Mixture(stored.Weights)
	b, errB := man.Mixture(now.Weights)
	if errA != nil || errB != nil {
		return false, ""
	}
	if slices.Equal(a, b) {
		return true, ""
	}
	return false, fmt.Sprintf("data.weights: %s → %s (on this dataset's domains: %s → %s)",
		weightsString(stored.Weights), weightsString(now.Weights), mixtureString(a), mixtureString(b))
}

// weightsString writes a weights map with its keys sorted: {code: 1, prose: 3}.
func weightsString(w map[string]float64) string {
	if w == nil {
		return "null"
	}
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(w)) {
		parts = append(parts, fmt.Sprintf("%s: %v", k, w[k]))
	}
	return "{" + strings.Join(parts, ", ") + "}"
}

// mixtureString writes a mixture as each domain's share of the examples.
func mixtureString(mix []data.Share) string {
	if mix == nil {
		return "all domains as one corpus in their natural proportions"
	}
	var parts []string
	for _, sh := range mix {
		parts = append(parts, fmt.Sprintf("%s %.4g%%", sh.Domain, 100*float64(sh.Slots)/data.BlockSlots))
	}
	return strings.Join(parts, ", ")
}

func sortStrings(s []string) {
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j] < s[j-1]; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
}
