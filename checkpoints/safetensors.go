package checkpoints

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"sort"

	st "github.com/nlpodyssey/safetensors"
)

// DType is the element type a tensor has in a safetensors file.
type DType uint8

// The zero DType is invalid, so a Tensor whose DType was forgotten is refused.
const (
	F32  DType = iota + 1 // float32, values in Tensor.F32
	F64                   // float64, values in Tensor.F64
	BF16                  // bfloat16, values in Tensor.F32 (rounded on write)
	F16                   // IEEE binary16, values in Tensor.F32 (rounded on write)
	I32                   // int32, values in Tensor.I32
	I64                   // int64, values in Tensor.I64
)

var dtypeInfo = map[DType]struct {
	name string
	st   st.DType
	size int
}{
	F32:  {"F32", st.F32, 4},
	F64:  {"F64", st.F64, 8},
	BF16: {"BF16", st.BF16, 2},
	F16:  {"F16", st.F16, 2},
	I32:  {"I32", st.I32, 4},
	I64:  {"I64", st.I64, 8},
}

func (d DType) String() string {
	if info, ok := dtypeInfo[d]; ok {
		return info.name
	}
	return fmt.Sprintf("DType(%d)", uint8(d))
}

// ErrMalformed is wrapped by every error ReadSafetensors returns for bytes
// that are not a valid safetensors file this package can represent.
var ErrMalformed = errors.New("checkpoints: malformed safetensors")

// Tensor is one named tensor. Exactly one of the slices holds the values, in
// row-major order, the one DType names: F32 for F32, BF16 and F16; F64 for
// F64; I32 for I32; I64 for I64. The others are empty.
//
// A tensor to be written may instead leave every slice empty and set Stream
// (F32, BF16 and F16 only): the writer calls it once, when it reaches the
// tensor's place in the file, and Stream passes the values to put in
// row-major pieces. A tensor whose parts live in several processes is
// written that way without ever being held whole.
type Tensor struct {
	Name   string
	DType  DType
	Shape  []int // empty for a scalar
	F32    []float32
	F64    []float64
	I32    []int32
	I64    []int64
	Stream func(put func(piece []float32) error) error
}

// numElems returns the product of Shape, or an error for a negative or
// overflowing shape.
func (t *Tensor) numElems() (int, error) {
	n := 1
	for _, d := range t.Shape {
		if d < 0 {
			return 0, fmt.Errorf("negative dimension in shape %v", t.Shape)
		}
		if d != 0 && n > math.MaxInt/d {
			return 0, fmt.Errorf("shape %v overflows", t.Shape)
		}
		n *= d
	}
	return n, nil
}

// check returns an error unless t's DType is known and the one slice it
// names holds exactly the shape's element count.
func (t *Tensor) check() error {
	if _, ok := dtypeInfo[t.DType]; !ok {
		return fmt.Errorf("tensor %q: unknown dtype %v", t.Name, t.DType)
	}
	n, err := t.numElems()
	if err != nil {
		return fmt.Errorf("tensor %q: %w", t.Name, err)
	}
	want := t.field()
	if t.Stream != nil {
		if want != "F32" {
			return fmt.Errorf("tensor %q: dtype %v cannot be streamed", t.Name, t.DType)
		}
		n = 0 // the values come from Stream
	}
	for _, f := range []struct {
		field string
		l     int
	}{{"F32", len(t.F32)}, {"F64", len(t.F64)}, {"I32", len(t.I32)}, {"I64", len(t.I64)}} {
		field, l := f.field, f.l
		switch {
		case field == want && l != n:
			return fmt.Errorf("tensor %q: shape %v needs %d values, %s has %d", t.Name, t.Shape, n, field, l)
		case field != want && l != 0:
			return fmt.Errorf("tensor %q: dtype %v keeps values in %s, but %s has %d", t.Name, t.DType, want, field, l)
		}
	}
	return nil
}

// field names the slice that holds t's values.
func (t *Tensor) field() string {
	switch t.DType {
	case F64:
		return "F64"
	case I32:
		return "I32"
	case I64:
		return "I64"
	default:
		return "F32"
	}
}

// encodeChunk is how many values are encoded per write: one chunk's bytes
// are all the encoding holds, in a buffer reused for the whole file, so
// writing a checkpoint makes no garbage the size of its tensors.
const encodeChunk = 1 << 16

// writeF32 writes float32 values to w as little-endian bytes of dt (F32,
// BF16 or F16), a chunk at a time through *scratch.
func writeF32(w io.Writer, scratch *[]byte, dt DType, vs []float32) error {
	le := binary.LittleEndian
	for lo := 0; lo < len(vs); lo += encodeChunk {
		b := (*scratch)[:0]
		switch dt {
		case F32:
			for _, v := range vs[lo:min(lo+encodeChunk, len(vs))] {
				b = le.AppendUint32(b, math.Float32bits(v))
			}
		case BF16:
			for _, v := range vs[lo:min(lo+encodeChunk, len(vs))] {
				b = le.AppendUint16(b, bf16FromF32(v))
			}
		case F16:
			for _, v := range vs[lo:min(lo+encodeChunk, len(vs))] {
				b = le.AppendUint16(b, f16FromF32(v))
			}
		default:
			panic("checkpoints: writeF32 of " + dt.String())
		}
		*scratch = b
		if _, err := w.Write(b); err != nil {
			return err
		}
	}
	return nil
}

// encode returns the values of an F64, I32 or I64 tensor (hash tables and
// the like: small) as little-endian bytes.
func (t *Tensor) encode() []byte {
	le := binary.LittleEndian
	var b []byte
	switch t.DType {
	case F64:
		b = make([]byte, 0, 8*len(t.F64))
		for _, v := range t.F64 {
			b = le.AppendUint64(b, math.Float64bits(v))
		}
	case I32:
		b = make([]byte, 0, 4*len(t.I32))
		for _, v := range t.I32 {
			b = le.AppendUint32(b, uint32(v))
		}
	case I64:
		b = make([]byte, 0, 8*len(t.I64))
		for _, v := range t.I64 {
			b = le.AppendUint64(b, uint64(v))
		}
	default:
		panic("checkpoints: encode of unchecked tensor") // check() runs first
	}
	return b
}

// writeData writes t's values to w: float32-held values a chunk at a time
// through *scratch (a streamed tensor's as Stream hands them over), other
// types encoded whole.
func (t *Tensor) writeData(w io.Writer, scratch *[]byte) error {
	if t.Stream == nil {
		if t.field() == "F32" {
			return writeF32(w, scratch, t.DType, t.F32)
		}
		_, err := w.Write(t.encode())
		return err
	}
	n, _ := t.numElems()
	got := 0
	err := t.Stream(func(piece []float32) error {
		if got += len(piece); got > n {
			return fmt.Errorf("tensor %q: streamed more than the %d values of shape %v", t.Name, n, t.Shape)
		}
		return writeF32(w, scratch, t.DType, piece)
	})
	if err == nil && got != n {
		err = fmt.Errorf("tensor %q: streamed %d values, shape %v needs %d", t.Name, got, t.Shape, n)
	}
	return err
}

// view adapts a checked Tensor to the safetensors library's writer, which
// here only lays out and writes the header: Data records the order in
// which the library places the tensors and returns nothing, and
// WriteSafetensors writes the data itself in that order.
type view struct {
	t     *Tensor
	shape []uint64
	bytes uint64
	order *[]*Tensor
}

func (v view) DType() st.DType { return dtypeInfo[v.t.DType].st }
func (v view) Shape() []uint64 { return v.shape }
func (v view) DataLen() uint64 { return v.bytes }
func (v view) Data() []byte    { *v.order = append(*v.order, v.t); return nil }

// WriteSafetensors writes ts and meta (the optional "__metadata__" strings)
// to w as one safetensors file. The output depends only on the set of
// tensors, not their order: header keys are sorted and the data is laid out
// by descending dtype alignment, then name (the reference implementation's
// order), so the same tensors always give byte-identical files. It returns an
// error for an empty or duplicate name, an unknown dtype, or values that do
// not match the shape, and any error a streamed tensor's Stream returns. w
// is written in writes of at most 256 KiB (a chunk of values); wrap a file
// in a bufio.Writer if that matters.
func WriteSafetensors(w io.Writer, ts []Tensor, meta map[string]string) error {
	views := make(map[string]view, len(ts))
	order := make([]*Tensor, 0, len(ts))
	for i := range ts {
		t := &ts[i]
		if t.Name == "" || t.Name == "__metadata__" {
			return fmt.Errorf("write safetensors: invalid tensor name %q", t.Name)
		}
		if _, dup := views[t.Name]; dup {
			return fmt.Errorf("write safetensors: duplicate tensor name %q", t.Name)
		}
		if err := t.check(); err != nil {
			return fmt.Errorf("write safetensors: %w", err)
		}
		n, _ := t.numElems()
		shape := make([]uint64, len(t.Shape))
		for j, d := range t.Shape {
			shape[j] = uint64(d)
		}
		views[t.Name] = view{t: t, shape: shape, bytes: uint64(n) * uint64(dtypeInfo[t.DType].size), order: &order}
	}
	if len(meta) == 0 {
		meta = nil // the library omits an empty "__metadata__" only when nil
	}
	var header bytes.Buffer // the length and the JSON header; Data wrote nothing
	if err := st.SerializeToWriter(views, meta, &header); err != nil {
		return fmt.Errorf("write safetensors: %w", err)
	}
	if len(order) != len(ts) {
		return fmt.Errorf("write safetensors: the header placed %d of %d tensors", len(order), len(ts))
	}
	if _, err := w.Write(header.Bytes()); err != nil {
		return fmt.Errorf("write safetensors: %w", err)
	}
	var scratch []byte
	for _, t := range order {
		if err := t.writeData(w, &scratch); err != nil {
			return fmt.Errorf("write safetensors: %w", err)
		}
	}
	return nil
}

// ReadSafetensors parses a whole safetensors file held in b and returns its
// tensors sorted by name plus its "__metadata__" strings (nil if absent). F32,
// F64, BF16, F16, I32 and I64 are supported; BF16 and F16 values are
// converted exactly to float32 and keep their DType, so writing the tensors
// again reproduces the same bits. Any malformed input (bad header length,
// invalid JSON, offsets out of range, overlapping or leaving gaps, a byte
// length that does not match shape × dtype size, an unsupported dtype)
// returns an error wrapping ErrMalformed; it never panics. The returned
// tensors do not alias b.
func ReadSafetensors(b []byte) ([]Tensor, map[string]string, error) {
	return readSafetensors(bytes.NewReader(b), int64(len(b)), nil)
}

// Select says what a partial read keeps of one tensor: rows [lo, hi) of
// its leading dimension, or nothing when keep is false. A scalar is kept
// whole when keep is true. A nil Select keeps every tensor whole.
type Select func(name string, shape []int) (lo, hi int, keep bool)

// maxHeader bounds the JSON header, as the reference implementation does.
const maxHeader = 100_000_000

// readSafetensors reads a safetensors file of size bytes from r in one pass,
// front to back, and returns what sel keeps, sorted by name, and the
// metadata. Only the kept rows of one tensor are held as bytes at a time;
// everything else is read and dropped. It validates the header as
// ReadSafetensors documents before reading any data. On a malformed file it
// stops early and returns an error wrapping ErrMalformed; r is then not
// read to its end.
func readSafetensors(r io.Reader, size int64, sel Select) ([]Tensor, map[string]string, error) {
	bad := func(format string, a ...any) ([]Tensor, map[string]string, error) {
		return nil, nil, fmt.Errorf("%w: "+format, append([]any{ErrMalformed}, a...)...)
	}
	var nb [8]byte
	if size < 8 {
		return bad("%d bytes, too short for a header", size)
	}
	if _, err := io.ReadFull(r, nb[:]); err != nil {
		return bad("read header length: %v", err)
	}
	n := binary.LittleEndian.Uint64(nb[:])
	if n > maxHeader || n > uint64(size-8) {
		return bad("header of %d bytes in a file of %d", n, size)
	}
	hb := make([]byte, n)
	if _, err := io.ReadFull(r, hb); err != nil {
		return bad("read header: %v", err)
	}
	var md st.Metadata
	if err := json.Unmarshal(hb, &md); err != nil {
		return bad("header: %v", err)
	}
	// The data offsets, taken in order, must tile the data section exactly.
	type entry struct {
		name string
		info *st.TensorInfo
	}
	var entries []entry
	for name, info := range md.Tensors() {
		entries = append(entries, entry{name, info})
	}
	sort.Slice(entries, func(a, b int) bool { // the order must not depend on map order
		x, y := entries[a].info.DataOffsets, entries[b].info.DataOffsets
		return x[0] < y[0] || x[0] == y[0] && (x[1] < y[1] || x[1] == y[1] && entries[a].name < entries[b].name)
	})
	dataLen, off := uint64(size)-8-n, uint64(0)
	heads := make([]Tensor, len(entries))
	for i, e := range entries {
		lo, hi := e.info.DataOffsets[0], e.info.DataOffsets[1]
		if lo != off || hi < lo || hi > dataLen {
			return bad("tensor %q: data offsets [%d, %d], want [%d, …] within %d data bytes", e.name, lo, hi, off, dataLen)
		}
		off = hi
		t, err := tensorHeader(e.name, e.info.DType, e.info.Shape, hi-lo)
		if err != nil {
			return bad("tensor %q: %v", e.name, err)
		}
		heads[i] = t
	}
	if off != dataLen {
		return bad("tensors end at byte %d of %d data bytes", off, dataLen)
	}
	var out []Tensor
	for i, e := range entries {
		t := heads[i]
		bytes := int64(e.info.DataOffsets[1] - e.info.DataOffsets[0])
		lo, hi, keep := 0, 1, true
		if len(t.Shape) > 0 {
			hi = t.Shape[0]
		}
		if sel != nil {
			if lo, hi, keep = sel(t.Name, t.Shape); keep && len(t.Shape) == 0 {
				lo, hi = 0, 1
			}
		}
		if !keep {
			if _, err := io.CopyN(io.Discard, r, bytes); err != nil {
				return bad("read tensor %q: %v", t.Name, err)
			}
			continue
		}
		rows := 1
		if len(t.Shape) > 0 {
			rows = t.Shape[0]
		}
		if lo < 0 || hi < lo || hi > rows {
			return nil, nil, fmt.Errorf("read safetensors: rows [%d, %d) of tensor %q of shape %v", lo, hi, t.Name, t.Shape)
		}
		var rowBytes int64
		if rows > 0 {
			rowBytes = bytes / int64(rows)
		}
		if _, err := io.CopyN(io.Discard, r, int64(lo)*rowBytes); err != nil {
			return bad("read tensor %q: %v", t.Name, err)
		}
		data := make([]byte, int64(hi-lo)*rowBytes)
		if _, err := io.ReadFull(r, data); err != nil {
			return bad("read tensor %q: %v", t.Name, err)
		}
		if _, err := io.CopyN(io.Discard, r, int64(rows-hi)*rowBytes); err != nil {
			return bad("read tensor %q: %v", t.Name, err)
		}
		if len(t.Shape) > 0 {
			t.Shape[0] = hi - lo
		}
		t.fill(data)
		out = append(out, t)
	}
	sort.Slice(out, func(a, b int) bool { return out[a].Name < out[b].Name })
	return out, md.Metadata(), nil
}

// tensorHeader returns a tensor's name, DType and Shape without values,
// checking the byte count of its data against the shape itself rather than
// trusting the header.
func tensorHeader(name string, sdt st.DType, shape []uint64, nbytes uint64) (Tensor, error) {
	var dt DType
	for d, info := range dtypeInfo {
		if info.st == sdt {
			dt = d
		}
	}
	if dt == 0 {
		return Tensor{}, fmt.Errorf("unsupported dtype %v", sdt)
	}
	t := Tensor{Name: name, DType: dt, Shape: make([]int, len(shape))}
	for i, d := range shape {
		if d > math.MaxInt32 { // no real dimension is this large; keeps int math safe
			return Tensor{}, fmt.Errorf("dimension %d too large", d)
		}
		t.Shape[i] = int(d)
	}
	n, err := t.numElems()
	if err != nil {
		return Tensor{}, err
	}
	if uint64(n) > nbytes || nbytes != uint64(n)*uint64(dtypeInfo[dt].size) {
		return Tensor{}, fmt.Errorf("%d bytes for shape %v of %v", nbytes, t.Shape, dt)
	}
	return t, nil
}

// fill decodes t's values from data, little-endian bytes of its DType for
// exactly its shape (tensorHeader checked the count).
func (t *Tensor) fill(data []byte) {
	n := len(data) / dtypeInfo[t.DType].size
	le := binary.LittleEndian
	switch t.DType {
	case F32:
		t.F32 = make([]float32, n)
		for i := range t.F32 {
			t.F32[i] = math.Float32frombits(le.Uint32(data[4*i:]))
		}
	case BF16:
		t.F32 = make([]float32, n)
		for i := range t.F32 {
			t.F32[i] = bf16ToF32(le.Uint16(data[2*i:]))
		}
	case F16:
		t.F32 = make([]float32, n)
		for i := range t.F32 {
			t.F32[i] = f16ToF32(le.Uint16(data[2*i:]))
		}
	case F64:
		t.F64 = make([]float64, n)
		for i := range t.F64 {
			t.F64[i] = math.Float64frombits(le.Uint64(data[8*i:]))
		}
	case I32:
		t.I32 = make([]int32, n)
		for i := range t.I32 {
			t.I32[i] = int32(le.Uint32(data[4*i:]))
		}
	case I64:
		t.I64 = make([]int64, n)
		for i := range t.I64 {
			t.I64[i] = int64(le.Uint64(data[8*i:]))
		}
	}
}
