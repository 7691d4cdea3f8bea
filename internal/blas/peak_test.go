package blas

import (
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// fakeMeasure returns the given figures in turn (with the core share
// shares[i], 1 when not given) and counts its calls.
type fakeMeasure struct {
	figures, shares []float64
	calls           int
}

func (f *fakeMeasure) measure() (float64, float64) {
	i := min(f.calls, len(f.figures)-1)
	share := 1.0
	if i < len(f.shares) {
		share = f.shares[i]
	}
	f.calls++
	return f.figures[i], share
}

func TestMachinePeakCachesPerKey(t *testing.T) {
	path := filepath.Join(t.TempDir(), "moetrain", "peak.json")
	m := &fakeMeasure{figures: []float64{200, 150, 250, 90}}
	keyA, keyB := "cpu X; 2 cores; OpenBLAS 0.3.21 Haswell", "cpu X; 2 cores; OpenBLAS 0.3.21 SkylakeX"

	p := machinePeak(keyA, path, nil, false, m.measure)
	if p.GFLOPS != 200 || m.calls != 1 || !strings.Contains(p.Source, "measured now") {
		t.Fatalf("first call: %+v after %d measurements; want 200 measured now", p, m.calls)
	}
	p = machinePeak(keyA, path, nil, false, m.measure)
	if p.GFLOPS != 200 || m.calls != 1 || !strings.Contains(p.Source, "cached") || p.Key != keyA {
		t.Errorf("same key again: %+v after %d measurements; want the cached 200 without measuring", p, m.calls)
	}
	// Another kernel on the same CPU is another entry.
	p = machinePeak(keyB, path, nil, false, m.measure)
	if p.GFLOPS != 150 || m.calls != 2 {
		t.Errorf("other key: %+v after %d measurements; want a fresh 150", p, m.calls)
	}
	// Measuring again keeps the best figure per key.
	if p = machinePeak(keyA, path, nil, true, m.measure); p.GFLOPS != 250 {
		t.Errorf("remeasure to 250: got %+v", p)
	}
	if p = machinePeak(keyA, path, nil, true, m.measure); p.GFLOPS != 250 || !strings.Contains(p.Source, "below the cached best") {
		t.Errorf("remeasure to 90 under load: got %+v, want the best 250 kept", p)
	}
	if p = machinePeak(keyB, path, nil, false, m.measure); p.GFLOPS != 150 || m.calls != 4 {
		t.Errorf("key B after key A's updates: %+v after %d measurements", p, m.calls)
	}
	c, err := readPeakCache(path)
	if err != nil || len(c.Peaks) != 2 || c.Peaks[keyA].Runs != 3 || c.Peaks[keyB].Runs != 1 {
		t.Errorf("cache file: %+v, %v; want two keys with 3 and 1 runs", c, err)
	}
}

// A measurement taken while other processes held the cores is used but
// measured again at every launch until a clean one replaces it, even a
// lower clean one; after that a contended one never replaces it.
func TestMachinePeakRemeasuresContended(t *testing.T) {
	path := filepath.Join(t.TempDir(), "peak.json")
	m := &fakeMeasure{figures: []float64{40, 60, 180, 100}, shares: []float64{0.2, 0.3, 0.95, 0.4}}
	p := machinePeak("k", path, nil, false, m.measure)
	if p.GFLOPS != 40 || !strings.Contains(p.Source, "under load") {
		t.Errorf("contended first measurement: %+v", p)
	}
	if p = machinePeak("k", path, nil, false, m.measure); p.GFLOPS != 60 || m.calls != 2 {
		t.Errorf("second launch after a contended measurement: %+v after %d measurements, want a new one (60)", p, m.calls)
	}
	if p = machinePeak("k", path, nil, false, m.measure); p.GFLOPS != 180 || m.calls != 3 {
		t.Errorf("clean measurement: %+v after %d", p, m.calls)
	}
	if p = machinePeak("k", path, nil, false, m.measure); p.GFLOPS != 180 || m.calls != 3 || !strings.Contains(p.Source, "cached") {
		t.Errorf("after a clean measurement: %+v after %d measurements, want the cached 180", p, m.calls)
	}
	if p = machinePeak("k", path, nil, true, m.measure); p.GFLOPS != 180 {
		t.Errorf("a contended remeasurement replaced the clean figure: %+v", p)
	}
	m2 := &fakeMeasure{figures: []float64{90, 70}, shares: []float64{0.1, 0.99}}
	path2 := filepath.Join(t.TempDir(), "peak.json")
	machinePeak("k", path2, nil, false, m2.measure)
	if p = machinePeak("k", path2, nil, false, m2.measure); p.GFLOPS != 70 {
		t.Errorf("a clean 70 after a contended 90: kept %g, want the clean one", p.GFLOPS)
	}
}

func TestMachinePeakWithoutCache(t *testing.T) {
	dir := t.TempDir()
	m := &fakeMeasure{figures: []float64{120}}
	p := machinePeak("k", "", os.ErrNotExist, false, m.measure)
	if p.GFLOPS != 120 || !strings.Contains(p.Source, "not cached") {
		t.Errorf("no cache directory: %+v", p)
	}
	// A corrupt file is reported and left alone, not overwritten.
	path := filepath.Join(dir, "peak.json")
	os.WriteFile(path, []byte("{not json"), 0o644)
	p = machinePeak("k", path, nil, false, m.measure)
	if p.GFLOPS != 120 || !strings.Contains(p.Source, "not cached") {
		t.Errorf("corrupt cache: %+v", p)
	}
	if b, _ := os.ReadFile(path); string(b) != "{not json" {
		t.Errorf("corrupt cache overwritten with %q", b)
	}
}

func TestPeakKeyNamesCPUCoresAndKernel(t *testing.T) {
	a := Info{Kernel: "OpenBLAS 0.3.21 Haswell", Library: "/lib/libopenblas.so.0", Threads: 1, Split: 2}
	k := PeakKey(a)
	for _, want := range []string{cpuModel(), "cores", "OpenBLAS 0.3.21 Haswell", "split 2"} {
		if !strings.Contains(k, want) {
			t.Errorf("key %q does not contain %q", k, want)
		}
	}
	b := a
	b.Kernel = "OpenBLAS 0.3.21 SkylakeX"
	c := a
	c.Threads, c.Split = 2, 1
	if PeakKey(b) == k || PeakKey(c) == k {
		t.Errorf("different kernels or threading share a key: %q, %q, %q", k, PeakKey(b), PeakKey(c))
	}
}

func TestPureGoHasNoPeakAndWarns(t *testing.T) {
	defer Init() //nolint:errcheck // restores the default kernel for later tests
	t.Setenv(LibraryEnv, "none")
	t.Setenv("XDG_CACHE_HOME", t.TempDir())
	info, err := Init()
	if err != nil {
		t.Fatal(err)
	}
	if info.Library != "" || !strings.Contains(info.Fallback, LibraryEnv+"=none") {
		t.Fatalf("%s=none: %+v, want pure Go", LibraryEnv, info)
	}
	w := info.FallbackWarning()
	for _, want := range []string{"libdnnl2", "libopenblas0", "8× slower", "no MFU", LibraryEnv} {
		if !strings.Contains(w, want) {
			t.Errorf("warning does not mention %q:\n%s", want, w)
		}
	}
	p := MachinePeak(false)
	if p.GFLOPS != 0 || p.MFU(100) != 0 || !strings.Contains(p.String(), "none") {
		t.Errorf("pure-Go peak %+v (%s), MFU %g; want none", p, p, p.MFU(100))
	}
	t.Setenv(LibraryEnv, "")
	if l, err := Init(); err == nil && l.Library != "" {
		if w := l.FallbackWarning(); w != "" {
			t.Errorf("%s loaded but warning %q", l.Kernel, w)
		}
	}
}

// TestParseCPUModel: the peak cache must tell apart CPUs a virtual machine
// gives one vague model name ("AMD EPYC" for a Zen 4 and a Zen 5 alike).
func TestParseCPUModel(t *testing.T) {
	tests := []struct {
		name, cpuinfo, want string
	}{
		{"zen4", "processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 25\nmodel\t\t: 17\nmodel name\t: AMD EPYC\nstepping\t: 1\n\nprocessor\t: 1\ncpu family\t: 26\n", "AMD EPYC (family 25, model 17, stepping 1)"},
		{"zen5", "processor\t: 0\ncpu family\t: 26\nmodel\t\t: 2\nmodel name\t: AMD EPYC\nstepping\t: 1\n", "AMD EPYC (family 26, model 2, stepping 1)"},
		{"name only", "processor\t: 0\nmodel name\t: Some CPU\n", "Some CPU"},
		{"no name", "processor\t: 0\nBogoMIPS\t: 48.00\n", runtime.GOARCH},
	}
	for _, tt := range tests {
		if got := parseCPUModel(strings.NewReader(tt.cpuinfo)); got != tt.want {
			t.Errorf("%s: got %q, want %q", tt.name, got, tt.want)
		}
	}
}

// TestPeakFromEnvironment: a positive PeakEnv is the peak, with nothing
// measured or cached; anything else is ignored (and said so).
func TestPeakFromEnvironment(t *testing.T) {
	for _, tt := range []struct {
		v    string
		want float64
		ok   bool
	}{
		{"250", 250, true}, {" 211.5 ", 211.5, true}, {"1e3", 1000, true},
		{"", 0, false}, {"0", 0, false}, {"-5", 0, false}, {"abc", 0, false}, {"Inf", 0, false}, {"NaN", 0, false},
	} {
		g, ok := peakFromEnv(tt.v)
		if ok != tt.ok || (ok && g != tt.want) {
			t.Errorf("peakFromEnv(%q) = %g, %v; want %g, %v", tt.v, g, ok, tt.want, tt.ok)
		}
	}
	loadedOneDNN(t) // a library kernel: pure Go has no peak at all
	cache := t.TempDir()
	t.Setenv("XDG_CACHE_HOME", cache)
	t.Setenv(PeakEnv, "123.5")
	p := MachinePeak(false)
	if p.GFLOPS != 123.5 || !strings.Contains(p.Source, PeakEnv) {
		t.Errorf("peak %g (%s), want 123.5 from %s", p.GFLOPS, p.Source, PeakEnv)
	}
	if _, err := os.Stat(filepath.Join(cache, "moetrain")); err == nil {
		t.Error("a stated peak wrote the cache")
	}
	t.Setenv(PeakEnv, "fast")
	if p := MachinePeak(false); p.GFLOPS <= 0 || !strings.Contains(p.Source, `MOETRAIN_PEAK_GFLOPS="fast" ignored`) {
		t.Errorf("peak %g (%s): want a measurement that says the variable was ignored", p.GFLOPS, p.Source)
	}
}
