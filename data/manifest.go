package data

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"syscall"

	"github.com/moetrain/moetrain/data/tokenizer"
	"github.com/moetrain/moetrain/internal/atomicfile"
)

// Names of the files in a dataset directory and of the two splits.
const (
	ManifestFile  = "manifest.json"
	TokenizerFile = "tokenizer.json"
	Train         = "train"
	Validation    = "validation"

	// ManifestFormat and ManifestVersion are manifest.json's format and
	// version fields as this package writes and reads them.
	ManifestFormat  = "moetrain-dataset"
	ManifestVersion = 1
)

// Manifest describes a dataset directory. It is written by Prepare as
// manifest.json and is the only file Open reads before the shards.
type Manifest struct {
	Format  string `json:"format"`  // always "moetrain-dataset"
	Version int    `json:"version"` // format version, 1

	Tokenizer TokenizerInfo `json:"tokenizer"`
	// TokenType is the Arrow type of the token column: "uint16" or "uint32".
	TokenType string `json:"token_type"`
	// RecordTokens is the number of tokens in every Arrow record batch of a
	// shard except the last one.
	RecordTokens int64 `json:"record_tokens"`
	// Seed chose the validation documents and the tokenizer's training sample.
	Seed uint64 `json:"seed"`
	// ValFraction is the fraction of each domain's documents in validation.
	ValFraction float64 `json:"val_fraction"`
	// Domains lists the domain labels in stream order.
	Domains []string `json:"domains"`
	// Splits holds the totals of "train" and "validation".
	Splits map[string]SplitInfo `json:"splits"`
	// Shards lists every shard; within a split, stream order is this order.
	Shards []ShardInfo `json:"shards"`
	// Sources records what was read, for provenance.
	Sources []SourceInfo `json:"sources,omitempty"`
}

// TokenizerInfo names the tokenizer the shards were encoded with.
type TokenizerInfo struct {
	File      string `json:"file"`       // "tokenizer.json", relative to the dataset
	Hash      string `json:"hash"`       // tokenizer.Hash()
	VocabSize int    `json:"vocab_size"` // ids are in [0, VocabSize)
	EOS       int    `json:"eos"`        // id that follows every document
	// Trained is true when Prepare trained the tokenizer; TrainBytes is then
	// the size of the deterministic sample it was trained on.
	Trained    bool  `json:"trained"`
	TrainBytes int64 `json:"train_bytes,omitempty"`
}

// SplitInfo totals one split, overall and per domain.
type SplitInfo struct {
	Tokens    int64                  `json:"tokens"`
	Documents int64                  `json:"documents"`
	Domains   map[string]DomainCount `json:"domains"`
}

// DomainCount is the size of one domain within a split.
type DomainCount struct {
	Tokens    int64 `json:"tokens"`
	Documents int64 `json:"documents"`
}

// ShardInfo describes one Arrow IPC shard file.
type ShardInfo struct {
	File      string `json:"file"` // base name inside the dataset directory
	Split     string `json:"split"`
	Domain    string `json:"domain"`
	Tokens    int64  `json:"tokens"`
	Documents int64  `json:"documents"` // documents that end (EOS) in this shard
	Bytes     int64  `json:"bytes"`
	SHA256    string `json:"sha256"`
}

// SourceInfo records one prepare source.
type SourceInfo struct {
	Domain    string `json:"domain"`
	Path      string `json:"path"`
	Documents int64  `json:"documents"`
	Bytes     int64  `json:"bytes"`
}

var (
	// DomainPattern is what a domain label must match.
	DomainPattern = regexp.MustCompile(`^[a-z][a-z0-9_]*$`)
	sha256RE      = regexp.MustCompile(`^[0-9a-f]{64}$`)
)

// ErrNotDataset is what LoadManifest's error matches (errors.Is) when dir
// holds no manifest at all, a path given by mistake, as against a damaged
// dataset.
var ErrNotDataset = errors.New("not a dataset directory")

// notDatasetError is an ErrNotDataset with its own message.
type notDatasetError struct{ msg string }

func (e notDatasetError) Error() string        { return e.msg }
func (e notDatasetError) Is(target error) bool { return target == ErrNotDataset }

// LoadManifest reads and validates DIR/manifest.json.
func LoadManifest(dir string) (*Manifest, error) {
	path := filepath.Join(dir, ManifestFile)
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
		return nil, notDatasetError{fmt.Sprintf("load manifest: %s does not exist; is %s a dataset directory made by 'moetrain prepare'?", path, dir)}
	}
	if err != nil {
		return nil, fmt.Errorf("load manifest: %w", err)
	}
	m, err := ParseManifest(b)
	if err != nil {
		return nil, fmt.Errorf("load manifest %s: %w (re-run 'moetrain prepare --force')", path, err)
	}
	return m, nil
}

// ParseManifest decodes a manifest strictly (unknown fields are errors) and
// checks that it is self-consistent.
func ParseManifest(b []byte) (*Manifest, error) {
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	var m Manifest
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("decode json: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("decode json: trailing data after the manifest")
	}
	if err := m.Validate(); err != nil {
		return nil, err
	}
	return &m, nil
}

// Validate reports every inconsistency in m, joined.
func (m *Manifest) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if m.Format != ManifestFormat {
		bad("format %q, want %q", m.Format, ManifestFormat)
	}
	if m.Version != ManifestVersion {
		bad("version %d, want %d", m.Version, ManifestVersion)
	}
	t := m.Tokenizer
	if t.VocabSize < 2 || t.VocabSize > 1<<31-1 {
		bad("tokenizer.vocab_size %d out of range", t.VocabSize)
	}
	if t.EOS < 0 || t.EOS >= t.VocabSize {
		bad("tokenizer.eos %d outside the vocab [0, %d)", t.EOS, t.VocabSize)
	}
	if t.Hash == "" {
		bad("tokenizer.hash is empty")
	}
	if t.File != "" && (filepath.Base(t.File) != t.File || t.File == "." || t.File == "..") {
		bad("tokenizer.file %q must be a plain file name", t.File)
	}
	if want := TokenType(t.VocabSize); m.TokenType != want {
		bad("token_type %q, want %q for vocab %d", m.TokenType, want, t.VocabSize)
	}
	if m.RecordTokens < 1 || m.RecordTokens > 1<<30 {
		bad("record_tokens %d out of range", m.RecordTokens)
	}
	if !(m.ValFraction >= 0 && m.ValFraction < 1) {
		bad("val_fraction %v outside [0, 1)", m.ValFraction)
	}
	domains := map[string]bool{}
	for _, d := range m.Domains {
		if !DomainPattern.MatchString(d) {
			bad("domain %q is not a lower-case label", d)
		}
		if domains[d] {
			bad("domain %q listed twice", d)
		}
		domains[d] = true
	}
	// Recompute the totals from the shards and compare.
	type key struct{ split, domain string }
	sums := map[key]DomainCount{}
	files := map[string]bool{}
	for i, s := range m.Shards {
		if s.File == "" || filepath.Base(s.File) != s.File || s.File == "." || s.File == ".." || !strings.HasSuffix(s.File, ".arrow") {
			bad("shards[%d].file %q must be a plain *.arrow file name", i, s.File)
		}
		if files[s.File] {
			bad("shards[%d].file %q listed twice", i, s.File)
		}
		files[s.File] = true
		if s.Split != Train && s.Split != Validation {
			bad("shards[%d].split %q, want %q or %q", i, s.Split, Train, Validation)
		}
		if !domains[s.Domain] {
			bad("shards[%d].domain %q is not in domains", i, s.Domain)
		}
		if s.Tokens < 1 || s.Documents < 0 || s.Bytes < 1 {
			bad("shards[%d] (%s): tokens %d, documents %d, bytes %d out of range", i, s.File, s.Tokens, s.Documents, s.Bytes)
		}
		if !sha256RE.MatchString(s.SHA256) {
			bad("shards[%d].sha256 %q is not 64 lower-case hex digits", i, s.SHA256)
		}
		k := key{s.Split, s.Domain}
		c := sums[k]
		c.Tokens += s.Tokens
		c.Documents += s.Documents
		sums[k] = c
	}
	for _, split := range []string{Train, Validation} {
		info, ok := m.Splits[split]
		if !ok {
			bad("splits.%s is missing", split)
			continue
		}
		var tot DomainCount
		for d, c := range info.Domains {
			if !domains[d] {
				bad("splits.%s.domains has unknown domain %q", split, d)
			}
			if got := sums[key{split, d}]; got != c {
				bad("splits.%s.domains.%s = %+v, but its shards sum to %+v", split, d, c, got)
			}
			tot.Tokens += c.Tokens
			tot.Documents += c.Documents
		}
		for k, c := range sums {
			if _, ok := info.Domains[k.domain]; k.split == split && !ok && c != (DomainCount{}) {
				bad("splits.%s.domains lacks %q, which has shards", split, k.domain)
			}
		}
		if tot.Tokens != info.Tokens || tot.Documents != info.Documents {
			bad("splits.%s totals (%d tokens, %d documents) differ from its domains' sums (%d, %d)", split, info.Tokens, info.Documents, tot.Tokens, tot.Documents)
		}
	}
	for s := range m.Splits {
		if s != Train && s != Validation {
			bad("unknown split %q", s)
		}
	}
	return errors.Join(errs...)
}

// ShardsOf returns the shards of split (and of domain, unless domain is
// empty) in stream order.
func (m *Manifest) ShardsOf(split, domain string) []ShardInfo {
	var out []ShardInfo
	for _, s := range m.Shards {
		if s.Split == split && (domain == "" || s.Domain == domain) {
			out = append(out, s)
		}
	}
	return out
}

// ID identifies the dataset's content: a hash of the tokenizer and of every
// shard checksum. A trainer stores it with its Cursor so that a resume on
// different data is refused.
func (m *Manifest) ID() string {
	h := sha256.New()
	fmt.Fprintf(h, "%s\n%d\n", m.Tokenizer.Hash, m.Tokenizer.VocabSize)
	shards := append([]ShardInfo(nil), m.Shards...)
	sort.SliceStable(shards, func(i, j int) bool { return shards[i].File < shards[j].File })
	for _, s := range shards {
		fmt.Fprintf(h, "%s %s\n", s.File, s.SHA256)
	}
	return hex.EncodeToString(h.Sum(nil))[:16]
}

// CheckVocab returns an error unless the dataset's tokenizer has exactly
// modelVocab ids.
func (m *Manifest) CheckVocab(modelVocab int) error {
	if modelVocab != m.Tokenizer.VocabSize {
		return fmt.Errorf("tokenizer vocab mismatch: the dataset's tokenizer has %d ids but the model's vocab is %d; set the model's vocab to %d or re-run 'moetrain prepare --vocab %d'",
			m.Tokenizer.VocabSize, modelVocab, m.Tokenizer.VocabSize, modelVocab)
	}
	return nil
}

// ErrTokenizerMismatch is wrapped by LoadTokenizer when a dataset's
// tokenizer file is not the tokenizer its shards were encoded with.
var ErrTokenizerMismatch = errors.New("tokenizer does not match the dataset's manifest")

// LoadTokenizer loads the tokenizer of the dataset at dir and checks it
// against the manifest's hash and vocabulary size: a tokenizer.json swapped
// for another (even of the same size) would decode the shards' ids into
// other text. Every reader of a dataset's tokenizer goes through it.
func LoadTokenizer(dir string, m *Manifest) (*tokenizer.Tokenizer, error) {
	path := filepath.Join(dir, m.Tokenizer.File)
	tok, err := tokenizer.Load(path)
	if err != nil {
		return nil, fmt.Errorf("load tokenizer %s: %w", path, err)
	}
	if tok.Hash() != m.Tokenizer.Hash || tok.VocabSize() != m.Tokenizer.VocabSize {
		return nil, fmt.Errorf("%w: %s (hash %s, %d ids) is not the tokenizer %s's shards were encoded with (hash %s, %d ids); restore it or re-run 'moetrain prepare --force'",
			ErrTokenizerMismatch, path, tok.Hash(), tok.VocabSize(), dir, m.Tokenizer.Hash, m.Tokenizer.VocabSize)
	}
	return tok, nil
}

// TokenType is the shards' token column type for a vocabulary size.
func TokenType(vocab int) string {
	if vocab <= 1<<16 {
		return "uint16"
	}
	return "uint32"
}

// Write writes m as the manifest.json at path.
func (m *Manifest) Write(path string) error {
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return fmt.Errorf("encode manifest: %w", err)
	}
	if err := atomicfile.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("write manifest: %w", err)
	}
	return nil
}
