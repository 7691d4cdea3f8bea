package rundir

import (
	"os/exec"
	"strings"
	"testing"
)

// The packages that read runs (and this one) link neither the trainer nor
// anything that imports it.
func TestReadersDoNotLinkTheTrainer(t *testing.T) {
	const trainer = "github.com/moetrain/moetrain/train"
	for _, pkg := range []string{".", "../hf", "../report", "../analysis", "../sweep"} {
		out, err := exec.Command("go", "list", "-deps", pkg).Output()
		if err != nil {
			t.Fatalf("go list -deps %s: %v", pkg, err)
		}
		for _, dep := range strings.Fields(string(out)) {
			if dep == trainer || strings.HasPrefix(dep, trainer+"/") {
				t.Errorf("%s links %s", pkg, dep)
			}
		}
	}
}
