package checkpoints

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"testing"
)

// sampleTensors covers every dtype, a scalar, an empty tensor and the float
// values that are easiest to mangle (signed zero, Inf, NaN payloads,
// subnormals). BF16/F16 values are exactly representable, so they must come
// back bit-identical.
func sampleTensors() []Tensor {
	negZero32 := float32(math.Copysign(0, -1))
	nan32 := math.Float32frombits(0x7FC00123)
	return []Tensor{
		{Name: "f32", DType: F32, Shape: []int{2, 3}, F32: []float32{1.5, -2.25, negZero32, float32(math.Inf(1)), nan32, math.SmallestNonzeroFloat32}},
		{Name: "f64", DType: F64, Shape: []int{4}, F64: []float64{math.Pi, math.Copysign(0, -1), math.Float64frombits(0x7FF8000000000ABC), math.SmallestNonzeroFloat64}},
		{Name: "bf16", DType: BF16, Shape: []int{3}, F32: []float32{1, -0.5, bf16ToF32(0x3F81)}},
		{Name: "f16", DType: F16, Shape: []int{2, 2}, F32: []float32{65504, -1.0 / (1 << 24), 0.333251953125, float32(math.Inf(-1))}},
		{Name: "i32", DType: I32, Shape: []int{3}, I32: []int32{math.MinInt32, -1, math.MaxInt32}},
		{Name: "i64", DType: I64, Shape: []int{2, 1}, I64: []int64{math.MinInt64, math.MaxInt64}},
		{Name: "scalar", DType: F32, Shape: []int{}, F32: []float32{42}},
		{Name: "empty", DType: F64, Shape: []int{0, 5}},
	}
}

// equalBits reports the first difference between two tensor lists, comparing
// floats by their bits so that NaN payloads and signed zeros count.
func equalBits(got, want []Tensor) error {
	if len(got) != len(want) {
		return fmt.Errorf("got %d tensors, want %d", len(got), len(want))
	}
	for i := range want {
		g, w := got[i], want[i]
		if g.Name != w.Name || g.DType != w.DType || fmt.Sprint(g.Shape) != fmt.Sprint(w.Shape) {
			return fmt.Errorf("tensor %d: got %s %v %v, want %s %v %v", i, g.Name, g.DType, g.Shape, w.Name, w.DType, w.Shape)
		}
		if len(g.F32) != len(w.F32) || len(g.F64) != len(w.F64) || len(g.I32) != len(w.I32) || len(g.I64) != len(w.I64) {
			return fmt.Errorf("tensor %s: value counts differ", w.Name)
		}
		for j := range w.F32 {
			if math.Float32bits(g.F32[j]) != math.Float32bits(w.F32[j]) {
				return fmt.Errorf("tensor %s[%d]: got %g (0x%08X), want %g (0x%08X)", w.Name, j, g.F32[j], math.Float32bits(g.F32[j]), w.F32[j], math.Float32bits(w.F32[j]))
			}
		}
		for j := range w.F64 {
			if math.Float64bits(g.F64[j]) != math.Float64bits(w.F64[j]) {
				return fmt.Errorf("tensor %s[%d]: got %g, want %g", w.Name, j, g.F64[j], w.F64[j])
			}
		}
		for j := range w.I32 {
			if g.I32[j] != w.I32[j] {
				return fmt.Errorf("tensor %s[%d]: got %d, want %d", w.Name, j, g.I32[j], w.I32[j])
			}
		}
		for j := range w.I64 {
			if g.I64[j] != w.I64[j] {
				return fmt.Errorf("tensor %s[%d]: got %d, want %d", w.Name, j, g.I64[j], w.I64[j])
			}
		}
	}
	return nil
}

func sortedByName(ts []Tensor) []Tensor {
	out := append([]Tensor(nil), ts...)
	for i := range out {
		for j := i + 1; j < len(out); j++ {
			if out[j].Name < out[i].Name {
				out[i], out[j] = out[j], out[i]
			}
		}
	}
	return out
}

func TestSafetensorsRoundTrip(t *testing.T) {
	t.Parallel()
	for _, tc := range sampleTensors() {
		t.Run(tc.Name, func(t *testing.T) {
			t.Parallel()
			var buf bytes.Buffer
			if err := WriteSafetensors(&buf, []Tensor{tc}, nil); err != nil {
				t.Fatal(err)
			}
			got, meta, err := ReadSafetensors(buf.Bytes())
			if err != nil {
				t.Fatal(err)
			}
			if meta != nil {
				t.Errorf("got metadata %v, want none", meta)
			}
			if err := equalBits(got, []Tensor{tc}); err != nil {
				t.Error(err)
			}
		})
	}
	t.Run("all+metadata", func(t *testing.T) {
		t.Parallel()
		var buf bytes.Buffer
		meta := map[string]string{"format": "pt", "note": `quote " and <html>`}
		if err := WriteSafetensors(&buf, sampleTensors(), meta); err != nil {
			t.Fatal(err)
		}
		got, gotMeta, err := ReadSafetensors(buf.Bytes())
		if err != nil {
			t.Fatal(err)
		}
		if err := equalBits(got, sortedByName(sampleTensors())); err != nil {
			t.Error(err)
		}
		if fmt.Sprint(gotMeta) != fmt.Sprint(meta) {
			t.Errorf("got metadata %v, want %v", gotMeta, meta)
		}
	})
}

// The layout follows the format exactly: 8-byte little-endian header length,
// a header padded to a multiple of 8, data offsets that tile the data.
func TestSafetensorsLayout(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	if err := WriteSafetensors(&buf, sampleTensors(), map[string]string{"k": "v"}); err != nil {
		t.Fatal(err)
	}
	b := buf.Bytes()
	n := binary.LittleEndian.Uint64(b)
	if n%8 != 0 {
		t.Errorf("header length %d is not a multiple of 8", n)
	}
	var hdr map[string]json.RawMessage
	if err := json.Unmarshal(b[8:8+n], &hdr); err != nil {
		t.Fatal(err)
	}
	if string(hdr["__metadata__"]) != `{"k":"v"}` {
		t.Errorf("got __metadata__ %s", hdr["__metadata__"])
	}
	var total uint64
	for name, raw := range hdr {
		if name == "__metadata__" {
			continue
		}
		var info struct {
			DType       string    `json:"dtype"`
			Shape       []int     `json:"shape"`
			DataOffsets [2]uint64 `json:"data_offsets"`
		}
		if err := json.Unmarshal(raw, &info); err != nil {
			t.Fatal(err)
		}
		total += info.DataOffsets[1] - info.DataOffsets[0]
	}
	if got := uint64(len(b)) - 8 - n; got != total {
		t.Errorf("data section is %d bytes, tensors cover %d", got, total)
	}
}

// The same tensors in any order give the same bytes.
func TestSafetensorsDeterministic(t *testing.T) {
	t.Parallel()
	ts := sampleTensors()
	var a, b bytes.Buffer
	if err := WriteSafetensors(&a, ts, map[string]string{"x": "1", "y": "2"}); err != nil {
		t.Fatal(err)
	}
	rev := make([]Tensor, len(ts))
	for i := range ts {
		rev[len(ts)-1-i] = ts[i]
	}
	if err := WriteSafetensors(&b, rev, map[string]string{"y": "2", "x": "1"}); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a.Bytes(), b.Bytes()) {
		t.Error("files differ when only the tensor order differs")
	}
}

func TestWriteSafetensorsRejects(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		ts   []Tensor
	}{
		{"empty name", []Tensor{{DType: F32, Shape: []int{1}, F32: []float32{1}}}},
		{"metadata name", []Tensor{{Name: "__metadata__", DType: F32, Shape: []int{1}, F32: []float32{1}}}},
		{"duplicate", []Tensor{{Name: "a", DType: I32, Shape: []int{1}, I32: []int32{1}}, {Name: "a", DType: I32, Shape: []int{1}, I32: []int32{2}}}},
		{"zero dtype", []Tensor{{Name: "a", Shape: []int{1}, F32: []float32{1}}}},
		{"unknown dtype", []Tensor{{Name: "a", DType: 99, Shape: []int{1}, F32: []float32{1}}}},
		{"too few values", []Tensor{{Name: "a", DType: F32, Shape: []int{2, 2}, F32: []float32{1, 2, 3}}}},
		{"wrong slice", []Tensor{{Name: "a", DType: BF16, Shape: []int{1}, F64: []float64{1}}}},
		{"two slices", []Tensor{{Name: "a", DType: I64, Shape: []int{1}, I64: []int64{1}, I32: []int32{1}}}},
		{"negative dim", []Tensor{{Name: "a", DType: F32, Shape: []int{-1}}}},
		{"overflowing shape", []Tensor{{Name: "a", DType: F32, Shape: []int{math.MaxInt, 3}}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var buf bytes.Buffer
			if err := WriteSafetensors(&buf, tc.ts, nil); err == nil {
				t.Error("got nil error, want a refusal")
			}
			if buf.Len() != 0 {
				t.Errorf("wrote %d bytes before refusing", buf.Len())
			}
		})
	}
}

// rawFile builds a safetensors file from a literal header and data, to craft
// malformed inputs the writer would never produce.
func rawFile(header string, data []byte) []byte {
	b := binary.LittleEndian.AppendUint64(nil, uint64(len(header)))
	return append(append(b, header...), data...)
}

func malformedFiles() map[string][]byte {
	eight := make([]byte, 8)
	return map[string][]byte{
		"empty":            {},
		"short length":     {1, 2, 3},
		"length past end":  binary.LittleEndian.AppendUint64(nil, 100),
		"huge length":      binary.LittleEndian.AppendUint64(nil, math.MaxUint64),
		"not json":         rawFile(`{"a":`, nil),
		"not an object":    rawFile(`[1,2]`, nil),
		"tensor not obj":   rawFile(`{"a":5}`, nil),
		"missing dtype":    rawFile(`{"a":{"shape":[1],"data_offsets":[0,4]}}`, eight[:4]),
		"unknown dtype":    rawFile(`{"a":{"dtype":"F128","shape":[1],"data_offsets":[0,16]}}`, make([]byte, 16)),
		"unsupported":      rawFile(`{"a":{"dtype":"BOOL","shape":[1],"data_offsets":[0,1]}}`, eight[:1]),
		"negative dim":     rawFile(`{"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}}`, eight[:4]),
		"float dim":        rawFile(`{"a":{"dtype":"F32","shape":[1.5],"data_offsets":[0,4]}}`, eight[:4]),
		"offsets past end": rawFile(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}`, eight[:4]),
		"offsets reversed": rawFile(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[4,0]}}`, eight[:4]),
		"overlap":          rawFile(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}`, eight),
		"gap":              rawFile(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}`, eight),
		"trailing bytes":   rawFile(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}`, eight),
		"shape mismatch":   rawFile(`{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}`, eight),
		"dtype mismatch":   rawFile(`{"a":{"dtype":"F64","shape":[2],"data_offsets":[0,8]}}`, eight),
		"shape overflow":   rawFile(`{"a":{"dtype":"F64","shape":[4294967296,4294967296,4294967296],"data_offsets":[0,8]}}`, eight),
		"huge dim, zero":   rawFile(`{"a":{"dtype":"F32","shape":[0,9223372036854775807],"data_offsets":[0,0]}}`, nil),
		"metadata non-str": rawFile(`{"__metadata__":{"a":1}}`, nil),
		"extra key":        rawFile(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4],"x":1}}`, eight[:4]),
	}
}

func TestReadSafetensorsMalformed(t *testing.T) {
	t.Parallel()
	for name, b := range malformedFiles() {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			_, _, err := ReadSafetensors(b)
			if !errors.Is(err, ErrMalformed) {
				t.Errorf("got %v, want an error wrapping ErrMalformed", err)
			}
		})
	}
	// Every truncation of a valid file is refused.
	var buf bytes.Buffer
	if err := WriteSafetensors(&buf, sampleTensors(), nil); err != nil {
		t.Fatal(err)
	}
	full := buf.Bytes()
	for n := 0; n < len(full); n++ {
		if _, _, err := ReadSafetensors(full[:n]); !errors.Is(err, ErrMalformed) {
			t.Fatalf("truncated to %d of %d bytes: got %v, want ErrMalformed", n, len(full), err)
		}
	}
}

// FuzzReadSafetensors checks that no input panics, and that whatever is
// accepted survives a write/read round trip unchanged.
func FuzzReadSafetensors(f *testing.F) {
	var buf bytes.Buffer
	if err := WriteSafetensors(&buf, sampleTensors(), map[string]string{"k": "v"}); err != nil {
		f.Fatal(err)
	}
	f.Add(buf.Bytes())
	f.Add(rawFile(`{}`, nil))
	f.Add(rawFile(`{"a":{"dtype":"BF16","shape":[2],"data_offsets":[0,4]}}`, []byte{1, 2, 3, 4}))
	for _, b := range malformedFiles() {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		ts, meta, err := ReadSafetensors(b)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error does not wrap ErrMalformed: %v", err)
			}
			return
		}
		var out bytes.Buffer
		if err := WriteSafetensors(&out, ts, meta); err != nil {
			t.Fatalf("accepted input cannot be written back: %v", err)
		}
		again, meta2, err := ReadSafetensors(out.Bytes())
		if err != nil {
			t.Fatalf("rewritten file unreadable: %v", err)
		}
		if err := equalBits(again, ts); err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(meta2) != fmt.Sprint(meta) && len(meta)+len(meta2) > 0 {
			t.Fatalf("metadata changed: %v -> %v", meta, meta2)
		}
	})
}
