package serve

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/moetrain/moetrain/configs"
	"github.com/moetrain/moetrain/rundir"
)

// writeRun writes a run directory with n train lines (and an eval line
// when heldout > 0).
func writeRun(t *testing.T, dir string, n int, heldout float64) {
	t.Helper()
	os.MkdirAll(dir, 0o755)
	c := configs.Default()
	c.Model.Hidden, c.Model.DenseWidth, c.Model.VocabSize = 64, 172, 512
	if err := os.WriteFile(filepath.Join(dir, "config.yaml"), []byte(c.YAML()), 0o644); err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for i := 1; i <= n; i++ {
		raw, _ := json.Marshal(rundir.Metrics{Kind: "train", Tokens: int64(i) * 1024, Step: int64(i), Loss: 6 - float64(i)/10, LR: 1e-3, GradNorm: 1})
		b.Write(append(raw, '\n'))
	}
	if heldout > 0 {
		raw, _ := json.Marshal(rundir.Metrics{Kind: "eval", Tokens: int64(n) * 1024, Task: "heldout", Metric: "loss", Value: &heldout})
		b.Write(append(raw, '\n'))
	}
	b.WriteString(`{"kind":"train","tok`) // a line being written
	if err := os.WriteFile(filepath.Join(dir, "metrics.jsonl"), []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
}

func get(t *testing.T, h http.Handler, url string) (int, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", url, nil))
	body, _ := io.ReadAll(rec.Result().Body)
	return rec.Code, string(body)
}

// A sweep directory's runs are listed (one not started yet among them),
// same-named runs of two roots get distinct names, a run page and its
// figures are served, unknown runs and figures are 404, and the version
// moves when a run's metrics change.
func TestSweepDirectoryAndRunPages(t *testing.T) {
	root := t.TempDir()
	sweep := filepath.Join(root, "sweep")
	writeRun(t, filepath.Join(sweep, "a_seed-1"), 3, 5.5)
	writeRun(t, filepath.Join(sweep, "b_seed-1"), 2, 0)
	os.MkdirAll(filepath.Join(sweep, "figures"), 0o755) // not a run
	os.MkdirAll(filepath.Join(sweep, "c_seed-1"), 0o755)
	os.WriteFile(filepath.Join(sweep, "c_seed-1", "config.yaml"), []byte("model: {}\n"), 0o644)
	other := filepath.Join(root, "other", "a_seed-1")
	writeRun(t, other, 1, 0)

	s, err := New([]string{sweep, other})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range s.RunDirs() {
		names = append(names, e.Name)
	}
	want := []string{filepath.Join(sweep, "a_seed-1"), "b_seed-1", "c_seed-1", other}
	if strings.Join(names, "|") != strings.Join(want, "|") {
		t.Errorf("runs %v, want %v", names, want)
	}
	code, body := get(t, s, "/")
	if code != 200 || !strings.Contains(body, `data-run="b_seed-1" data-tokens="2048" data-train-loss="5.8"`) ||
		!strings.Contains(body, `data-heldout-loss="5.5"`) || !strings.Contains(body, "no metrics yet") || !strings.Contains(body, `id="compare"`) {
		t.Errorf("index: %d\n%s", code, body)
	}
	code, body = get(t, s, "/run?r=b_seed-1")
	if code != 200 || strings.Count(body, `<tr data-tokens=`) != 2 || !strings.Contains(body, `src="/fig?r=b_seed-1&f=loss&v=`) {
		t.Errorf("run page: %d\n%s", code, body)
	}
	for _, f := range []string{"loss", "dynamics"} {
		if code, body := get(t, s, "/fig?r=b_seed-1&f="+f); code != 200 || !strings.Contains(body, "<svg") {
			t.Errorf("figure %s: %d %.200s", f, code, body)
		}
	}
	for _, url := range []string{"/run?r=nope", "/fig?r=b_seed-1&f=nope", "/fig?r=b_seed-1&f=load", "/nope"} {
		if code, _ := get(t, s, url); code != 404 {
			t.Errorf("%s: %d, want 404", url, code)
		}
	}
	_, v0 := get(t, s, "/version?r=b_seed-1")
	_, all0 := get(t, s, "/version")
	writeRun(t, filepath.Join(sweep, "b_seed-1"), 3, 0)
	_, v1 := get(t, s, "/version?r=b_seed-1")
	_, all1 := get(t, s, "/version")
	if v0 == v1 || all0 == all1 {
		t.Errorf("versions did not move: run %s → %s, all %s → %s", v0, v1, all0, all1)
	}
	if _, err := New([]string{filepath.Join(root, "missing")}); err == nil {
		t.Error("a missing directory was accepted")
	}
}
