package data

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"strconv"

	"github.com/apache/arrow/go/v15/arrow"
	"github.com/apache/arrow/go/v15/arrow/array"
	"github.com/apache/arrow/go/v15/arrow/ipc"
	"github.com/apache/arrow/go/v15/arrow/memory"
)

// Schema metadata keys of a shard. Any Arrow reader sees them as the
// schema's key/value metadata.
const (
	metaFormat       = "moetrain.format"
	metaTokenizer    = "moetrain.tokenizer_hash"
	metaVocab        = "moetrain.vocab_size"
	metaEOS          = "moetrain.eos"
	metaDomain       = "moetrain.domain"
	metaSplit        = "moetrain.split"
	metaRecordTokens = "moetrain.record_tokens"
	shardFormat      = "moetrain-tokens-v1"
	tokenColumn      = "tokens"
)

// ShardHeader is what a shard's schema metadata says about it.
type ShardHeader struct {
	TokenizerHash string
	Vocab, EOS    int
	Domain, Split string
	RecordTokens  int64
	Uint32        bool
}

func shardSchema(h ShardHeader) *arrow.Schema {
	var typ arrow.DataType = arrow.PrimitiveTypes.Uint16
	if h.Uint32 {
		typ = arrow.PrimitiveTypes.Uint32
	}
	md := arrow.NewMetadata(
		[]string{metaFormat, metaTokenizer, metaVocab, metaEOS, metaDomain, metaSplit, metaRecordTokens},
		[]string{shardFormat, h.TokenizerHash, strconv.Itoa(h.Vocab), strconv.Itoa(h.EOS), h.Domain, h.Split, strconv.FormatInt(h.RecordTokens, 10)},
	)
	return arrow.NewSchema([]arrow.Field{{Name: tokenColumn, Type: typ}}, &md)
}

// ShardWriter appends documents to the shards of one (split, domain),
// starting a new shard file every shardTokens tokens. Every record batch
// holds RecordTokens tokens except a shard's last one.
type ShardWriter struct {
	dir         string
	hdr         ShardHeader
	schema      *arrow.Schema
	shardTokens int64

	f    *os.File
	hash hash.Hash
	n    countWriter
	w    *ipc.FileWriter
	cur  ShardInfo
	buf  []uint32 // tokens of the record batch being filled
	raw  []byte
	done []ShardInfo
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// Seek reports the position; the Arrow file writer only asks where it is.
func (c *countWriter) Seek(offset int64, whence int) (int64, error) {
	if offset != 0 || whence != io.SeekCurrent {
		return 0, errors.New("data: shard writer cannot seek")
	}
	return c.n, nil
}

func NewShardWriter(dir string, hdr ShardHeader, shardTokens int64) *ShardWriter {
	if shardTokens%hdr.RecordTokens != 0 {
		panic("data: shard size must be a multiple of the record size")
	}
	return &ShardWriter{dir: dir, hdr: hdr, schema: shardSchema(hdr), shardTokens: shardTokens}
}

// writeDoc appends one document's tokens followed by EOS.
func (w *ShardWriter) WriteDoc(tokens []int) error {
	for _, t := range tokens {
		if err := w.push(uint32(t)); err != nil {
			return err
		}
	}
	if w.w == nil {
		if err := w.openShard(); err != nil {
			return err
		}
	}
	w.cur.Documents++ // the document ends (EOS) in the current shard
	return w.push(uint32(w.hdr.EOS))
}

func (w *ShardWriter) push(t uint32) error {
	if w.w == nil {
		if err := w.openShard(); err != nil {
			return err
		}
	}
	w.buf = append(w.buf, t)
	if int64(len(w.buf)) == w.hdr.RecordTokens {
		if err := w.flushRecord(); err != nil {
			return err
		}
		if w.cur.Tokens == w.shardTokens {
			return w.closeShard()
		}
	}
	return nil
}

func (w *ShardWriter) openShard() error {
	name := fmt.Sprintf("%s-%s-%05d.arrow", w.hdr.Split, w.hdr.Domain, len(w.done))
	f, err := os.Create(filepath.Join(w.dir, name))
	if err != nil {
		return fmt.Errorf("create shard: %w", err)
	}
	w.f, w.hash = f, sha256.New()
	w.n = countWriter{w: io.MultiWriter(f, w.hash)}
	w.w, err = ipc.NewFileWriter(&w.n, ipc.WithSchema(w.schema))
	if err != nil {
		f.Close()
		return fmt.Errorf("create shard %s: %w", name, err)
	}
	w.cur = ShardInfo{File: name, Split: w.hdr.Split, Domain: w.hdr.Domain}
	return nil
}

func (w *ShardWriter) flushRecord() error {
	n := len(w.buf)
	if n == 0 {
		return nil
	}
	var typ arrow.DataType
	if w.hdr.Uint32 {
		typ = arrow.PrimitiveTypes.Uint32
		w.raw = w.raw[:0]
		for _, t := range w.buf {
			w.raw = binary.LittleEndian.AppendUint32(w.raw, t)
		}
	} else {
		typ = arrow.PrimitiveTypes.Uint16
		w.raw = w.raw[:0]
		for _, t := range w.buf {
			w.raw = binary.LittleEndian.AppendUint16(w.raw, uint16(t))
		}
	}
	d := array.NewData(typ, n, []*memory.Buffer{nil, memory.NewBufferBytes(w.raw)}, nil, 0, 0)
	col := array.MakeFromData(d)
	rec := array.NewRecord(w.schema, []arrow.Array{col}, int64(n))
	err := w.w.Write(rec)
	rec.Release()
	col.Release()
	d.Release()
	if err != nil {
		return fmt.Errorf("write shard %s: %w", w.cur.File, err)
	}
	w.cur.Tokens += int64(n)
	w.buf = w.buf[:0]
	return nil
}

func (w *ShardWriter) closeShard() error {
	if err := w.flushRecord(); err != nil {
		return err
	}
	if err := w.w.Close(); err != nil {
		w.f.Close()
		return fmt.Errorf("write shard %s: %w", w.cur.File, err)
	}
	if err := w.f.Sync(); err != nil {
		w.f.Close()
		return fmt.Errorf("sync shard %s: %w", w.cur.File, err)
	}
	if err := w.f.Close(); err != nil {
		return fmt.Errorf("close shard %s: %w", w.cur.File, err)
	}
	w.cur.Bytes = w.n.n
	w.cur.SHA256 = hex.EncodeToString(w.hash.Sum(nil))
	w.done = append(w.done, w.cur)
	w.w, w.f = nil, nil
	return nil
}

// close finishes the last shard and returns all shards written.
func (w *ShardWriter) Close() ([]ShardInfo, error) {
	if w.w != nil {
		if err := w.closeShard(); err != nil {
			return nil, err
		}
	}
	return w.done, nil
}

// abort closes an open file after a failure; the caller removes the directory.
func (w *ShardWriter) Abort() {
	if w.f != nil {
		w.f.Close()
	}
}

// ErrCorruptShard is wrapped by every error about a shard whose bytes do not
// match its manifest entry or do not parse.
var ErrCorruptShard = errors.New("data: corrupt shard")

// fileSHA256 hashes a file with a small buffer (no memory growth with size).
func fileSHA256(path string) (string, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.CopyBuffer(h, f, make([]byte, 1<<20))
	if err != nil {
		return "", 0, err
	}
	return hex.EncodeToString(h.Sum(nil)), n, nil
}

// shardReader reads tokens of one shard by record batch, caching the last
// record batch it decoded (RecordTokens × 4 bytes).
type shardReader struct {
	name   string
	hdr    ShardHeader
	fr     *ipc.FileReader
	tokens int64
	nrec   int

	cacheIdx int
	cache    []int32
}

// limitAllocator refuses allocations larger than the file they read from,
// so that a corrupt length field fails instead of exhausting memory.
type limitAllocator struct {
	memory.Allocator
	limit int
}

func (a limitAllocator) Allocate(size int) []byte {
	if size < 0 || size > a.limit {
		panic(fmt.Errorf("allocation of %d bytes exceeds the file size %d", size, a.limit))
	}
	return a.Allocator.Allocate(size)
}

func (a limitAllocator) Reallocate(size int, b []byte) []byte {
	if size < 0 || size > a.limit {
		panic(fmt.Errorf("allocation of %d bytes exceeds the file size %d", size, a.limit))
	}
	return a.Allocator.Reallocate(size, b)
}

// safely runs fn and turns a panic inside the Arrow library (which panics on
// some malformed inputs) into an error.
func safely(fn func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("arrow parser: %v", r)
		}
	}()
	return fn()
}

// openShardReader parses the schema and footer of a shard of size bytes.
// It checks the header for internal consistency only; the caller compares
// it with the manifest.
func openShardReader(r ipc.ReadAtSeeker, size int64, name string) (*shardReader, error) {
	s := &shardReader{name: name, cacheIdx: -1}
	err := safely(func() error {
		if err := checkFooter(r, size); err != nil {
			return err
		}
		alloc := limitAllocator{Allocator: memory.NewGoAllocator(), limit: int(size)}
		fr, err := ipc.NewFileReader(r, ipc.WithAllocator(alloc))
		if err != nil {
			return err
		}
		s.fr = fr
		s.nrec = fr.NumRecords()
		return s.parseHeader(fr.Schema())
	})
	if err != nil {
		return nil, fmt.Errorf("%w %s: %v", ErrCorruptShard, name, err)
	}
	return s, nil
}

func (s *shardReader) parseHeader(sc *arrow.Schema) error {
	if sc.NumFields() != 1 || sc.Field(0).Name != tokenColumn {
		return fmt.Errorf("schema %v, want one %q column", sc, tokenColumn)
	}
	switch sc.Field(0).Type.ID() {
	case arrow.UINT16:
	case arrow.UINT32:
		s.hdr.Uint32 = true
	default:
		return fmt.Errorf("token column type %v, want uint16 or uint32", sc.Field(0).Type)
	}
	md := sc.Metadata()
	get := func(k string) (string, error) {
		i := md.FindKey(k)
		if i < 0 {
			return "", fmt.Errorf("schema metadata lacks %q", k)
		}
		return md.Values()[i], nil
	}
	atoi := func(k string, lo, hi int64) (int64, error) {
		v, err := get(k)
		if err != nil {
			return 0, err
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < lo || n > hi {
			return 0, fmt.Errorf("schema metadata %s=%q is not an integer in [%d, %d]", k, v, lo, hi)
		}
		return n, nil
	}
	f, err := get(metaFormat)
	if err != nil {
		return err
	}
	if f != shardFormat {
		return fmt.Errorf("schema metadata %s=%q, want %q", metaFormat, f, shardFormat)
	}
	if s.hdr.TokenizerHash, err = get(metaTokenizer); err != nil {
		return err
	}
	if s.hdr.Domain, err = get(metaDomain); err != nil {
		return err
	}
	if s.hdr.Split, err = get(metaSplit); err != nil {
		return err
	}
	maxVocab := int64(1 << 16)
	if s.hdr.Uint32 {
		maxVocab = 1<<31 - 1
	}
	v, err := atoi(metaVocab, 2, maxVocab)
	if err != nil {
		return err
	}
	s.hdr.Vocab = int(v)
	e, err := atoi(metaEOS, 0, v-1)
	if err != nil {
		return err
	}
	s.hdr.EOS = int(e)
	if s.hdr.RecordTokens, err = atoi(metaRecordTokens, 1, 1<<30); err != nil {
		return err
	}
	return nil
}

// setTokens declares the shard's token count (from the manifest) and
// checks that the number of record batches agrees with it.
func (s *shardReader) setTokens(n int64) error {
	want := (n + s.hdr.RecordTokens - 1) / s.hdr.RecordTokens
	if int64(s.nrec) != want {
		return fmt.Errorf("%w %s: %d record batches, want %d for %d tokens of %d per batch", ErrCorruptShard, s.name, s.nrec, want, n, s.hdr.RecordTokens)
	}
	s.tokens = n
	return nil
}

// record returns the tokens of record batch i, decoding it on a cache miss.
func (s *shardReader) record(i int) ([]int32, error) {
	if i == s.cacheIdx {
		return s.cache, nil
	}
	want := s.hdr.RecordTokens
	if last := s.tokens - int64(i)*want; last < want {
		want = last
	}
	s.cacheIdx = -1
	err := safely(func() error {
		rec, err := s.fr.RecordAt(i)
		if err != nil {
			return err
		}
		defer rec.Release()
		if rec.NumCols() != 1 || rec.NumRows() != want {
			return fmt.Errorf("record batch %d has %d rows, want %d", i, rec.NumRows(), want)
		}
		col := rec.Column(0)
		if col.NullN() != 0 {
			return fmt.Errorf("record batch %d has %d null tokens", i, col.NullN())
		}
		if cap(s.cache) < int(want) {
			s.cache = make([]int32, want, s.hdr.RecordTokens)
		}
		s.cache = s.cache[:want]
		vocab := uint32(s.hdr.Vocab)
		switch c := col.(type) {
		case *array.Uint16:
			for j, t := range c.Uint16Values() {
				if uint32(t) >= vocab {
					return fmt.Errorf("record batch %d: token %d at row %d is outside the vocab [0, %d)", i, t, j, vocab)
				}
				s.cache[j] = int32(t)
			}
		case *array.Uint32:
			for j, t := range c.Uint32Values() {
				if t >= vocab {
					return fmt.Errorf("record batch %d: token %d at row %d is outside the vocab [0, %d)", i, t, j, vocab)
				}
				s.cache[j] = int32(t)
			}
		default:
			return fmt.Errorf("record batch %d: column type %v", i, col.DataType())
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("%w %s: %v", ErrCorruptShard, s.name, err)
	}
	s.cacheIdx = i
	return s.cache, nil
}

// read copies the tokens [off, off+len(dst)) of this shard into dst.
func (s *shardReader) read(off int64, dst []int32) error {
	if off < 0 || off+int64(len(dst)) > s.tokens {
		panic("data: shard read out of range")
	}
	for len(dst) > 0 {
		i := off / s.hdr.RecordTokens
		rec, err := s.record(int(i))
		if err != nil {
			return err
		}
		n := copy(dst, rec[off-i*s.hdr.RecordTokens:])
		dst = dst[n:]
		off += int64(n)
	}
	return nil
}

func (s *shardReader) close() {
	if s.fr != nil {
		s.fr.Close()
	}
}
