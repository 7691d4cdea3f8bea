package train

import (
	"fmt"
	"strings"

	"github.com/moetrain/moetrain/configs"
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
func changedKeys(stored, now configs.Config) []string {
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
		if fmt.Sprint(a[k]) != fmt.Sprint(b[k]) {
			out = append(out, fmt.Sprintf("%s: %v → %v", k, a[k], b[k]))
		}
	}
	sortStrings(out)
	return out
}

func sortStrings(s []string) {
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j] < s[j-1]; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
}
