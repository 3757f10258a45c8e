package payload

import (
	"bytes"
	"compress/zlib"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"strings"
)

// MaxPropertyListSize bounds the uncompressed size of a property list this
// package decodes, so a hostile payload cannot inflate without limit.
const MaxPropertyListSize = 64 << 20

// PropertyPath is one entry of a property list: an interface and a path.
type PropertyPath struct {
	Interface string
	Path      string
}

// String is "interface/path" as written in property lists.
func (p PropertyPath) String() string { return p.Interface + p.Path }

// EncodePropertyList returns the control/producer/properties and
// control/consumer/properties payload: a 4-byte big-endian uncompressed size
// followed by the zlib-compressed "iface/path;iface2/path2".
func EncodePropertyList(paths []PropertyPath) ([]byte, error) {
	parts := make([]string, len(paths))
	for k, p := range paths {
		if p.Interface == "" || !strings.HasPrefix(p.Path, "/") || strings.Contains(p.Interface, "/") ||
			strings.Contains(p.Interface, ";") || strings.Contains(p.Path, ";") {
			return nil, fmt.Errorf("property list entry %d (%q, %q) is not an interface and a /path", k, p.Interface, p.Path)
		}
		parts[k] = p.String()
	}
	plain := []byte(strings.Join(parts, ";"))
	n := len(plain)
	if n > math.MaxUint32 {
		return nil, fmt.Errorf("property list of %d bytes does not fit its 4-byte size header", n)
	}
	var buf bytes.Buffer
	var size [4]byte
	binary.BigEndian.PutUint32(size[:], uint32(n))
	buf.Write(size[:])
	zw := zlib.NewWriter(&buf)
	if _, err := zw.Write(plain); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// DecodePropertyList parses a property list payload. An empty list (size 0)
// is valid and means "no properties".
func DecodePropertyList(data []byte) ([]PropertyPath, error) {
	if len(data) < 4 {
		return nil, fmt.Errorf("property list: %d bytes, want a 4-byte size and zlib data", len(data))
	}
	size := binary.BigEndian.Uint32(data[:4])
	if size > MaxPropertyListSize {
		return nil, fmt.Errorf("property list: declared size %d is larger than %d", size, MaxPropertyListSize)
	}
	zr, err := zlib.NewReader(bytes.NewReader(data[4:]))
	if err != nil {
		if size == 0 && len(data) == 4 {
			return nil, nil
		}
		return nil, fmt.Errorf("property list: not zlib data: %w", err)
	}
	plain, err := io.ReadAll(io.LimitReader(zr, int64(size)+1))
	if err == nil {
		err = zr.Close()
	}
	if err != nil {
		return nil, fmt.Errorf("property list: corrupt zlib data: %w", err)
	}
	if int64(len(plain)) != int64(size) {
		return nil, fmt.Errorf("property list: uncompressed %d bytes, header says %d", len(plain), size)
	}
	if len(plain) == 0 {
		return nil, nil
	}
	var out []PropertyPath
	for k, entry := range strings.Split(string(plain), ";") {
		if entry == "" {
			continue
		}
		slash := strings.IndexByte(entry, '/')
		if slash <= 0 || slash == len(entry)-1 {
			return nil, fmt.Errorf("property list: entry %d %q is not interface/path", k, truncate(entry))
		}
		out = append(out, PropertyPath{Interface: entry[:slash], Path: entry[slash:]})
	}
	return out, nil
}
