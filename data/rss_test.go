//go:build rssbench

package data

// Resident memory while streaming a generated 2 GB corpus. Not part of
// `go test` (it writes 2 GB); run it with
//
//	go test -tags rssbench -run TestRSS2GB -v -timeout 30m ./data/
//
// MOETRAIN_RSS_DIR=DIR keeps (and reuses) the corpus in DIR.

import (
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
)

// procStatus reads a "kB" field of /proc/self/status in bytes.
func procStatus(t *testing.T, field string) int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Skip("no /proc/self/status")
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, field+":") {
			f := strings.Fields(line)
			n, _ := strconv.ParseInt(f[1], 10, 64)
			return n << 10
		}
	}
	t.Fatalf("no %s in /proc/self/status", field)
	return 0
}

func TestRSS2GB(t *testing.T) {
	dir := os.Getenv("MOETRAIN_RSS_DIR")
	if dir == "" {
		dir = filepath.Join(t.TempDir(), "rss")
	}
	const tokens = 1 << 30 // 2 GB of uint16
	if _, err := LoadManifest(dir); err != nil {
		start := time.Now()
		writeRandomDataset(t, dir, tokens)
		t.Logf("wrote %d tokens in %v", tokens, time.Since(start).Round(time.Second))
	}
	runtime.GC()
	before := procStatus(t, "VmRSS")
	start := time.Now()
	const T, B = 2048, 16
	s, err := Open(StreamConfig{Dir: dir, SeqLen: T, Batch: B, Seed: 1}, Cursor{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	t.Logf("Open (SHA-256 of every shard) took %v", time.Since(start).Round(time.Millisecond))
	start = time.Now()
	var delivered, maxRSS int64
	for i := 0; delivered < tokens; i++ {
		if _, err := s.Next(); err != nil {
			t.Fatal(err)
		}
		delivered += B * (T + 1)
		if i%512 == 0 {
			rss := procStatus(t, "VmRSS")
			maxRSS = max(maxRSS, rss)
			if i%8192 == 0 {
				t.Logf("%6.2f G tokens streamed: RSS %.1f MB", float64(delivered)/1e9, float64(rss)/1e6)
			}
		}
	}
	el := time.Since(start)
	t.Logf("streamed %d tokens (%d-token windows, shuffled) in %v: %.1f M tok/s", delivered, T+1, el.Round(time.Millisecond), float64(delivered)/el.Seconds()/1e6)
	t.Logf("RSS before Open %.1f MB, max while streaming %.1f MB, VmHWM %.1f MB", float64(before)/1e6, float64(maxRSS)/1e6, float64(procStatus(t, "VmHWM"))/1e6)
	if maxRSS > 256<<20 {
		t.Fatalf("resident memory %.1f MB exceeds 256 MB", float64(maxRSS)/1e6)
	}
}
