package bpetrain

import (
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// Only the preparer links the BPE trainer: the model trainer and the
// packages that load a tokenizer to read or serve runs do not.
func TestOnlyThePreparerLinksTheBPETrainer(t *testing.T) {
	const bpe = "github.com/moetrain/moetrain/data/tokenizer/bpetrain"
	deps := func(pkg string) []string {
		out, err := exec.Command("go", "list", "-deps", pkg).Output()
		if err != nil {
			t.Fatalf("go list -deps %s: %v", pkg, err)
		}
		return strings.Fields(string(out))
	}
	for _, pkg := range []string{"../../../train", "../../../data", "../..", "../../../hf", "../../../evaluate", "../../../infer"} {
		if slices.Contains(deps(pkg), bpe) {
			t.Errorf("%s links %s", pkg, bpe)
		}
	}
	// The check can fail: the preparer does link it.
	if !slices.Contains(deps("../../prepare"), bpe) {
		t.Errorf("data/prepare does not link %s: the check above sees nothing", bpe)
	}
}
