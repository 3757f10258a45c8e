package payload

import (
	"bytes"
	"compress/zlib"
	"encoding/binary"
	"encoding/json"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/connector-host/connector-host/plugins/astarte/internal/interfaces"
)

var t0 = time.Date(2024, 5, 6, 7, 8, 9, 123_000_000, time.UTC)

// canonical is one valid value per Astarte type with its BSON element type.
var canonical = []struct {
	typ      interfaces.MappingType
	value    any
	bsonType bson.Type
	elemType bson.Type
}{
	{interfaces.Double, 3.25, bson.TypeDouble, 0},
	{interfaces.Integer, int32(-42), bson.TypeInt32, 0},
	{interfaces.Boolean, true, bson.TypeBoolean, 0},
	{interfaces.LongInteger, int64(math.MaxInt64), bson.TypeInt64, 0},
	{interfaces.String, "héllo", bson.TypeString, 0},
	{interfaces.BinaryBlob, []byte{0, 1, 2, 255}, bson.TypeBinary, 0},
	{interfaces.DateTime, t0, bson.TypeDateTime, 0},
	{interfaces.DoubleArray, []float64{1.5, -2, 0}, bson.TypeArray, bson.TypeDouble},
	{interfaces.IntegerArray, []int32{1, math.MinInt32, math.MaxInt32}, bson.TypeArray, bson.TypeInt32},
	{interfaces.BooleanArray, []bool{true, false}, bson.TypeArray, bson.TypeBoolean},
	{interfaces.LongIntegerArray, []int64{math.MinInt64, 7}, bson.TypeArray, bson.TypeInt64},
	{interfaces.StringArray, []string{"a", ""}, bson.TypeArray, bson.TypeString},
	{interfaces.BinaryBlobArray, [][]byte{{1}, {}}, bson.TypeArray, bson.TypeBinary},
	{interfaces.DateTimeArray, []time.Time{t0, t0.Add(time.Hour)}, bson.TypeArray, bson.TypeDateTime},
}

func TestRoundTripAllTypes(t *testing.T) {
	t.Parallel()
	if len(canonical) != 14 {
		t.Fatal("want one case per type")
	}
	for _, c := range canonical {
		for _, ts := range []*time.Time{nil, &t0} {
			n, err := Normalize(c.typ, c.value)
			if err != nil {
				t.Fatalf("%s: Normalize: %v", c.typ, err)
			}
			data, err := Encode(n, ts)
			if err != nil {
				t.Fatalf("%s: Encode: %v", c.typ, err)
			}
			// The wire form uses the BSON type Astarte expects.
			v := bson.Raw(data).Lookup("v")
			if v.Type != c.bsonType {
				t.Fatalf("%s: v is BSON %s, want %s", c.typ, v.Type, c.bsonType)
			}
			if c.elemType != 0 {
				vals, _ := v.Array().Values()
				for _, e := range vals {
					if e.Type != c.elemType {
						t.Fatalf("%s: item is BSON %s, want %s", c.typ, e.Type, c.elemType)
					}
				}
			}
			if tv, err := bson.Raw(data).LookupErr("t"); (err == nil) != (ts != nil) || (ts != nil && tv.Type != bson.TypeDateTime) {
				t.Fatalf("%s: t field presence/type wrong", c.typ)
			}
			msg, err := Decode(c.typ, data)
			if err != nil {
				t.Fatalf("%s: Decode: %v", c.typ, err)
			}
			if !reflect.DeepEqual(msg.Value, c.value) {
				t.Fatalf("%s: decoded %#v, want %#v", c.typ, msg.Value, c.value)
			}
			if (msg.Timestamp == nil) != (ts == nil) || (ts != nil && !msg.Timestamp.Equal(*ts)) {
				t.Fatalf("%s: timestamp %v, want %v", c.typ, msg.Timestamp, ts)
			}
		}
	}
}

func TestObjectRoundTrip(t *testing.T) {
	t.Parallel()
	mappings := map[string]*interfaces.Mapping{}
	fields := map[string]any{}
	for _, c := range canonical {
		key := "k" + string(c.typ)
		mappings[key] = &interfaces.Mapping{Endpoint: "/%{id}/" + key, Type: c.typ}
		fields[key] = c.value
	}
	data, err := EncodeObject(fields, &t0)
	if err != nil {
		t.Fatal(err)
	}
	if bson.Raw(data).Lookup("v").Type != bson.TypeEmbeddedDocument {
		t.Fatal("object v is not a document")
	}
	got, ts, err := DecodeObject(mappings, data)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, fields) || ts == nil || !ts.Equal(t0) {
		t.Fatalf("decoded %#v %v", got, ts)
	}
	// Encoding is deterministic (keys sorted).
	again, _ := EncodeObject(fields, &t0)
	if !bytes.Equal(again, data) {
		t.Fatal("EncodeObject is not deterministic")
	}
}

func TestDecodeObjectErrors(t *testing.T) {
	t.Parallel()
	mappings := map[string]*interfaces.Mapping{"a": {Type: interfaces.Integer}}
	enc := func(d any) []byte { b, _ := bson.Marshal(d); return b }
	cases := map[string]struct {
		data []byte
		want string
	}{
		"empty":       {nil, "cannot be unset"},
		"not doc":     {enc(bson.D{{Key: "v", Value: int32(1)}}), "wants a document"},
		"empty obj":   {enc(bson.D{{Key: "v", Value: bson.D{}}}), "empty object"},
		"unknown key": {enc(bson.D{{Key: "v", Value: bson.D{{Key: "b", Value: int32(1)}}}}), "v.b: no such mapping"},
		"wrong type":  {enc(bson.D{{Key: "v", Value: bson.D{{Key: "a", Value: "x"}}}}), "v.a: type integer cannot be read from BSON string"},
		"dup key":     {enc(bson.D{{Key: "v", Value: bson.D{{Key: "a", Value: int32(1)}, {Key: "a", Value: int32(2)}}}}), "appears twice"},
	}
	for name, c := range cases {
		if _, _, err := DecodeObject(mappings, c.data); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want %q", name, err, c.want)
		}
	}
}

func TestDecodeUnsetAndErrors(t *testing.T) {
	t.Parallel()
	m, err := Decode(interfaces.Integer, nil)
	if err != nil || !m.Unset || m.Value != nil {
		t.Fatalf("empty payload = %+v %v", m, err)
	}
	enc := func(d any) []byte {
		b, err := bson.Marshal(d)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	cases := []struct {
		name string
		typ  interfaces.MappingType
		data []byte
		want string
	}{
		{"garbage", interfaces.Integer, []byte{1, 2, 3}, "not a BSON document"},
		{"no v", interfaces.Integer, enc(bson.D{{Key: "x", Value: int32(1)}}), "no field v"},
		{"t not datetime", interfaces.Integer, enc(bson.D{{Key: "v", Value: int32(1)}, {Key: "t", Value: "now"}}), "field t"},
		{"string for integer", interfaces.Integer, enc(bson.D{{Key: "v", Value: "1"}}), "cannot be read from BSON string"},
		{"int64 out of int32", interfaces.Integer, enc(bson.D{{Key: "v", Value: int64(math.MaxInt32) + 1}}), "outside the 32-bit range"},
		{"double for longinteger", interfaces.LongInteger, enc(bson.D{{Key: "v", Value: 1.5}}), "cannot be read"},
		{"NaN", interfaces.Double, enc(bson.D{{Key: "v", Value: math.NaN()}}), "NaN"},
		{"Inf", interfaces.Double, enc(bson.D{{Key: "v", Value: math.Inf(1)}}), "NaN or infinity"},
		{"scalar for array", interfaces.IntegerArray, enc(bson.D{{Key: "v", Value: int32(1)}}), "wants a BSON array"},
		{"bad item", interfaces.IntegerArray, enc(bson.D{{Key: "v", Value: bson.A{int32(1), "x"}}}), "item 1"},
		{"array too long", interfaces.BooleanArray, enc(bson.D{{Key: "v", Value: make([]bool, 1025)}}), "more than 1024"},
		{"string too long", interfaces.String, enc(bson.D{{Key: "v", Value: strings.Repeat("a", 65537)}}), "more than 65536"},
		{"blob too long", interfaces.BinaryBlob, enc(bson.D{{Key: "v", Value: make([]byte, 65537)}}), "more than 65536"},
		{"bool for datetime", interfaces.DateTime, enc(bson.D{{Key: "v", Value: true}}), "cannot be read"},
	}
	for _, c := range cases {
		if _, err := Decode(c.typ, c.data); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want %q", c.name, err, c.want)
		}
	}
}

func TestDecodeWidening(t *testing.T) {
	t.Parallel()
	enc := func(v any) []byte { b, _ := bson.Marshal(bson.D{{Key: "v", Value: v}}); return b }
	cases := []struct {
		typ  interfaces.MappingType
		in   any
		want any
	}{
		{interfaces.LongInteger, int32(5), int64(5)},
		{interfaces.Integer, int64(-7), int32(-7)},
		{interfaces.Double, int32(2), 2.0},
		{interfaces.Double, int64(3), 3.0},
		{interfaces.LongIntegerArray, bson.A{int32(1), int64(2)}, []int64{1, 2}},
		{interfaces.BinaryBlob, bson.Binary{Subtype: 0x80, Data: []byte{9}}, []byte{9}},
	}
	for _, c := range cases {
		m, err := Decode(c.typ, enc(c.in))
		if err != nil || !reflect.DeepEqual(m.Value, c.want) {
			t.Errorf("%s from %T: %#v %v, want %#v", c.typ, c.in, m.Value, err, c.want)
		}
	}
}

func TestNormalizeJSONInputs(t *testing.T) {
	t.Parallel()
	var fromJSON map[string]any
	if err := json.Unmarshal([]byte(`{"d":1,"i":2147483647,"b":false,"l":"9223372036854775807","ln":12,
		"s":"x","bb":"AAEC","dt":"2024-05-06T07:08:09.123456Z","dtn":1715000000000,
		"ia":[1,2],"sa":["a"],"bba":["AQ=="],"dta":["2024-05-06T07:08:09.123Z"]}`), &fromJSON); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		key  string
		typ  interfaces.MappingType
		want any
	}{
		{"d", interfaces.Double, 1.0},
		{"i", interfaces.Integer, int32(math.MaxInt32)},
		{"b", interfaces.Boolean, false},
		{"l", interfaces.LongInteger, int64(math.MaxInt64)},
		{"ln", interfaces.LongInteger, int64(12)},
		{"s", interfaces.String, "x"},
		{"bb", interfaces.BinaryBlob, []byte{0, 1, 2}},
		{"dt", interfaces.DateTime, t0},
		{"dtn", interfaces.DateTime, time.UnixMilli(1715000000000).UTC()},
		{"ia", interfaces.IntegerArray, []int32{1, 2}},
		{"sa", interfaces.StringArray, []string{"a"}},
		{"bba", interfaces.BinaryBlobArray, [][]byte{{1}}},
		{"dta", interfaces.DateTimeArray, []time.Time{t0}},
	}
	for _, c := range cases {
		got, err := Normalize(c.typ, fromJSON[c.key])
		if err != nil || !reflect.DeepEqual(got, c.want) {
			t.Errorf("%s as %s: %#v %v, want %#v", c.key, c.typ, got, err, c.want)
		}
	}
	// Typed Go slices and json.Number are accepted too.
	if got, err := Normalize(interfaces.DoubleArray, []int{1, 2}); err != nil || !reflect.DeepEqual(got, []float64{1, 2}) {
		t.Errorf("[]int as doublearray: %v %v", got, err)
	}
	if got, err := Normalize(interfaces.LongInteger, json.Number("-9223372036854775808")); err != nil || got != int64(math.MinInt64) {
		t.Errorf("json.Number longinteger: %v %v", got, err)
	}
	// Unsigned Go integers beyond int64 stay positive as doubles and are
	// refused as longinteger.
	if got, err := Normalize(interfaces.Double, uint64(math.MaxUint64)); err != nil || got != float64(math.MaxUint64) {
		t.Errorf("uint64 max as double: %v %v", got, err)
	}
	if got, err := Normalize(interfaces.Double, uint(1)<<63); err != nil || got != float64(uint64(1)<<63) {
		t.Errorf("uint 2^63 as double: %v %v", got, err)
	}
	if _, err := Normalize(interfaces.LongInteger, uint64(math.MaxInt64)+1); err == nil || !strings.Contains(err.Error(), "outside the 64-bit range") {
		t.Errorf("uint64 2^63 as longinteger: %v", err)
	}
	if got, err := Normalize(interfaces.LongInteger, uint64(math.MaxInt64)); err != nil || got != int64(math.MaxInt64) {
		t.Errorf("uint64 MaxInt64 as longinteger: %v %v", got, err)
	}
}

func TestNormalizeInvalid(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("x", interfaces.MaxBytes+1)
	cases := []struct {
		name string
		typ  interfaces.MappingType
		v    any
		want string
	}{
		{"unknown type", "float", 1.0, "unknown type"},
		{"nil", interfaces.Double, nil, "missing"},
		{"NaN", interfaces.Double, math.NaN(), "NaN"},
		{"+Inf", interfaces.Double, math.Inf(1), "infinity"},
		{"-Inf", interfaces.DoubleArray, []float64{1, math.Inf(-1)}, "item 1"},
		{"string for double", interfaces.Double, "1", "wants a number"},
		{"int32 overflow", interfaces.Integer, 2147483648.0, "outside the 32-bit range"},
		{"int32 underflow", interfaces.Integer, int64(math.MinInt32) - 1, "outside the 32-bit range"},
		{"fraction for integer", interfaces.Integer, 1.5, "whole number"},
		{"bool for integer", interfaces.Integer, true, "whole number"},
		{"float beyond 2^53 for longinteger", interfaces.LongInteger, 1e19, "send it as a string"},
		{"bad longinteger string", interfaces.LongInteger, "12a", "not a 64-bit integer"},
		{"longinteger overflow json", interfaces.LongInteger, json.Number("9223372036854775808"), "outside the 64-bit range"},
		{"number for bool", interfaces.Boolean, 1.0, "true or false"},
		{"number for string", interfaces.String, 1.0, "wants a string"},
		{"string too long", interfaces.String, long, "more than 65536"},
		{"invalid utf8", interfaces.String, "\xff", "UTF-8"},
		{"blob too long", interfaces.BinaryBlob, make([]byte, interfaces.MaxBytes+1), "more than 65536"},
		{"blob not base64", interfaces.BinaryBlob, "!!!", "base64"},
		{"blob number", interfaces.BinaryBlob, 1.0, "bytes or base64"},
		{"bad datetime text", interfaces.DateTime, "yesterday", "RFC 3339"},
		{"bool for datetime", interfaces.DateTime, true, "RFC 3339 text or milliseconds"},
		{"scalar for array", interfaces.IntegerArray, 1.0, "wants an array"},
		{"bytes for array", interfaces.IntegerArray, []byte{1}, "wants an array"},
		{"array too long", interfaces.BooleanArray, make([]any, interfaces.MaxArrayItems+1), "more than 1024"},
		{"null item", interfaces.StringArray, []any{"a", nil}, "item 1: value is missing"},
		{"long item", interfaces.StringArray, []string{long}, "item 0"},
		{"object for string", interfaces.String, map[string]any{}, "an object"},
	}
	for _, c := range cases {
		if _, err := Normalize(c.typ, c.v); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want %q", c.name, err, c.want)
		}
	}
	// Limits are inclusive.
	if _, err := Normalize(interfaces.String, long[1:]); err != nil {
		t.Errorf("65536-byte string rejected: %v", err)
	}
	if _, err := Normalize(interfaces.IntegerArray, make([]int32, interfaces.MaxArrayItems)); err != nil {
		t.Errorf("1024-item array rejected: %v", err)
	}
}

func TestEncodeRejectsNonCanonical(t *testing.T) {
	t.Parallel()
	if _, err := Encode(1, nil); err == nil {
		t.Fatal("int accepted")
	}
	if _, err := EncodeObject(map[string]any{"a": []any{1}}, nil); err == nil || !strings.Contains(err.Error(), "a:") {
		t.Fatalf("object with []any: %v", err)
	}
}

func TestPropertyList(t *testing.T) {
	t.Parallel()
	paths := []PropertyPath{{"com.example.A", "/x/y"}, {"com.example.B", "/z"}}
	data, err := EncodePropertyList(paths)
	if err != nil {
		t.Fatal(err)
	}
	plain := "com.example.A/x/y;com.example.B/z"
	if binary.BigEndian.Uint32(data[:4]) != uint32(len(plain)) {
		t.Fatal("size header wrong")
	}
	zr, err := zlib.NewReader(bytes.NewReader(data[4:]))
	if err != nil {
		t.Fatal(err)
	}
	var got bytes.Buffer
	if _, err := got.ReadFrom(zr); err != nil || got.String() != plain {
		t.Fatalf("zlib body %q %v", got.String(), err)
	}
	back, err := DecodePropertyList(data)
	if err != nil || !reflect.DeepEqual(back, paths) {
		t.Fatalf("decoded %v %v", back, err)
	}
	empty, err := EncodePropertyList(nil)
	if err != nil {
		t.Fatal(err)
	}
	if back, err := DecodePropertyList(empty); err != nil || len(back) != 0 {
		t.Fatalf("empty list %v %v", back, err)
	}
	if back, err := DecodePropertyList([]byte{0, 0, 0, 0}); err != nil || len(back) != 0 {
		t.Fatalf("bare zero size %v %v", back, err)
	}
	if _, err := EncodePropertyList([]PropertyPath{{"a.B", "nopath"}}); err == nil {
		t.Fatal("bad entry accepted")
	}
}

func TestPropertyListErrors(t *testing.T) {
	t.Parallel()
	good, _ := EncodePropertyList([]PropertyPath{{"a.B", "/c"}})
	wrongSize := append([]byte{0, 0, 0, 99}, good[4:]...)
	bomb := append([]byte{0xff, 0xff, 0xff, 0xff}, good[4:]...)
	noPath, _ := zlibList("a.B")
	cases := map[string]struct {
		data []byte
		want string
	}{
		"short":     {[]byte{0, 1}, "want a 4-byte size"},
		"not zlib":  {[]byte{0, 0, 0, 3, 1, 2, 3}, "not zlib"},
		"size":      {wrongSize, "header says 99"},
		"too large": {bomb, "larger than"},
		"no path":   {noPath, "not interface/path"},
		"truncated": {good[:len(good)-3], "corrupt"},
	}
	for name, c := range cases {
		if _, err := DecodePropertyList(c.data); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want %q", name, err, c.want)
		}
	}
}

func zlibList(plain string) ([]byte, error) {
	var buf bytes.Buffer
	buf.Write(binary.BigEndian.AppendUint32(nil, uint32(len(plain))))
	zw := zlib.NewWriter(&buf)
	zw.Write([]byte(plain))
	err := zw.Close()
	return buf.Bytes(), err
}
