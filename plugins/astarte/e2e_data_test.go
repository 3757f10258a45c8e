package main_test

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	astarteemu "github.com/connector-host/connector-host/testkit/emulators/astarte"
)

// render writes a BSON value with its exact BSON type, read with the BSON
// library rather than the plugin's codec: "double:21.5", "int32:7",
// "int64:…", "bool:true", "string:\"…\"", "binary0:00ff" (subtype and hex),
// "datetime:2024-01-02T03:04:05.678Z", "[…]" for arrays and "{k:…}" (keys
// sorted) for documents.
func render(t *testing.T, rv bson.RawValue) string {
	t.Helper()
	switch rv.Type {
	case bson.TypeDouble:
		return "double:" + strconv.FormatFloat(rv.Double(), 'g', -1, 64)
	case bson.TypeInt32:
		return "int32:" + strconv.FormatInt(int64(rv.Int32()), 10)
	case bson.TypeInt64:
		return "int64:" + strconv.FormatInt(rv.Int64(), 10)
	case bson.TypeBoolean:
		return "bool:" + strconv.FormatBool(rv.Boolean())
	case bson.TypeString:
		return "string:" + strconv.Quote(rv.StringValue())
	case bson.TypeBinary:
		sub, data := rv.Binary()
		return fmt.Sprintf("binary%d:%s", sub, hex.EncodeToString(data))
	case bson.TypeDateTime:
		return "datetime:" + time.UnixMilli(rv.DateTime()).UTC().Format("2006-01-02T15:04:05.000Z")
	case bson.TypeArray:
		vals, err := rv.Array().Values()
		if err != nil {
			t.Fatalf("BSON array: %v", err)
		}
		parts := make([]string, len(vals))
		for k, v := range vals {
			parts[k] = render(t, v)
		}
		return "[" + strings.Join(parts, " ") + "]"
	case bson.TypeEmbeddedDocument:
		elems, err := rv.Document().Elements()
		if err != nil {
			t.Fatalf("BSON document: %v", err)
		}
		parts := make([]string, len(elems))
		for k, e := range elems {
			parts[k] = e.Key() + ":" + render(t, e.Value())
		}
		sort.Strings(parts)
		return "{" + strings.Join(parts, " ") + "}"
	}
	t.Fatalf("unexpected BSON type %s", rv.Type)
	return ""
}

// decodeVT reads an Astarte payload: the rendered "v" and the "t"
// timestamp ("" when absent); no other field is allowed.
func decodeVT(t *testing.T, payload []byte) (v, ts string) {
	t.Helper()
	doc := bson.Raw(payload)
	if err := doc.Validate(); err != nil {
		t.Fatalf("payload is not a BSON document: %v (%x)", err, payload)
	}
	elems, _ := doc.Elements()
	for _, e := range elems {
		switch e.Key() {
		case "v":
			v = render(t, e.Value())
		case "t":
			if e.Value().Type != bson.TypeDateTime {
				t.Fatalf("t is BSON %s, want datetime", e.Value().Type)
			}
			ts = render(t, e.Value())
		default:
			t.Fatalf("payload has an unexpected field %q", e.Key())
		}
	}
	if v == "" {
		t.Fatalf("payload has no v: %x", payload)
	}
	return v, ts
}

// Register → pair → connect through the host: the broker sees the
// introspection, emptyCache, then the device properties (QoS 2) on a
// persistent session with the right subscriptions; every datastream type
// and an object arrive as exactly the values and timestamps sent, at the
// QoS of their reliability.
func TestHostPairConnectHandshakeAndDatastreams(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	id := s.pair()
	base := s.base(id)
	for _, c := range []struct{ capability, key string }{
		{"device_has_certificate", "has_certificate"}, {"certificate_is_valid", "valid"}, {"verify_device_certificate", "valid"}} {
		req := map[string]any{"device_id": id}
		if c.capability == "certificate_is_valid" {
			req["remote"] = true
		}
		if r := s.ok(c.capability, req); r[c.key] != true {
			t.Fatalf("%s: %v", c.capability, r)
		}
	}
	if r := s.ok("get_transport_info", map[string]any{"device_id": id}); r["broker_url"] != s.emu.BrokerURL() {
		t.Fatalf("get_transport_info %v, want broker %s", r, s.emu.BrokerURL())
	}
	s.addInterfaces(id, allTypes, geo, devProps, srvProps, srvData, srvObj)
	const intro = "com.example.e2e.AllTypes:1:2;com.example.e2e.DevProps:1:0;com.example.e2e.Geo:2:0;" +
		"com.example.e2e.SrvData:1:0;com.example.e2e.SrvObj:1:0;com.example.e2e.SrvProps:1:0"
	if r := s.ok("list_interfaces", map[string]any{"device_id": id}); r["introspection"] != intro {
		t.Fatalf("introspection %v, want %s", r["introspection"], intro)
	}
	// Device properties set before connecting are sent in the handshake.
	for _, p := range []struct {
		path string
		v    any
	}{{"/b/name", "beta"}, {"/a/name", "alpha"}, {"/a/level", 3}} {
		if d := s.ok("set_property", map[string]any{"device_id": id, "interface": "com.example.e2e.DevProps", "path": p.path, "value": p.v}); d["delivery"] != "pending" {
			t.Fatalf("set_property %s offline: %v", p.path, d)
		}
	}
	st := s.connect(id)
	if st["transport"] != "mqtt" || st["introspection"] != intro {
		t.Fatalf("connect status %v", st)
	}

	ctx := within(t, 30*time.Second)
	msgs, err := s.emu.WaitMessages(ctx, base, 6)
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) != 6 {
		t.Fatalf("handshake: broker saw %d messages, want 6: %+v", len(msgs), msgs)
	}
	for k, m := range msgs {
		if m.QoS != 2 || m.Retain {
			t.Fatalf("handshake message %d %s: QoS %d retain %v, want QoS 2", k, m.Topic, m.QoS, m.Retain)
		}
	}
	if msgs[0].Topic != base || string(msgs[0].Payload) != intro {
		t.Fatalf("first message %s %q, want the introspection on %s", msgs[0].Topic, msgs[0].Payload, base)
	}
	if msgs[1].Topic != base+"/control/emptyCache" || string(msgs[1].Payload) != "1" {
		t.Fatalf("second message %s %q, want emptyCache 1", msgs[1].Topic, msgs[1].Payload)
	}
	props := map[string]string{}
	var purge []string
	for _, m := range msgs[2:] {
		if m.Topic == base+"/control/producer/properties" {
			if purge, err = astarteemu.DecodePropertyList(m.Payload); err != nil {
				t.Fatalf("producer/properties: %v", err)
			}
			continue
		}
		if purge != nil {
			t.Fatalf("property %s after the producer/properties list", m.Topic)
		}
		v, ts := decodeVT(t, m.Payload)
		if ts != "" {
			t.Fatalf("property %s carries a timestamp", m.Topic)
		}
		props[strings.TrimPrefix(m.Topic, base+"/")] = v
	}
	wantProps := map[string]string{
		"com.example.e2e.DevProps/a/name": `string:"alpha"`, "com.example.e2e.DevProps/b/name": `string:"beta"`,
		"com.example.e2e.DevProps/a/level": "int32:3"}
	if fmt.Sprint(props) != fmt.Sprint(wantProps) {
		t.Fatalf("handshake properties %v, want %v", props, wantProps)
	}
	sort.Strings(purge)
	if strings.Join(purge, ";") != "com.example.e2e.DevProps/a/level;com.example.e2e.DevProps/a/name;com.example.e2e.DevProps/b/name" {
		t.Fatalf("producer/properties list %v", purge)
	}
	// A persistent session keyed by realm/device_id, subscribed at QoS 2 to
	// consumer/properties and every server-owned interface, nothing else.
	if conns := s.emu.Connections(); len(conns) != 1 || conns[0].ClientID != base || conns[0].CleanSession {
		t.Fatalf("connections %+v, want one persistent session %s", conns, base)
	}
	subs := s.emu.Subscriptions(base)
	wantSubs := map[string]byte{base + "/control/consumer/properties": 2, base + "/com.example.e2e.SrvProps/#": 2,
		base + "/com.example.e2e.SrvData/#": 2, base + "/com.example.e2e.SrvObj/#": 2}
	if fmt.Sprint(subs) != fmt.Sprint(wantSubs) {
		t.Fatalf("subscriptions %v, want %v", subs, wantSubs)
	}

	// Datastreams: every type, exact values and timestamps.
	s.emu.ResetMessages()
	const ts = "2024-05-06T07:08:09.123Z"
	cases := []struct {
		path string
		v    any
		want string
		qos  byte
	}{
		{"/s1/double", 21.5, "double:21.5", 1},
		{"/s1/double", -0.000125, "double:-0.000125", 1},
		{"/s1/double", 3, "double:3", 1},
		{"/s1/integer", -2147483648, "int32:-2147483648", 1},
		{"/s1/integer", 2147483647, "int32:2147483647", 1},
		{"/s1/boolean", true, "bool:true", 1},
		{"/s1/longinteger", json.Number("9007199254740993"), "int64:9007199254740993", 1},
		{"/s1/longinteger", "-9223372036854775808", "int64:-9223372036854775808", 1},
		{"/s1/longinteger", 5, "int64:5", 1},
		{"/s1/string", "héllo ✓ \"quoted\"", `string:"héllo ✓ \"quoted\""`, 1},
		{"/s1/string", "", `string:""`, 1},
		{"/s1/binaryblob", "AAEC/w==", "binary0:000102ff", 1},
		{"/s1/datetime", "2024-02-29T12:34:56.789Z", "datetime:2024-02-29T12:34:56.789Z", 1},
		{"/s1/datetime", "2024-02-29T13:34:56.789+01:00", "datetime:2024-02-29T12:34:56.789Z", 1},
		{"/s1/doublearray", []any{1.5, -0.25, 0}, "[double:1.5 double:-0.25 double:0]", 1},
		{"/s1/integerarray", []any{1, -2, 2147483647}, "[int32:1 int32:-2 int32:2147483647]", 1},
		{"/s1/booleanarray", []any{true, false}, "[bool:true bool:false]", 1},
		{"/s1/longintegerarray", []any{"9223372036854775807", -1}, "[int64:9223372036854775807 int64:-1]", 1},
		{"/s1/stringarray", []any{"a", "", "ü"}, `[string:"a" string:"" string:"ü"]`, 1},
		{"/s1/binaryblobarray", []any{"AA==", "/w=="}, "[binary0:00 binary0:ff]", 1},
		{"/s1/datetimearray", []any{"2024-01-01T00:00:00Z", "2024-01-01T00:00:00.001Z"}, "[datetime:2024-01-01T00:00:00.000Z datetime:2024-01-01T00:00:00.001Z]", 1},
		{"/s1/doublearray", []any{}, "[]", 1},
		{"/s2/q0", 0.5, "double:0.5", 0},
		{"/s2/q2", 2.5, "double:2.5", 2},
	}
	for _, c := range cases {
		req := map[string]any{"device_id": id, "interface": "com.example.e2e.AllTypes", "path": c.path, "value": c.v}
		if c.qos == 1 {
			req["timestamp"] = ts
		}
		if d := s.ok("send", req); d["delivery"] != "delivered" {
			t.Fatalf("send %s %v: %v", c.path, c.v, d)
		}
	}
	obj := map[string]any{"lat": 45.4642, "lon": -9, "label": "Milano", "fix": []any{3, 4}}
	if d := s.ok("send_aggregate", map[string]any{"device_id": id, "interface": "com.example.e2e.Geo", "path": "/g1", "value": obj, "timestamp": "2024-05-06T09:08:09.5+02:00"}); d["delivery"] != "delivered" {
		t.Fatalf("send_aggregate: %v", d)
	}
	// Each send answered delivered after the broker had it (QoS 0 on the
	// wire before the answer), so the broker holds them all, in order.
	got, err := s.emu.WaitMessages(ctx, base, len(cases)+1)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(cases)+1 {
		t.Fatalf("broker got %d messages, want %d", len(got), len(cases)+1)
	}
	for k, c := range cases {
		m := got[k]
		v, mts := decodeVT(t, m.Payload)
		wantTS := ""
		if c.qos == 1 {
			wantTS = "datetime:" + ts
		}
		if m.Topic != base+"/com.example.e2e.AllTypes"+c.path || v != c.want || mts != wantTS || m.QoS != c.qos {
			t.Errorf("send %s %v: broker got %s v=%s t=%q QoS %d, want v=%s t=%q QoS %d", c.path, c.v, m.Topic, v, mts, m.QoS, c.want, wantTS, c.qos)
		}
	}
	m := got[len(cases)]
	v, mts := decodeVT(t, m.Payload)
	const wantObj = `{fix:[int32:3 int32:4] label:string:"Milano" lat:double:45.4642 lon:double:-9}`
	if m.Topic != base+"/com.example.e2e.Geo/g1" || v != wantObj || mts != "datetime:2024-05-06T07:08:09.500Z" || m.QoS != 1 {
		t.Errorf("object: %s v=%s t=%q QoS %d, want v=%s", m.Topic, v, mts, m.QoS, wantObj)
	}
	// The counter counts the datastream messages (not the handshake).
	if st := s.ok("status", map[string]any{"device_id": id}); st["sent"] != json.Number(strconv.Itoa(len(cases)+1)) {
		t.Errorf("status sent = %v, want %d", st["sent"], len(cases)+1)
	}

	// Property changes while connected: set, unchanged, unset (empty payload).
	s.emu.ResetMessages()
	p := map[string]any{"device_id": id, "interface": "com.example.e2e.DevProps", "path": "/a/name", "value": "gamma"}
	if d := s.ok("set_property", p); d["delivery"] != "delivered" {
		t.Fatalf("set_property: %v", d)
	}
	if d := s.ok("set_property", p); d["delivery"] != "unchanged" {
		t.Fatalf("set_property with the same value: %v", d)
	}
	delete(p, "value")
	if d := s.ok("unset_property", p); d["delivery"] != "delivered" {
		t.Fatalf("unset_property: %v", d)
	}
	got = s.emu.MessagesFrom(base)
	if len(got) != 2 || got[0].Topic != base+"/com.example.e2e.DevProps/a/name" || got[0].QoS != 2 ||
		got[1].Topic != got[0].Topic || len(got[1].Payload) != 0 || got[1].QoS != 2 {
		t.Fatalf("property set/unset on the wire: %+v", got)
	}
	if v, _ := decodeVT(t, got[0].Payload); v != `string:"gamma"` {
		t.Fatalf("property value %s", v)
	}
	if r := s.ok("get_property", p); r["set"] != false {
		t.Fatalf("get_property after unset: %v", r)
	}
}
