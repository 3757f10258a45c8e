package main_test

import (
	"encoding/json"
	"fmt"
	"sort"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// bsonVT encodes an Astarte payload {"v": v} (plus "t" when ts is set) with
// the BSON library, as Astarte would publish it.
func bsonVT(t *testing.T, v any, ts *time.Time) []byte {
	t.Helper()
	doc := bson.D{{Key: "v", Value: v}}
	if ts != nil {
		doc = append(doc, bson.E{Key: "t", Value: bson.NewDateTimeFromTime(*ts)})
	}
	b, err := bson.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// canonical re-encodes a decoded JSON value (keys sorted, numbers as sent).
func canonical(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// Server-owned data and consumer/properties published by the broker reach
// `subscribe` (NDJSON streamed through the host, event by event) and the
// property store (get_property, list_properties); a payload that breaks
// the interface is dropped and counted, not streamed; connection changes
// are events too.
func TestHostServerDataReachesSubscribeAndPropertyStore(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	id := s.pair()
	base := s.base(id)
	s.addInterfaces(id, devProps, srvProps, srvData, srvObj)
	s.ok("set_property", map[string]any{"device_id": id, "interface": "com.example.e2e.DevProps", "path": "/a/name", "value": "mine"})
	s.connect(id)
	ctx := within(t, 30*time.Second)
	if err := s.emu.Wait(ctx, func() bool { return len(s.emu.Subscriptions(base)) == 4 }); err != nil {
		t.Fatalf("subscriptions %v: %v", s.emu.Subscriptions(base), err)
	}

	events := s.openStream("subscribe", map[string]any{"device_id": id, "timeout_ms": 50000})
	// The stream is live once an event comes through: publish pings until
	// one does (the subscription starts inside the plugin after the HTTP
	// answer's headers may already be written).
	synced, pings := false, 0
	for k := 0; k < 100 && !synced; k++ {
		pings++
		if err := s.emu.PublishData(id, "com.example.e2e.SrvData", "/ping", bsonVT(t, int32(k), nil), 2); err != nil {
			t.Fatal(err)
		}
		select {
		case line, ok := <-events.lines:
			if !ok {
				t.Fatal("subscribe ended before the first event")
			}
			var e map[string]any
			if err := json.Unmarshal(line, &e); err != nil || e["type"] != "data_received" || e["path"] != "/ping" || e["device_id"] != id {
				t.Fatalf("first event %s", line)
			}
			synced = true
		case <-time.After(100 * time.Millisecond):
		}
	}
	if !synced {
		t.Fatal("no event reached subscribe within 10 s")
	}
	// next skips the remaining pings.
	next := func() map[string]any {
		t.Helper()
		for {
			e := events.next(t, 15*time.Second)
			if e["path"] != "/ping" {
				return e
			}
		}
	}
	expect := func(typ, iface, path, value, timestamp string) {
		t.Helper()
		e := next()
		got := fmt.Sprintf("%v %v %v %s %v", e["type"], e["interface"], e["path"], canonical(t, e["value"]), e["timestamp"])
		want := fmt.Sprintf("%s %s %s %s %s", typ, iface, path, value, timestamp)
		if got != want || e["device_id"] != id {
			t.Fatalf("event %s\n got %s\nwant %s", canonical(t, e), got, want)
		}
	}

	ts := time.Date(2024, 3, 4, 5, 6, 7, 89e6, time.UTC)
	publish := func(iface, path string, payload []byte) {
		t.Helper()
		if err := s.emu.PublishData(id, iface, path, payload, 2); err != nil {
			t.Fatal(err)
		}
	}
	publish("com.example.e2e.SrvData", "/x1/temp", bsonVT(t, 3.25, &ts))
	expect("data_received", "com.example.e2e.SrvData", "/x1/temp", "3.25", "2024-03-04T05:06:07.089Z")
	publish("com.example.e2e.SrvData", "/x1/big", bsonVT(t, int64(9223372036854775807), nil))
	expect("data_received", "com.example.e2e.SrvData", "/x1/big", "9223372036854775807", "<nil>")
	publish("com.example.e2e.SrvData", "/x1/blob", bsonVT(t, bson.Binary{Subtype: 0, Data: []byte{0, 1, 2, 255}}, nil))
	expect("data_received", "com.example.e2e.SrvData", "/x1/blob", `"AAEC/w=="`, "<nil>")
	publish("com.example.e2e.SrvObj", "/o1", bsonVT(t, bson.D{{Key: "a", Value: int32(7)}, {Key: "b", Value: "s"}}, nil))
	expect("data_received", "com.example.e2e.SrvObj", "/o1", `{"a":7,"b":"s"}`, "<nil>")

	// Invalid data is dropped and counted: a string for a double, a path
	// no mapping matches, an unset on a datastream, a non-BSON payload.
	publish("com.example.e2e.SrvData", "/x1/temp", bsonVT(t, "hot", &ts))
	publish("com.example.e2e.SrvData", "/x1/nope", bsonVT(t, int32(1), nil))
	publish("com.example.e2e.SrvData", "/x1/big", nil)
	publish("com.example.e2e.SrvData", "/x1/big", []byte("not bson"))

	// Server-owned properties: stored, then streamed.
	for k, p := range []string{"/p1/rate", "/p2/rate", "/p3/rate"} {
		publish("com.example.e2e.SrvProps", p, bsonVT(t, int32(9+k), nil))
		expect("data_received", "com.example.e2e.SrvProps", p, fmt.Sprint(9+k), "<nil>")
	}
	st := s.ok("status", map[string]any{"device_id": id})
	// Inbound messages are handled in order, so every ping and the
	// invalid messages were handled before /p3/rate.
	if st["inbound_dropped"] != json.Number("4") || st["received"] != json.Number(fmt.Sprint(7+pings)) {
		t.Fatalf("status after %d pings, 4 invalid and 7 valid inbound messages: received %v inbound_dropped %v",
			pings, st["received"], st["inbound_dropped"])
	}
	prop := func(path string) map[string]any {
		return s.ok("get_property", map[string]any{"device_id": id, "interface": "com.example.e2e.SrvProps", "path": path})
	}
	if r := prop("/p1/rate"); r["set"] != true || r["value"] != json.Number("9") {
		t.Fatalf("get_property /p1/rate: %v", r)
	}
	list := func(iface string) string {
		req := map[string]any{"device_id": id}
		if iface != "" {
			req["interface"] = iface
		}
		var out []string
		items, _ := s.ok("list_properties", req)["properties"].([]any)
		for _, it := range items {
			m, _ := it.(map[string]any)
			out = append(out, fmt.Sprintf("%v%v=%v(%v)", m["interface"], m["path"], m["value"], m["ownership"]))
		}
		sort.Strings(out)
		return fmt.Sprint(out)
	}
	if got := list("com.example.e2e.SrvProps"); got != "[com.example.e2e.SrvProps/p1/rate=9(server) com.example.e2e.SrvProps/p2/rate=10(server) com.example.e2e.SrvProps/p3/rate=11(server)]" {
		t.Fatalf("list_properties: %s", got)
	}

	// Unset by an empty payload.
	publish("com.example.e2e.SrvProps", "/p2/rate", nil)
	expect("property_unset", "com.example.e2e.SrvProps", "/p2/rate", "null", "<nil>")
	if r := prop("/p2/rate"); r["set"] != false {
		t.Fatalf("get_property after unset: %v", r)
	}
	// consumer/properties lists only /p1/rate: /p3/rate is purged, the
	// device-owned property is untouched.
	if err := s.emu.PublishConsumerProperties(id, []string{"com.example.e2e.SrvProps/p1/rate"}); err != nil {
		t.Fatal(err)
	}
	expect("property_unset", "com.example.e2e.SrvProps", "/p3/rate", "null", "<nil>")
	if got := list(""); got != "[com.example.e2e.DevProps/a/name=mine(device) com.example.e2e.SrvProps/p1/rate=9(server)]" {
		t.Fatalf("list_properties after the purge: %s", got)
	}

	// A dropped connection: disconnected with its reason, then connected.
	if err := s.emu.KickClient(base); err != nil {
		t.Fatal(err)
	}
	if e := next(); e["type"] != "disconnected" || e["reason"] == nil || e["reason"] == "" {
		t.Fatalf("event after a dropped connection: %v", e)
	}
	if e := next(); e["type"] != "connected" {
		t.Fatalf("event after reconnecting: %v", e)
	}
	// Server data after the reconnection still arrives (persistent session).
	publish("com.example.e2e.SrvData", "/x2/temp", bsonVT(t, -1.5, &ts))
	expect("data_received", "com.example.e2e.SrvData", "/x2/temp", "-1.5", "2024-03-04T05:06:07.089Z")
}

// subscribe streams only the event types asked for and ends with the page
// line when max_events is reached.
func TestHostSubscribeTypesAndEnd(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	id := s.pair()
	s.addInterfaces(id, srvProps, srvData)
	s.connect(id)
	base := s.base(id)
	ctx := within(t, 30*time.Second)
	if err := s.emu.Wait(ctx, func() bool { return len(s.emu.Subscriptions(base)) == 3 }); err != nil {
		t.Fatal(err)
	}
	events := s.openStream("subscribe", map[string]any{"device_id": id, "types": []string{"property_unset"}, "max_events": 2, "timeout_ms": 30000})
	// data_received events are filtered out; unsets of a property come
	// through. Keep publishing until the subscription is live.
	var lines []map[string]any
	for k := 0; k < 200 && len(lines) < 3; k++ {
		if err := s.emu.PublishData(id, "com.example.e2e.SrvProps", "/p/rate", bsonVT(t, int32(k), nil), 2); err != nil {
			t.Fatal(err)
		}
		if err := s.emu.PublishData(id, "com.example.e2e.SrvProps", "/p/rate", nil, 2); err != nil {
			t.Fatal(err)
		}
		for more := true; more && len(lines) < 3; {
			select {
			case line, ok := <-events.lines:
				if !ok {
					t.Fatalf("stream ended after %v", lines)
				}
				var m map[string]any
				if err := json.Unmarshal(line, &m); err != nil {
					t.Fatalf("stream line %s: %v", line, err)
				}
				lines = append(lines, m)
			case <-time.After(50 * time.Millisecond):
				more = false
			}
		}
	}
	if len(lines) != 3 {
		t.Fatalf("stream lines %v", lines)
	}
	for _, e := range lines[:2] {
		if e["type"] != "property_unset" || e["path"] != "/p/rate" {
			t.Fatalf("filtered stream item %v", e)
		}
	}
	if _, ok := lines[2]["page"]; !ok {
		t.Fatalf("stream end %v, want the page line", lines[2])
	}
	select {
	case line, ok := <-events.lines:
		if ok {
			t.Fatalf("line after the end of the stream: %s", line)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("stream not closed after its page line")
	}
}
