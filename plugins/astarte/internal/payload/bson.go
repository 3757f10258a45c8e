package payload

import (
	"errors"
	"fmt"
	"math"
	"sort"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"

	"github.com/connector-host/connector-host/plugins/astarte/internal/interfaces"
)

// MaxPayloadSize bounds a BSON payload this package decodes (an object of
// 1024 mappings of large arrays stays well below it).
const MaxPayloadSize = 64 << 20

// Message is a decoded data payload.
type Message struct {
	// Value is the canonical Go value (see the package doc); nil when Unset.
	Value any
	// Timestamp is the "t" field, when present.
	Timestamp *time.Time
	// Unset is true for an empty payload: the property was unset.
	Unset bool
}

// Encode returns the BSON document {"v": v} plus "t" when ts is not nil. v
// must be a canonical value (see Normalize).
func Encode(v any, ts *time.Time) ([]byte, error) {
	if b, ok := encodeScalar(v, ts); ok {
		return b, nil
	}
	if err := checkCanonical(v); err != nil {
		return nil, err
	}
	doc := bson.D{{Key: "v", Value: v}}
	if ts != nil {
		doc = append(doc, bson.E{Key: "t", Value: bson.NewDateTimeFromTime(*ts)})
	}
	return bson.Marshal(doc)
}

// EncodeObject returns {"v": {key: value, ...}} plus "t" when ts is not nil.
// Values must be canonical; keys are written sorted.
func EncodeObject(fields map[string]any, ts *time.Time) ([]byte, error) {
	keys := make([]string, 0, len(fields))
	for k := range fields {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	obj := make(bson.D, 0, len(keys))
	for _, k := range keys {
		if err := checkCanonical(fields[k]); err != nil {
			return nil, fmt.Errorf("%s: %w", k, err)
		}
		obj = append(obj, bson.E{Key: k, Value: fields[k]})
	}
	doc := bson.D{{Key: "v", Value: obj}}
	if ts != nil {
		doc = append(doc, bson.E{Key: "t", Value: bson.NewDateTimeFromTime(*ts)})
	}
	return bson.Marshal(doc)
}

func checkCanonical(v any) error {
	switch v.(type) {
	case float64, int32, bool, int64, string, []byte, time.Time,
		[]float64, []int32, []bool, []int64, []string, [][]byte, []time.Time:
		return nil
	}
	return fmt.Errorf("value of Go type %T is not a canonical Astarte value", v)
}

// Decode decodes an individual data payload for a mapping of type t. An
// empty payload decodes as Unset.
func Decode(t interfaces.MappingType, data []byte) (Message, error) {
	if len(data) == 0 {
		return Message{Unset: true}, nil
	}
	raw, ts, err := envelope(data)
	if err != nil {
		return Message{}, err
	}
	v, err := fromBSON(t, raw)
	if err != nil {
		return Message{}, fmt.Errorf("field v: %w", err)
	}
	return Message{Value: v, Timestamp: ts}, nil
}

// DecodeObject decodes an object-aggregated payload. mappings are the
// object's mappings keyed by the last endpoint segment; every key of the
// object must be one of them. The result maps key to canonical value.
func DecodeObject(mappings map[string]*interfaces.Mapping, data []byte) (map[string]any, *time.Time, error) {
	if len(data) == 0 {
		return nil, nil, errors.New("empty payload: objects cannot be unset")
	}
	raw, ts, err := envelope(data)
	if err != nil {
		return nil, nil, err
	}
	doc, ok := raw.DocumentOK()
	if !ok {
		return nil, nil, fmt.Errorf("field v: object-aggregated data wants a document, got BSON %s", raw.Type)
	}
	elems, err := doc.Elements()
	if err != nil {
		return nil, nil, fmt.Errorf("field v: %w", err)
	}
	if len(elems) == 0 {
		return nil, nil, errors.New("field v: empty object")
	}
	out := make(map[string]any, len(elems))
	for _, e := range elems {
		key := e.Key()
		m, ok := mappings[key]
		if !ok {
			return nil, nil, fmt.Errorf("field v.%s: no such mapping in the object", key)
		}
		if _, dup := out[key]; dup {
			return nil, nil, fmt.Errorf("field v.%s: appears twice", key)
		}
		v, err := fromBSON(m.Type, e.Value())
		if err != nil {
			return nil, nil, fmt.Errorf("field v.%s: %w", key, err)
		}
		out[key] = v
	}
	return out, ts, nil
}

// envelope validates the document and returns its "v" and "t" fields.
func envelope(data []byte) (bson.RawValue, *time.Time, error) {
	if len(data) > MaxPayloadSize {
		return bson.RawValue{}, nil, fmt.Errorf("payload of %d bytes is larger than %d", len(data), MaxPayloadSize)
	}
	doc := bson.Raw(data)
	if err := doc.Validate(); err != nil {
		return bson.RawValue{}, nil, fmt.Errorf("payload is not a BSON document: %w", err)
	}
	raw, err := doc.LookupErr("v")
	if err != nil {
		return bson.RawValue{}, nil, errors.New("payload has no field v")
	}
	var ts *time.Time
	if t, err := doc.LookupErr("t"); err == nil {
		ms, ok := t.DateTimeOK()
		if !ok {
			return bson.RawValue{}, nil, fmt.Errorf("field t: wants a BSON datetime, got %s", t.Type)
		}
		tm := time.UnixMilli(ms).UTC()
		ts = &tm
	}
	return raw, ts, nil
}

// fromBSON converts a BSON value to the canonical value of type t. Numbers
// are widened where no information is lost (int32 for a longinteger or a
// double, int64 within range for an integer).
func fromBSON(t interfaces.MappingType, rv bson.RawValue) (any, error) {
	if !t.IsArray() {
		return scalarFromBSON(t, rv)
	}
	arr, ok := rv.ArrayOK()
	if !ok {
		return nil, fmt.Errorf("type %s wants a BSON array, got %s", t, rv.Type)
	}
	vals, err := arr.Values()
	if err != nil {
		return nil, err
	}
	if len(vals) > interfaces.MaxArrayItems {
		return nil, fmt.Errorf("array has %d items, more than %d", len(vals), interfaces.MaxArrayItems)
	}
	items := make([]any, len(vals))
	for k, v := range vals {
		if items[k], err = scalarFromBSON(t.Element(), v); err != nil {
			return nil, fmt.Errorf("item %d: %w", k, err)
		}
	}
	return Normalize(t, items)
}

func scalarFromBSON(t interfaces.MappingType, rv bson.RawValue) (any, error) {
	wrong := func() error { return fmt.Errorf("type %s cannot be read from BSON %s", t, rv.Type) }
	var v any
	switch t {
	case interfaces.Double:
		switch rv.Type {
		case bson.TypeDouble:
			v = rv.Double()
		case bson.TypeInt32:
			v = float64(rv.Int32())
		case bson.TypeInt64:
			v = float64(rv.Int64())
		default:
			return nil, wrong()
		}
	case interfaces.Integer:
		switch rv.Type {
		case bson.TypeInt32:
			v = rv.Int32()
		case bson.TypeInt64:
			n := rv.Int64()
			if n < math.MinInt32 || n > math.MaxInt32 {
				return nil, fmt.Errorf("type integer: %d is outside the 32-bit range", n)
			}
			v = int32(n)
		default:
			return nil, wrong()
		}
	case interfaces.LongInteger:
		switch rv.Type {
		case bson.TypeInt64:
			v = rv.Int64()
		case bson.TypeInt32:
			v = int64(rv.Int32())
		default:
			return nil, wrong()
		}
	case interfaces.Boolean:
		b, ok := rv.BooleanOK()
		if !ok {
			return nil, wrong()
		}
		v = b
	case interfaces.String:
		s, ok := rv.StringValueOK()
		if !ok {
			return nil, wrong()
		}
		v = s
	case interfaces.BinaryBlob:
		_, b, ok := rv.BinaryOK()
		if !ok {
			return nil, wrong()
		}
		v = b
	case interfaces.DateTime:
		ms, ok := rv.DateTimeOK()
		if !ok {
			return nil, wrong()
		}
		v = time.UnixMilli(ms).UTC()
	default:
		return nil, fmt.Errorf("unknown type %q", t)
	}
	return scalar(t, v)
}

// encodeScalar writes {"v": v} plus "t" for a scalar v with the driver's
// low-level bsoncore appenders, as bson.Marshal does
// (TestEncodeScalarMatchesDriver) without its reflection; ok is false for
// the other values (arrays, a nil []byte, which the driver writes as
// null), which go through bson.Marshal.
func encodeScalar(v any, ts *time.Time) (b []byte, ok bool) {
	size := 4 + 3 + 1 + 8 // length, type and key "v", final 0, the largest fixed value
	if ts != nil {
		size += 3 + 8
	}
	switch x := v.(type) {
	case string:
		size += 4 + len(x) + 1
	case []byte:
		if x == nil {
			return nil, false
		}
		size += 4 + 1 + len(x)
	case float64, int64, time.Time, int32, bool:
	default:
		return nil, false
	}
	idx, b := bsoncore.AppendDocumentStart(make([]byte, 0, size))
	switch x := v.(type) {
	case float64:
		b = bsoncore.AppendDoubleElement(b, "v", x)
	case int64:
		b = bsoncore.AppendInt64Element(b, "v", x)
	case time.Time:
		b = bsoncore.AppendDateTimeElement(b, "v", int64(bson.NewDateTimeFromTime(x)))
	case int32:
		b = bsoncore.AppendInt32Element(b, "v", x)
	case bool:
		b = bsoncore.AppendBooleanElement(b, "v", x)
	case string:
		b = bsoncore.AppendStringElement(b, "v", x)
	case []byte:
		b = bsoncore.AppendBinaryElement(b, "v", bson.TypeBinaryGeneric, x)
	}
	if ts != nil {
		b = bsoncore.AppendDateTimeElement(b, "t", int64(bson.NewDateTimeFromTime(*ts)))
	}
	b, err := bsoncore.AppendDocumentEnd(b, idx)
	return b, err == nil
}
