package main

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// moetrainEnv is moetrain with extra environment variables.
func moetrainEnv(t *testing.T, env []string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Env = append(os.Environ(), env...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		return o.String(), e.String(), ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return o.String(), e.String(), 0
}

// Without a BLAS library every compute command starts with a warning that
// names the packages and the slowdown, and bench reports no MFU.
func TestPureGoWarnsAndReportsNoMFU(t *testing.T) {
	env := []string{"MOETRAIN_BLAS=none", "XDG_CACHE_HOME=" + t.TempDir()}
	cfg := tinyYAML(t, 2)
	run := t.TempDir()
	for _, args := range [][]string{
		{"bench", cfg, "--steps", "1", "--warmup", "0", "--breakdown=false", "--json"},
		{"train", cfg, "--run-dir", run, "--plain"},
	} {
		stdout, stderr, code := moetrainEnv(t, env, args...)
		if code != 0 {
			t.Fatalf("%s: exit %d\n%s", args[0], code, stderr)
		}
		if !strings.HasPrefix(stderr, "WARNING: no BLAS library is in use") || !strings.Contains(stderr, "libdnnl2 libopenblas0") || !strings.Contains(stderr, "8× slower") {
			t.Errorf("%s: stderr does not start with the warning naming libdnnl2, libopenblas0 and the slowdown:\n%s", args[0], stderr)
		}
		if args[0] != "bench" {
			continue
		}
		var r struct {
			MFU        float64 `json:"mfu"`
			Peak       float64 `json:"sgemm_gflops"`
			PeakSource string  `json:"peak_source"`
			GFLOPS     float64 `json:"achieved_gflops"`
		}
		if err := json.Unmarshal([]byte(stdout), &r); err != nil {
			t.Fatalf("bench --json: %v\n%s", err, stdout)
		}
		if r.MFU != 0 || r.Peak != 0 || !strings.Contains(r.PeakSource, "pure-Go") || r.GFLOPS <= 0 {
			t.Errorf("pure Go: MFU %g against peak %g (%q), achieved %g GFLOP/s; want no MFU, no peak, a reason and the achieved rate", r.MFU, r.Peak, r.PeakSource, r.GFLOPS)
		}
	}
	if _, err := os.Stat(filepath.Join(env[1][len("XDG_CACHE_HOME="):], "moetrain")); err == nil {
		t.Error("pure Go wrote a peak cache")
	}
}

// With a BLAS library the first bench measures the peak and caches it in the
// user's cache directory; the next one takes it from there and says so.
func TestBenchCachesPeak(t *testing.T) {
	cache := t.TempDir()
	env := []string{"XDG_CACHE_HOME=" + cache, "MOETRAIN_PEAK_GFLOPS="} // measure, even where the test command states a peak
	cfg := tinyYAML(t, 2)
	args := []string{"bench", cfg, "--steps", "1", "--warmup", "0", "--breakdown=false"}
	out1, stderr, code := moetrainEnv(t, env, args...)
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, stderr)
	}
	if strings.Contains(stderr, "WARNING") {
		t.Skipf("no BLAS library here:\n%s", stderr)
	}
	if !strings.Contains(out1, "measured now") {
		t.Errorf("first run does not say it measured the peak:\n%s", out1)
	}
	b, err := os.ReadFile(filepath.Join(cache, "moetrain", "peak.json"))
	if err != nil {
		t.Fatalf("no peak cache: %v", err)
	}
	// The header line ends with "BLAS <kernel>".
	header, _, _ := strings.Cut(out1, "\n")
	_, kernel, _ := strings.Cut(header, "BLAS ")
	if kernel == "" || !strings.Contains(string(b), "; "+kernel+",") {
		t.Errorf("cache entry not keyed by the kernel %q of %q:\n%s", kernel, header, b)
	}
	out2, stderr, code := moetrainEnv(t, env, args...)
	if code != 0 {
		t.Fatalf("second run: exit %d\n%s", code, stderr)
	}
	if !strings.Contains(out2, "MFU") || !strings.Contains(out2, "achieved") {
		t.Errorf("second run reports no MFU or achieved rate:\n%s", out2)
	}
	// A first measurement taken while other processes held the cores is
	// measured again; a clean one is taken from the cache.
	contended := strings.Contains(out1, "under load")
	if cached := strings.Contains(out2, "peak") && strings.Contains(out2, "cached, best of"); cached == contended {
		t.Errorf("first measurement contended %v, second run cached %v; want exactly one:\n%s\n%s", contended, cached, out1, out2)
	}
}

// A user's OMP_NUM_THREADS gives oneDNN that many threads per call, and
// then products are not split over the workers (two multi-threaded calls at
// once would oversubscribe the cores); the peak is keyed by it.
func TestOneDNNThreadsFromEnvironment(t *testing.T) {
	env := []string{"OMP_NUM_THREADS=2", "MOETRAIN_BLAS=onednn", "XDG_CACHE_HOME=" + t.TempDir()}
	stdout, stderr, code := moetrainEnv(t, env, "bench", tinyYAML(t, 2), "--steps", "1", "--warmup", "0", "--breakdown=false", "--forward=false", "--json")
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, stderr)
	}
	if strings.Contains(stderr, "WARNING") {
		if os.Getenv("CI") == "true" {
			t.Fatalf("oneDNN not available under CI=true (Debian: apt-get install libdnnl2):\n%s", stderr)
		}
		t.Skipf("oneDNN not available here:\n%s", stderr)
	}
	var r struct {
		Key string `json:"peak_key"`
	}
	if err := json.Unmarshal([]byte(stdout), &r); err != nil {
		t.Fatalf("bench --json: %v\n%s", err, stdout)
	}
	if !strings.Contains(r.Key, "oneDNN") || !strings.Contains(r.Key, "2 thread(s) per call, split 1") {
		t.Errorf("peak key %q: want oneDNN with 2 threads per call and no split", r.Key)
	}
}

// train.products: bf16 where there are no bfloat16 products (OpenBLAS
// here) stops at launch with a run-time error naming the key and why;
// a value that is not a precision is a config error.
func TestBF16ProductsNeedTheirKernel(t *testing.T) {
	cfg := tinyYAML(t, 2)
	args := []string{"bench", cfg, "--steps", "1", "--warmup", "0", "--breakdown=false", "--forward=false"}
	_, stderr, code := moetrainEnv(t, []string{"MOETRAIN_BLAS=openblas"}, append(args, "--set", "train.products=bf16")...)
	if code != 1 || !strings.Contains(stderr, "train.products") || !strings.Contains(stderr, "bfloat16 products need oneDNN") {
		t.Errorf("bf16 on OpenBLAS: exit %d, want 1 naming train.products and what bf16 needs:\n%s", code, stderr)
	}
	_, stderr, code = moetrainEnv(t, nil, append(args, "--set", "train.products=fp16")...)
	if code != 2 || !strings.Contains(stderr, "train.products: want fp32 or bf16") {
		t.Errorf("train.products=fp16: exit %d, want 2 and the allowed values:\n%s", code, stderr)
	}
}

// MOETRAIN_PEAK_GFLOPS states the peak: bench quotes MFU against it, says
// it was stated, and measures and caches nothing.
func TestBenchStatedPeak(t *testing.T) {
	cache := t.TempDir()
	env := []string{"XDG_CACHE_HOME=" + cache, "MOETRAIN_PEAK_GFLOPS=250"}
	stdout, stderr, code := moetrainEnv(t, env, "bench", tinyYAML(t, 2), "--steps", "1", "--warmup", "0", "--breakdown=false", "--forward=false")
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, stderr)
	}
	if strings.Contains(stderr, "WARNING") {
		t.Skipf("no BLAS library here:\n%s", stderr)
	}
	if !strings.Contains(stdout, "peak            250.0 GFLOP/s (stated by MOETRAIN_PEAK_GFLOPS=250, not measured;") || !strings.Contains(stdout, "MFU ") {
		t.Errorf("bench does not quote MFU against the stated peak:\n%s", stdout)
	}
	if _, err := os.Stat(filepath.Join(cache, "moetrain")); err == nil {
		t.Error("a stated peak wrote the cache")
	}
}

// bench --cpuprofile writes the profile and, on a library kernel (oneDNN
// here), says that products go through cgocall so that the profile names
// their callers.
func TestBenchProfileCallsThroughCgocall(t *testing.T) {
	prof := filepath.Join(t.TempDir(), "cpu.prof")
	env := []string{"MOETRAIN_BLAS=onednn"}
	_, stderr, code := moetrainEnv(t, env, "bench", tinyYAML(t, 2), "--steps", "1", "--warmup", "0", "--breakdown=false", "--forward=false", "--cpuprofile", prof)
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, stderr)
	}
	if st, err := os.Stat(prof); err != nil || st.Size() == 0 {
		t.Errorf("no profile written: %v", err)
	}
	if strings.Contains(stderr, "WARNING") {
		if os.Getenv("CI") == "true" {
			t.Fatalf("oneDNN not available under CI=true (Debian: apt-get install libdnnl2):\n%s", stderr)
		}
		t.Skipf("oneDNN not available here:\n%s", stderr)
	}
	if !strings.Contains(stderr, "products go through cgocall") {
		t.Errorf("no note that products go through cgocall for the profile:\n%s", stderr)
	}
}
