package msghub

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/connector-host/connector-host/plugins/astarte/internal/interfaces"
	"github.com/connector-host/connector-host/plugins/astarte/internal/payload"
	"github.com/connector-host/connector-host/plugins/astarte/internal/transport"
)

// encode07 writes exactly the bytes of the protoreflect encoding on the
// 0.7 layout, for every type, objects, properties and unsets, and refuses
// what it refuses with the same error.
func TestEncode07(t *testing.T) {
	t.Parallel()
	l := layouts[Protocol07]
	var cases []*outgoing
	for _, c := range allValues {
		cases = append(cases,
			&outgoing{iface: "com.example.T", path: "/v", typ: c.typ, value: c.value, timestamp: &ts},
			&outgoing{iface: "com.example.T", path: "/v", typ: c.typ, value: c.value},
			&outgoing{iface: "com.example.P", path: "/p", property: true, typ: c.typ, value: c.value})
	}
	obj := &outgoing{iface: "com.example.O", path: "/g", object: map[string]any{}, objTypes: map[string]interfaces.MappingType{}}
	for k, c := range allValues {
		key := string(rune('a' + k))
		obj.object[key], obj.objTypes[key] = c.value, c.typ
	}
	objTS := *obj
	objTS.timestamp = &ts
	cases = append(cases, obj, &objTS,
		&outgoing{iface: "com.example.P", path: "/p", property: true, unset: true},
		&outgoing{iface: "com.example.T", path: "/v", unset: true})
	var scratch scratch07 // one for every case, in turn, as Send reuses it
	for _, o := range cases {
		want, err := l.encodeReflect(o)
		if err != nil {
			t.Fatalf("%+v: %v", o, err)
		}
		got, err := encode07(o)
		if err != nil {
			t.Fatalf("%+v: %v", o, err)
		}
		if !bytes.Equal(marshal(t, got.ProtoReflect()), marshal(t, want)) {
			t.Fatalf("%+v: encode07 %x, protoreflect %x", o, marshal(t, got.ProtoReflect()), marshal(t, want))
		}
		if !proto.Equal(got, want.Interface()) {
			t.Fatalf("%+v: not proto.Equal", o)
		}
		reused, err := scratch.encode(o)
		if err != nil {
			t.Fatalf("%+v: %v", o, err)
		}
		if !bytes.Equal(marshal(t, reused.ProtoReflect()), marshal(t, want)) {
			t.Fatalf("%+v: scratch07 %x, protoreflect %x", o, marshal(t, reused.ProtoReflect()), marshal(t, want))
		}
	}
	for _, o := range []*outgoing{
		{iface: "i", path: "/p", typ: interfaces.Double, value: "x"},
		{iface: "i", path: "/p", typ: interfaces.DoubleArray, value: []int32{1}},
		{iface: "i", path: "/p", typ: interfaces.DateTimeArray, value: []string{"x"}},
		{iface: "i", path: "/p", typ: "nope", value: 1.0},
		{iface: "i", path: "/p", object: map[string]any{"a": 1.0, "b": "x", "c": true},
			objTypes: map[string]interfaces.MappingType{"a": interfaces.Double, "b": interfaces.Integer, "c": interfaces.Integer}},
	} {
		_, want := l.encodeReflect(o)
		_, got := encode07(o)
		if want == nil || got == nil || got.Error() != want.Error() {
			t.Fatalf("%+v: encode07 error %v, protoreflect %v", o, got, want)
		}
	}
}

// BenchmarkEncode07 compares encode07 with the protoreflect encoding of the
// same 0.7 message (then marshalled, as the gRPC codec does).
func BenchmarkEncode07(b *testing.B) {
	l := layouts[Protocol07]
	o := &outgoing{iface: "com.example.Bench", path: "/s3/v", typ: interfaces.Double, value: 1.5}
	b.Run("protoreflect", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			m, err := l.encodeReflect(o)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := proto.Marshal(m.Interface()); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("reused", func(b *testing.B) {
		b.ReportAllocs()
		var s scratch07
		for b.Loop() {
			m, err := s.encode(o)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := proto.Marshal(m); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("generated", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			m, err := encode07(o)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := proto.Marshal(m); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// A message with Value (just validated by the device) and the same message
// with only its BSON Payload (from the durable queue) encode to the same
// bytes, in both protocols.
func TestOutgoingValueOrPayload(t *testing.T) {
	t.Parallel()
	var maps []string
	for _, c := range allValues {
		maps = append(maps, fmt.Sprintf(`{"endpoint":"/%s","type":%q,"explicit_timestamp":true}`, c.typ, c.typ))
	}
	ind, err := interfaces.Parse([]byte(`{"interface_name":"com.example.V","version_major":1,"version_minor":0,"type":"datastream","ownership":"device",
	  "mappings":[` + strings.Join(maps, ",") + `]}`))
	if err != nil {
		t.Fatal(err)
	}
	obj, err := interfaces.Parse([]byte(`{"interface_name":"com.example.O","version_major":1,"version_minor":0,"type":"datastream","ownership":"device",
	  "aggregation":"object","mappings":[` + strings.ReplaceAll(strings.Join(maps, ","), `"/`, `"/%{g}/`) + `]}`))
	if err != nil {
		t.Fatal(err)
	}
	var msgs []*transport.Message
	fields := map[string]any{}
	for _, c := range allValues {
		m, err := ind.Lookup("/" + string(c.typ))
		if err != nil {
			t.Fatal(err)
		}
		for _, at := range []*time.Time{nil, &ts} {
			data, err := payload.Encode(c.value, at)
			if err != nil {
				t.Fatal(err)
			}
			msgs = append(msgs, &transport.Message{Interface: ind, Mapping: m, Path: "/" + string(c.typ), Payload: data, Value: c.value, Timestamp: at})
		}
		fields[string(c.typ)] = c.value
	}
	data, err := payload.EncodeObject(fields, &ts)
	if err != nil {
		t.Fatal(err)
	}
	om, err := obj.LookupObject("/g")
	if err != nil {
		t.Fatal(err)
	}
	msgs = append(msgs, &transport.Message{Interface: obj, Mapping: om["double"], Path: "/g", Object: true, Payload: data, Value: fields, Timestamp: &ts})
	for _, p := range []Protocol{Protocol07, Protocol08} {
		l := layouts[p]
		for _, m := range msgs {
			var live, queued outgoing
			if err := outgoingOf(m, &live); err != nil {
				t.Fatal(err)
			}
			q := *m
			q.Value, q.Timestamp = nil, nil
			if err := outgoingOf(&q, &queued); err != nil {
				t.Fatal(err)
			}
			a, err := l.encodeMessage(&live)
			if err != nil {
				t.Fatal(err)
			}
			b, err := l.encodeMessage(&queued)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(marshal(t, a.ProtoReflect()), marshal(t, b.ProtoReflect())) {
				t.Fatalf("%s %s: Value and Payload encode differently", p, m.Path)
			}
		}
	}
}
