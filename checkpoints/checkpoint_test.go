package checkpoints

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// sampleCheckpoint returns a small checkpoint whose values depend on tokens,
// so that loading the wrong one shows.
func sampleCheckpoint(tokens int64) Checkpoint {
	v := float32(tokens)
	return Checkpoint{
		Tokens: tokens,
		Model: append(sampleTensors(),
			Tensor{Name: "model.w", DType: F32, Shape: []int{2}, F32: []float32{v, -v}}),
		Optimizer: []Tensor{
			{Name: "adam.m.model.w", DType: F32, Shape: []int{2}, F32: []float32{0.1, v / 3}},
			{Name: "adam.step", DType: I64, Shape: []int{}, I64: []int64{tokens / 10}},
		},
		State: json.RawMessage(fmt.Sprintf(`{"tokens": %d, "cursor": {"shard": 3, "offset": 17}}`, tokens)),
	}
}

func checkSame(t *testing.T, got *Checkpoint, want Checkpoint) {
	t.Helper()
	if got == nil {
		t.Fatal("got nil checkpoint")
	}
	if got.Tokens != want.Tokens {
		t.Errorf("got tokens %d, want %d", got.Tokens, want.Tokens)
	}
	if err := equalBits(got.Model, sortedByName(want.Model)); err != nil {
		t.Errorf("model: %v", err)
	}
	if err := equalBits(got.Optimizer, sortedByName(want.Optimizer)); err != nil {
		t.Errorf("optimizer: %v", err)
	}
	if !bytes.Equal(got.State, want.State) {
		t.Errorf("got state %s, want %s", got.State, want.State)
	}
}

// hiddenEntries lists the dot-entries of runDir/checkpoints.
func hiddenEntries(t *testing.T, runDir string) []string {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(runDir, "checkpoints"))
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".") {
			out = append(out, e.Name())
		}
	}
	return out
}

func tokensOf(t *testing.T, runDir string) []int64 {
	t.Helper()
	infos, err := List(runDir)
	if err != nil {
		t.Fatal(err)
	}
	var out []int64
	for _, in := range infos {
		out = append(out, in.Tokens)
	}
	return out
}

func mustSave(t *testing.T, runDir string, ck Checkpoint, keep Policy) string {
	t.Helper()
	dir, err := Save(runDir, ck, keep)
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestSaveLoadRoundTrip(t *testing.T) {
	t.Parallel()
	run := t.TempDir()
	want := sampleCheckpoint(123456)
	dir := mustSave(t, run, want, Policy{})
	if wantDir := filepath.Join(run, "checkpoints", "tokens-000000000123456"); dir != wantDir {
		t.Errorf("got dir %s, want %s", dir, wantDir)
	}
	got, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	checkSame(t, got, want)

	latest, latestDir, warnings, err := LoadLatest(run)
	if err != nil || latestDir != dir || len(warnings) != 0 {
		t.Fatalf("LoadLatest: got (%s, %v, %v), want (%s, no warnings, nil)", latestDir, warnings, err, dir)
	}
	checkSame(t, latest, want)
	if h := hiddenEntries(t, run); len(h) != 0 {
		t.Errorf("hidden entries left behind: %v", h)
	}

	// The manifest describes the files as they are on disk.
	mb, err := os.ReadFile(filepath.Join(dir, "manifest.json"))
	if err != nil {
		t.Fatal(err)
	}
	var m Manifest
	if err := json.Unmarshal(mb, &m); err != nil {
		t.Fatal(err)
	}
	if m.Format != "moetrain-checkpoint" || m.Version != 1 || m.Tokens != 123456 || len(m.Files) != 3 {
		t.Fatalf("unexpected manifest %+v", m)
	}
	for _, f := range m.Files {
		b, err := os.ReadFile(filepath.Join(dir, f.Name))
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(b)
		if int64(len(b)) != f.Size || hex.EncodeToString(sum[:]) != f.SHA256 {
			t.Errorf("%s: manifest says %d bytes %s, file has %d bytes %x", f.Name, f.Size, f.SHA256, len(b), sum)
		}
	}

	// Saving the same checkpoint in another run gives identical files.
	run2 := t.TempDir()
	dir2 := mustSave(t, run2, want, Policy{})
	for _, name := range []string{"manifest.json", "model.safetensors", "optimizer.safetensors", "state.json"} {
		a, _ := os.ReadFile(filepath.Join(dir, name))
		b, _ := os.ReadFile(filepath.Join(dir2, name))
		if !bytes.Equal(a, b) {
			t.Errorf("%s differs between two saves of the same checkpoint", name)
		}
	}
}

func TestSaveNilStateAndEmptyOptimizer(t *testing.T) {
	t.Parallel()
	run := t.TempDir()
	ck := Checkpoint{Tokens: 0, Model: []Tensor{{Name: "w", DType: BF16, Shape: []int{1}, F32: []float32{2}}}}
	got, err := Load(mustSave(t, run, ck, Policy{}))
	if err != nil {
		t.Fatal(err)
	}
	if string(got.State) != "null" || len(got.Optimizer) != 0 || len(got.Model) != 1 || got.Model[0].F32[0] != 2 {
		t.Errorf("got state %s, %d optimizer tensors, model %+v", got.State, len(got.Optimizer), got.Model)
	}
}

func TestSaveRejects(t *testing.T) {
	t.Parallel()
	bad := []struct {
		name string
		ck   Checkpoint
	}{
		{"negative tokens", Checkpoint{Tokens: -1}},
		{"too many tokens", Checkpoint{Tokens: 1_000_000_000_000_000}},
		{"invalid state", Checkpoint{Tokens: 5, State: json.RawMessage(`{"a":`)}},
		{"invalid tensor", Checkpoint{Tokens: 5, Model: []Tensor{{Name: "w", DType: F32, Shape: []int{3}, F32: []float32{1}}}}},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			run := t.TempDir()
			if _, err := Save(run, tc.ck, Policy{}); err == nil {
				t.Fatal("got nil error, want a refusal")
			}
			if h, got := hiddenEntries(t, run), tokensOf(t, run); len(h)+len(got) != 0 {
				t.Errorf("refused save left %v and checkpoints %v", h, got)
			}
		})
	}
}

func TestRetention(t *testing.T) {
	t.Parallel()
	seq := func(from, to, step int64) []int64 {
		var s []int64
		for n := from; n <= to; n += step {
			s = append(s, n)
		}
		return s
	}
	tests := []struct {
		name  string
		keep  Policy
		saves []int64
		want  []int64
	}{
		{"zero policy keeps all", Policy{}, []int64{1, 2, 3}, []int64{1, 2, 3}},
		{"last 3", Policy{KeepLast: 3}, seq(10, 60, 10), []int64{40, 50, 60}},
		{"last 2 plus every 1000", Policy{KeepLast: 2, KeepEveryTokens: 1000}, seq(250, 2500, 250), []int64{1000, 2000, 2250, 2500}},
		{"zero tokens is no milestone", Policy{KeepLast: 1, KeepEveryTokens: 1000}, []int64{0, 500, 1000, 1500}, []int64{1000, 1500}},
		{"an older save survives its own prune", Policy{KeepLast: 1}, []int64{100, 200, 50}, []int64{50, 200}},
		{"re-saving the same tokens keeps one", Policy{KeepLast: 2}, []int64{10, 20, 20, 20}, []int64{10, 20}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			run := t.TempDir()
			for _, n := range tc.saves {
				ck := Checkpoint{Tokens: n, Model: []Tensor{{Name: "w", DType: I64, Shape: []int{1}, I64: []int64{n}}}}
				mustSave(t, run, ck, tc.keep)
			}
			if got := tokensOf(t, run); fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Errorf("got %v, want %v", got, tc.want)
			}
			if h := hiddenEntries(t, run); len(h) != 0 {
				t.Errorf("hidden entries left behind: %v", h)
			}
		})
	}
}

func TestSaveReplacesSameTokens(t *testing.T) {
	t.Parallel()
	run := t.TempDir()
	a, b := sampleCheckpoint(100), sampleCheckpoint(100)
	b.State = json.RawMessage(`{"second": true}`)
	b.Model[len(b.Model)-1].F32 = []float32{7, 8}
	mustSave(t, run, a, Policy{})
	dir := mustSave(t, run, b, Policy{})
	got, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	checkSame(t, got, b)
	if h := hiddenEntries(t, run); len(h) != 0 {
		t.Errorf("hidden entries left behind: %v", h)
	}
}

// Damage to the newest checkpoint makes LoadLatest fall back to the previous
// one with a warning naming the damaged checkpoint and the reason. The
// checksum is checked before parsing: a flipped byte inside the safetensors
// header is reported as a sha256 mismatch, not as a parse error.
func TestLoadLatestFallsBack(t *testing.T) {
	t.Parallel()
	flip := func(name string, at func(size int) int) func(t *testing.T, dir string) {
		return func(t *testing.T, dir string) {
			p := filepath.Join(dir, name)
			b, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			b[at(len(b))] ^= 0x01
			if err := os.WriteFile(p, b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	truncate := func(name string) func(t *testing.T, dir string) {
		return func(t *testing.T, dir string) {
			p := filepath.Join(dir, name)
			fi, err := os.Stat(p)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.Truncate(p, fi.Size()/2); err != nil {
				t.Fatal(err)
			}
		}
	}
	remove := func(name string) func(t *testing.T, dir string) {
		return func(t *testing.T, dir string) {
			if err := os.Remove(filepath.Join(dir, name)); err != nil {
				t.Fatal(err)
			}
		}
	}
	writeManifest := func(edit func(m *Manifest)) func(t *testing.T, dir string) {
		return func(t *testing.T, dir string) {
			p := filepath.Join(dir, "manifest.json")
			b, _ := os.ReadFile(p)
			var m Manifest
			if err := json.Unmarshal(b, &m); err != nil {
				t.Fatal(err)
			}
			edit(&m)
			b, _ = json.Marshal(m)
			if err := os.WriteFile(p, b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	tests := []struct {
		name   string
		damage func(t *testing.T, dir string)
		reason string
	}{
		{"truncated model", truncate("model.safetensors"), "size"},
		{"truncated optimizer", truncate("optimizer.safetensors"), "size"},
		{"flipped byte in model header", flip("model.safetensors", func(int) int { return 12 }), "sha256"},
		{"flipped byte in optimizer data", flip("optimizer.safetensors", func(n int) int { return n - 3 }), "sha256"},
		{"flipped byte in state", flip("state.json", func(n int) int { return n / 2 }), "sha256"},
		{"missing model", remove("model.safetensors"), "model.safetensors"},
		{"missing manifest", remove("manifest.json"), "manifest"},
		{"truncated manifest", truncate("manifest.json"), "manifest"},
		{"manifest of another version", writeManifest(func(m *Manifest) { m.Version = 99 }), "version"},
		{"manifest with wrong tokens", writeManifest(func(m *Manifest) { m.Tokens = 300 }), "tokens"},
		{"manifest missing a file", writeManifest(func(m *Manifest) { m.Files = m.Files[:2] }), "files"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			run := t.TempDir()
			prev := sampleCheckpoint(100)
			prevDir := mustSave(t, run, prev, Policy{})
			bad := mustSave(t, run, sampleCheckpoint(200), Policy{})
			tc.damage(t, bad)

			if _, err := Load(bad); !errors.Is(err, ErrCorrupt) {
				t.Errorf("Load of damaged checkpoint: got %v, want ErrCorrupt", err)
			}
			ck, dir, warnings, err := LoadLatest(run)
			if err != nil {
				t.Fatal(err)
			}
			if dir != prevDir {
				t.Fatalf("got dir %q, want %q", dir, prevDir)
			}
			checkSame(t, ck, prev)
			if len(warnings) != 1 || !strings.Contains(warnings[0], "tokens-000000000000200") || !strings.Contains(warnings[0], tc.reason) {
				t.Errorf("got warnings %q, want one naming tokens-000000000000200 and %q", warnings, tc.reason)
			}
		})
	}
}

func TestLoadLatestNone(t *testing.T) {
	t.Parallel()
	run := t.TempDir()
	ck, dir, warnings, err := LoadLatest(run)
	if ck != nil || dir != "" || len(warnings) != 0 || err != nil {
		t.Errorf("empty run: got (%v, %q, %v, %v), want all zero", ck, dir, warnings, err)
	}
	// Only damaged checkpoints: an error, not a fresh start, with one
	// warning each.
	for _, n := range []int64{1, 2} {
		d := mustSave(t, run, sampleCheckpoint(n), Policy{})
		if err := os.Remove(filepath.Join(d, "state.json")); err != nil {
			t.Fatal(err)
		}
	}
	ck, dir, warnings, err = LoadLatest(run)
	if ck != nil || dir != "" || len(warnings) != 2 || !errors.Is(err, ErrNoIntact) {
		t.Errorf("all damaged: got (%v, %q, %v, %v), want nil, \"\", 2 warnings, ErrNoIntact", ck, dir, warnings, err)
	}
}

// snapshot records every path under dir with its size and modification
// time, to show that a reader changed nothing.
func snapshot(t *testing.T, dir string) string {
	t.Helper()
	var b strings.Builder
	err := filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		fmt.Fprintf(&b, "%s %d %v\n", p, fi.Size(), fi.ModTime().UnixNano())
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// Leftovers of interrupted saves are the writer's to clean up: LoadLatest
// leaves them (and everything else) alone, Recover and Save remove them.
func TestLeftoverTmpCleaned(t *testing.T) {
	t.Parallel()
	for _, via := range []string{"Recover", "Save"} {
		t.Run(via, func(t *testing.T) {
			t.Parallel()
			run := t.TempDir()
			mustSave(t, run, sampleCheckpoint(100), Policy{})
			for _, name := range []string{".tmp-tokens-000000000000200-abc", ".tmp-prune-tokens-000000000000050-def"} {
				p := filepath.Join(run, "checkpoints", name)
				if err := os.MkdirAll(p, 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join(p, "model.safetensors"), []byte("partial"), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			before := snapshot(t, run)
			_, dir, warnings, err := LoadLatest(run)
			if err != nil || filepath.Base(dir) != "tokens-000000000000100" || len(warnings) != 0 {
				t.Fatalf("got (%q, %q, %v), want tokens-000000000000100 without warnings", dir, warnings, err)
			}
			if after := snapshot(t, run); after != before {
				t.Fatalf("LoadLatest changed the run directory:\nbefore:\n%safter:\n%s", before, after)
			}
			switch via {
			case "Recover":
				notes, err := Recover(run)
				if err != nil || len(notes) != 2 {
					t.Errorf("got notes %q, %v; want one per removed leftover", notes, err)
				}
			case "Save":
				mustSave(t, run, sampleCheckpoint(300), Policy{})
			}
			if h := hiddenEntries(t, run); len(h) != 0 {
				t.Errorf("leftovers not removed: %v", h)
			}
		})
	}
}

// A reader running while the trainer saves and prunes never mistakes a
// pruned checkpoint for a damaged one and never fails.
func TestLoadLatestWhilePruning(t *testing.T) {
	t.Parallel()
	run := t.TempDir()
	mustSave(t, run, sampleCheckpoint(1), Policy{KeepLast: 1})
	done := make(chan error)
	go func() {
		for n := int64(2); n < 40; n++ {
			if _, err := Save(run, sampleCheckpoint(n), Policy{KeepLast: 1}); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	for reads := 0; ; reads++ {
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%d reads during 38 saves", reads)
			return
		default:
		}
		ck, dir, warnings, err := LoadLatest(run)
		if err != nil || len(warnings) != 0 || ck == nil {
			t.Fatalf("read %d: got (%q, %q, %v)", reads, dir, warnings, err)
		}
	}
}

// Checkpoints newer than the one just saved are damaged ones a resume
// skipped: pruning neither deletes nor counts them, so the intact ones
// written since survive.
func TestPruneIgnoresNewerCheckpoints(t *testing.T) {
	t.Parallel()
	run := t.TempDir()
	for _, n := range []int64{100, 200, 300} {
		mustSave(t, run, sampleCheckpoint(n), Policy{})
	}
	// The run resumed from 100 (200 and 300 were damaged) and saves 150.
	mustSave(t, run, sampleCheckpoint(150), Policy{KeepLast: 2})
	if got := tokensOf(t, run); fmt.Sprint(got) != "[100 150 200 300]" {
		t.Errorf("got %v, want [100 150 200 300]", got)
	}
	mustSave(t, run, sampleCheckpoint(175), Policy{KeepLast: 2})
	if got := tokensOf(t, run); fmt.Sprint(got) != "[150 175 200 300]" {
		t.Errorf("got %v, want [150 175 200 300]", got)
	}
}

// A crash after the new checkpoint is written but before it is renamed into
// place leaves a complete tmp directory; the previous checkpoint must load.
func TestCrashBeforeRename(t *testing.T) {
	t.Parallel()
	run := t.TempDir()
	prev := sampleCheckpoint(100)
	prevDir := mustSave(t, run, prev, Policy{})
	tmp, err := writeTmp(filepath.Join(run, "checkpoints"), sampleCheckpoint(200))
	if err != nil {
		t.Fatal(err)
	}
	if got := tokensOf(t, run); fmt.Sprint(got) != "[100]" {
		t.Fatalf("the unfinished save is listed: %v", got)
	}
	ck, dir, _, err := LoadLatest(run)
	if err != nil || dir != prevDir {
		t.Fatalf("got (%q, %v), want %q", dir, err, prevDir)
	}
	checkSame(t, ck, prev)
	if _, err := Recover(run); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(tmp); !os.IsNotExist(err) {
		t.Errorf("tmp dir %s not removed: %v", tmp, err)
	}
}

// Replacing a checkpoint moves the old one aside first. A crash after that
// move and before the new one is in place must not lose it; a crash after
// the new one is in place must keep the new one.
func TestCrashDuringReplace(t *testing.T) {
	t.Parallel()
	for _, stage := range []string{"old moved aside", "new in place"} {
		t.Run(stage, func(t *testing.T) {
			t.Parallel()
			run := t.TempDir()
			ckDir := filepath.Join(run, "checkpoints")
			old := sampleCheckpoint(100)
			final := mustSave(t, run, old, Policy{})
			repl := sampleCheckpoint(100)
			repl.State = json.RawMessage(`"replacement"`)
			tmp, err := writeTmp(ckDir, repl)
			if err != nil {
				t.Fatal(err)
			}
			aside := filepath.Join(ckDir, ".old-tokens-000000000000100-0123")
			if err := os.Rename(final, aside); err != nil {
				t.Fatal(err)
			}
			want := old
			if stage == "new in place" {
				if err := os.Rename(tmp, final); err != nil {
					t.Fatal(err)
				}
				want = repl
			}
			if _, err := Recover(run); err != nil {
				t.Fatal(err)
			}
			ck, dir, _, err := LoadLatest(run)
			if err != nil || dir != final {
				t.Fatalf("got (%q, %v), want %q", dir, err, final)
			}
			checkSame(t, ck, want)
			if h := hiddenEntries(t, run); len(h) != 0 {
				t.Errorf("leftovers not resolved: %v", h)
			}
		})
	}
}

func TestDirName(t *testing.T) {
	t.Parallel()
	for _, n := range []int64{0, 7, 1 << 40, 999_999_999_999_999} {
		name := DirName(n)
		if len(name) != len("tokens-")+15 {
			t.Errorf("DirName(%d) = %q: not fixed width", n, name)
		}
		if got, ok := parseDirName(name); !ok || got != n {
			t.Errorf("parseDirName(%q) = %d, %v; want %d", name, got, ok, n)
		}
	}
	if DirName(9) > DirName(10) || DirName(99_999) > DirName(100_000) {
		t.Error("lexical order differs from numeric order")
	}
	for _, bad := range []string{"tokens-12", "tokens-00000000000000x", "tokens--00000000000001", "x-000000000000001"} {
		if _, ok := parseDirName(bad); ok {
			t.Errorf("parseDirName(%q) accepted", bad)
		}
	}
}
