package data

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// The Arrow library trusts the lengths in a file's footer and allocates
// from them before checking anything (a flipped byte can ask for hundreds
// of gigabytes, a fatal out-of-memory rather than a recoverable panic).
// checkFooter walks the footer flatbuffer that NewFileReader will read and
// checks that every table, vector and string it reaches lies inside the
// footer, and that the schema is the one a shard may have (one Int field,
// no dictionaries), so the library only ever sees bounded lengths.

var arrowMagic = []byte("ARROW1")

// checkFooter reads the footer of the Arrow IPC file r (size bytes).
func checkFooter(r io.ReaderAt, size int64) error {
	tail := int64(len(arrowMagic) + 4)
	if size < int64(len(arrowMagic))*2+4 {
		return fmt.Errorf("file of %d bytes is too small for Arrow IPC", size)
	}
	buf := make([]byte, tail)
	if _, err := r.ReadAt(buf, size-tail); err != nil {
		return fmt.Errorf("read footer: %w", err)
	}
	if !bytes.Equal(buf[4:], arrowMagic) {
		return errors.New("no Arrow IPC magic at the end")
	}
	n := int64(binary.LittleEndian.Uint32(buf))
	if n <= 0 || n+tail+int64(len(arrowMagic)) > size {
		return fmt.Errorf("footer length %d does not fit a file of %d bytes", n, size)
	}
	fbuf := make([]byte, n)
	if _, err := r.ReadAt(fbuf, size-tail-n); err != nil {
		return fmt.Errorf("read footer: %w", err)
	}
	return checkFooterFB(flat(fbuf))
}

type flat []byte

var errFB = errors.New("footer flatbuffer out of bounds")

func (f flat) u32(pos int) (int, error) {
	if pos < 0 || pos+4 > len(f) {
		return 0, errFB
	}
	return int(binary.LittleEndian.Uint32(f[pos:])), nil
}

func (f flat) u16(pos int) (int, error) {
	if pos < 0 || pos+2 > len(f) {
		return 0, errFB
	}
	return int(binary.LittleEndian.Uint16(f[pos:])), nil
}

// table is a checked flatbuffer table: its vtable and body are in bounds.
type table struct {
	f      flat
	pos    int
	vt     int
	fields int
	size   int
}

func (f flat) table(pos int) (table, error) {
	soff, err := f.u32(pos)
	if err != nil {
		return table{}, err
	}
	vt := pos - int(int32(uint32(soff)))
	vtLen, err := f.u16(vt)
	if err != nil {
		return table{}, err
	}
	size, err := f.u16(vt + 2)
	if err != nil || vtLen < 4 || vtLen%2 != 0 || vt+vtLen > len(f) || size < 4 || pos+size > len(f) {
		return table{}, errFB
	}
	return table{f: f, pos: pos, vt: vt, fields: (vtLen - 4) / 2, size: size}, nil
}

// field returns the absolute position of field i, or -1 when absent.
func (t table) field(i, width int) (int, error) {
	if i >= t.fields {
		return -1, nil
	}
	off, _ := t.f.u16(t.vt + 4 + 2*i)
	if off == 0 {
		return -1, nil
	}
	if off+width > t.size {
		return 0, errFB
	}
	return t.pos + off, nil
}

// ref follows the offset in field i to a table, vector or string; -1 when absent.
func (t table) ref(i int) (int, error) {
	p, err := t.field(i, 4)
	if err != nil || p < 0 {
		return p, err
	}
	off, err := t.f.u32(p)
	if err != nil {
		return 0, err
	}
	return p + off, nil
}

// vector checks the vector at pos and returns its length and first element.
func (f flat) vector(pos, elem int) (int, int, error) {
	n, err := f.u32(pos)
	if err != nil || n > (len(f)-pos-4)/elem {
		return 0, 0, errFB
	}
	return n, pos + 4, nil
}

// tables checks field i as a vector of tables and calls check on each.
func (t table) tables(i int, check func(table) error) (int, error) {
	p, err := t.ref(i)
	if err != nil || p < 0 {
		return 0, err
	}
	n, start, err := t.f.vector(p, 4)
	if err != nil {
		return 0, err
	}
	for k := 0; k < n; k++ {
		off, _ := t.f.u32(start + 4*k)
		sub, err := t.f.table(start + 4*k + off)
		if err != nil {
			return 0, err
		}
		if err := check(sub); err != nil {
			return 0, err
		}
	}
	return n, nil
}

// str checks that field i, if present, is an in-bounds string.
func (t table) str(i int) error {
	p, err := t.ref(i)
	if err != nil || p < 0 {
		return err
	}
	n, start, err := t.f.vector(p, 1)
	if err != nil || start+n >= len(t.f) { // strings end with a NUL
		return errFB
	}
	return nil
}

func checkKeyValues(t table, i int) error {
	_, err := t.tables(i, func(kv table) error {
		if err := kv.str(0); err != nil {
			return err
		}
		return kv.str(1)
	})
	return err
}

func checkFooterFB(f flat) error {
	root, err := f.u32(0)
	if err != nil {
		return err
	}
	footer, err := f.table(root)
	if err != nil {
		return err
	}
	// Footer: version, schema, dictionaries, recordBatches, custom_metadata.
	sp, err := footer.ref(1)
	if err != nil {
		return err
	}
	if sp < 0 {
		return errors.New("footer has no schema")
	}
	for _, i := range []int{2, 3} {
		p, err := footer.ref(i)
		if err != nil {
			return err
		}
		if p < 0 {
			continue
		}
		n, _, err := f.vector(p, 24) // Block structs
		if err != nil {
			return err
		}
		if i == 2 && n != 0 {
			return errors.New("shards have no dictionaries")
		}
	}
	if err := checkKeyValues(footer, 4); err != nil {
		return err
	}
	// Schema: endianness, fields, custom_metadata, features.
	schema, err := f.table(sp)
	if err != nil {
		return err
	}
	nf, err := schema.tables(1, func(field table) error {
		// Field: name, nullable, type_type, type, dictionary, children, custom_metadata.
		if err := field.str(0); err != nil {
			return err
		}
		tp, err := field.field(2, 1)
		if err != nil {
			return err
		}
		if tp < 0 || f[tp] != 2 { // Type.Int
			return errors.New("token field is not an integer type")
		}
		p, err := field.ref(3)
		if err != nil {
			return err
		}
		if p < 0 {
			return errors.New("token field has no type table")
		}
		if _, err := f.table(p); err != nil {
			return err
		}
		if p, err := field.ref(4); err != nil || p >= 0 {
			return errors.New("token field must not be dictionary-encoded")
		}
		if n, err := field.tables(5, func(table) error { return nil }); err != nil || n != 0 {
			return errors.New("token field must have no children")
		}
		return checkKeyValues(field, 6)
	})
	if err != nil {
		return err
	}
	if nf != 1 {
		return fmt.Errorf("schema has %d fields, want 1", nf)
	}
	if err := checkKeyValues(schema, 2); err != nil {
		return err
	}
	if p, err := schema.ref(3); err != nil {
		return err
	} else if p >= 0 {
		if _, _, err := f.vector(p, 8); err != nil {
			return err
		}
	}
	return nil
}
