package checkpoints

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/moetrain/moetrain/internal/atomicfile"
)

// On-disk names; docs/FORMAT.md documents them.
const (
	// FormatName is the "format" field of every manifest.json.
	FormatName = "moetrain-checkpoint"
	// FormatVersion is the manifest version this package writes and reads.
	FormatVersion = 1

	subdir       = "checkpoints"
	dirPrefix    = "tokens-"
	tokenDigits  = 15 // lexical order of directory names = numeric order
	maxTokens    = 999_999_999_999_999
	tmpPrefix    = ".tmp-" // scratch: always safe to delete
	oldPrefix    = ".old-" // a replaced checkpoint, until its successor is in place
	manifestName = "manifest.json"
	modelName    = "model.safetensors"
	optimName    = "optimizer.safetensors"
	stateName    = "state.json"
)

// Checkpoint is everything a run saves at one point of training.
type Checkpoint struct {
	Tokens    int64           // training tokens seen; names the directory
	Model     []Tensor        // model parameters
	Optimizer []Tensor        // optimizer state (moments, step counts), may be empty
	State     json.RawMessage // caller's JSON (config, data cursor, RNG, ...); nil is stored as null
}

// Policy says which checkpoints Save keeps. The zero Policy keeps everything.
type Policy struct {
	// KeepLast keeps the newest KeepLast checkpoints; <= 0 disables pruning.
	KeepLast int
	// KeepEveryTokens also keeps, forever, every checkpoint whose token count
	// is a positive multiple of it; <= 0 keeps no such milestones.
	KeepEveryTokens int64
}

// Info names one checkpoint directory, without verifying its contents.
type Info struct {
	Tokens int64
	Dir    string
}

// Manifest is manifest.json: what a complete checkpoint must contain.
type Manifest struct {
	Format  string      `json:"format"`
	Version int         `json:"version"`
	Tokens  int64       `json:"tokens"`
	Files   []FileEntry `json:"files"` // sorted by name
}

// FileEntry is one file of a checkpoint with its size and SHA-256.
type FileEntry struct {
	Name   string `json:"name"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"` // lowercase hex
}

// DirName returns the directory name of the checkpoint at tokens, e.g.
// "tokens-000000001048576".
func DirName(tokens int64) string {
	return fmt.Sprintf("%s%0*d", dirPrefix, tokenDigits, tokens)
}

// parseDirName is the inverse of DirName; it accepts only the exact form.
func parseDirName(name string) (int64, bool) {
	digits, ok := strings.CutPrefix(name, dirPrefix)
	if !ok || len(digits) != tokenDigits {
		return 0, false
	}
	for _, c := range digits {
		if c < '0' || c > '9' {
			return 0, false
		}
	}
	n, err := strconv.ParseInt(digits, 10, 64)
	return n, err == nil
}

// Save writes ck as runDir/checkpoints/tokens-<N>/ and then prunes older
// checkpoints by keep. The checkpoint is built in a hidden temporary
// directory; every file and the directory are fsynced before it is renamed
// into place, so after a crash the directory either exists complete or not at
// all. An existing checkpoint for the same N is replaced. A non-empty dir
// means the checkpoint is durable, even when err reports a pruning failure.
// Save also removes temporary directories left by earlier crashes, so only
// one process may save into runDir at a time.
func Save(runDir string, ck Checkpoint, keep Policy) (dir string, err error) {
	if ck.Tokens < 0 || ck.Tokens > maxTokens {
		return "", fmt.Errorf("save checkpoint: tokens %d outside [0, %d]", ck.Tokens, int64(maxTokens))
	}
	if ck.State != nil && !json.Valid(ck.State) {
		return "", fmt.Errorf("save checkpoint: state is not valid JSON")
	}
	ckDir := filepath.Join(runDir, subdir)
	if err := mkdirDurable(ckDir); err != nil {
		return "", fmt.Errorf("save checkpoint: %w", err)
	}
	if _, err := recoverLeftovers(ckDir); err != nil {
		return "", fmt.Errorf("save checkpoint: %w", err)
	}
	tmp, err := writeTmp(ckDir, ck)
	if err != nil {
		return "", fmt.Errorf("save checkpoint %s: %w", DirName(ck.Tokens), err)
	}
	final := filepath.Join(ckDir, DirName(ck.Tokens))
	if err := commit(ckDir, tmp, final); err != nil {
		os.RemoveAll(tmp)
		return "", fmt.Errorf("save checkpoint %s: %w", DirName(ck.Tokens), err)
	}
	if err := prune(ckDir, ck.Tokens, keep); err != nil {
		return final, fmt.Errorf("prune checkpoints: %w", err)
	}
	return final, nil
}

// writeTmp writes a complete, fsynced checkpoint into a new temporary
// directory under ckDir and returns its path; on error it removes it. This
// is exactly the state a crash just before the rename leaves behind.
func writeTmp(ckDir string, ck Checkpoint) (_ string, err error) {
	tmp, err := os.MkdirTemp(ckDir, tmpPrefix+DirName(ck.Tokens)+"-")
	if err != nil {
		return "", fmt.Errorf("create temporary dir: %w", err)
	}
	defer func() {
		if err != nil {
			os.RemoveAll(tmp) // tmp, not the result, which is "" on error
		}
	}()
	state := ck.State
	if state == nil {
		state = json.RawMessage("null")
	}
	writers := []struct {
		name  string
		write func(io.Writer) error
	}{
		{modelName, func(w io.Writer) error { return WriteSafetensors(w, ck.Model, nil) }},
		{optimName, func(w io.Writer) error { return WriteSafetensors(w, ck.Optimizer, nil) }},
		{stateName, func(w io.Writer) error { _, err := w.Write(state); return err }},
	}
	m := Manifest{Format: FormatName, Version: FormatVersion, Tokens: ck.Tokens}
	for _, fw := range writers {
		e, err := writeFileSynced(filepath.Join(tmp, fw.name), fw.write)
		if err != nil {
			return "", err
		}
		e.Name = fw.name
		m.Files = append(m.Files, e)
	}
	mb, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return "", fmt.Errorf("encode manifest: %w", err)
	}
	mb = append(mb, '\n')
	if _, err := writeFileSynced(filepath.Join(tmp, manifestName), func(w io.Writer) error {
		_, err := w.Write(mb)
		return err
	}); err != nil {
		return "", err
	}
	if err := atomicfile.SyncDir(tmp); err != nil {
		return "", err
	}
	return tmp, nil
}

// writeFileSynced creates path, writes it through write, fsyncs and closes
// it, checking every error, and returns its size and SHA-256.
func writeFileSynced(path string, write func(io.Writer) error) (e FileEntry, err error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return e, fmt.Errorf("create %s: %w", filepath.Base(path), err)
	}
	defer func() {
		if f != nil {
			f.Close() // error path only; the success path checks Close below
		}
	}()
	h := sha256.New()
	cw := &countingWriter{w: io.MultiWriter(f, h)}
	bw := bufio.NewWriterSize(cw, 1<<20)
	if err := write(bw); err != nil {
		return e, fmt.Errorf("write %s: %w", filepath.Base(path), err)
	}
	if err := bw.Flush(); err != nil {
		return e, fmt.Errorf("write %s: %w", filepath.Base(path), err)
	}
	if err := f.Sync(); err != nil {
		return e, fmt.Errorf("sync %s: %w", filepath.Base(path), err)
	}
	err, f = f.Close(), nil
	if err != nil {
		return e, fmt.Errorf("close %s: %w", filepath.Base(path), err)
	}
	return FileEntry{Size: cw.n, SHA256: hex.EncodeToString(h.Sum(nil))}, nil
}

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// commit renames the finished tmp directory to final. An existing final is
// first renamed aside to .old-<name>-*, which recoverLeftovers restores if a
// crash happens before the new one is in place, and removed afterwards.
func commit(ckDir, tmp, final string) error {
	var old string
	if _, err := os.Lstat(final); err == nil {
		old = filepath.Join(ckDir, oldPrefix+filepath.Base(final)+"-"+randSuffix())
		if err := os.Rename(final, old); err != nil {
			return fmt.Errorf("move replaced checkpoint aside: %w", err)
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("stat %s: %w", final, err)
	}
	if err := os.Rename(tmp, final); err != nil {
		if old != "" {
			os.Rename(old, final) // best effort: put the old one back
		}
		return fmt.Errorf("rename into place: %w", err)
	}
	if err := atomicfile.SyncDir(ckDir); err != nil {
		return err
	}
	if old != "" {
		if err := os.RemoveAll(old); err != nil {
			return fmt.Errorf("remove replaced checkpoint: %w", err)
		}
	}
	return nil
}

// recoverLeftovers removes .tmp-* entries (unfinished saves and unfinished
// deletions) and resolves .old-* ones: restored when their checkpoint is
// missing (a crash mid-replace), removed otherwise. It returns a note for
// each thing it did.
func recoverLeftovers(ckDir string) (notes []string, err error) {
	entries, err := os.ReadDir(ckDir)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, nil
		}
		return nil, fmt.Errorf("read %s: %w", ckDir, err)
	}
	changed := false
	for _, e := range entries {
		name := e.Name()
		path := filepath.Join(ckDir, name)
		switch {
		case strings.HasPrefix(name, tmpPrefix):
			if err := os.RemoveAll(path); err != nil {
				return notes, fmt.Errorf("remove leftover %s: %w", name, err)
			}
			notes = append(notes, fmt.Sprintf("removed leftover temporary %s", name))
			changed = true
		case strings.HasPrefix(name, oldPrefix):
			orig := strings.TrimPrefix(name, oldPrefix)
			if i := strings.LastIndexByte(orig, '-'); i > 0 {
				orig = orig[:i]
			}
			if _, ok := parseDirName(orig); !ok {
				continue // not ours; leave it alone
			}
			if _, err := os.Lstat(filepath.Join(ckDir, orig)); errors.Is(err, fs.ErrNotExist) {
				if err := os.Rename(path, filepath.Join(ckDir, orig)); err != nil {
					return notes, fmt.Errorf("restore %s: %w", orig, err)
				}
				notes = append(notes, fmt.Sprintf("restored %s from an interrupted replacement", orig))
			} else {
				if err := os.RemoveAll(path); err != nil {
					return notes, fmt.Errorf("remove leftover %s: %w", name, err)
				}
				notes = append(notes, fmt.Sprintf("removed leftover replaced %s", name))
			}
			changed = true
		}
	}
	if changed {
		if err := atomicfile.SyncDir(ckDir); err != nil {
			return notes, err
		}
	}
	return notes, nil
}

// prune deletes the checkpoints keep does not retain. The one just written
// (justSaved) always stays. Checkpoints newer than justSaved are neither
// deleted nor counted toward KeepLast: they exist only when a resume skipped
// them as damaged, and counting them would delete the intact ones written
// since. Each victim is first renamed to a .tmp- name, so
// a crash mid-deletion leaves a directory the next Save removes rather than a
// half-deleted checkpoint.
func prune(ckDir string, justSaved int64, keep Policy) error {
	if keep.KeepLast <= 0 {
		return nil
	}
	infos, err := list(ckDir)
	if err != nil {
		return err
	}
	for len(infos) > 0 && infos[len(infos)-1].Tokens > justSaved {
		infos = infos[:len(infos)-1]
	}
	var errs []error
	for i, info := range infos {
		newest := i >= len(infos)-keep.KeepLast
		milestone := keep.KeepEveryTokens > 0 && info.Tokens > 0 && info.Tokens%keep.KeepEveryTokens == 0
		if newest || milestone || info.Tokens == justSaved {
			continue
		}
		victim := filepath.Join(ckDir, tmpPrefix+"prune-"+filepath.Base(info.Dir)+"-"+randSuffix())
		if err := os.Rename(info.Dir, victim); err != nil {
			errs = append(errs, fmt.Errorf("move %s aside: %w", filepath.Base(info.Dir), err))
			continue
		}
		if err := os.RemoveAll(victim); err != nil {
			errs = append(errs, fmt.Errorf("remove %s: %w", filepath.Base(info.Dir), err))
		}
	}
	if err := atomicfile.SyncDir(ckDir); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// List returns runDir's checkpoint directories, oldest first, without
// reading or verifying them and without changing anything on disk. A run
// without checkpoints gives an empty list.
func List(runDir string) ([]Info, error) {
	infos, err := list(filepath.Join(runDir, subdir))
	if err != nil {
		return nil, fmt.Errorf("list checkpoints: %w", err)
	}
	return infos, nil
}

func list(ckDir string) ([]Info, error) {
	entries, err := os.ReadDir(ckDir)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, nil
		}
		return nil, err
	}
	var infos []Info
	for _, e := range entries {
		if n, ok := parseDirName(e.Name()); ok && e.IsDir() {
			infos = append(infos, Info{Tokens: n, Dir: filepath.Join(ckDir, e.Name())})
		}
	}
	slices.SortFunc(infos, func(a, b Info) int { return int(sign(a.Tokens - b.Tokens)) })
	return infos, nil
}

func sign(x int64) int64 {
	switch {
	case x < 0:
		return -1
	case x > 0:
		return 1
	}
	return 0
}

// ErrNoIntact is wrapped by LoadLatest's error when a run has checkpoints
// but none of them loads: starting again from zero would discard the run,
// so the caller must decide that explicitly.
var ErrNoIntact = errors.New("no intact checkpoint")

// Recover cleans up what interrupted saves and prunes left in runDir's
// checkpoints: .tmp-* entries are removed and .old-* ones restored or
// removed. It returns a note for each thing it did. Only the process that
// writes the run (the holder of its lock) may call it; Save calls it too.
func Recover(runDir string) (notes []string, err error) {
	notes, err = recoverLeftovers(filepath.Join(runDir, subdir))
	if err != nil {
		return notes, fmt.Errorf("recover checkpoints: %w", err)
	}
	return notes, nil
}

// LoadLatest loads the newest intact checkpoint of runDir. Checkpoints are
// tried newest first; one that is incomplete or corrupt (missing file, size
// or SHA-256 mismatch, unparsable content) is skipped with a warning naming
// it and the reason, and the next older one is tried.
//
// LoadLatest only reads: it is safe while another process trains in runDir.
// A checkpoint that that process prunes while it is being read is not a
// corrupt one: LoadLatest notices that its directory is gone and lists the
// checkpoints again.
//
// With no checkpoint at all it returns (nil, "", nil, nil): start fresh.
// When there are checkpoints but none loads, err wraps ErrNoIntact and
// warnings say what is wrong with each.
func LoadLatest(runDir string) (ck *Checkpoint, dir string, warnings []string, err error) {
	return LoadLatestPart(runDir, nil)
}

// LoadLatestPart is LoadLatest keeping of each tensor only what sel
// selects (LoadPart).
func LoadLatestPart(runDir string, sel Select) (ck *Checkpoint, dir string, warnings []string, err error) {
	ckDir := filepath.Join(runDir, subdir)
	const attempts = 10 // each retry means a checkpoint was pruned meanwhile
	for attempt := 0; ; attempt++ {
		infos, err := list(ckDir)
		if err != nil {
			return nil, "", nil, fmt.Errorf("load latest checkpoint: %w", err)
		}
		warnings = warnings[:0]
		pruned := false
		for i := len(infos) - 1; i >= 0; i-- {
			ck, err := LoadPart(infos[i].Dir, sel)
			if err == nil {
				return ck, infos[i].Dir, warnings, nil
			}
			if _, serr := os.Lstat(infos[i].Dir); errors.Is(serr, fs.ErrNotExist) && attempt < attempts {
				pruned = true
				break
			}
			warnings = append(warnings, fmt.Sprintf("skipped checkpoint %s: %v", filepath.Base(infos[i].Dir), err))
		}
		if pruned {
			continue
		}
		if len(infos) == 0 {
			return nil, "", warnings, nil
		}
		return nil, "", warnings, fmt.Errorf("%w: all %d checkpoints in %s are damaged", ErrNoIntact, len(infos), ckDir)
	}
}

// ErrCorrupt is wrapped by Load's errors for checkpoints whose files do not
// match their manifest or cannot be parsed.
var ErrCorrupt = errors.New("checkpoints: corrupt checkpoint")

// Load reads and verifies one checkpoint directory. Each file is read once,
// front to back: every byte is hashed and the tensors are decoded from the
// same bytes as they pass, and nothing is returned unless every file's size
// and SHA-256 match manifest.json. A file whose hash does not match is
// reported as such, even when it also fails to parse. It returns an error
// wrapping ErrCorrupt for a checkpoint that is incomplete, damaged or of
// another format version. Load never modifies the directory.
func Load(dir string) (*Checkpoint, error) {
	return LoadPart(dir, nil)
}

// LoadPart is Load keeping of each tensor, model and optimizer alike, only
// what sel selects: the rows a process owns, say. Every file is still read
// and verified whole, but the bytes of what is not kept are dropped as they
// pass, so a process never holds more than its part plus one tensor's kept
// rows. A nil sel keeps everything.
func LoadPart(dir string, sel Select) (*Checkpoint, error) {
	ck, err := load(dir, sel)
	if err != nil {
		return nil, fmt.Errorf("load checkpoint %s: %w", dir, err)
	}
	return ck, nil
}

// LoadState reads and verifies only the state of one checkpoint directory:
// manifest.json and state.json, not the tensors. It is the cheap way to learn
// what config a checkpoint was written with. Like Load it wraps ErrCorrupt.
func LoadState(dir string) (json.RawMessage, error) {
	m, err := readManifest(dir)
	if err != nil {
		return nil, fmt.Errorf("load checkpoint state %s: %w", dir, err)
	}
	for _, e := range m.Files {
		if e.Name != stateName {
			continue
		}
		b, err := readVerified(filepath.Join(dir, e.Name), e)
		if err != nil {
			return nil, fmt.Errorf("load checkpoint state %s: %w", dir, err)
		}
		if !json.Valid(b) {
			return nil, fmt.Errorf("load checkpoint state %s: %w: %s is not valid JSON", dir, ErrCorrupt, stateName)
		}
		return b, nil
	}
	return nil, fmt.Errorf("load checkpoint state %s: %w: manifest lists no %s", dir, ErrCorrupt, stateName)
}

// readManifest reads and checks dir's manifest.json.
func readManifest(dir string) (*Manifest, error) {
	mb, err := os.ReadFile(filepath.Join(dir, manifestName))
	if err != nil {
		return nil, fmt.Errorf("%w: read manifest: %w", ErrCorrupt, err)
	}
	var m Manifest
	dec := json.NewDecoder(bytes.NewReader(mb))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("%w: parse manifest: %w", ErrCorrupt, err)
	}
	if m.Format != FormatName || m.Version != FormatVersion {
		return nil, fmt.Errorf("%w: manifest says format %q version %d, want %q version %d", ErrCorrupt, m.Format, m.Version, FormatName, FormatVersion)
	}
	if n, ok := parseDirName(filepath.Base(dir)); ok && n != m.Tokens {
		return nil, fmt.Errorf("%w: manifest says %d tokens, directory name says %d", ErrCorrupt, m.Tokens, n)
	}
	return &m, nil
}

func load(dir string, sel Select) (*Checkpoint, error) {
	m, err := readManifest(dir)
	if err != nil {
		return nil, err
	}
	want := []string{modelName, optimName, stateName}
	if len(m.Files) != len(want) {
		return nil, fmt.Errorf("%w: manifest lists %d files, want %d", ErrCorrupt, len(m.Files), len(want))
	}
	seen := map[string]bool{}
	for _, e := range m.Files {
		if !slices.Contains(want, e.Name) || seen[e.Name] {
			return nil, fmt.Errorf("%w: manifest lists unexpected or repeated file %q", ErrCorrupt, e.Name)
		}
		seen[e.Name] = true
	}
	ck := &Checkpoint{Tokens: m.Tokens}
	for _, e := range m.Files {
		path := filepath.Join(dir, e.Name)
		switch e.Name {
		case modelName:
			ck.Model, err = readVerifiedTensors(path, e, sel)
		case optimName:
			ck.Optimizer, err = readVerifiedTensors(path, e, sel)
		case stateName:
			var b []byte
			if b, err = readVerified(path, e); err == nil && !json.Valid(b) {
				err = fmt.Errorf("%w: %s is not valid JSON", ErrCorrupt, stateName)
			}
			ck.State = json.RawMessage(b)
		}
		if err != nil {
			return nil, err
		}
	}
	return ck, nil
}

// readVerifiedTensors reads the safetensors file path once, hashing every
// byte while decoding what sel keeps, and checks it against e. A hash or
// size mismatch is reported before any parse error: a damaged file is
// damaged, whatever its bytes now parse as.
func readVerifiedTensors(path string, e FileEntry, sel Select) ([]Tensor, error) {
	f, err := openVerified(path, e)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	h := sha256.New()
	r := bufio.NewReaderSize(io.TeeReader(f, h), 1<<20)
	ts, _, perr := readSafetensors(r, e.Size, sel)
	// Hash what the parser did not need (the rest of a malformed file).
	rest, err := io.Copy(io.Discard, r)
	if err != nil {
		return nil, fmt.Errorf("%w: read %s: %w", ErrCorrupt, e.Name, err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != e.SHA256 {
		return nil, fmt.Errorf("%w: %s: sha256 %s, manifest says %s", ErrCorrupt, e.Name, got, e.SHA256)
	}
	if perr == nil && rest > 0 {
		perr = fmt.Errorf("%d bytes after the data", rest) // the file grew after it was measured
	}
	if perr != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrCorrupt, e.Name, perr)
	}
	return ts, nil
}

// readVerified reads path whole and checks it against e. It refuses to
// read more than e.Size+1 bytes, so a corrupt manifest cannot make it
// allocate beyond the file's real size.
func readVerified(path string, e FileEntry) ([]byte, error) {
	f, err := openVerified(path, e)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b := make([]byte, e.Size)
	if _, err := io.ReadFull(f, b); err != nil {
		return nil, fmt.Errorf("%w: read %s: %w", ErrCorrupt, e.Name, err)
	}
	sum := sha256.Sum256(b)
	if got := hex.EncodeToString(sum[:]); got != e.SHA256 {
		return nil, fmt.Errorf("%w: %s: sha256 %s, manifest says %s", ErrCorrupt, e.Name, got, e.SHA256)
	}
	return b, nil
}

// openVerified opens path and checks its size against e.
func openVerified(path string, e FileEntry) (*os.File, error) {
	if e.Size < 0 || e.Size > math.MaxInt-1 {
		return nil, fmt.Errorf("%w: %s: manifest size %d invalid", ErrCorrupt, e.Name, e.Size)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("%w: stat %s: %w", ErrCorrupt, e.Name, err)
	}
	if fi.Size() != e.Size {
		f.Close()
		return nil, fmt.Errorf("%w: %s: size %d, manifest says %d", ErrCorrupt, e.Name, fi.Size(), e.Size)
	}
	return f, nil
}

// mkdirDurable creates dir (and parents) and, when it did not exist, fsyncs
// its parent so the new entry survives a crash.
func mkdirDurable(dir string) error {
	if _, err := os.Stat(dir); err == nil {
		return nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", dir, err)
	}
	return atomicfile.SyncDir(filepath.Dir(dir))
}

// randSuffix returns a short random hex string for hidden directory names.
func randSuffix() string {
	var b [6]byte
	rand.Read(b[:]) // never fails (crypto/rand crashes the program instead)
	return hex.EncodeToString(b[:])
}
