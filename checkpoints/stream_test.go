package checkpoints

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// streamed returns ts with every float32-held tensor's values replaced by
// a Stream that hands them over in pieces of at most piece values.
func streamed(ts []Tensor, piece int) []Tensor {
	out := make([]Tensor, len(ts))
	for i, t := range ts {
		if t.F32 != nil && len(t.Shape) > 0 {
			vals := t.F32
			t.F32 = nil
			t.Stream = func(put func([]float32) error) error {
				for lo := 0; lo < len(vals); lo += piece {
					if err := put(vals[lo:min(lo+piece, len(vals))]); err != nil {
						return err
					}
				}
				return nil
			}
		}
		out[i] = t
	}
	return out
}

// TestStreamedTensorsWriteSameBytes: tensors whose values are streamed in
// pieces give the very bytes of the same tensors held whole, and a stream
// of the wrong length is an error, not a file.
func TestStreamedTensorsWriteSameBytes(t *testing.T) {
	t.Parallel()
	var whole bytes.Buffer
	if err := WriteSafetensors(&whole, sampleTensors(), nil); err != nil {
		t.Fatal(err)
	}
	for _, piece := range []int{1, 2, 5} {
		var got bytes.Buffer
		if err := WriteSafetensors(&got, streamed(sampleTensors(), piece), nil); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got.Bytes(), whole.Bytes()) {
			t.Fatalf("pieces of %d: streamed file differs from the whole one", piece)
		}
	}
	short := []Tensor{{Name: "w", DType: F32, Shape: []int{3}, Stream: func(put func([]float32) error) error { return put([]float32{1, 2}) }}}
	if err := WriteSafetensors(&bytes.Buffer{}, short, nil); err == nil || !strings.Contains(err.Error(), "streamed 2 values") {
		t.Errorf("a stream of 2 values for 3: got %v", err)
	}
	long := []Tensor{{Name: "w", DType: F32, Shape: []int{1}, Stream: func(put func([]float32) error) error { return put([]float32{1, 2}) }}}
	if err := WriteSafetensors(&bytes.Buffer{}, long, nil); err == nil {
		t.Error("a stream of 2 values for 1 was written")
	}
	i64 := []Tensor{{Name: "w", DType: I64, Shape: []int{1}, Stream: func(put func([]float32) error) error { return nil }}}
	if err := WriteSafetensors(&bytes.Buffer{}, i64, nil); err == nil {
		t.Error("a streamed I64 tensor was accepted")
	}
	// A failing stream fails the save and leaves no checkpoint behind.
	run := t.TempDir()
	ck := sampleCheckpoint(100)
	boom := errors.New("the owner of these rows is gone")
	ck.Optimizer = append(ck.Optimizer, Tensor{Name: "moments", DType: F32, Shape: []int{4}, Stream: func(put func([]float32) error) error {
		if err := put([]float32{1, 2}); err != nil {
			return err
		}
		return boom
	}})
	if _, err := Save(run, ck, Policy{}); !errors.Is(err, boom) {
		t.Errorf("save with a failing stream: got %v, want %v", err, boom)
	}
	if infos := tokensOf(t, run); len(infos) != 0 || len(hiddenEntries(t, run)) != 0 {
		t.Errorf("a failed save left %v and %v", infos, hiddenEntries(t, run))
	}
}

// TestLoadPartKeepsSelectedRows: LoadPart returns exactly the selected rows
// of what Load returns, drops the rest, and still verifies every byte: a
// flipped byte inside a tensor it skips makes the checkpoint corrupt.
func TestLoadPartKeepsSelectedRows(t *testing.T) {
	t.Parallel()
	run := t.TempDir()
	ck := sampleCheckpoint(100)
	ck.Optimizer = append(ck.Optimizer, Tensor{Name: "stack", DType: F32, Shape: []int{4, 2}, F32: []float32{0, 1, 2, 3, 4, 5, 6, 7}})
	dir := mustSave(t, run, ck, Policy{})
	sel := func(name string, shape []int) (int, int, bool) {
		switch name {
		case "stack":
			return 1, 3, true
		case "f32", "scalar", "adam.step":
			return 0, shape0(shape), true
		}
		return 0, 0, false
	}
	got, err := LoadPart(dir, sel)
	if err != nil {
		t.Fatal(err)
	}
	all, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	var wantModel []Tensor
	for _, x := range all.Model {
		if x.Name == "f32" || x.Name == "scalar" {
			wantModel = append(wantModel, x)
		}
	}
	if err := equalBits(got.Model, wantModel); err != nil {
		t.Errorf("model: %v", err)
	}
	wantOpt := []Tensor{{Name: "adam.step", DType: I64, Shape: []int{}, I64: []int64{10}}, {Name: "stack", DType: F32, Shape: []int{2, 2}, F32: []float32{2, 3, 4, 5}}}
	if err := equalBits(got.Optimizer, wantOpt); err != nil {
		t.Errorf("optimizer: %v", err)
	}
	// A row range outside the tensor is refused.
	if _, err := LoadPart(dir, func(string, []int) (int, int, bool) { return 0, 9, true }); err == nil {
		t.Error("rows [0, 9) of every tensor were read")
	}
	// Damage a byte of tensor i64, which sel skips.
	p := filepath.Join(dir, "model.safetensors")
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	n := binary.LittleEndian.Uint64(b)
	var header map[string]struct {
		Offsets [2]uint64 `json:"data_offsets"`
	}
	if err := json.Unmarshal(b[8:8+n], &header); err != nil {
		t.Fatal(err)
	}
	b[8+n+header["i64"].Offsets[0]] ^= 1
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadPart(dir, sel); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "sha256") {
		t.Errorf("a damaged byte in a skipped tensor: got %v, want a sha256 mismatch", err)
	}
}

func shape0(shape []int) int {
	if len(shape) == 0 {
		return 1
	}
	return shape[0]
}
