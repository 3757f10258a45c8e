package connector

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/uuid"
	"google.golang.org/grpc/codes"

	msghubemu "github.com/connector-host/connector-host/testkit/emulators/msghub"
)

const (
	hubData = `{"interface_name":"com.example.hub.Data","version_major":1,"version_minor":0,"type":"datastream","ownership":"device",
	  "mappings":[{"endpoint":"/%{s}/value","type":"double","reliability":"guaranteed","retention":"stored"}]}`
	hubProps = `{"interface_name":"com.example.hub.Props","version_major":1,"version_minor":0,"type":"properties","ownership":"device",
	  "mappings":[{"endpoint":"/name","type":"string","allow_unset":true}]}`
	hubBad = `{"interface_name":"com.example.hub.Bad","version_major":1,"version_minor":0,"type":"datastream","ownership":"device",
	  "mappings":[{"endpoint":"/x","type":"boolean"}]}`
)

// newHubHarness runs the plugin in-process (no pairing settings: the grpc
// transport needs only the realm) and a local Message Hub.
func newHubHarness(t *testing.T, p msghubemu.Protocol) (*harness, *msghubemu.Hub) {
	t.Helper()
	hub, err := msghubemu.Start(msghubemu.Options{Protocol: p})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = hub.Close() })
	h := &harness{t: t, dir: t.TempDir(), settings: map[string]any{"realm": "test", "msghub_protocol": string(p)}}
	h.integ = h.start(filepath.Join(h.dir, "data"))
	return h, hub
}

func hubWithin(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// waitState polls status until the device is in state.
func (h *harness) waitState(id, state string) {
	h.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		st := h.ok("status", map[string]any{"device_id": id})
		if st["state"] == state {
			return
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("device %s: state %v after 10s, want %s", id, st["state"], state)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestMessageHubConnectNodeIDShutdownResume(t *testing.T) {
	t.Parallel()
	h, hub := newHubHarness(t, msghubemu.Protocol07)
	id := h.ok("generate_device_id", map[string]any{})["device_id"].(string)
	for _, doc := range []string{hubData, hubProps} {
		h.ok("add_interface", map[string]any{"device_id": id, "interface": obj(doc)})
	}
	// Local checks before anything reaches the hub.
	h.fail("connect", map[string]any{"device_id": id, "transport": "carrier-pigeon"}, "bad_request", "request.transport")
	h.fail("connect", map[string]any{"device_id": id, "transport": "grpc", "msghub_address": "nohost"}, "bad_request", "request.msghub_address")
	h.fail("connect", map[string]any{"device_id": id, "transport": "grpc", "node_id": "node-1"}, "bad_request", "request.node_id")
	h.fail("connect", map[string]any{"device_id": id, "transport": "grpc", "node_id": uuid.Nil.String()}, "bad_request", "nil UUID")
	h.fail("connect", map[string]any{"device_id": id, "node_id": uuid.NewString()}, "bad_request", "transport grpc")
	saved := h.settings["msghub_protocol"]
	h.settings["msghub_protocol"] = "0.9"
	h.fail("connect", map[string]any{"device_id": id, "transport": "grpc"}, "bad_request", "settings.msghub_protocol")
	h.settings["msghub_protocol"] = saved
	if n := len(hub.Calls()); n != 0 {
		t.Fatalf("the hub got %d calls from invalid connects", n)
	}

	// No node id: one is generated, saved and used.
	st := h.ok("connect", map[string]any{"device_id": id, "transport": "grpc", "msghub_address": hub.Addr(), "wait": true, "timeout_ms": 10000})
	nodeID, _ := st["node_id"].(string)
	if st["state"] != "connected" || st["transport"] != "grpc" || st["msghub_address"] != hub.Addr() {
		t.Fatalf("connect %v", st)
	}
	if _, err := uuid.Parse(nodeID); err != nil {
		t.Fatalf("node id %q: %v", nodeID, err)
	}
	if a := hub.Attaches(); len(a) != 1 || a[0].NodeID != nodeID || len(a[0].Interfaces) != 2 {
		t.Fatalf("attaches %+v", a)
	}
	if st := h.ok("status", map[string]any{"device_id": id}); st["node_id"] != nodeID || st["msghub_address"] != hub.Addr() {
		t.Fatalf("status %v", st)
	}
	if d := h.ok("send", map[string]any{"device_id": id, "interface": "com.example.hub.Data", "path": "/a/value", "value": 1.5}); d["delivery"] != "delivered" {
		t.Fatalf("send %v", d)
	}

	// Plugin shutdown detaches.
	ctx := hubWithin(t)
	if err := h.integ.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if a := hub.Attaches(); hub.Attached(nodeID) || a[0].Ended != "detach" {
		t.Fatalf("after shutdown: attached %v, %+v", hub.Attached(nodeID), a)
	}
	// A new plugin on the same data dir re-attaches the device by itself,
	// with the same node id.
	h.integ = h.start(filepath.Join(h.dir, "data"))
	if err := hub.WaitAttached(ctx, nodeID, 2); err != nil {
		t.Fatal(err)
	}
	// Disconnect detaches; a later connect without node id keeps it.
	h.ok("disconnect", map[string]any{"device_id": id})
	if hub.Attached(nodeID) {
		t.Fatal("attached after disconnect")
	}
	st = h.ok("connect", map[string]any{"device_id": id, "transport": "grpc", "msghub_address": hub.Addr(), "wait": true})
	if st["node_id"] != nodeID {
		t.Fatalf("node id changed: %v", st)
	}
	h.ok("disconnect", map[string]any{"device_id": id})
	// An explicit node id replaces it.
	other := uuid.NewString()
	st = h.ok("connect", map[string]any{"device_id": id, "transport": "grpc", "msghub_address": hub.Addr(), "node_id": other, "wait": true})
	if st["node_id"] != other || !hub.Attached(other) {
		t.Fatalf("explicit node id: %v", st)
	}
	for _, c := range hub.Calls() {
		if c.MetadataKey != "node-id" || (c.NodeID != nodeID && c.NodeID != other) {
			t.Fatalf("call %+v", c)
		}
	}
	// Another device cannot take that node id.
	id2 := h.ok("generate_device_id", map[string]any{})["device_id"].(string)
	h.ok("add_interface", map[string]any{"device_id": id2, "interface": obj(hubData)})
	h.fail("connect", map[string]any{"device_id": id2, "transport": "grpc", "msghub_address": hub.Addr(), "node_id": other}, "conflict", "node id of device "+id)
}

func TestMessageHubStatusCodes(t *testing.T) {
	t.Parallel()
	h, hub := newHubHarness(t, msghubemu.Protocol08)
	id := h.ok("generate_device_id", map[string]any{})["device_id"].(string)
	for _, doc := range []string{hubData, hubProps} {
		h.ok("add_interface", map[string]any{"device_id": id, "interface": obj(doc)})
	}
	nodeID := uuid.NewString()
	connect := map[string]any{"device_id": id, "transport": "grpc", "msghub_address": hub.Addr(), "node_id": nodeID, "wait": true, "timeout_ms": 700}
	// A refused Attach answers connect with the hub's code (the device
	// keeps trying).
	for k := 0; k < 20; k++ {
		hub.Fail("Attach", codes.InvalidArgument, "interface com.example.hub.Data is invalid")
	}
	h.fail("connect", connect, "bad_request", "interface com.example.hub.Data is invalid")
	h.ok("disconnect", map[string]any{"device_id": id})
	hub.ResetFailures()
	for k := 0; k < 20; k++ {
		hub.Fail("Attach", codes.Unauthenticated, "node not authenticated")
	}
	h.fail("connect", connect, "unauthenticated", "node not authenticated")
	h.ok("disconnect", map[string]any{"device_id": id})
	hub.ResetFailures()
	hub.ResetRecords()
	connect["timeout_ms"] = 10000
	h.ok("connect", connect)

	send := map[string]any{"device_id": id, "interface": "com.example.hub.Data", "path": "/a/value", "value": 2.0}
	hub.Fail("Send", codes.Internal, "Unable to publish astarte message, err: boom")
	h.fail("send", send, "service_error", "boom")
	hub.Fail("Send", codes.InvalidArgument, "bad message")
	h.fail("send", send, "bad_request", "bad message")
	// UNAUTHENTICATED: the hub forgot the node; the device re-attaches.
	hub.Fail("Send", codes.Unauthenticated, "node not attached")
	h.fail("send", send, "unauthenticated", "node not attached")
	if err := hub.WaitAttached(hubWithin(t), nodeID, 2); err != nil {
		t.Fatal(err)
	}
	// The hub has the new Attach; the device is connected once it reads
	// the answer (an interface added before that would not reach the hub).
	h.waitState(id, "connected")
	// Adding an interface the hub refuses fails and is rolled back.
	hub.Fail("AddInterfaces", codes.Internal, "interface conflict")
	h.fail("add_interface", map[string]any{"device_id": id, "interface": obj(hubBad)}, "service_error", "interface conflict")
	if l := h.ok("list_interfaces", map[string]any{"device_id": id}); l["introspection"] != "com.example.hub.Data:1:0;com.example.hub.Props:1:0" {
		t.Fatalf("refused interface kept: %v", l["introspection"])
	}
	h.ok("add_interface", map[string]any{"device_id": id, "interface": obj(hubBad)})
	if got := hub.Introspection(nodeID); len(got) != 3 {
		t.Fatalf("hub introspection %v", got)
	}
	h.ok("remove_interface", map[string]any{"device_id": id, "interface_name": "com.example.hub.Bad"})
	if got := hub.Introspection(nodeID); len(got) != 2 {
		t.Fatalf("hub introspection after remove %v", got)
	}
}
