package rows

import (
	"encoding/base64"
	"encoding/binary"

	"github.com/apache/arrow-go/v18/parquet/metadata"
)

// arrowSchemaKey is the Parquet key-value metadata entry in which Arrow
// writers store the Arrow schema (an IPC message, base64), which pqarrow
// uses to restore Arrow types that Parquet lacks (large strings, time zone
// names, ...).
const arrowSchemaKey = "ARROW:schema"

// dropUnsafeStoredSchema disables the stored Arrow schema of a file when it
// is not structurally sound. arrow-go decodes it without bounds checks: a
// damaged vector length makes it allocate tens of gigabytes and the process
// dies with an unrecoverable out-of-memory error, and a cyclic child
// reference recurses until the stack overflows. Without the entry, pqarrow
// derives the Arrow types from the Parquet schema alone, which maps every
// value to the same JSON.
func dropUnsafeStoredSchema(kv metadata.KeyValueMetadata) {
	for _, e := range kv {
		if e == nil || e.Key != arrowSchemaKey {
			continue
		}
		if e.Value == nil || !storedSchemaSound(*e.Value) {
			e.Key = arrowSchemaKey + ".ignored"
		}
	}
}

// Limits of the stored schema check.
const (
	maxSchemaDepth  = 64
	maxSchemaFields = 10000
)

// storedSchemaSound checks the flatbuffer structure arrow-go's IPC reader
// walks: framing, every table and vector it reads in bounds, vector lengths
// that fit the buffer, bounded nesting. It does not interpret types.
func storedSchemaSound(b64 string) bool {
	raw, err := base64.StdEncoding.DecodeString(b64)
	if err != nil || len(raw) < 8 {
		return false
	}
	// IPC framing: optional 0xFFFFFFFF continuation, int32 length, message.
	off := 0
	if binary.LittleEndian.Uint32(raw) == 0xFFFFFFFF {
		off = 4
	}
	if len(raw) < off+4 {
		return false
	}
	n := int(int32(binary.LittleEndian.Uint32(raw[off:]))) //nolint:gosec // a signed length; negative ones are refused below
	off += 4
	if n <= 0 || n > len(raw)-off {
		return false
	}
	fb := flatbuf(raw[off : off+n])
	msg, ok := fb.root()
	if !ok {
		return false
	}
	// Message: version(0) header_type(1) header(2) bodyLength(3) custom_metadata(4).
	schema, ok := fb.table(msg, 2)
	if !ok || schema == 0 {
		return false
	}
	// arrow-go allocates bodyLength bytes before reading the body.
	if p, ok := fb.field(msg, 3); !ok {
		return false
	} else if p != 0 {
		if p+8 > len(fb) {
			return false
		}
		body := int64(binary.LittleEndian.Uint64(fb[p:])) //nolint:gosec // a huge value turns negative and is refused below
		if body < 0 || body > int64(len(raw)-off-n) {
			return false
		}
	}
	budget := maxSchemaFields
	// Schema: endianness(0) fields(1) custom_metadata(2) features(3).
	return fb.fields(schema, 1, 0, &budget) && fb.keyValues(schema, 2) && fb.keyValues(msg, 4) && fb.scalarVector(schema, 3, 8)
}

// flatbuf reads a flatbuffer with bounds checks.
type flatbuf []byte

func (f flatbuf) u32(pos int) (int, bool) {
	if pos < 0 || pos+4 > len(f) {
		return 0, false
	}
	return int(binary.LittleEndian.Uint32(f[pos:])), true
}

func (f flatbuf) u16(pos int) (int, bool) {
	if pos < 0 || pos+2 > len(f) {
		return 0, false
	}
	return int(binary.LittleEndian.Uint16(f[pos:])), true
}

// root is the position of the root table.
func (f flatbuf) root() (int, bool) {
	p, ok := f.u32(0)
	return p, ok && f.tableOK(p)
}

// tableOK checks a table's vtable.
func (f flatbuf) tableOK(t int) bool {
	so, ok := f.u32(t)
	if !ok {
		return false
	}
	vt := t - int(int32(so)) //nolint:gosec // flatbuffers soffset: the uint32 bits are a signed offset
	size, ok := f.u16(vt)
	return ok && size >= 4 && vt+size <= len(f)
}

// field is the absolute position of field i of table t, 0 when absent.
func (f flatbuf) field(t, i int) (int, bool) {
	so, _ := f.u32(t)
	vt := t - int(int32(so)) //nolint:gosec // flatbuffers soffset: the uint32 bits are a signed offset
	size, _ := f.u16(vt)
	if 4+2*i+2 > size {
		return 0, true
	}
	o, ok := f.u16(vt + 4 + 2*i)
	if !ok {
		return 0, false
	}
	if o == 0 {
		return 0, true
	}
	return t + o, t+o < len(f)
}

// table follows the offset in field i of t to a sub-table; absent is ok
// with position 0.
func (f flatbuf) table(t, i int) (int, bool) {
	p, ok := f.field(t, i)
	if !ok || p == 0 {
		return 0, ok
	}
	o, ok := f.u32(p)
	if !ok {
		return 0, false
	}
	sub := p + o
	return sub, f.tableOK(sub)
}

// vector returns the element start and length of the vector in field i of
// t, with elements of elem bytes that must fit the buffer.
func (f flatbuf) vector(t, i, elem int) (start, n int, ok bool) {
	p, ok := f.field(t, i)
	if !ok || p == 0 {
		return 0, 0, ok
	}
	o, ok := f.u32(p)
	if !ok {
		return 0, 0, false
	}
	v := p + o
	n, ok = f.u32(v)
	if !ok || n > (len(f)-v-4)/elem {
		return 0, 0, false
	}
	return v + 4, n, true
}

func (f flatbuf) scalarVector(t, i, elem int) bool {
	_, _, ok := f.vector(t, i, elem)
	return ok
}

// tableAt follows the offset stored at pos to a table.
func (f flatbuf) tableAt(pos int) (int, bool) {
	o, ok := f.u32(pos)
	if !ok {
		return 0, false
	}
	return pos + o, f.tableOK(pos + o)
}

// str checks the string in field i of t.
func (f flatbuf) str(t, i int) bool {
	_, _, ok := f.vector(t, i, 1)
	return ok
}

// keyValues checks a vector of KeyValue{key(0), value(1)} tables.
func (f flatbuf) keyValues(t, i int) bool {
	start, n, ok := f.vector(t, i, 4)
	if !ok {
		return false
	}
	for k := range n {
		kv, ok := f.tableAt(start + 4*k)
		if !ok || !f.str(kv, 0) || !f.str(kv, 1) {
			return false
		}
	}
	return true
}

// fields checks a vector of Field tables: name(0) nullable(1) type_type(2)
// type(3) dictionary(4) children(5) custom_metadata(6).
func (f flatbuf) fields(t, i, depth int, budget *int) bool {
	if depth > maxSchemaDepth {
		return false
	}
	start, n, ok := f.vector(t, i, 4)
	if !ok {
		return false
	}
	*budget -= n
	if *budget < 0 {
		return false
	}
	for k := range n {
		fld, ok := f.tableAt(start + 4*k)
		if !ok || !f.str(fld, 0) || !f.keyValues(fld, 6) {
			return false
		}
		if _, ok := f.table(fld, 3); !ok {
			return false
		}
		dict, ok := f.table(fld, 4)
		if !ok {
			return false
		}
		if dict != 0 {
			// DictionaryEncoding: id(0) indexType(1) isOrdered(2) kind(3).
			if _, ok := f.table(dict, 1); !ok {
				return false
			}
		}
		if !f.fields(fld, 5, depth+1, budget) {
			return false
		}
	}
	return true
}
