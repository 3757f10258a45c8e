package device

import (
	"context"
	"encoding/json"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/connector-host/connector-host/plugins/astarte/internal/payload"
	"github.com/connector-host/connector-host/plugins/astarte/internal/store"
	"github.com/connector-host/connector-host/plugins/astarte/internal/transport"
)

const valueIface = `{"interface_name":"com.example.Values","version_major":1,"version_minor":0,"type":"datastream","ownership":"device",
  "mappings":[{"endpoint":"/d","type":"double"},{"endpoint":"/i","type":"integer"},{"endpoint":"/b","type":"boolean"},
              {"endpoint":"/l","type":"longinteger"},{"endpoint":"/s","type":"string"},{"endpoint":"/bb","type":"binaryblob"},
              {"endpoint":"/dt","type":"datetime"},{"endpoint":"/da","type":"doublearray"},{"endpoint":"/ia","type":"integerarray"},
              {"endpoint":"/ba","type":"booleanarray"},{"endpoint":"/la","type":"longintegerarray"},{"endpoint":"/sa","type":"stringarray"},
              {"endpoint":"/bba","type":"binaryblobarray"},{"endpoint":"/dta","type":"datetimearray"},
              {"endpoint":"/t","type":"double","explicit_timestamp":true}]}`

const valueObject = `{"interface_name":"com.example.ValuesObj","version_major":1,"version_minor":0,"type":"datastream","ownership":"device",
  "aggregation":"object",
  "mappings":[{"endpoint":"/%{g}/x","type":"double","explicit_timestamp":true},{"endpoint":"/%{g}/tags","type":"stringarray","explicit_timestamp":true},
              {"endpoint":"/%{g}/at","type":"datetime","explicit_timestamp":true}]}`

// A message the device prepares carries in Value and Timestamp exactly what
// its BSON Payload decodes to (the Message Hub transport sends Value; the
// durable queue stores Payload).
func TestPreparedValueMatchesPayload(t *testing.T) {
	t.Parallel()
	d := sharedDevice(t, openStore(t, t.TempDir()), "dev", valueIface, valueObject)
	ts := time.Date(2025, 6, 17, 10, 20, 30, 456789000, time.FixedZone("x", 3600))
	var in map[string]any
	if err := json.Unmarshal([]byte(`{"d":-2.5,"i":-7,"b":true,"l":"9007199254740993","s":"héllo","bb":"AAH/",
	  "dt":"2025-06-17T10:20:30.456789+02:00","da":[1,-0.5],"ia":[],"ba":[true,false],"la":[1,"-2"],"sa":["a",""],
	  "bba":["AQ==",""],"dta":["2025-06-17T10:20:30.4Z",0],"t":1}`), &in); err != nil {
		t.Fatal(err)
	}
	check := func(msg *transport.Message, object bool) {
		t.Helper()
		var v any
		var gotTS *time.Time
		if object {
			fields, at, err := payload.DecodeObject(must(msg.Interface.LookupObject(msg.Path)), msg.Payload)
			if err != nil {
				t.Fatal(err)
			}
			v, gotTS = fields, at
		} else {
			dec, err := payload.Decode(msg.Mapping.Type, msg.Payload)
			if err != nil {
				t.Fatal(err)
			}
			v, gotTS = dec.Value, dec.Timestamp
		}
		if !reflect.DeepEqual(normBlobs(msg.Value), normBlobs(v)) {
			t.Fatalf("%s: Value %#v, payload decodes to %#v", msg.Path, msg.Value, v)
		}
		if (gotTS == nil) != (msg.Timestamp == nil) || gotTS != nil && !gotTS.Equal(*msg.Timestamp) {
			t.Fatalf("%s: Timestamp %v, payload has %v", msg.Path, msg.Timestamp, gotTS)
		}
	}
	for k, v := range in {
		var at *time.Time
		if k == "t" {
			at = &ts
		}
		msg, _, err := d.prepareIndividual("com.example.Values", "/"+k, v, at)
		if err != nil {
			t.Fatalf("%s: %v", k, err)
		}
		check(msg, false)
	}
	msg, _, err := d.prepareObject("com.example.ValuesObj", "/g1", map[string]any{"x": 1.5, "tags": []any{"a"}, "at": "2025-01-02T03:04:05.678Z"}, &ts)
	if err != nil {
		t.Fatal(err)
	}
	check(msg, true)
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// normBlobs makes empty byte slices nil, as BSON does not keep the
// difference (neither does protobuf).
func normBlobs(v any) any {
	switch x := v.(type) {
	case []byte:
		if len(x) == 0 {
			return []byte(nil)
		}
	case [][]byte:
		out := make([][]byte, len(x))
		for k, b := range x {
			out[k], _ = normBlobs(b).([]byte)
		}
		return out
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[k] = normBlobs(e)
		}
		return out
	}
	return v
}

// BenchmarkPrepareIndividual is the per-message validation and encoding of
// a batch message (a JSON number on a parametric double mapping).
func BenchmarkPrepareIndividual(b *testing.B) {
	st, err := store.Open(filepath.Join(b.TempDir(), "astarte.db"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = st.Close() })
	d, err := New(b.Context(), Config{DeviceID: "dev", Realm: "test", Store: st})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = d.Close(context.Background()) })
	if err := d.AddInterface(b.Context(), parse(b, valueObject)); err != nil {
		b.Fatal(err)
	}
	if err := d.AddInterface(b.Context(), parse(b, `{"interface_name":"com.example.Bench","version_major":1,"version_minor":0,"type":"datastream","ownership":"device",
	  "mappings":[{"endpoint":"/%{sensor}/v","type":"double","reliability":"guaranteed","retention":"stored"}]}`)); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := d.prepareIndividual("com.example.Bench", "/s3/v", json.Number("12.5"), nil); err != nil {
			b.Fatal(err)
		}
	}
}
