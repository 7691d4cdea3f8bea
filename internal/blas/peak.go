package blas

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/moetrain/moetrain/internal/atomicfile"
	"github.com/moetrain/moetrain/internal/cputime"
	"github.com/moetrain/moetrain/internal/parallel"
)

// PeakGFLOPS measures the float32 GEMM peak of the active kernel as DESIGN.md
// §7.3 defines it for MFU: the best of 5 square 2048³ products (2·2048³
// FLOPs each) on non-zero pseudo-random inputs. Zero inputs would flatter
// gonum, which skips zero entries of A. It takes ~0.5 s with OpenBLAS
// SkylakeX on 2 cores and several seconds with pure Go, and allocates three
// 16 MiB matrices. One measurement moves with the machine's load (56-149
// GFLOP/s across launches on a shared 2-core machine), so MFU is quoted
// against MachinePeak, which keeps the best measurement per machine.
func PeakGFLOPS() float64 {
	g, _ := measurePeak(5)
	return g
}

// measurePeak returns the best rate of reps 2048³ products and the share
// of parallel.Workers cores the process got meanwhile (CPU time over wall
// time × workers; 0 where it cannot be read): well below 1 means other
// processes held the cores and the figure is too low.
func measurePeak(reps int) (gflops, share float64) {
	const n = 2048
	a, b := lcg(1, n*n), lcg(2, n*n)
	c := make([]float32, n*n)
	best := time.Duration(1<<63 - 1)
	cpu0, wall0 := cputime.Process(), time.Now()
	for range reps {
		t0 := time.Now()
		peakProduct(n, a, b, c)
		if d := time.Since(t0); d < best {
			best = d
		}
	}
	if cpu1 := cputime.Process(); cpu1 > 0 {
		share = (cpu1 - cpu0).Seconds() / (time.Since(wall0).Seconds() * float64(parallel.Workers))
	}
	return 2 * n * n * n / best.Seconds() / 1e9, share
}

// peakProduct sets c = a·b for n×n matrices in float32, whatever
// train.products says: MFU is quoted against float32 products, and a peak
// measured in bfloat16 would be about twice as high and, cached, would
// halve the MFU of every later float32 run on the machine.
func peakProduct(n int, a, b, c []float32) {
	if l, ok := sgemm.(*oneDNN); ok && l.bf16 {
		l.bf16 = false
		defer func() { l.bf16 = true }()
	}
	MatMul(false, false, n, n, n, a, b, c, false)
}

// Peak is the float32 GEMM rate MFU is quoted against.
type Peak struct {
	// GFLOPS is 0 when no peak applies: with the pure-Go kernel an MFU
	// against pure Go's own peak would report a ~10× slower run as well used.
	GFLOPS float64 `json:"gflops"`
	// Key names what the figure belongs to: CPU model, cores used and BLAS
	// kernel (see PeakKey).
	Key string `json:"key"`
	// Source says where the figure came from, for logs and reports:
	// "cached, measured 2026-12-03 (FILE)", "measured now, cached in FILE",
	// "measured now (not cached: ...)" or why there is none.
	Source string `json:"source"`
}

// String is "294.1 GFLOP/s (SOURCE; KEY)" or "none (REASON)".
func (p Peak) String() string {
	if p.GFLOPS <= 0 {
		return "none (" + p.Source + ")"
	}
	return fmt.Sprintf("%.1f GFLOP/s (%s; %s)", p.GFLOPS, p.Source, p.Key)
}

// MFU is achieved/peak, or 0 when there is no peak.
func (p Peak) MFU(achievedGFLOPS float64) float64 {
	if p.GFLOPS <= 0 {
		return 0
	}
	return achievedGFLOPS / p.GFLOPS
}

// peakReps is how many 2048³ products one machine-peak measurement takes
// the best of (as PeakGFLOPS).
const peakReps = 5

// minPeakShare is the share of its cores a process must get during a peak
// measurement for the figure to count as clean (see MachinePeak).
const minPeakShare = 0.85

// MachinePeak returns the peak of the active kernel on this machine: the
// cached figure for PeakKey(Current()) in the user's cache directory
// (PeakCachePath), or, when there is none or remeasure is set, a fresh
// measurement (best of 5 × 2048³, ~0.5 s) that is then cached. A
// measurement during which the process got less than 85% of its cores'
// CPU time (other jobs on the machine) is contended: it is used and cached
// but flagged, and every later launch measures again until a clean one
// replaces it. Among clean measurements the cache keeps the best, so every
// run on the machine divides by the same number. With the pure-Go kernel there is no
// peak (GFLOPS 0, see Peak). A cache that cannot be read or written is not
// an error: the measurement is used and Source says so.
//
// PeakEnv, when set to a positive number, is the peak instead (unless
// remeasure is set): nothing is measured or cached.
func MachinePeak(remeasure bool) Peak {
	info := Current()
	key := PeakKey(info)
	if info.Library == "" {
		return Peak{Key: key, Source: "pure-Go kernel, no MFU: " + info.Fallback}
	}
	v := os.Getenv(PeakEnv)
	g, stated := peakFromEnv(v)
	if stated && !remeasure {
		return Peak{GFLOPS: g, Key: key, Source: fmt.Sprintf("stated by %s=%s, not measured", PeakEnv, v)}
	}
	path, err := PeakCachePath()
	p := machinePeak(key, path, err, remeasure, func() (float64, float64) { return measurePeak(peakReps) })
	p.Source = "best 2048³ sgemm, " + p.Source
	if v != "" && !stated {
		p.Source += fmt.Sprintf(" (%s=%q ignored: not a positive number of GFLOP/s)", PeakEnv, v)
	}
	return p
}

// PeakEnv names the environment variable that states the peak, in GFLOP/s,
// instead of measuring it. It is for a machine never idle enough for a clean
// measurement (every launch would measure again), for quoting MFU against a
// figure of one's own, and for the test suite (scripts/test.sh), whose
// packages run side by side and would otherwise measure under load at every
// launch and write the results into the user's cache.
const PeakEnv = "MOETRAIN_PEAK_GFLOPS"

// peakFromEnv parses PeakEnv's value: a finite number above zero.
func peakFromEnv(v string) (float64, bool) {
	g, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
	return g, err == nil && g > 0 && !math.IsInf(g, 0)
}

// PeakKey identifies a peak measurement: the CPU model, the cores the
// kernel is driven with (parallel.Workers; the machine's logical CPUs when
// they differ) and the BLAS kernel with its threading. A different CPU, a
// GOMAXPROCS limit or another OpenBLAS build each get their own entry.
func PeakKey(info Info) string {
	cores := fmt.Sprintf("%d cores", parallel.Workers)
	if n := runtime.NumCPU(); n != parallel.Workers {
		cores += fmt.Sprintf(" of %d", n)
	}
	kernel := info.Kernel
	if info.Library != "" {
		kernel += fmt.Sprintf(", %d thread(s) per call, split %d", info.Threads, info.Split)
	}
	return fmt.Sprintf("%s; %s; %s", cpuModel(), cores, kernel)
}

// PeakCachePath is where MachinePeak keeps its figures:
// $XDG_CACHE_HOME/moetrain/peak.json (~/.cache/moetrain/peak.json on Linux).
func PeakCachePath() (string, error) {
	dir, err := os.UserCacheDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(dir, "moetrain", "peak.json"), nil
}

// peakCache is the cache file's content.
type peakCache struct {
	Peaks map[string]peakEntry `json:"peaks"` // by PeakKey
}

type peakEntry struct {
	GFLOPS    float64   `json:"gflops"`              // best clean measurement (best contended one while there is none)
	Measured  time.Time `json:"measured"`            // when that best was measured
	Runs      int       `json:"runs"`                // measurements taken for this key
	Contended bool      `json:"contended,omitempty"` // no clean measurement yet: measure again at the next launch
}

// machinePeak is MachinePeak with the cache path (or the error finding it)
// and the measurement (GFLOP/s and core share) passed in, for tests.
func machinePeak(key, path string, pathErr error, remeasure bool, measure func() (gflops, share float64)) Peak {
	if pathErr != nil {
		g, share := measure()
		return Peak{GFLOPS: g, Key: key, Source: measuredNow(g, share, 0) + " (not cached: " + pathErr.Error() + ")"}
	}
	cache, readErr := readPeakCache(path)
	e, ok := cache.Peaks[key]
	if ok && !remeasure && !e.Contended && e.GFLOPS > 0 {
		return Peak{GFLOPS: e.GFLOPS, Key: key, Source: fmt.Sprintf("cached, best of %d measurement(s), %s (%s)", e.Runs, e.Measured.UTC().Format("2006-01-02"), path)}
	}
	g, share := measure()
	contended := share < minPeakShare
	// A clean figure replaces a contended one; otherwise the better one stays.
	if e.GFLOPS == 0 || (e.Contended && !contended) || (e.Contended == contended && g > e.GFLOPS) {
		e.GFLOPS, e.Measured, e.Contended = g, time.Now(), contended
	}
	e.Runs++
	cache.Peaks[key] = e
	src := measuredNow(g, share, e.GFLOPS)
	if readErr != nil {
		return Peak{GFLOPS: g, Key: key, Source: measuredNow(g, share, 0) + " (not cached: " + readErr.Error() + ")"}
	}
	if err := writePeakCache(path, cache); err != nil {
		return Peak{GFLOPS: g, Key: key, Source: measuredNow(g, share, 0) + " (not cached: " + err.Error() + ")"}
	}
	return Peak{GFLOPS: e.GFLOPS, Key: key, Source: fmt.Sprintf("%s; best of %d measurement(s), cached in %s", src, e.Runs, path)}
}

// measuredNow describes a fresh measurement of g at the given core share
// and the figure kept (0: g itself).
func measuredNow(g, share, kept float64) string {
	s := "measured now"
	if share < minPeakShare {
		s = fmt.Sprintf("measured now under load (this process got %.0f%% of its cores): too low, so MFU is overstated; measured again at each launch until the machine is idle", 100*share)
	}
	if kept > 0 && kept != g {
		s += fmt.Sprintf(" at %.1f GFLOP/s, below the cached best", g)
	}
	return s
}

// readPeakCache returns the cache at path: empty when the file does not
// exist, empty with an error when it cannot be read or parsed (it is then
// not overwritten).
func readPeakCache(path string) (peakCache, error) {
	c := peakCache{Peaks: map[string]peakEntry{}}
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return c, nil
	}
	if err != nil {
		return c, err
	}
	if err := json.Unmarshal(b, &c); err != nil {
		return peakCache{Peaks: map[string]peakEntry{}}, fmt.Errorf("%s: %w", path, err)
	}
	if c.Peaks == nil {
		c.Peaks = map[string]peakEntry{}
	}
	return c, nil
}

// writePeakCache replaces the file through a rename, so a concurrent reader
// sees the old or the new file, never half of one.
func writePeakCache(path string, c peakCache) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(path, append(b, '\n'), 0o644)
}

// cpuModel names the CPU for the peak cache: the "model name" of
// /proc/cpuinfo with its family, model and stepping numbers, or the
// architecture where that file does not exist.
func cpuModel() string {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return runtime.GOARCH
	}
	defer f.Close()
	return parseCPUModel(f)
}

// parseCPUModel reads the first processor of a /proc/cpuinfo. The numbers
// matter because a virtual machine's model name can be as vague as "AMD
// EPYC" for CPUs whose peaks differ by 2×: Zen 4 (family 25) runs AVX-512
// at half the width Zen 5 (family 26) does.
func parseCPUModel(r io.Reader) string {
	fields := map[string]string{}
	s := bufio.NewScanner(r)
	for s.Scan() {
		if strings.TrimSpace(s.Text()) == "" && len(fields) > 0 {
			break // the end of the first processor
		}
		k, v, ok := strings.Cut(s.Text(), ":")
		if ok {
			fields[strings.TrimSpace(k)] = strings.TrimSpace(v)
		}
	}
	name, ok := fields["model name"]
	if !ok {
		return runtime.GOARCH
	}
	var ids []string
	for _, k := range []string{"cpu family", "model", "stepping"} {
		if v, ok := fields[k]; ok {
			ids = append(ids, strings.TrimPrefix(k, "cpu ")+" "+v)
		}
	}
	if len(ids) == 0 {
		return name
	}
	return name + " (" + strings.Join(ids, ", ") + ")"
}
