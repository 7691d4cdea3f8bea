package train

import (
	"os/exec"
	"strings"
	"testing"
)

// The trainer reads datasets but does not link their preparer (text
// sources, tokenizer training).
func TestTrainerDoesNotLinkThePreparer(t *testing.T) {
	const preparer = "github.com/moetrain/moetrain/data/prepare"
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	for _, dep := range strings.Fields(string(out)) {
		if dep == preparer {
			t.Errorf("the trainer links %s", dep)
		}
	}
}
