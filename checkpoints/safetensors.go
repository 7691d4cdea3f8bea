package checkpoints

import (
	"encoding/binary"
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
type Tensor struct {
	Name  string
	DType DType
	Shape []int // empty for a scalar
	F32   []float32
	F64   []float64
	I32   []int32
	I64   []int64
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

// encode returns t's values as little-endian bytes of its DType.
func (t *Tensor) encode() []byte {
	le := binary.LittleEndian
	var b []byte
	switch t.DType {
	case F32:
		b = make([]byte, 0, 4*len(t.F32))
		for _, v := range t.F32 {
			b = le.AppendUint32(b, math.Float32bits(v))
		}
	case BF16:
		b = make([]byte, 0, 2*len(t.F32))
		for _, v := range t.F32 {
			b = le.AppendUint16(b, bf16FromF32(v))
		}
	case F16:
		b = make([]byte, 0, 2*len(t.F32))
		for _, v := range t.F32 {
			b = le.AppendUint16(b, f16FromF32(v))
		}
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

// view adapts a checked Tensor to the safetensors library's writer. Data is
// encoded lazily, once, when the writer reaches the tensor, so at most one
// tensor's bytes are held at a time.
type view struct {
	t     *Tensor
	shape []uint64
	bytes uint64
}

func (v view) DType() st.DType { return dtypeInfo[v.t.DType].st }
func (v view) Shape() []uint64 { return v.shape }
func (v view) DataLen() uint64 { return v.bytes }
func (v view) Data() []byte    { return v.t.encode() }

// WriteSafetensors writes ts and meta (the optional "__metadata__" strings)
// to w as one safetensors file. The output depends only on the set of
// tensors, not their order: header keys are sorted and the data is laid out
// by descending dtype alignment, then name (the reference implementation's
// order), so the same tensors always give byte-identical files. It returns an
// error for an empty or duplicate name, an unknown dtype, or values that do
// not match the shape. w is written in a few large writes; wrap a file in a
// bufio.Writer only if that matters.
func WriteSafetensors(w io.Writer, ts []Tensor, meta map[string]string) error {
	views := make(map[string]view, len(ts))
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
		views[t.Name] = view{t: t, shape: shape, bytes: uint64(n) * uint64(dtypeInfo[t.DType].size)}
	}
	if len(meta) == 0 {
		meta = nil // the library omits an empty "__metadata__" only when nil
	}
	if err := st.SerializeToWriter(views, meta, w); err != nil {
		return fmt.Errorf("write safetensors: %w", err)
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
	// The library checks the header length, the JSON, that the data
	// offsets tile the data section exactly (no gap, overlap or overrun),
	// and that each tensor's byte length equals its shape's element count
	// × dtype size (with overflow checks).
	n, md, err := st.ReadMetadata(b)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	data := b[8+n:]
	infos := md.Tensors()
	names := make([]string, 0, len(infos))
	for name := range infos {
		names = append(names, name)
	}
	sort.Strings(names) // result order, and which error is reported first, must not depend on map order
	ts := make([]Tensor, 0, len(infos))
	for _, name := range names {
		info := infos[name]
		lo, hi := info.DataOffsets[0], info.DataOffsets[1]
		if lo > hi || hi > uint64(len(data)) { // already refused by the library; never slice blindly
			return nil, nil, fmt.Errorf("%w: tensor %q: data offsets [%d, %d] outside %d data bytes", ErrMalformed, name, lo, hi, len(data))
		}
		t, err := decode(name, info.DType, info.Shape, data[lo:hi])
		if err != nil {
			return nil, nil, fmt.Errorf("%w: tensor %q: %w", ErrMalformed, name, err)
		}
		ts = append(ts, t)
	}
	return ts, md.Metadata(), nil
}

// decode converts one tensor's little-endian bytes into a Tensor, checking
// the byte count against the shape itself rather than trusting the caller.
func decode(name string, sdt st.DType, shape []uint64, data []byte) (Tensor, error) {
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
	if n > len(data) || len(data) != n*dtypeInfo[dt].size {
		return Tensor{}, fmt.Errorf("%d bytes for shape %v of %v", len(data), t.Shape, dt)
	}
	le := binary.LittleEndian
	switch dt {
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
	return t, nil
}
