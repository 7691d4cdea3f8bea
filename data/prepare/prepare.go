package prepare

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/moetrain/moetrain/data"
	"github.com/moetrain/moetrain/data/internal/perm"
	"github.com/moetrain/moetrain/internal/atomicfile"
	"github.com/moetrain/moetrain/internal/scratch"
)

// EOSToken is the special token a trained tokenizer appends to every document.
const EOSToken = "<|endoftext|>"

// DefaultDomain labels a source given without "label=".
const DefaultDomain = "text"

// Source is one input of Run.
type Source struct {
	Domain string // lower-case label such as "prose" or "code"
	// Path is a text file, a directory (every matching file under it is one
	// document) or "-" for standard input.
	Path string
}

func (s Source) String() string { return s.Domain + "=" + s.Path }

// ParseSource parses "label=path" or a bare path (domain DefaultDomain).
func ParseSource(arg string) (Source, error) {
	if arg == "" {
		return Source{}, errors.New("empty source")
	}
	if i := strings.IndexByte(arg, '='); i > 0 && data.DomainPattern.MatchString(arg[:i]) {
		if arg[i+1:] == "" {
			return Source{}, fmt.Errorf("source %q has a label but no path", arg)
		}
		return Source{Domain: arg[:i], Path: arg[i+1:]}, nil
	}
	if i := strings.IndexByte(arg, '='); i > 0 && !strings.ContainsAny(arg[:i], `/\.`) {
		return Source{}, fmt.Errorf("source %q: domain label %q must match %s", arg, arg[:i], data.DomainPattern)
	}
	return Source{Domain: DefaultDomain, Path: arg}, nil
}

// Document is one unit of text; the validation split is chosen by document.
type Document struct {
	Domain string
	Name   string // where it came from, for messages
	Text   string
}

// Options configures Run and Documents. Zero fields take the defaults noted.
type Options struct {
	Out   string // dataset directory to create
	Force bool   // replace Out if it already holds anything

	// Tokenizer is an existing tokenizer.json to use as is; empty trains a
	// new one on a deterministic sample of the train documents.
	Tokenizer string
	VocabSize int // vocab of a trained tokenizer (default 8192)
	// TrainBytes caps the tokenizer's training sample (default 16 MiB). The
	// budget is split evenly among domains, a domain smaller than its share
	// giving the rest to the others; within a domain each train document is
	// in the sample with probability budget/bytes, decided by a hash of
	// (Seed, domain, document index).
	TrainBytes int64

	ShardTokens  int64 // tokens per shard file (default 1<<24), rounded up to a multiple of RecordTokens
	RecordTokens int64 // tokens per Arrow record batch (default 8192)

	// ValFraction of each domain's documents go to the validation split
	// (0 = none). At least one when the fraction is positive and the domain
	// has two documents or more; at least one document stays in train.
	ValFraction float64
	Seed        uint64

	// DocStart splits text files and stdin into documents: a line matching
	// it starts a new document. Nil makes each file one document. Files
	// found in directories are always one document each.
	DocStart *regexp.Regexp
	// Include and Exclude are filepath.Match patterns on base names for
	// the walk of directory sources: a file is read when it matches an
	// Include pattern (or Include is empty) and no Exclude pattern; a
	// directory matching an Exclude pattern is skipped. Files with a NUL
	// byte in their first 8 KiB are skipped as binary.
	Include, Exclude []string

	Stdin    io.Reader // read for the source "-" (default os.Stdin)
	Workers  int       // encoding goroutines (default GOMAXPROCS)
	Progress func(Progress)
	// Note, when non-nil, receives remarks (leftovers of an interrupted
	// prepare cleaned up).
	Note func(string)
	// BeforePublish, when non-nil, is called with the finished dataset's
	// temporary directory before it replaces Out, to add files derived
	// from it (the built-in tasks): a kill before the rename leaves the old
	// Out, never a dataset without them.
	BeforePublish func(ctx context.Context, dir string) error
}

// Progress is reported while a dataset is prepared.
type Progress struct {
	Phase      string // "scan", "tokenizer", "encode" or "done"
	Bytes      int64  // source bytes encoded so far
	TotalBytes int64  // source bytes in all
	Tokens     int64  // tokens written so far
	Elapsed    time.Duration
}

func (o *Options) defaults() error {
	if o.Out == "" {
		return errors.New("no output directory given")
	}
	if o.VocabSize == 0 {
		o.VocabSize = 8192
	}
	if o.TrainBytes == 0 {
		o.TrainBytes = 16 << 20
	}
	if o.RecordTokens == 0 {
		o.RecordTokens = 8192
	}
	if o.ShardTokens == 0 {
		o.ShardTokens = 1 << 24
	}
	if o.Workers <= 0 {
		o.Workers = runtime.GOMAXPROCS(0)
	}
	if o.Stdin == nil {
		o.Stdin = os.Stdin
	}
	var errs []error
	if o.VocabSize < 257+1 && o.Tokenizer == "" {
		errs = append(errs, fmt.Errorf("vocab size %d is too small for a byte-level BPE (at least 258: 256 bytes and EOS)", o.VocabSize))
	}
	if o.TrainBytes < 0 || o.RecordTokens < 1 || o.ShardTokens < 1 || o.RecordTokens > 1<<30 {
		errs = append(errs, fmt.Errorf("train bytes %d, record tokens %d and shard tokens %d must be positive", o.TrainBytes, o.RecordTokens, o.ShardTokens))
	}
	if !(o.ValFraction >= 0 && o.ValFraction < 1) {
		errs = append(errs, fmt.Errorf("validation fraction %v outside [0, 1)", o.ValFraction))
	}
	for _, p := range append(append([]string(nil), o.Include...), o.Exclude...) {
		if _, err := filepath.Match(p, ""); err != nil {
			errs = append(errs, fmt.Errorf("pattern %q: %w", p, err))
		}
	}
	o.ShardTokens = (o.ShardTokens + o.RecordTokens - 1) / o.RecordTokens * o.RecordTokens
	return errors.Join(errs...)
}

// Run reads the sources and writes a dataset directory (see the package
// documentation). Nothing is written to opts.Out until everything succeeded.
func Run(ctx context.Context, sources []Source, opts Options) (*data.Manifest, error) {
	if err := opts.defaults(); err != nil {
		return nil, fmt.Errorf("prepare: %w", &OptionError{err})
	}
	if len(sources) == 0 {
		return nil, fmt.Errorf("prepare: %w", &OptionError{errors.New("no sources given")})
	}
	if err := checkOut(opts.Out, opts.Force); err != nil {
		return nil, err
	}
	c, err := scanSources(sources, &opts)
	if err != nil {
		return nil, fmt.Errorf("prepare: %w", err)
	}
	return prepare(ctx, c, opts)
}

// Documents is Run over documents held in memory (tests, the
// synthetic corpus). DocStart, Include and Exclude are ignored.
func Documents(ctx context.Context, docs []Document, opts Options) (*data.Manifest, error) {
	if err := opts.defaults(); err != nil {
		return nil, fmt.Errorf("prepare: %w", &OptionError{err})
	}
	if err := checkOut(opts.Out, opts.Force); err != nil {
		return nil, err
	}
	c := &corpus{docs: docs}
	for _, d := range docs {
		if !data.DomainPattern.MatchString(d.Domain) {
			return nil, fmt.Errorf("prepare: document %q: domain %q must match %s", d.Name, d.Domain, data.DomainPattern)
		}
	}
	if err := c.scan(&opts); err != nil {
		return nil, fmt.Errorf("prepare: %w", err)
	}
	if len(c.domains) == 0 {
		return nil, errors.New("prepare: no documents with text")
	}
	return prepare(ctx, c, opts)
}

// OptionError marks a mistake in what Prepare was asked to do (options,
// sources, an occupied output directory), as opposed to a failure while
// preparing: the CLI reports it as a usage error.
type OptionError struct{ Err error }

func (e *OptionError) Error() string { return e.Err.Error() }
func (e *OptionError) Unwrap() error { return e.Err }

func optionErrorf(format string, args ...any) error {
	return &OptionError{fmt.Errorf(format, args...)}
}

// corpus lists the documents of the sources and iterates them in a fixed
// order as often as needed (stdin is kept in memory).
type corpus struct {
	inputs  []*input
	docs    []Document // Documents only
	domains []string
	// Per domain, in iteration order: byte size and split of each document.
	sizes map[string][]int64
	val   map[string][]bool
	total int64
}

type input struct {
	src   Source
	files []string // files to read; one entry for a file source
	dir   bool
	stdin []byte
	docs  int64
	bytes int64
}

func scanSources(sources []Source, o *Options) (*corpus, error) {
	c := &corpus{}
	stdinUsed := false
	for _, s := range sources {
		if s.Domain == "" {
			s.Domain = DefaultDomain
		}
		if !data.DomainPattern.MatchString(s.Domain) {
			return nil, optionErrorf("source %s: domain label %q must match %s", s, s.Domain, data.DomainPattern)
		}
		in := &input{src: s}
		switch {
		case s.Path == "-":
			if stdinUsed {
				return nil, optionErrorf("source %s: standard input can be read only once", s)
			}
			stdinUsed = true
			b, err := io.ReadAll(o.Stdin)
			if err != nil {
				return nil, fmt.Errorf("source %s: read standard input: %w", s, err)
			}
			in.stdin = b
		default:
			st, err := os.Stat(s.Path)
			if err != nil {
				return nil, optionErrorf("source %s: %w; check the path", s, err)
			}
			if st.IsDir() {
				in.dir = true
				if in.files, err = walkDir(s.Path, o.Include, o.Exclude); err != nil {
					return nil, fmt.Errorf("source %s: %w", s, err)
				}
			} else {
				in.files = []string{s.Path}
			}
		}
		c.inputs = append(c.inputs, in)
	}
	if err := c.scan(o); err != nil {
		return nil, err
	}
	for _, in := range c.inputs {
		if in.docs == 0 {
			what := "is empty"
			if in.dir {
				what = fmt.Sprintf("has no readable text file matching --include %q and not --exclude %q", o.Include, o.Exclude)
			}
			return nil, optionErrorf("source %s %s (0 documents); give a source with text", in.src, what)
		}
	}
	return c, nil
}

func walkDir(root string, include, exclude []string) ([]string, error) {
	match := func(pats []string, name string) bool {
		for _, p := range pats {
			if ok, _ := filepath.Match(p, name); ok {
				return true
			}
		}
		return false
	}
	var files []string
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if path != root && match(exclude, d.Name()) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if d.Type().IsRegular() && (len(include) == 0 || match(include, d.Name())) {
			files = append(files, path)
		}
		return nil
	})
	return files, err
}

// each calls fn for every non-blank document in the fixed order.
func (c *corpus) each(ctx context.Context, docStart *regexp.Regexp, fn func(in *input, d Document) error) error {
	if c.docs != nil {
		for _, d := range c.docs {
			if strings.TrimSpace(d.Text) == "" {
				continue
			}
			if err := fn(nil, d); err != nil {
				return err
			}
		}
		return nil
	}
	for _, in := range c.inputs {
		emit := func(name, text string) error {
			if strings.TrimSpace(text) == "" {
				return nil
			}
			return fn(in, Document{Domain: in.src.Domain, Name: name, Text: text})
		}
		if in.stdin != nil || in.src.Path == "-" {
			if err := splitDocs("stdin", string(in.stdin), docStart, emit); err != nil {
				return err
			}
			continue
		}
		for _, path := range in.files {
			if err := ctx.Err(); err != nil {
				return err
			}
			b, err := os.ReadFile(path)
			if err != nil {
				return fmt.Errorf("source %s: %w", in.src, err)
			}
			binary := bytes.IndexByte(b[:min(len(b), 8192)], 0) >= 0
			if in.dir {
				if binary {
					continue
				}
				err = emit(path, string(b))
			} else if binary {
				return optionErrorf("source %s: %s is not a text file (a NUL byte in its first 8 KiB)", in.src, path)
			} else {
				err = splitDocs(path, string(b), docStart, emit)
			}
			if err != nil {
				return err
			}
		}
	}
	return nil
}

// splitDocs cuts text into documents at lines matching re (nil: one document).
func splitDocs(name, text string, re *regexp.Regexp, emit func(name, text string) error) error {
	if re == nil {
		return emit(name, text)
	}
	start, n := 0, 0
	for pos := 0; pos < len(text); {
		end := strings.IndexByte(text[pos:], '\n')
		next := len(text)
		if end >= 0 {
			next = pos + end + 1
		}
		line := strings.TrimRight(text[pos:next], "\r\n")
		if pos > start && re.MatchString(line) {
			n++
			if err := emit(fmt.Sprintf("%s#%d", name, n), text[start:pos]); err != nil {
				return err
			}
			start = pos
		}
		pos = next
	}
	n++
	return emit(fmt.Sprintf("%s#%d", name, n), text[start:])
}

// scan counts the documents and bytes per domain and picks the validation
// documents.
func (c *corpus) scan(o *Options) error {
	c.sizes = map[string][]int64{}
	c.val = map[string][]bool{}
	err := c.each(context.Background(), o.DocStart, func(in *input, d Document) error {
		if _, ok := c.sizes[d.Domain]; !ok {
			c.domains = append(c.domains, d.Domain)
		}
		c.sizes[d.Domain] = append(c.sizes[d.Domain], int64(len(d.Text)))
		c.total += int64(len(d.Text))
		if in != nil {
			in.docs++
			in.bytes += int64(len(d.Text))
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, d := range c.domains {
		n := int64(len(c.sizes[d]))
		nv := int64(math.Round(o.ValFraction * float64(n)))
		if o.ValFraction > 0 && nv == 0 && n >= 2 {
			nv = 1
		}
		if nv >= n {
			nv = n - 1
		}
		p := perm.New(uint64(n), perm.HashKey(o.Seed, perm.TagValidation, perm.StrKey(d)))
		v := make([]bool, n)
		for i := range v {
			v[i] = int64(p.At(uint64(i))) < nv
		}
		c.val[d] = v
	}
	return nil
}

// sampleRates gives each domain's probability of a train document being in
// the tokenizer's training sample.
func (c *corpus) sampleRates(budget int64) map[string]float64 {
	type dom struct {
		name  string
		bytes int64
	}
	var ds []dom
	for _, d := range c.domains {
		var b int64
		for i, sz := range c.sizes[d] {
			if !c.val[d][i] {
				b += sz
			}
		}
		ds = append(ds, dom{d, b})
	}
	sort.SliceStable(ds, func(i, j int) bool { return ds[i].bytes < ds[j].bytes })
	rates := map[string]float64{}
	left := budget
	for i, d := range ds {
		share := left / int64(len(ds)-i)
		take := min(share, d.bytes)
		left -= take
		rates[d.name] = 1
		if d.bytes > 0 && take < d.bytes {
			rates[d.name] = float64(take) / float64(d.bytes)
		}
	}
	return rates
}

// unit01 maps a key to [0, 1).
func unit01(k uint64) float64 { return float64(k>>11) / (1 << 53) }

func prepare(ctx context.Context, c *corpus, o Options) (man *data.Manifest, err error) {
	start := time.Now()
	report := func(p Progress) {
		if o.Progress != nil {
			p.Elapsed = time.Since(start)
			p.TotalBytes = c.total
			o.Progress(p)
		}
	}
	report(Progress{Phase: "scan"})
	if err := checkOut(o.Out, o.Force); err != nil {
		return nil, err
	}

	// The tokenizer.
	var tok codec
	var tokBytes []byte
	info := data.TokenizerInfo{File: data.TokenizerFile}
	if o.Tokenizer != "" {
		if tokBytes, err = os.ReadFile(o.Tokenizer); err != nil {
			return nil, fmt.Errorf("prepare: read tokenizer: %w", err)
		}
		if tok, err = loadCodec(o.Tokenizer); err != nil {
			return nil, fmt.Errorf("prepare: load tokenizer %s: %w", o.Tokenizer, err)
		}
	} else {
		report(Progress{Phase: "tokenizer"})
		rates := c.sampleRates(o.TrainBytes)
		var sample []string
		idx := map[string]int{}
		err := c.each(ctx, o.DocStart, func(_ *input, d Document) error {
			i := idx[d.Domain]
			idx[d.Domain]++
			if !c.val[d.Domain][i] && unit01(perm.HashKey(o.Seed, perm.TagTokSample, perm.StrKey(d.Domain), uint64(i))) < rates[d.Domain] {
				sample = append(sample, d.Text)
				info.TrainBytes += int64(len(d.Text))
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("prepare: %w", err)
		}
		next := 0
		tok, err = trainCodec(func() (string, error) {
			if next == len(sample) {
				return "", io.EOF
			}
			next++
			return sample[next-1], nil
		}, o.VocabSize, []string{EOSToken})
		if err != nil {
			return nil, fmt.Errorf("prepare: train tokenizer: %w", err)
		}
		info.Trained = true
	}
	info.Hash, info.VocabSize, info.EOS = tok.Hash(), tok.VocabSize(), tok.EOS()
	if info.EOS < 0 {
		return nil, fmt.Errorf("prepare: tokenizer %s has no end-of-text token; it needs the special token %q", o.Tokenizer, EOSToken)
	}

	notes, err := scratch.Sweep(o.Out)
	for _, n := range notes {
		if o.Note != nil {
			o.Note(n)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("prepare: %w", err)
	}
	tmp := scratch.Tmp(o.Out)
	if err := os.RemoveAll(tmp); err != nil {
		return nil, fmt.Errorf("prepare: remove stale %s: %w", tmp, err)
	}
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		return nil, fmt.Errorf("prepare: %w", err)
	}
	var writers map[string]*data.ShardWriter
	defer func() {
		if err != nil {
			for _, w := range writers {
				w.Abort()
			}
			os.RemoveAll(tmp)
		}
	}()
	tokPath := filepath.Join(tmp, data.TokenizerFile)
	if tokBytes != nil {
		err = atomicfile.WriteFile(tokPath, tokBytes, 0o644)
	} else {
		err = tok.Save(tokPath)
	}
	if err != nil {
		return nil, fmt.Errorf("prepare: save tokenizer: %w", err)
	}

	hdr := data.ShardHeader{TokenizerHash: info.Hash, Vocab: info.VocabSize, EOS: info.EOS,
		RecordTokens: o.RecordTokens, Uint32: info.VocabSize > 1<<16}
	writers = map[string]*data.ShardWriter{}
	counts := map[string]map[string]data.DomainCount{data.Train: {}, data.Validation: {}}
	var done, tokens int64
	lastReport := time.Now()
	err = encodeOrdered(ctx, c, o, tok, func(d Document, val bool, ids []int) error {
		split := data.Train
		if val {
			split = data.Validation
		}
		key := split + "/" + d.Domain
		w := writers[key]
		if w == nil {
			h := hdr
			h.Split, h.Domain = split, d.Domain
			w = data.NewShardWriter(tmp, h, o.ShardTokens)
			writers[key] = w
		}
		if err := w.WriteDoc(ids); err != nil {
			return err
		}
		dc := counts[split][d.Domain]
		dc.Tokens += int64(len(ids)) + 1
		dc.Documents++
		counts[split][d.Domain] = dc
		done += int64(len(d.Text))
		tokens += int64(len(ids)) + 1
		if time.Since(lastReport) > 200*time.Millisecond {
			lastReport = time.Now()
			report(Progress{Phase: "encode", Bytes: done, Tokens: tokens})
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("prepare: %w", err)
	}

	man = &data.Manifest{Format: data.ManifestFormat, Version: data.ManifestVersion, Tokenizer: info,
		TokenType: data.TokenType(info.VocabSize), RecordTokens: o.RecordTokens, Seed: o.Seed,
		ValFraction: o.ValFraction, Domains: c.domains, Splits: map[string]data.SplitInfo{}}
	for _, split := range []string{data.Train, data.Validation} {
		si := data.SplitInfo{Domains: map[string]data.DomainCount{}}
		for _, d := range c.domains {
			if w := writers[split+"/"+d]; w != nil {
				shards, err := w.Close()
				if err != nil {
					return nil, fmt.Errorf("prepare: %w", err)
				}
				man.Shards = append(man.Shards, shards...)
			}
			dc := counts[split][d]
			si.Domains[d] = dc
			si.Tokens += dc.Tokens
			si.Documents += dc.Documents
		}
		man.Splits[split] = si
	}
	for _, in := range c.inputs {
		man.Sources = append(man.Sources, data.SourceInfo{Domain: in.src.Domain, Path: in.src.Path, Documents: in.docs, Bytes: in.bytes})
	}
	if err := man.Validate(); err != nil {
		panic(fmt.Sprintf("prepare: wrote an inconsistent manifest: %v", err))
	}
	if err := man.Write(filepath.Join(tmp, data.ManifestFile)); err != nil {
		return nil, fmt.Errorf("prepare: %w", err)
	}
	if o.BeforePublish != nil {
		if err := o.BeforePublish(ctx, tmp); err != nil {
			return nil, err
		}
	}
	if err := moveInto(tmp, o.Out); err != nil {
		return nil, fmt.Errorf("prepare: %w", err)
	}
	report(Progress{Phase: "done", Bytes: done, Tokens: tokens})
	return man, nil
}

// checkOut refuses an existing non-empty output unless force is set.
func checkOut(out string, force bool) error {
	st, err := os.Stat(out)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("prepare: %w", err)
	}
	if !st.IsDir() {
		return fmt.Errorf("prepare: %w", optionErrorf("output %s exists and is not a directory; choose another --out", out))
	}
	ents, err := os.ReadDir(out)
	if err != nil {
		return fmt.Errorf("prepare: %w", err)
	}
	if len(ents) > 0 && !force {
		what := fmt.Sprintf("%d entries", len(ents))
		if _, err := os.Stat(filepath.Join(out, data.ManifestFile)); err == nil {
			what = "a dataset (" + data.ManifestFile + ")"
		}
		return fmt.Errorf("prepare: %w", optionErrorf("output directory %s already holds %s; pass --force to replace it or choose another --out", out, what))
	}
	return nil
}

// moveInto renames the finished tmp directory to out, replacing out.
func moveInto(tmp, out string) error {
	if err := os.MkdirAll(filepath.Dir(filepath.Clean(out)), 0o755); err != nil {
		return err
	}
	old := ""
	if _, err := os.Stat(out); err == nil {
		old = scratch.Old(out)
		if err := os.Rename(out, old); err != nil {
			return fmt.Errorf("move old %s aside: %w", out, err)
		}
	}
	if err := os.Rename(tmp, out); err != nil {
		if old != "" {
			os.Rename(old, out)
		}
		return fmt.Errorf("move dataset into %s: %w", out, err)
	}
	if err := atomicfile.SyncDir(filepath.Dir(filepath.Clean(out))); err != nil {
		return err
	}
	if old != "" {
		return os.RemoveAll(old)
	}
	return nil
}

// encodeOrdered encodes documents on o.Workers goroutines and calls write
// in document order, so the output does not depend on scheduling.
func encodeOrdered(ctx context.Context, c *corpus, o Options, tok codec, write func(d Document, val bool, ids []int) error) error {
	type job struct {
		seq int
		doc Document
		val bool
		ids []int
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	const window = 256 // documents in flight at most
	jobs := make(chan *job, o.Workers)
	results := make(chan *job, window)
	slots := make(chan struct{}, window)
	var readErr error
	go func() {
		defer close(jobs)
		idx := map[string]int{}
		seq := 0
		readErr = c.each(ctx, o.DocStart, func(_ *input, d Document) error {
			i := idx[d.Domain]
			idx[d.Domain]++
			select {
			case slots <- struct{}{}:
			case <-ctx.Done():
				return ctx.Err()
			}
			jobs <- &job{seq: seq, doc: d, val: c.val[d.Domain][i]}
			seq++
			return nil
		})
	}()
	var wg sync.WaitGroup
	for w := 0; w < o.Workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range jobs {
				j.ids = tok.Encode(j.doc.Text)
				results <- j
			}
		}()
	}
	go func() { wg.Wait(); close(results) }()
	pending := map[int]*job{}
	next := 0
	var werr error
	for j := range results {
		pending[j.seq] = j
		for {
			p, ok := pending[next]
			if !ok {
				break
			}
			delete(pending, next)
			next++
			if werr == nil {
				werr = write(p.doc, p.val, p.ids)
				if werr != nil {
					cancel()
				}
			}
			<-slots
		}
	}
	if werr != nil {
		return werr
	}
	if readErr != nil {
		return readErr
	}
	return ctx.Err()
}

// KJVChapter matches the chapter headings ("Genesis 1", "1 Kings 3",
// "Song of Solomon 2") of `bible "Gen1:1-Rev22:21"` output: as DocStart it
// makes each of the 1,189 chapters a document.
const KJVChapter = `^[0-9A-Z][A-Za-z ]* [0-9]+$`
