package device

// The device's shared behaviour — local validation, the offline queues,
// persistence, server-owned properties — run from one table against every
// transport: Astarte MQTT v1 (the local Astarte) and the Message Hub gRPC
// transport in both wire versions (the local hub).

import (
	"context"
	"errors"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/connector-host/connector-host/plugins/astarte/internal/interfaces"
	"github.com/connector-host/connector-host/plugins/astarte/internal/msghub"
	"github.com/connector-host/connector-host/plugins/astarte/internal/pairing"
	"github.com/connector-host/connector-host/plugins/astarte/internal/payload"
	"github.com/connector-host/connector-host/plugins/astarte/internal/store"
	"github.com/connector-host/connector-host/plugins/astarte/internal/transport"
	msghubemu "github.com/connector-host/connector-host/testkit/emulators/msghub"
)

// upstream is what a device talks to, seen from the test.
type upstream interface {
	// newDevice returns a device id the upstream accepts and a transport
	// for it.
	newDevice(t *testing.T) (string, transport.Transport)
	// down and up stop and restart the upstream (the device loses its
	// connection and reconnects by itself).
	down(t *testing.T)
	up(t *testing.T)
	// received lists the data and property messages the device sent, in
	// order (MQTT control messages and the introspection left out).
	received(t *testing.T, id string, in *interfaces.Introspection) []upMsg
	// setServerProperty and unsetServerProperty change a server-owned
	// property as Astarte would.
	setServerProperty(t *testing.T, id, iface, path string, v int32)
	unsetServerProperty(t *testing.T, id, iface, path string)
	// crashAfter makes the upstream take n more data messages, then go
	// down (refusing the next ones); waitDown waits until it is down.
	crashAfter(t *testing.T, n int)
	waitDown(t *testing.T)
}

// upMsg is one message the upstream received from the device.
type upMsg struct {
	iface, path string
	value       any
	unset       bool
}

type backend struct {
	name  string
	start func(t *testing.T) upstream
}

var backends = []backend{
	{"mqtt", func(t *testing.T) upstream { return &mqttUpstream{r: newRig(t)} }},
	{"grpc-0.7", func(t *testing.T) upstream { return newHubUpstream(t, msghubemu.Protocol07) }},
	{"grpc-0.8", func(t *testing.T) upstream { return newHubUpstream(t, msghubemu.Protocol08) }},
}

type mqttUpstream struct{ r *rig }

func (m *mqttUpstream) newDevice(t *testing.T) (string, transport.Transport) {
	id := m.r.pair(t)
	return id, m.r.transport(t, id, nil)
}

func (m *mqttUpstream) down(t *testing.T) {
	if err := m.r.emu.StopBroker(); err != nil {
		t.Fatal(err)
	}
}

func (m *mqttUpstream) up(t *testing.T) {
	if err := m.r.emu.StartBroker(); err != nil {
		t.Fatal(err)
	}
}

func (m *mqttUpstream) received(t *testing.T, id string, in *interfaces.Introspection) []upMsg {
	base := m.r.emu.Realm() + "/" + id + "/"
	var out []upMsg
	for _, msg := range m.r.emu.MessagesFrom(m.r.emu.Realm() + "/" + id) {
		rest, ok := strings.CutPrefix(msg.Topic, base)
		if !ok || strings.HasPrefix(rest, "control/") {
			continue
		}
		name, path, _ := strings.Cut(rest, "/")
		i := in.Get(name)
		if i == nil {
			t.Fatalf("message on unknown interface %s", msg.Topic)
		}
		path = "/" + path
		if i.IsObject() {
			byKey, err := i.LookupObject(path)
			if err != nil {
				t.Fatal(err)
			}
			fields, _, err := payload.DecodeObject(byKey, msg.Payload)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, upMsg{iface: name, path: path, value: fields})
			continue
		}
		mp, err := i.Lookup(path)
		if err != nil {
			t.Fatal(err)
		}
		dec, err := payload.Decode(mp.Type, msg.Payload)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, upMsg{iface: name, path: path, value: dec.Value, unset: dec.Unset})
	}
	return out
}

func (m *mqttUpstream) setServerProperty(t *testing.T, id, iface, path string, v int32) {
	b, err := payload.Encode(v, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.r.emu.PublishData(id, iface, path, b, 2); err != nil {
		t.Fatal(err)
	}
}

func (m *mqttUpstream) unsetServerProperty(t *testing.T, id, iface, path string) {
	if err := m.r.emu.PublishData(id, iface, path, nil, 2); err != nil {
		t.Fatal(err)
	}
}

func (m *mqttUpstream) crashAfter(_ *testing.T, n int) { m.r.emu.StopBrokerAfter(n) }

func (m *mqttUpstream) waitDown(t *testing.T) {
	if err := m.r.emu.Wait(within(t, 20*time.Second), func() bool { return !m.r.emu.BrokerRunning() }); err != nil {
		t.Fatal(err)
	}
}

type hubUpstream struct {
	hub   *msghubemu.Hub
	pool  *msghub.Pool
	nodes map[string]string // device id → node id
}

func newHubUpstream(t *testing.T, p msghubemu.Protocol) *hubUpstream {
	hub, err := msghubemu.Start(msghubemu.Options{Protocol: p})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = hub.Close() })
	return &hubUpstream{hub: hub, pool: msghub.NewPool(), nodes: map[string]string{}}
}

func (h *hubUpstream) newDevice(t *testing.T) (string, transport.Transport) {
	id, err := pairing.NewDeviceID()
	if err != nil {
		t.Fatal(err)
	}
	node := uuid.New()
	h.nodes[id] = node.String()
	tr, err := msghub.New(msghub.Config{Address: h.hub.Addr(), NodeID: node, Protocol: msghub.Protocol(h.hub.Protocol()), Pool: h.pool,
		AttachTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return id, tr
}

func (h *hubUpstream) down(*testing.T) { h.hub.Stop() }

func (h *hubUpstream) up(t *testing.T) {
	if err := h.hub.Start(); err != nil {
		t.Fatal(err)
	}
}

func (h *hubUpstream) received(_ *testing.T, id string, _ *interfaces.Introspection) []upMsg {
	var out []upMsg
	for _, s := range h.hub.SendsFrom(h.nodes[id]) {
		if s.Error != "" {
			continue
		}
		m := upMsg{iface: s.Data.Interface, path: s.Data.Path, value: s.Data.Value, unset: s.Data.Kind == msghubemu.KindUnset}
		if s.Data.Object != nil {
			m.value = s.Data.Object
		}
		out = append(out, m)
	}
	return out
}

func (h *hubUpstream) setServerProperty(t *testing.T, _, iface, path string, v int32) {
	if err := h.hub.SetServerProperty(iface, path, v); err != nil {
		t.Fatal(err)
	}
}

func (h *hubUpstream) unsetServerProperty(t *testing.T, _, iface, path string) {
	if err := h.hub.UnsetServerProperty(iface, path); err != nil {
		t.Fatal(err)
	}
}

func (h *hubUpstream) crashAfter(_ *testing.T, n int) { h.hub.StopAfter("Send", n) }

func (h *hubUpstream) waitDown(t *testing.T) {
	if err := h.hub.Wait(within(t, 20*time.Second), func() bool { return !h.hub.Running() }); err != nil {
		t.Fatal(err)
	}
}

// sharedDevice opens a device on st with the test timings.
func sharedDevice(t *testing.T, st *store.Store, id string, docs ...string) *Device {
	t.Helper()
	d, err := New(context.Background(), Config{DeviceID: id, Realm: "test", Store: st, BackoffMin: 20 * time.Millisecond,
		BackoffMax: 200 * time.Millisecond, VolatileLimit: 3})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = d.Close(ctx)
	})
	for _, doc := range docs {
		if err := d.AddInterface(context.Background(), parse(t, doc)); err != nil {
			t.Fatal(err)
		}
	}
	return d
}

func openStore(t *testing.T, dir string) *store.Store {
	t.Helper()
	st, err := store.Open(filepath.Join(dir, "astarte.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func introspectionOf(t *testing.T, docs ...string) *interfaces.Introspection {
	in := &interfaces.Introspection{}
	for _, d := range docs {
		in.Add(parse(t, d))
	}
	return in
}

// waitReceived polls until the upstream got at least n messages from id.
func waitReceived(t *testing.T, u upstream, id string, in *interfaces.Introspection, n int) []upMsg {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		got := u.received(t, id, in)
		if len(got) >= n {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("upstream got %d messages, want %d: %+v", len(got), n, got)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestSharedAcrossTransports(t *testing.T) {
	t.Parallel()
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			t.Run("validation", func(t *testing.T) { t.Parallel(); sharedValidation(t, b.start(t)) })
			t.Run("offline queue", func(t *testing.T) { t.Parallel(); sharedOfflineQueue(t, b.start(t)) })
			t.Run("persistence", func(t *testing.T) { t.Parallel(); sharedPersistence(t, b.start(t)) })
			t.Run("server properties", func(t *testing.T) { t.Parallel(); sharedServerProperties(t, b.start(t)) })
			t.Run("batch", func(t *testing.T) { t.Parallel(); sharedBatch(t, b.start(t)) })
			t.Run("batch validation", func(t *testing.T) { t.Parallel(); sharedBatchValidation(t, b.start(t)) })
			t.Run("batch upstream lost", func(t *testing.T) { t.Parallel(); sharedBatchUpstreamLost(t, b.start(t)) })
			t.Run("batch offline", func(t *testing.T) { t.Parallel(); sharedBatchOffline(t, b.start(t)) })
		})
	}
}

// sharedValidation: locally invalid data fails with an interface error while
// connected, and nothing reaches the upstream.
func sharedValidation(t *testing.T, u upstream) {
	id, tr := u.newDevice(t)
	docs := []string{allTypes, geoObject, devProps, retention}
	d := sharedDevice(t, openStore(t, t.TempDir()), id, docs...)
	ctx := within(t, 30*time.Second)
	if err := d.Connect(tr); err != nil {
		t.Fatal(err)
	}
	if err := d.WaitDrained(ctx); err != nil {
		t.Fatal(err)
	}
	ts := time.Now()
	bad := []func() (Delivery, error){
		func() (Delivery, error) { return d.Send(ctx, "com.example.Nope", "/x", 1, nil) },
		func() (Delivery, error) { return d.Send(ctx, "com.example.AllTypes", "/s/integer", 3e9, &ts) },
		func() (Delivery, error) { return d.Send(ctx, "com.example.AllTypes", "/s/boolean", "yes", &ts) },
		func() (Delivery, error) { return d.Send(ctx, "com.example.AllTypes", "/s/double", 1.0, nil) },
		func() (Delivery, error) { return d.Send(ctx, "com.example.Retention", "/nope", 1, nil) },
		func() (Delivery, error) {
			return d.SendObject(ctx, "com.example.Geo", "/g", map[string]any{"alt": 1.0}, &ts)
		},
		func() (Delivery, error) { return d.SetProperty(ctx, "com.example.DevProps", "/fixed", "x") },
		func() (Delivery, error) { return d.UnsetProperty(ctx, "com.example.DevProps", "/fixed") },
	}
	for k, call := range bad {
		got, err := call()
		var ie *interfaces.Error
		if err == nil || !errors.As(err, &ie) {
			t.Fatalf("case %d: %v %v, want an interface error", k, got, err)
		}
	}
	if got := u.received(t, id, introspectionOf(t, docs...)); len(got) != 0 {
		t.Fatalf("invalid data reached the upstream: %+v", got)
	}
	// A valid one does.
	if got, err := d.Send(ctx, "com.example.Retention", "/stored", 5, nil); err != nil || got != Delivered {
		t.Fatalf("valid send %v %v", got, err)
	}
	if got := waitReceived(t, u, id, introspectionOf(t, docs...), 1); !reflect.DeepEqual(got, []upMsg{{iface: "com.example.Retention", path: "/stored", value: int32(5)}}) {
		t.Fatalf("received %+v", got)
	}
}

// sharedOfflineQueue: while the upstream is down, stored messages go to the
// durable queue, volatile ones to the bounded memory queue (oldest
// dropped), discard ones fail, properties wait; after it comes back the
// device reconnects by itself and delivers the property, the stored
// messages in order, then the volatile ones.
func sharedOfflineQueue(t *testing.T, u upstream) {
	id, tr := u.newDevice(t)
	docs := []string{retention, devProps}
	in := introspectionOf(t, docs...)
	d := sharedDevice(t, openStore(t, t.TempDir()), id, docs...)
	ctx := within(t, 60*time.Second)
	sub := d.Subscribe(0)
	if err := d.Connect(tr); err != nil {
		t.Fatal(err)
	}
	if err := d.WaitDrained(ctx); err != nil {
		t.Fatal(err)
	}
	u.down(t)
	nextEvent(t, sub, EventDisconnected)
	if _, err := d.Send(ctx, "com.example.Retention", "/discard", 1, nil); !errors.Is(err, ErrOffline) {
		t.Fatalf("discard offline: %v", err)
	}
	for k := 0; k < 15; k++ {
		if got, err := d.Send(ctx, "com.example.Retention", "/stored", k, nil); err != nil || got != QueuedStored {
			t.Fatalf("stored %d: %v %v", k, got, err)
		}
	}
	for k := 0; k < 5; k++ {
		if got, err := d.Send(ctx, "com.example.Retention", "/volatile", 100+k, nil); err != nil || got != QueuedVolatile {
			t.Fatalf("volatile %d: %v %v", k, got, err)
		}
	}
	if got, err := d.SetProperty(ctx, "com.example.DevProps", "/x/name", "offline"); err != nil || got != Pending {
		t.Fatalf("property offline: %v %v", got, err)
	}
	st, _ := d.Status(ctx)
	if st.QueuedStored != 15 || st.QueuedVolatile != 3 || st.VolatileDropped != 2 {
		t.Fatalf("offline status %+v", st)
	}
	before := len(u.received(t, id, in))
	u.up(t)
	nextEvent(t, sub, EventConnected)
	if err := d.WaitDrained(ctx); err != nil {
		t.Fatal(err)
	}
	got := u.received(t, id, in)[before:]
	var want []upMsg
	want = append(want, upMsg{iface: "com.example.DevProps", path: "/x/name", value: "offline"})
	for k := 0; k < 15; k++ {
		want = append(want, upMsg{iface: "com.example.Retention", path: "/stored", value: int32(k)})
	}
	for k := 2; k < 5; k++ {
		want = append(want, upMsg{iface: "com.example.Retention", path: "/volatile", value: int32(100 + k)})
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("after reconnecting:\n got %+v\nwant %+v", got, want)
	}
}

// sharedPersistence: interfaces, a pending property change and the durable
// queue survive closing the device; a device reopened on the same store
// delivers them.
func sharedPersistence(t *testing.T, u upstream) {
	id, tr := u.newDevice(t)
	dir := t.TempDir()
	docs := []string{retention, devProps}
	in := introspectionOf(t, docs...)
	st := openStore(t, dir)
	ctx := within(t, 60*time.Second)
	d := sharedDevice(t, st, id, docs...)
	if got, err := d.SetProperty(ctx, "com.example.DevProps", "/a/name", "kept"); err != nil || got != Pending {
		t.Fatalf("property %v %v", got, err)
	}
	for k := 0; k < 3; k++ {
		if got, err := d.Send(ctx, "com.example.Retention", "/stored", k, nil); err != nil || got != QueuedStored {
			t.Fatalf("stored %d %v %v", k, got, err)
		}
	}
	if err := d.Close(ctx); err != nil {
		t.Fatal(err)
	}
	// Reopened: the interfaces come from the store.
	d2 := sharedDevice(t, st, id)
	if len(d2.Interfaces()) != 2 {
		t.Fatalf("interfaces after reopening: %v", d2.Interfaces())
	}
	if v, ok, err := d2.Property(ctx, "com.example.DevProps", "/a/name"); err != nil || !ok || v != "kept" {
		t.Fatalf("property after reopening %v %v %v", v, ok, err)
	}
	if err := d2.Connect(tr); err != nil {
		t.Fatal(err)
	}
	if err := d2.WaitDrained(ctx); err != nil {
		t.Fatal(err)
	}
	want := []upMsg{{iface: "com.example.DevProps", path: "/a/name", value: "kept"}}
	for k := 0; k < 3; k++ {
		want = append(want, upMsg{iface: "com.example.Retention", path: "/stored", value: int32(k)})
	}
	if got := u.received(t, id, in); !reflect.DeepEqual(got, want) {
		t.Fatalf("after reopening:\n got %+v\nwant %+v", got, want)
	}
	// Unset while connected, then gone from the store.
	if got, err := d2.UnsetProperty(ctx, "com.example.DevProps", "/a/name"); err != nil || got != Delivered {
		t.Fatalf("unset %v %v", got, err)
	}
	if got := waitReceived(t, u, id, in, 5); !got[4].unset || got[4].path != "/a/name" {
		t.Fatalf("unset received as %+v", got[4])
	}
	if _, ok, _ := d2.Property(ctx, "com.example.DevProps", "/a/name"); ok {
		t.Fatal("unset property still set")
	}
}

// sharedServerProperties: server-owned property values and unsets reach
// the store and subscribers.
func sharedServerProperties(t *testing.T, u upstream) {
	id, tr := u.newDevice(t)
	d := sharedDevice(t, openStore(t, t.TempDir()), id, srvProps)
	ctx := within(t, 30*time.Second)
	sub := d.Subscribe(0)
	if err := d.Connect(tr); err != nil {
		t.Fatal(err)
	}
	if err := d.WaitDrained(ctx); err != nil {
		t.Fatal(err)
	}
	u.setServerProperty(t, id, "com.example.SrvProps", "/a/rate", 42)
	if e := nextEvent(t, sub, EventDataReceived); e.Path != "/a/rate" || e.Value != int32(42) {
		t.Fatalf("event %+v", e)
	}
	if v, ok, err := d.Property(ctx, "com.example.SrvProps", "/a/rate"); err != nil || !ok || v != int32(42) {
		t.Fatalf("stored %v %v %v", v, ok, err)
	}
	u.unsetServerProperty(t, id, "com.example.SrvProps", "/a/rate")
	if e := nextEvent(t, sub, EventPropertyUnset); e.Path != "/a/rate" {
		t.Fatalf("event %+v", e)
	}
	if _, ok, _ := d.Property(ctx, "com.example.SrvProps", "/a/rate"); ok {
		t.Fatal("unset server property still stored")
	}
}
