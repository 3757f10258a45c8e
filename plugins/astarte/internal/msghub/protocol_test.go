package msghub

import (
	"bytes"
	"math"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/connector-host/connector-host/plugins/astarte/internal/interfaces"
)

// wireField is one top-level field of an encoded message.
type wireField struct {
	num   protowire.Number
	typ   protowire.Type
	bytes []byte // the value (length-delimited content, or the raw varint/fixed)
}

func parseFields(t *testing.T, b []byte) []wireField {
	t.Helper()
	var out []wireField
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			t.Fatalf("bad tag: %v", protowire.ParseError(n))
		}
		b = b[n:]
		m := protowire.ConsumeFieldValue(num, typ, b)
		if m < 0 {
			t.Fatalf("bad field %d: %v", num, protowire.ParseError(m))
		}
		val := b[:m]
		if typ == protowire.BytesType {
			val, _ = protowire.ConsumeBytes(b)
		}
		out = append(out, wireField{num, typ, val})
		b = b[m:]
	}
	// Field order on the wire carries no meaning: sort by number (stable,
	// so repeated fields keep their order).
	sort.SliceStable(out, func(a, b int) bool { return out[a].num < out[b].num })
	return out
}

// numbers lists the field numbers, sorted.
func numbers(fs []wireField) []protowire.Number {
	out := make([]protowire.Number, len(fs))
	for k, f := range fs {
		out[k] = f.num
	}
	return out
}

func marshal(t *testing.T, m protoreflect.Message) []byte {
	t.Helper()
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(m.Interface())
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func encodeBoth(t *testing.T, o *outgoing) (v07, v08 []byte) {
	t.Helper()
	m7, err := layouts[Protocol07].encode(o)
	if err != nil {
		t.Fatal(err)
	}
	m8, err := layouts[Protocol08].encode(o)
	if err != nil {
		t.Fatal(err)
	}
	return marshal(t, m7), marshal(t, m8)
}

func wantNumbers(t *testing.T, what string, fs []wireField, want ...protowire.Number) {
	t.Helper()
	if got := numbers(fs); !reflect.DeepEqual(got, want) {
		t.Fatalf("%s: fields %v, want %v", what, got, want)
	}
}

var ts = time.Date(2025, 6, 17, 10, 20, 30, 456000000, time.UTC)

// The two encodings differ exactly where MSGHUB.md says: the payload's field
// numbers and nesting and where the timestamp goes; the value union and the
// timestamp themselves are byte-identical.
func TestWireLayoutsDifferExactlyWhereDocumented(t *testing.T) {
	t.Parallel()
	tsBytes := func() []byte {
		m := layouts[Protocol07].message.New()
		setTimestamp(m.Mutable(layouts[Protocol07].fTimestamp).Message(), ts)
		return parseFields(t, marshal(t, m))[0].bytes
	}()

	// Individual datastream with an explicit timestamp.
	v07, v08 := encodeBoth(t, &outgoing{iface: "com.example.I", path: "/a/b", typ: interfaces.Double, value: 1.5, timestamp: &ts})
	f7, f8 := parseFields(t, v07), parseFields(t, v08)
	// 0.7: interface_name=1, path=2, astarte_data=3, timestamp=5.
	wantNumbers(t, "0.7 individual", f7, 1, 2, 3, 5)
	// 0.8: interface_name=1, path=2, datastream_individual=3 (no top-level timestamp).
	wantNumbers(t, "0.8 individual", f8, 1, 2, 3)
	if !bytes.Equal(f7[0].bytes, f8[0].bytes) || !bytes.Equal(f7[1].bytes, f8[1].bytes) {
		t.Fatal("interface_name and path differ")
	}
	dt := parseFields(t, f7[2].bytes) // AstarteDataType{astarte_individual=1}
	wantNumbers(t, "0.7 AstarteDataType", dt, 1)
	ds := parseFields(t, f8[2].bytes) // AstarteDatastreamIndividual{data=1, timestamp=2}
	wantNumbers(t, "0.8 AstarteDatastreamIndividual", ds, 1, 2)
	if !bytes.Equal(dt[0].bytes, ds[0].bytes) {
		t.Fatalf("the value union differs: %x vs %x", dt[0].bytes, ds[0].bytes)
	}
	if !bytes.Equal(f7[3].bytes, ds[1].bytes) || !bytes.Equal(f7[3].bytes, tsBytes) {
		t.Fatal("the timestamp differs")
	}

	// Object datastream with a timestamp.
	obj := &outgoing{iface: "com.example.O", path: "/g", timestamp: &ts,
		object:   map[string]any{"lat": 1.5, "tags": []string{"a"}},
		objTypes: map[string]interfaces.MappingType{"lat": interfaces.Double, "tags": interfaces.StringArray}}
	v07, v08 = encodeBoth(t, obj)
	f7, f8 = parseFields(t, v07), parseFields(t, v08)
	wantNumbers(t, "0.7 object", f7, 1, 2, 3, 5)
	// 0.8: datastream_object=4.
	wantNumbers(t, "0.8 object", f8, 1, 2, 4)
	dt = parseFields(t, f7[2].bytes) // AstarteDataType{astarte_object=2}
	wantNumbers(t, "0.7 AstarteDataType", dt, 2)
	od := parseFields(t, dt[0].bytes) // AstarteDataTypeObject{object_data=1 (map)}
	wantNumbers(t, "0.7 object_data", od, 1, 1)
	do := parseFields(t, f8[2].bytes) // AstarteDatastreamObject{data=1 (map), timestamp=2}
	wantNumbers(t, "0.8 AstarteDatastreamObject", do, 1, 1, 2)
	for k := 0; k < 2; k++ {
		if !bytes.Equal(od[k].bytes, do[k].bytes) {
			t.Fatalf("map entry %d differs", k)
		}
	}
	if !bytes.Equal(do[2].bytes, tsBytes) {
		t.Fatal("the object timestamp differs")
	}

	// Property set: 0.7 a plain individual without timestamp; 0.8
	// property_individual=5{data=1}.
	v07, v08 = encodeBoth(t, &outgoing{iface: "com.example.P", path: "/p", property: true, typ: interfaces.Integer, value: int32(0)})
	f7, f8 = parseFields(t, v07), parseFields(t, v08)
	wantNumbers(t, "0.7 property", f7, 1, 2, 3)
	wantNumbers(t, "0.8 property", f8, 1, 2, 5)
	dt, pi := parseFields(t, f7[2].bytes), parseFields(t, f8[2].bytes)
	wantNumbers(t, "0.8 AstartePropertyIndividual", pi, 1)
	if !bytes.Equal(dt[0].bytes, pi[0].bytes) {
		t.Fatal("the property value union differs")
	}
	// The zero value is still sent (oneof members carry presence).
	if u := parseFields(t, pi[0].bytes); len(u) != 1 || u[0].num != 2 || u[0].bytes[0] != 0 {
		t.Fatalf("integer 0 not on the wire: %v", u)
	}

	// Property unset: 0.7 astarte_unset=4 (empty message); 0.8
	// property_individual=5 without data.
	v07, v08 = encodeBoth(t, &outgoing{iface: "com.example.P", path: "/p", property: true, unset: true})
	f7, f8 = parseFields(t, v07), parseFields(t, v08)
	wantNumbers(t, "0.7 unset", f7, 1, 2, 4)
	wantNumbers(t, "0.8 unset", f8, 1, 2, 5)
	if len(f7[2].bytes) != 0 || len(f8[2].bytes) != 0 {
		t.Fatal("unset payloads are not empty messages")
	}
	// 0.8 has no datastream unset.
	if _, err := layouts[Protocol08].encode(&outgoing{iface: "x", path: "/p", unset: true}); err == nil {
		t.Fatal("0.8 encoded a datastream unset")
	}
}

// allValues has one value per Astarte type with the union text of both
// versions' field names.
var allValues = []struct {
	typ   interfaces.MappingType
	value any
	v07   string // the union member in 0.7 (AstarteDataTypeIndividual)
	v08   string // in 0.8 (AstarteData)
}{
	{interfaces.Double, -2.25, `astarte_double:-2.25`, `double:-2.25`},
	{interfaces.Integer, int32(math.MinInt32), `astarte_integer:-2147483648`, `integer:-2147483648`},
	{interfaces.Boolean, false, `astarte_boolean:false`, `boolean:false`},
	{interfaces.LongInteger, int64(math.MaxInt64), `astarte_long_integer:9223372036854775807`, `long_integer:9223372036854775807`},
	{interfaces.String, "", `astarte_string:""`, `string:""`},
	{interfaces.BinaryBlob, []byte{0, 1, 255}, `astarte_binary_blob:"\x00\x01\xff"`, `binary_blob:"\x00\x01\xff"`},
	{interfaces.DateTime, ts, `astarte_date_time:{seconds:1750155630 nanos:456000000}`, `date_time:{seconds:1750155630 nanos:456000000}`},
	{interfaces.DoubleArray, []float64{1, -0.5}, `astarte_double_array:{values:[1,-0.5]}`, `double_array:{values:[1,-0.5]}`},
	{interfaces.IntegerArray, []int32{}, `astarte_integer_array:{}`, `integer_array:{}`},
	{interfaces.BooleanArray, []bool{true, false}, `astarte_boolean_array:{values:[true,false]}`, `boolean_array:{values:[true,false]}`},
	{interfaces.LongIntegerArray, []int64{-1, 1 << 60}, `astarte_long_integer_array:{values:[-1,1152921504606846976]}`, `long_integer_array:{values:[-1,1152921504606846976]}`},
	{interfaces.StringArray, []string{"a", ""}, `astarte_string_array:{values:["a",""]}`, `string_array:{values:["a",""]}`},
	{interfaces.BinaryBlobArray, [][]byte{{1}, {}}, `astarte_binary_blob_array:{values:["\x01",""]}`, `binary_blob_array:{values:["\x01",""]}`},
	{interfaces.DateTimeArray, []time.Time{ts, time.Unix(0, 0).UTC()}, `astarte_date_time_array:{values:[{seconds:1750155630 nanos:456000000},{}]}`, `date_time_array:{values:[{seconds:1750155630 nanos:456000000},{}]}`},
}

func TestEveryTypeEncodesAndDecodes(t *testing.T) {
	t.Parallel()
	if len(allValues) != len(interfaces.MappingTypes()) {
		t.Fatalf("%d types tested, want all %d", len(allValues), len(interfaces.MappingTypes()))
	}
	for _, c := range allValues {
		for _, p := range []Protocol{Protocol07, Protocol08} {
			l := layouts[p]
			m, err := l.encode(&outgoing{iface: "com.example.T", path: "/v", typ: c.typ, value: c.value, timestamp: &ts})
			if err != nil {
				t.Fatalf("%s %s: %v", p, c.typ, err)
			}
			want := l.message.New().Interface()
			text := `interface_name:"com.example.T" path:"/v" astarte_data:{astarte_individual:{` + c.v07 + `}} timestamp:{seconds:1750155630 nanos:456000000}`
			if p == Protocol08 {
				text = `interface_name:"com.example.T" path:"/v" datastream_individual:{data:{` + c.v08 + `} timestamp:{seconds:1750155630 nanos:456000000}}`
			}
			if err := prototext.Unmarshal([]byte(text), want); err != nil {
				t.Fatalf("%s %s: %v", p, c.typ, err)
			}
			if !proto.Equal(m.Interface(), want) {
				t.Fatalf("%s %s: %v, want %s", p, c.typ, prototext.Format(m.Interface()), text)
			}
			// Round trip through the wire.
			b := marshal(t, m)
			back := l.message.New()
			if err := proto.Unmarshal(b, back.Interface()); err != nil {
				t.Fatal(err)
			}
			in, err := l.decode(back)
			if err != nil {
				t.Fatalf("%s %s: decode: %v", p, c.typ, err)
			}
			if in.typ != c.typ || !reflect.DeepEqual(in.value, c.value) || in.timestamp == nil || !in.timestamp.Equal(ts) {
				t.Fatalf("%s %s: decoded %+v", p, c.typ, in)
			}
		}
	}
}

func TestDecodeErrors(t *testing.T) {
	t.Parallel()
	for _, p := range []Protocol{Protocol07, Protocol08} {
		l := layouts[p]
		cases := map[string]string{
			"no payload": `interface_name:"i" path:"/p"`,
		}
		if p == Protocol07 {
			cases["empty astarte_data"] = `interface_name:"i" path:"/p" astarte_data:{}`
			cases["empty individual"] = `interface_name:"i" path:"/p" astarte_data:{astarte_individual:{}}`
			cases["empty object"] = `interface_name:"i" path:"/p" astarte_data:{astarte_object:{}}`
			cases["bad timestamp"] = `interface_name:"i" path:"/p" astarte_data:{astarte_individual:{astarte_double:1}} timestamp:{nanos:-1}`
		} else {
			cases["empty datastream"] = `interface_name:"i" path:"/p" datastream_individual:{}`
			cases["empty object"] = `interface_name:"i" path:"/p" datastream_object:{}`
			cases["bad datetime"] = `interface_name:"i" path:"/p" datastream_individual:{data:{date_time:{nanos:1000000000}}}`
			cases["bad array item"] = `interface_name:"i" path:"/p" datastream_object:{data:{key:"k" value:{date_time_array:{values:[{nanos:-5}]}}}}`
		}
		for name, text := range cases {
			m := l.message.New()
			if err := prototext.Unmarshal([]byte(text), m.Interface()); err != nil {
				t.Fatalf("%s %s: %v", p, name, err)
			}
			if _, err := l.decode(m); err == nil {
				t.Fatalf("%s %s: decoded", p, name)
			}
		}
	}
	if _, err := ParseProtocol("0.9"); err == nil || !strings.Contains(err.Error(), "0.7 or 0.8") {
		t.Fatalf("ParseProtocol: %v", err)
	}
	if p, err := ParseProtocol(""); err != nil || p != Protocol07 {
		t.Fatalf("default protocol %v %v", p, err)
	}
	u := layouts[Protocol07].message.New().Mutable(layouts[Protocol07].fData).Message().Mutable(layouts[Protocol07].fIndividual).Message()
	if err := putValue(u, interfaces.Double, "x"); err == nil {
		t.Fatal("a string written as a double")
	}
	if err := putValue(u, interfaces.DoubleArray, []int32{1}); err == nil {
		t.Fatal("an int array written as a double array")
	}
}

// FuzzDecode feeds arbitrary bytes to both layouts' decoders: they must not
// panic, and what decodes must encode back to a message that decodes the
// same.
func FuzzDecode(f *testing.F) {
	for _, c := range allValues {
		for _, p := range []Protocol{Protocol07, Protocol08} {
			m, err := layouts[p].encode(&outgoing{iface: "i", path: "/p", typ: c.typ, value: c.value, timestamp: &ts})
			if err != nil {
				f.Fatal(err)
			}
			b, _ := proto.Marshal(m.Interface())
			f.Add(b)
		}
	}
	f.Add([]byte{0x22, 0x00})
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, p := range []Protocol{Protocol07, Protocol08} {
			l := layouts[p]
			m := l.message.New()
			if unmarshalSafe(b, m.Interface()) != nil {
				continue
			}
			in, err := l.decode(m)
			if err != nil || in.unset && p == Protocol08 {
				continue
			}
			o := &outgoing{iface: in.iface, path: in.path, unset: in.unset, typ: in.typ, value: in.value,
				object: in.object, objTypes: in.objTypes, timestamp: in.timestamp}
			re, err := l.encode(o)
			if err != nil {
				t.Fatalf("%s: re-encode %+v: %v", p, in, err)
			}
			again, err := l.decode(re)
			if err != nil {
				t.Fatalf("%s: decode of re-encoded: %v", p, err)
			}
			// Compare encodings (NaN is not DeepEqual to itself).
			o2 := &outgoing{iface: again.iface, path: again.path, unset: again.unset, typ: again.typ, value: again.value,
				object: again.object, objTypes: again.objTypes, timestamp: again.timestamp}
			re2, err := l.encode(o2)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(marshal(t, re), marshal(t, re2)) {
				t.Fatalf("%s: round trip %+v != %+v", p, again, in)
			}
		}
	})
}

// BenchmarkEncodeMarshal compares building and marshalling one
// AstarteMessage with 0.7's generated types and 0.8's dynamic messages
// (docs/adr/0005-msghub-0.8-descriptor-set.md), then unmarshalling it.
func BenchmarkEncodeMarshal(b *testing.B) {
	ind := &outgoing{iface: "com.example.I", path: "/a/b", typ: interfaces.Double, value: 1.5, timestamp: &ts}
	obj := &outgoing{iface: "com.example.O", path: "/g", timestamp: &ts,
		object:   map[string]any{"lat": 1.5, "lon": 2.5, "tags": []string{"a", "b"}},
		objTypes: map[string]interfaces.MappingType{"lat": interfaces.Double, "lon": interfaces.Double, "tags": interfaces.StringArray}}
	for _, p := range []Protocol{Protocol07, Protocol08} {
		l := layouts[p]
		for _, c := range []struct {
			name string
			o    *outgoing
		}{{"individual", ind}, {"object", obj}} {
			b.Run(string(p)+"/"+c.name+"/encode", func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					m, err := l.encode(c.o)
					if err != nil {
						b.Fatal(err)
					}
					if _, err := proto.Marshal(m.Interface()); err != nil {
						b.Fatal(err)
					}
				}
			})
			m, err := l.encode(c.o)
			if err != nil {
				b.Fatal(err)
			}
			raw, err := proto.Marshal(m.Interface())
			if err != nil {
				b.Fatal(err)
			}
			b.Run(string(p)+"/"+c.name+"/decode", func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					m := l.message.New()
					if err := unmarshalSafe(raw, m.Interface()); err != nil {
						b.Fatal(err)
					}
					if _, err := l.decode(m); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
