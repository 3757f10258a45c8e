package main_test

// End-to-end tests of the grpc transport: a real host (testkit/harness)
// serving the real connector-astarte process over its HTTP API, devices
// attached to the local Message Hub of testkit/emulators/msghub, for both
// wire versions (0.7 and 0.8) from one table.

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"

	"github.com/connector-host/connector-host/host/config"
	msghubemu "github.com/connector-host/connector-host/testkit/emulators/msghub"
	"github.com/connector-host/connector-host/testkit/harness"
)

// Interfaces of the Message Hub tests.
const (
	hubAllTypes = `{"interface_name":"com.example.hub.AllTypes","version_major":1,"version_minor":0,"type":"datastream","ownership":"device",
	  "mappings":[
	    {"endpoint":"/%{s}/double","type":"double","explicit_timestamp":true},
	    {"endpoint":"/%{s}/integer","type":"integer","explicit_timestamp":true},
	    {"endpoint":"/%{s}/boolean","type":"boolean","explicit_timestamp":true},
	    {"endpoint":"/%{s}/longinteger","type":"longinteger","explicit_timestamp":true},
	    {"endpoint":"/%{s}/string","type":"string","explicit_timestamp":true},
	    {"endpoint":"/%{s}/binaryblob","type":"binaryblob","explicit_timestamp":true},
	    {"endpoint":"/%{s}/datetime","type":"datetime","explicit_timestamp":true},
	    {"endpoint":"/%{s}/doublearray","type":"doublearray","explicit_timestamp":true},
	    {"endpoint":"/%{s}/integerarray","type":"integerarray","explicit_timestamp":true},
	    {"endpoint":"/%{s}/booleanarray","type":"booleanarray","explicit_timestamp":true},
	    {"endpoint":"/%{s}/longintegerarray","type":"longintegerarray","explicit_timestamp":true},
	    {"endpoint":"/%{s}/stringarray","type":"stringarray","explicit_timestamp":true},
	    {"endpoint":"/%{s}/binaryblobarray","type":"binaryblobarray","explicit_timestamp":true},
	    {"endpoint":"/%{s}/datetimearray","type":"datetimearray","explicit_timestamp":true},
	    {"endpoint":"/%{s}/plain","type":"integer"}]}`
	hubGeo = `{"interface_name":"com.example.hub.Geo","version_major":1,"version_minor":0,"type":"datastream","ownership":"device","aggregation":"object",
	  "mappings":[{"endpoint":"/%{id}/lat","type":"double","explicit_timestamp":true},
	              {"endpoint":"/%{id}/lon","type":"double","explicit_timestamp":true},
	              {"endpoint":"/%{id}/tags","type":"stringarray","explicit_timestamp":true}]}`
	hubDevProps = `{"interface_name":"com.example.hub.DevProps","version_major":1,"version_minor":0,"type":"properties","ownership":"device",
	  "mappings":[{"endpoint":"/%{n}/name","type":"string","allow_unset":true},{"endpoint":"/%{n}/level","type":"integer"}]}`
	hubSrvProps = `{"interface_name":"com.example.hub.SrvProps","version_major":1,"version_minor":0,"type":"properties","ownership":"server",
	  "mappings":[{"endpoint":"/%{n}/rate","type":"integer","allow_unset":true}]}`
	hubSrvData = `{"interface_name":"com.example.hub.SrvData","version_major":1,"version_minor":0,"type":"datastream","ownership":"server",
	  "mappings":[{"endpoint":"/ping","type":"integer"},{"endpoint":"/%{x}/temp","type":"double"},{"endpoint":"/%{x}/blob","type":"binaryblob"}]}`
	hubSrvObj = `{"interface_name":"com.example.hub.SrvObj","version_major":1,"version_minor":0,"type":"datastream","ownership":"server","aggregation":"object",
	  "mappings":[{"endpoint":"/%{c}/op","type":"string"},{"endpoint":"/%{c}/n","type":"longinteger"}]}`
	hubRetention = `{"interface_name":"com.example.hub.Retention","version_major":1,"version_minor":0,"type":"datastream","ownership":"device",
	  "mappings":[{"endpoint":"/stored","type":"integer","reliability":"guaranteed","retention":"stored"},
	              {"endpoint":"/volatile","type":"integer","reliability":"guaranteed","retention":"volatile"},
	              {"endpoint":"/discard","type":"integer","reliability":"unreliable"}]}`
)

var hubProtocols = []msghubemu.Protocol{msghubemu.Protocol07, msghubemu.Protocol08}

// hubStack is a Message Hub emulator and a host whose astarte connector
// talks to it (settings: realm and msghub_protocol only; no pairing).
type hubStack struct {
	*stack
	hub *msghubemu.Hub
}

func newHubStack(t *testing.T, p msghubemu.Protocol) *hubStack {
	t.Helper()
	bin := pluginBinary(t)
	hub, err := msghubemu.Start(msghubemu.Options{Protocol: p})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = hub.Close() })
	s := &stack{t: t, bin: bin, settings: map[string]any{"realm": "test", "msghub_protocol": string(p)}}
	s.host = harness.StartHost(t, []harness.Plugin{{Path: bin}}, func(c *config.Config) {
		c.Connectors["astarte"] = config.Connector{Settings: s.settings}
	})
	return &hubStack{stack: s, hub: hub}
}

// device creates a device with interfaces and attaches it with nodeID
// (generated when empty), waiting until connected.
func (s *hubStack) device(nodeID string, docs ...string) (id string, node string) {
	s.t.Helper()
	id, _ = s.ok("generate_device_id", map[string]any{})["device_id"].(string)
	s.addInterfaces(id, docs...)
	req := map[string]any{"device_id": id, "transport": "grpc", "msghub_address": s.hub.Addr(), "wait": true, "timeout_ms": 20000}
	if nodeID != "" {
		req["node_id"] = nodeID
	}
	st := s.ok("connect", req)
	node, _ = st["node_id"].(string)
	if st["state"] != "connected" || st["transport"] != "grpc" || (nodeID != "" && node != nodeID) {
		s.t.Fatalf("connect: %v", st)
	}
	return id, node
}

// expectMessage checks a recorded Send against the protobuf text of the
// hub's protocol.
func (s *hubStack) expectMessage(what string, got msghubemu.Send, text string) {
	s.t.Helper()
	want := s.hub.NewMessage("AstarteMessage")
	if err := prototext.Unmarshal([]byte(text), want); err != nil {
		s.t.Fatalf("%s: expected text: %v", what, err)
	}
	if got.Code != codes.OK || !proto.Equal(got.Message, want) {
		s.t.Fatalf("%s (%s):\n got %v (%v %s)\nwant %s", what, s.hub.Protocol(), prototext.Format(got.Message), got.Code, got.Error, text)
	}
}

// waitHubStatus polls status until cond holds.
func (s *hubStack) waitHubStatus(id, what string, cond func(map[string]any) bool) map[string]any {
	s.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		st := s.ok("status", map[string]any{"device_id": id})
		if cond(st) {
			return st
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("status never %s: %v", what, st)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// drainStall is how long waitHubDrained waits for the drain to move on.
const drainStall = 20 * time.Second

// waitHubDrained polls status until the device is connected with an empty
// durable queue, and returns that status. How long a drain takes is not
// bounded: the device first re-attaches after its reconnection backoff
// (which grew while the hub was down), then sends the queue one hub round
// trip per message with a synced acknowledgement per window, at whatever
// pace the machine allows: for TestHubSendBatch's 1,050 messages about
// 2 s on an idle machine, 7 s beside another test package, and more than
// the 20 s once given to the whole drain in CI's full run. What must hold
// is that it never stalls, so the test fails when the device has not
// connected, or the queue has not shrunk, for drainStall.
func (s *hubStack) waitHubDrained(id string) map[string]any {
	s.t.Helper()
	connected := false
	minQueue := -1
	progress := time.Now()
	for {
		st := s.ok("status", map[string]any{"device_id": id})
		n, _ := st["queued_stored"].(json.Number)
		q, err := n.Int64()
		if err != nil {
			s.t.Fatalf("status without queued_stored: %v", st)
		}
		if st["state"] == "connected" {
			if q == 0 {
				return st
			}
			if !connected {
				connected, progress = true, time.Now()
			}
		}
		if minQueue < 0 || int(q) < minQueue {
			minQueue, progress = int(q), time.Now()
		}
		if time.Since(progress) > drainStall {
			s.t.Fatalf("status never drained: no progress for %s (connected: %v, shortest queue: %d): %v", drainStall, connected, minQueue, st)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

const hubTS = "2025-06-17T10:20:30.456Z"

// Every Astarte type (arrays included), an object, an explicit timestamp
// and its absence, a property set and unset arrive at the hub as exactly
// these protobuf values, in 0.7 and in 0.8; the Attach carried the
// node's interfaces and every call the node-id metadata.
func TestHubEveryTypeArrivesAsProtobuf(t *testing.T) {
	t.Parallel()
	ts := `timestamp:{seconds:1750155630 nanos:456000000}`
	cases := []struct {
		path  string
		value any
		v07   string // the value union in 0.7
		v08   string // in 0.8
	}{
		{"/s/double", -2.25, `astarte_double:-2.25`, `double:-2.25`},
		{"/s/integer", -2147483648, `astarte_integer:-2147483648`, `integer:-2147483648`},
		{"/s/boolean", false, `astarte_boolean:false`, `boolean:false`},
		{"/s/longinteger", "9007199254740993", `astarte_long_integer:9007199254740993`, `long_integer:9007199254740993`},
		{"/s/string", "héllo", `astarte_string:"héllo"`, `string:"héllo"`},
		{"/s/binaryblob", "AAH/", `astarte_binary_blob:"\x00\x01\xff"`, `binary_blob:"\x00\x01\xff"`},
		{"/s/datetime", "2024-02-29T12:00:00.123Z", `astarte_date_time:{seconds:1709208000 nanos:123000000}`, `date_time:{seconds:1709208000 nanos:123000000}`},
		{"/s/doublearray", []any{1, -0.5}, `astarte_double_array:{values:[1,-0.5]}`, `double_array:{values:[1,-0.5]}`},
		{"/s/integerarray", []any{}, `astarte_integer_array:{}`, `integer_array:{}`},
		{"/s/booleanarray", []any{true, false}, `astarte_boolean_array:{values:[true,false]}`, `boolean_array:{values:[true,false]}`},
		{"/s/longintegerarray", []any{-1, "9223372036854775807"}, `astarte_long_integer_array:{values:[-1,9223372036854775807]}`, `long_integer_array:{values:[-1,9223372036854775807]}`},
		{"/s/stringarray", []any{"a", ""}, `astarte_string_array:{values:["a",""]}`, `string_array:{values:["a",""]}`},
		{"/s/binaryblobarray", []any{"AQ==", ""}, `astarte_binary_blob_array:{values:["\x01",""]}`, `binary_blob_array:{values:["\x01",""]}`},
		{"/s/datetimearray", []any{"2024-02-29T12:00:00.123Z", "1970-01-01T00:00:00Z"}, `astarte_date_time_array:{values:[{seconds:1709208000 nanos:123000000},{}]}`, `date_time_array:{values:[{seconds:1709208000 nanos:123000000},{}]}`},
	}
	for _, p := range hubProtocols {
		t.Run(string(p), func(t *testing.T) {
			t.Parallel()
			s := newHubStack(t, p)
			nodeID := uuid.NewString()
			id, _ := s.device(nodeID, hubAllTypes, hubGeo, hubDevProps)

			a := s.hub.Attaches()
			if len(a) != 1 || a[0].NodeID != nodeID || len(a[0].Interfaces) != 3 {
				t.Fatalf("attach %+v", a)
			}
			for _, doc := range a[0].Interfaces {
				var m map[string]any
				if err := json.Unmarshal([]byte(doc), &m); err != nil || !strings.HasPrefix(fmt.Sprint(m["interface_name"]), "com.example.hub.") {
					t.Fatalf("attach interface %s", doc)
				}
			}
			if got := s.hub.Introspection(nodeID); strings.Join(got, " ") != "com.example.hub.AllTypes:1:0 com.example.hub.DevProps:1:0 com.example.hub.Geo:1:0" {
				t.Fatalf("hub introspection %v", got)
			}

			var want []string
			for _, c := range cases {
				s.ok("send", map[string]any{"device_id": id, "interface": "com.example.hub.AllTypes", "path": c.path, "value": c.value, "timestamp": hubTS})
				if p == msghubemu.Protocol07 {
					want = append(want, fmt.Sprintf(`interface_name:"com.example.hub.AllTypes" path:%q astarte_data:{astarte_individual:{%s}} %s`, c.path, c.v07, ts))
				} else {
					want = append(want, fmt.Sprintf(`interface_name:"com.example.hub.AllTypes" path:%q datastream_individual:{data:{%s} %s}`, c.path, c.v08, ts))
				}
			}
			// No explicit timestamp: none on the wire.
			s.ok("send", map[string]any{"device_id": id, "interface": "com.example.hub.AllTypes", "path": "/s/plain", "value": 0})
			// An object with its timestamp.
			s.ok("send_aggregate", map[string]any{"device_id": id, "interface": "com.example.hub.Geo", "path": "/g1",
				"value": map[string]any{"lat": 45.5, "lon": -7.25, "tags": []any{"a", "b"}}, "timestamp": hubTS})
			// A property set and unset.
			if d := s.ok("set_property", map[string]any{"device_id": id, "interface": "com.example.hub.DevProps", "path": "/a/name", "value": "x"}); d["delivery"] != "delivered" {
				t.Fatalf("set_property %v", d)
			}
			if d := s.ok("unset_property", map[string]any{"device_id": id, "interface": "com.example.hub.DevProps", "path": "/a/name"}); d["delivery"] != "delivered" {
				t.Fatalf("unset_property %v", d)
			}
			if p == msghubemu.Protocol07 {
				want = append(want,
					`interface_name:"com.example.hub.AllTypes" path:"/s/plain" astarte_data:{astarte_individual:{astarte_integer:0}}`,
					`interface_name:"com.example.hub.Geo" path:"/g1" astarte_data:{astarte_object:{object_data:[{key:"lat" value:{astarte_double:45.5}},{key:"lon" value:{astarte_double:-7.25}},{key:"tags" value:{astarte_string_array:{values:["a","b"]}}}]}} `+ts,
					`interface_name:"com.example.hub.DevProps" path:"/a/name" astarte_data:{astarte_individual:{astarte_string:"x"}}`,
					`interface_name:"com.example.hub.DevProps" path:"/a/name" astarte_unset:{}`)
			} else {
				want = append(want,
					`interface_name:"com.example.hub.AllTypes" path:"/s/plain" datastream_individual:{data:{integer:0}}`,
					`interface_name:"com.example.hub.Geo" path:"/g1" datastream_object:{data:[{key:"lat" value:{double:45.5}},{key:"lon" value:{double:-7.25}},{key:"tags" value:{string_array:{values:["a","b"]}}}] `+ts+`}`,
					`interface_name:"com.example.hub.DevProps" path:"/a/name" property_individual:{data:{string:"x"}}`,
					`interface_name:"com.example.hub.DevProps" path:"/a/name" property_individual:{}`)
			}
			sends := s.hub.SendsFrom(nodeID)
			if len(sends) != len(want) {
				t.Fatalf("%d sends, want %d", len(sends), len(want))
			}
			for k, w := range want {
				s.expectMessage(fmt.Sprintf("send %d", k), sends[k], w)
			}
			for _, c := range s.hub.Calls() {
				if c.NodeID != nodeID || c.MetadataKey != "node-id" {
					t.Fatalf("call without the node id: %+v", c)
				}
			}
			// Disconnect detaches.
			if st := s.ok("disconnect", map[string]any{"device_id": id}); st["state"] != "disconnected" {
				t.Fatalf("disconnect %v", st)
			}
			if a := s.hub.Attaches(); a[0].Ended != "detach" || s.hub.Attached(nodeID) {
				t.Fatalf("after disconnect: %+v", a)
			}
		})
	}
}

// What the hub streams reaches subscribe and the property store: server
// data, objects, property values and unsets, hub errors (hub_error); events
// for undeclared or device-owned interfaces, or that break the interface,
// are dropped and counted.
func TestHubServerDataReachesSubscribe(t *testing.T) {
	t.Parallel()
	for _, p := range hubProtocols {
		t.Run(string(p), func(t *testing.T) {
			t.Parallel()
			s := newHubStack(t, p)
			// A stored server property is replayed on Attach.
			if err := s.hub.SetServerProperty("com.example.hub.SrvProps", "/p0/rate", int32(4)); err != nil {
				t.Fatal(err)
			}
			id, nodeID := s.device("", hubDevProps, hubSrvProps, hubSrvData, hubSrvObj)
			r := s.ok("get_property", map[string]any{"device_id": id, "interface": "com.example.hub.SrvProps", "path": "/p0/rate"})
			for k := 0; k < 200 && r["set"] != true; k++ {
				time.Sleep(10 * time.Millisecond)
				r = s.ok("get_property", map[string]any{"device_id": id, "interface": "com.example.hub.SrvProps", "path": "/p0/rate"})
			}
			if r["set"] != true || r["value"] != json.Number("4") {
				t.Fatalf("replayed property %v", r)
			}

			events := s.openStream("subscribe", map[string]any{"device_id": id, "timeout_ms": 50000})
			synced, pings := false, 0
			for k := 0; k < 100 && !synced; k++ {
				pings++
				if err := s.hub.Push(nodeID, msghubemu.Data{Interface: "com.example.hub.SrvData", Path: "/ping", Value: int32(k)}); err != nil {
					t.Fatal(err)
				}
				select {
				case line, ok := <-events.lines:
					if !ok {
						t.Fatal("subscribe ended")
					}
					if !strings.Contains(string(line), `"/ping"`) {
						t.Fatalf("first event %s", line)
					}
					synced = true
				case <-time.After(100 * time.Millisecond):
				}
			}
			if !synced {
				t.Fatal("no event reached subscribe")
			}
			next := func() map[string]any {
				t.Helper()
				for {
					e := events.next(t, 15*time.Second)
					if e["path"] != "/ping" {
						return e
					}
				}
			}
			expect := func(want string) {
				t.Helper()
				e := next()
				got := fmt.Sprintf("%v %v %v %s", e["type"], e["interface"], e["path"], canonical(t, e["value"]))
				if e["type"] == "hub_error" {
					got = fmt.Sprintf("hub_error %v %s", e["description"], canonical(t, e["source"]))
				}
				if got != want || e["device_id"] != id {
					t.Fatalf("event %s\n got %s\nwant %s", canonical(t, e), got, want)
				}
			}
			push := func(d msghubemu.Data) {
				t.Helper()
				if err := s.hub.Push(nodeID, d); err != nil {
					t.Fatal(err)
				}
			}
			push(msghubemu.Data{Interface: "com.example.hub.SrvData", Path: "/x1/temp", Value: 3.25})
			expect("data_received com.example.hub.SrvData /x1/temp 3.25")
			push(msghubemu.Data{Interface: "com.example.hub.SrvData", Path: "/x1/blob", Value: []byte{0, 1, 2, 255}})
			expect(`data_received com.example.hub.SrvData /x1/blob "AAEC/w=="`)
			push(msghubemu.Data{Interface: "com.example.hub.SrvObj", Path: "/c1", Object: map[string]any{"op": "go", "n": int64(1) << 60}})
			expect(`data_received com.example.hub.SrvObj /c1 {"n":1152921504606846976,"op":"go"}`)
			if err := s.hub.SetServerProperty("com.example.hub.SrvProps", "/p1/rate", int32(9)); err != nil {
				t.Fatal(err)
			}
			expect("data_received com.example.hub.SrvProps /p1/rate 9")
			if err := s.hub.PushError(nodeID, "cannot receive from Astarte", "connection reset", "eof"); err != nil {
				t.Fatal(err)
			}
			expect(`hub_error cannot receive from Astarte ["connection reset","eof"]`)
			// Dropped and counted: undeclared, device-owned, a wrong type,
			// an unknown path, an unset on a datastream.
			push(msghubemu.Data{Interface: "com.example.hub.Nope", Path: "/x", Value: 1.0})
			push(msghubemu.Data{Interface: "com.example.hub.DevProps", Path: "/a/name", Value: "from the server"})
			push(msghubemu.Data{Interface: "com.example.hub.SrvData", Path: "/x1/temp", Value: "hot"})
			push(msghubemu.Data{Interface: "com.example.hub.SrvData", Path: "/x1/nope", Value: 1.0})
			push(msghubemu.Data{Interface: "com.example.hub.SrvData", Path: "/x1/temp", Kind: msghubemu.KindUnset})
			if err := s.hub.UnsetServerProperty("com.example.hub.SrvProps", "/p1/rate"); err != nil {
				t.Fatal(err)
			}
			expect("property_unset com.example.hub.SrvProps /p1/rate null")
			st := s.ok("status", map[string]any{"device_id": id})
			if st["inbound_dropped"] != json.Number("5") || st["hub_errors"] != json.Number("1") {
				t.Fatalf("status: inbound_dropped %v hub_errors %v", st["inbound_dropped"], st["hub_errors"])
			}
			if r := s.ok("get_property", map[string]any{"device_id": id, "interface": "com.example.hub.SrvProps", "path": "/p1/rate"}); r["set"] != false {
				t.Fatalf("unset property still set: %v", r)
			}
			if r := s.ok("get_property", map[string]any{"device_id": id, "interface": "com.example.hub.DevProps", "path": "/a/name"}); r["set"] != false {
				t.Fatalf("a server write to a device-owned property was stored: %v", r)
			}
			// hub_error can be selected alone.
			only := s.openStream("subscribe", map[string]any{"device_id": id, "types": []string{"hub_error"}, "max_events": 1, "timeout_ms": 20000})
			for k := 0; k < 100; k++ {
				if err := s.hub.PushError(nodeID, fmt.Sprint("again ", k)); err != nil {
					t.Fatal(err)
				}
				select {
				case line := <-only.lines:
					if !strings.Contains(string(line), `"type":"hub_error"`) {
						t.Fatalf("filtered stream %s", line)
					}
					return
				case <-time.After(100 * time.Millisecond):
				}
			}
			t.Fatal("no hub_error on the filtered stream")
		})
	}
}

// The hub restarts (and, in 0.8, ends the stream with UNAVAILABLE) while
// the device is attached: the plugin re-attaches by itself; stored
// messages sent meanwhile arrive in order after the re-Attach, then the
// volatile ones; discard ones fail while detached; a property set meanwhile
// is delivered.
func TestHubRestartReattachesAndDrainsInOrder(t *testing.T) {
	t.Parallel()
	for _, p := range hubProtocols {
		t.Run(string(p), func(t *testing.T) {
			t.Parallel()
			s := newHubStack(t, p)
			id, nodeID := s.device("", hubRetention, hubDevProps)
			ctx := within(t, 60*time.Second)
			if d := s.ok("send", map[string]any{"device_id": id, "interface": "com.example.hub.Retention", "path": "/stored", "value": -1}); d["delivery"] != "delivered" {
				t.Fatalf("live send %v", d)
			}
			if p == msghubemu.Protocol07 {
				s.hub.Stop()
			} else if err := s.hub.EndStream(nodeID, codes.Unavailable, "hub going away"); err != nil {
				t.Fatal(err)
			} else {
				s.hub.Stop()
			}
			s.waitHubStatus(id, "connecting", func(st map[string]any) bool { return st["state"] == "connecting" })
			s.hub.ResetRecords()

			s.fail("send", map[string]any{"device_id": id, "interface": "com.example.hub.Retention", "path": "/discard", "value": 1},
				http.StatusServiceUnavailable, "service_error", "discard")
			for k := 0; k < 20; k++ {
				if d := s.ok("send", map[string]any{"device_id": id, "interface": "com.example.hub.Retention", "path": "/stored", "value": k}); d["delivery"] != "queued_stored" {
					t.Fatalf("stored %d: %v", k, d)
				}
			}
			for k := 0; k < 3; k++ {
				if d := s.ok("send", map[string]any{"device_id": id, "interface": "com.example.hub.Retention", "path": "/volatile", "value": 100 + k}); d["delivery"] != "queued_volatile" {
					t.Fatalf("volatile %d: %v", k, d)
				}
			}
			if d := s.ok("set_property", map[string]any{"device_id": id, "interface": "com.example.hub.DevProps", "path": "/a/level", "value": 7}); d["delivery"] != "pending" {
				t.Fatalf("offline property %v", d)
			}
			if len(s.hub.Calls()) != 0 {
				t.Fatalf("calls reached a stopped hub: %v", s.hub.Calls())
			}
			if err := s.hub.Start(); err != nil {
				t.Fatal(err)
			}
			if err := s.hub.WaitAttached(ctx, nodeID, 1); err != nil {
				t.Fatal(err)
			}
			sends, err := s.hub.WaitSends(ctx, nodeID, 1+20+3)
			if err != nil {
				t.Fatal(err)
			}
			// The property (republished with the device's properties on
			// Attach), then the stored messages in order, then the volatile.
			s.expectMessage("property", sends[0], map[msghubemu.Protocol]string{
				msghubemu.Protocol07: `interface_name:"com.example.hub.DevProps" path:"/a/level" astarte_data:{astarte_individual:{astarte_integer:7}}`,
				msghubemu.Protocol08: `interface_name:"com.example.hub.DevProps" path:"/a/level" property_individual:{data:{integer:7}}`}[p])
			for k := 0; k < 23; k++ {
				d := sends[1+k].Data
				want, path := int32(k), "/stored"
				if k >= 20 {
					want, path = int32(100+k-20), "/volatile"
				}
				if d.Interface != "com.example.hub.Retention" || d.Path != path || d.Value != want {
					t.Fatalf("after re-attach, send %d: %+v, want %s=%d", 1+k, d, path, want)
				}
			}
			// Drained: connected and no longer draining (the queues are
			// empty before the last messages are confirmed; until the
			// device leaves draining, a send is queued behind them).
			st := s.waitHubStatus(id, "drained", func(st map[string]any) bool {
				return st["state"] == "connected" && st["draining"] == false
			})
			if st["queued_stored"] != json.Number("0") || st["queued_volatile"] != json.Number("0") {
				t.Fatalf("drained with queues: %v", st)
			}
			if st["node_id"] != nodeID {
				t.Fatalf("status %v", st)
			}
			// Live again.
			if d := s.ok("send", map[string]any{"device_id": id, "interface": "com.example.hub.Retention", "path": "/stored", "value": 99}); d["delivery"] != "delivered" {
				t.Fatalf("live send after re-attach %v", d)
			}
		})
	}
}

// Locally invalid requests fail with the documented codes before any RPC;
// the hub's refusals map to ours.
func TestHubErrorsAndLocalValidation(t *testing.T) {
	t.Parallel()
	s := newHubStack(t, msghubemu.Protocol07)
	id, _ := s.ok("generate_device_id", map[string]any{})["device_id"].(string)
	s.addInterfaces(id, hubAllTypes, hubDevProps)
	connect := func(extra map[string]any) map[string]any {
		req := map[string]any{"device_id": id, "transport": "grpc", "msghub_address": s.hub.Addr()}
		for k, v := range extra {
			req[k] = v
		}
		return req
	}
	s.fail("connect", connect(map[string]any{"node_id": "not-a-uuid"}), http.StatusBadRequest, "bad_request", "request.node_id")
	s.fail("connect", connect(map[string]any{"msghub_address": "127.0.0.1"}), http.StatusBadRequest, "bad_request", "request.msghub_address")
	if n := len(s.hub.Calls()); n != 0 {
		t.Fatalf("%d calls reached the hub", n)
	}
	st := s.ok("connect", connect(map[string]any{"wait": true, "timeout_ms": 20000}))
	nodeID, _ := st["node_id"].(string)
	if _, err := uuid.Parse(nodeID); err != nil {
		t.Fatalf("generated node id %v", st)
	}
	before := len(s.hub.Calls())
	ts := hubTS
	s.fail("send", map[string]any{"device_id": id, "interface": "com.example.hub.Nope", "path": "/x", "value": 1}, http.StatusNotFound, "not_found", "com.example.hub.Nope")
	s.fail("send", map[string]any{"device_id": id, "interface": "com.example.hub.AllTypes", "path": "/s/integer", "value": "seven", "timestamp": ts}, http.StatusBadRequest, "bad_request", "/s/integer")
	s.fail("send", map[string]any{"device_id": id, "interface": "com.example.hub.AllTypes", "path": "/s/integer", "value": 3e9, "timestamp": ts}, http.StatusBadRequest, "bad_request", "32-bit")
	s.fail("send", map[string]any{"device_id": id, "interface": "com.example.hub.AllTypes", "path": "/s/double", "value": 1.5}, http.StatusBadRequest, "bad_request", "timestamp is required")
	s.fail("set_property", map[string]any{"device_id": id, "interface": "com.example.hub.DevProps", "path": "/a/level", "value": true}, http.StatusBadRequest, "bad_request", "/a/level")
	s.fail("unset_property", map[string]any{"device_id": id, "interface": "com.example.hub.DevProps", "path": "/a/level"}, http.StatusBadRequest, "bad_request", "allow_unset")
	if after := len(s.hub.Calls()); after != before {
		t.Fatalf("locally invalid data reached the hub: %v", s.hub.Calls()[before:])
	}
	// The hub's refusals.
	send := map[string]any{"device_id": id, "interface": "com.example.hub.AllTypes", "path": "/s/plain", "value": 1}
	s.hub.Fail("Send", codes.Internal, "Unable to publish astarte message, err: Interface not found")
	s.fail("send", send, http.StatusServiceUnavailable, "service_error", "Unable to publish astarte message, err: Interface not found")
	s.hub.Fail("Send", codes.InvalidArgument, "invalid node id")
	s.fail("send", send, http.StatusBadRequest, "bad_request", "invalid node id")
	s.hub.Fail("Send", codes.Unauthenticated, "node not authenticated")
	s.fail("send", send, http.StatusUnauthorized, "unauthenticated", "node not authenticated")
	// The attachment was dropped: the device re-attaches by itself.
	if err := s.hub.WaitAttached(within(t, 30*time.Second), nodeID, 2); err != nil {
		t.Fatal(err)
	}
}
