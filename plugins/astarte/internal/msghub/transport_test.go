package msghub

import (
	"context"
	"errors"
	"net"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"

	"github.com/connector-host/connector-host/plugins/astarte/internal/interfaces"
	"github.com/connector-host/connector-host/plugins/astarte/internal/payload"
	"github.com/connector-host/connector-host/plugins/astarte/internal/transport"
	msghubemu "github.com/connector-host/connector-host/testkit/emulators/msghub"
)

const (
	devData = `{"interface_name":"com.example.Data","version_major":1,"version_minor":0,"type":"datastream","ownership":"device",
	  "mappings":[{"endpoint":"/%{s}/value","type":"double","explicit_timestamp":true}]}`
	devObj = `{"interface_name":"com.example.Obj","version_major":1,"version_minor":0,"type":"datastream","ownership":"device","aggregation":"object",
	  "mappings":[{"endpoint":"/g/lat","type":"double"},{"endpoint":"/g/tags","type":"stringarray"}]}`
	devProps = `{"interface_name":"com.example.DevProps","version_major":1,"version_minor":0,"type":"properties","ownership":"device",
	  "mappings":[{"endpoint":"/name","type":"string","allow_unset":true}]}`
	srvProps = `{"interface_name":"com.example.SrvProps","version_major":1,"version_minor":0,"type":"properties","ownership":"server",
	  "mappings":[{"endpoint":"/%{n}/rate","type":"integer","allow_unset":true}]}`
	srvObj = `{"interface_name":"com.example.SrvObj","version_major":1,"version_minor":0,"type":"datastream","ownership":"server","aggregation":"object",
	  "mappings":[{"endpoint":"/c/op","type":"string"},{"endpoint":"/c/n","type":"longinteger"}]}`
	extra = `{"interface_name":"com.example.Extra","version_major":1,"version_minor":2,"type":"datastream","ownership":"device",
	  "mappings":[{"endpoint":"/x","type":"boolean"}]}`
)

func parse(t *testing.T, docs ...string) *interfaces.Introspection {
	t.Helper()
	in := &interfaces.Introspection{}
	for _, d := range docs {
		i, err := interfaces.Parse([]byte(d))
		if err != nil {
			t.Fatal(err)
		}
		in.Add(i)
	}
	return in
}

// recorder is a transport.Handler that records what it gets.
type recorder struct {
	mu      sync.Mutex
	data    []transport.Inbound
	remote  []transport.RemoteError
	dropped []string
	purges  [][]payload.PropertyPath
	changed chan struct{}
}

func newRecorder() *recorder { return &recorder{changed: make(chan struct{}, 100)} }

func (r *recorder) poke() {
	select {
	case r.changed <- struct{}{}:
	default:
	}
}

func (r *recorder) Data(_ context.Context, in transport.Inbound) {
	r.mu.Lock()
	r.data = append(r.data, in)
	r.mu.Unlock()
	r.poke()
}

func (r *recorder) PurgeProperties(_ context.Context, keep []payload.PropertyPath) {
	r.mu.Lock()
	r.purges = append(r.purges, keep)
	r.mu.Unlock()
	r.poke()
}

func (r *recorder) Dropped(reason error) {
	r.mu.Lock()
	r.dropped = append(r.dropped, reason.Error())
	r.mu.Unlock()
	r.poke()
}

func (r *recorder) RemoteError(_ context.Context, e transport.RemoteError) {
	r.mu.Lock()
	r.remote = append(r.remote, e)
	r.mu.Unlock()
	r.poke()
}

// wait waits until cond holds (checked under the lock).
func (r *recorder) wait(t *testing.T, what string, cond func() bool) {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		r.mu.Lock()
		ok := cond()
		r.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-r.changed:
		case <-timeout:
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

func within(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func startHub(t *testing.T, p msghubemu.Protocol) *msghubemu.Hub {
	t.Helper()
	h, err := msghubemu.Start(msghubemu.Options{Protocol: p})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h.Close() })
	return h
}

func newTransport(t *testing.T, h *msghubemu.Hub, id uuid.UUID) *Transport {
	t.Helper()
	tr, err := New(Config{Address: h.Addr(), NodeID: id, Protocol: Protocol(h.Protocol()), AttachTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

func msgOf(t *testing.T, in *interfaces.Introspection, name, path string, v any, ts *time.Time) *transport.Message {
	t.Helper()
	i := in.Get(name)
	if i.IsObject() {
		b, err := payload.EncodeObject(v.(map[string]any), ts)
		if err != nil {
			t.Fatal(err)
		}
		byKey, err := i.LookupObject(path)
		if err != nil {
			t.Fatal(err)
		}
		var m *interfaces.Mapping
		for _, mm := range byKey {
			m = mm
		}
		return &transport.Message{Interface: i, Mapping: m, Path: path, Object: true, Payload: b}
	}
	m, err := i.Lookup(path)
	if err != nil {
		t.Fatal(err)
	}
	if v == nil {
		return &transport.Message{Interface: i, Mapping: m, Path: path, Unset: true}
	}
	b, err := payload.Encode(v, ts)
	if err != nil {
		t.Fatal(err)
	}
	return &transport.Message{Interface: i, Mapping: m, Path: path, Payload: b}
}

func TestAttachSendEventsDetach(t *testing.T) {
	t.Parallel()
	for _, p := range []msghubemu.Protocol{msghubemu.Protocol07, msghubemu.Protocol08} {
		t.Run(string(p), func(t *testing.T) {
			t.Parallel()
			h := startHub(t, p)
			if err := h.SetServerProperty("com.example.SrvProps", "/a/rate", int32(5)); err != nil {
				t.Fatal(err)
			}
			id := uuid.New()
			tr := newTransport(t, h, id)
			in := parse(t, devData, devObj, devProps, srvProps, srvObj)
			rec := newRecorder()
			ctx := within(t, 20*time.Second)
			propMsg := msgOf(t, in, "com.example.DevProps", "/name", "boot", nil)
			c, err := tr.Connect(ctx, transport.Session{Introspection: in, Handler: rec,
				DeviceProperties: []transport.Property{{Interface: propMsg.Interface, Path: "/name", Payload: propMsg.Payload}}})
			if err != nil {
				t.Fatal(err)
			}
			if !c.Resynced() {
				t.Fatal("Resynced is false")
			}
			a := h.Attaches()
			if len(a) != 1 || a[0].NodeID != id.String() || len(a[0].Interfaces) != 5 {
				t.Fatalf("attaches %+v", a)
			}
			if got := h.Introspection(id.String()); len(got) != 5 {
				t.Fatalf("introspection %v", got)
			}
			// The resynchronised property arrived.
			if got := h.DeviceProperties()["com.example.DevProps/name"]; got != "boot" {
				t.Fatalf("resync: device properties %v", h.DeviceProperties())
			}
			// The stored server property is replayed.
			rec.wait(t, "replayed property", func() bool { return len(rec.data) == 1 })
			if d := rec.data[0]; d.Interface.Name != "com.example.SrvProps" || d.Path != "/a/rate" || d.Value != int32(5) || d.Unset {
				t.Fatalf("replay %+v", d)
			}
			if p == msghubemu.Protocol08 {
				rec.wait(t, "purge list", func() bool { return len(rec.purges) == 1 })
				if want := []payload.PropertyPath{{Interface: "com.example.SrvProps", Path: "/a/rate"}}; !reflect.DeepEqual(rec.purges[0], want) {
					t.Fatalf("purge %v", rec.purges[0])
				}
			}

			ts := time.Date(2024, 1, 2, 3, 4, 5, 6000000, time.UTC)
			msgs := []*transport.Message{
				msgOf(t, in, "com.example.Data", "/a/value", 1.25, &ts),
				msgOf(t, in, "com.example.Obj", "/g", map[string]any{"lat": 2.5, "tags": []string{"x"}}, nil),
				msgOf(t, in, "com.example.DevProps", "/name", "n1", nil),
				msgOf(t, in, "com.example.DevProps", "/name", nil, nil),
			}
			if n, err := c.Send(ctx, msgs); n != 4 || err != nil {
				t.Fatalf("send %d %v", n, err)
			}
			sends := h.SendsFrom(id.String())[1:] // after the resync
			if len(sends) != 4 {
				t.Fatalf("%d sends", len(sends))
			}
			propKind := msghubemu.KindIndividual
			if p == msghubemu.Protocol08 {
				propKind = msghubemu.KindProperty
			}
			want := []msghubemu.Data{
				{Interface: "com.example.Data", Path: "/a/value", Kind: msghubemu.KindIndividual, Type: "double", Value: 1.25, Timestamp: &ts},
				{Interface: "com.example.Obj", Path: "/g", Kind: msghubemu.KindObject, Object: map[string]any{"lat": 2.5, "tags": []string{"x"}},
					ObjectTypes: map[string]string{"lat": "double", "tags": "stringarray"}},
				{Interface: "com.example.DevProps", Path: "/name", Kind: propKind, Type: "string", Value: "n1"},
				{Interface: "com.example.DevProps", Path: "/name", Kind: msghubemu.KindUnset},
			}
			for k, s := range sends {
				if s.Code != codes.OK || !reflect.DeepEqual(s.Data, want[k]) {
					t.Fatalf("send %d: %+v (%s), want %+v", k, s.Data, s.Error, want[k])
				}
			}

			// Server → device: data, an object, an unset, a hub error,
			// and what must be dropped.
			if err := h.SetServerProperty("com.example.SrvProps", "/b/rate", int32(-1)); err != nil {
				t.Fatal(err)
			}
			if err := h.Push(id.String(), msghubemu.Data{Interface: "com.example.SrvObj", Path: "/c", Object: map[string]any{"op": "go", "n": int64(9)}}); err != nil {
				t.Fatal(err)
			}
			if err := h.UnsetServerProperty("com.example.SrvProps", "/b/rate"); err != nil {
				t.Fatal(err)
			}
			if err := h.PushError(id.String(), "receive failed", "cause"); err != nil {
				t.Fatal(err)
			}
			for _, bad := range []msghubemu.Data{
				{Interface: "com.example.Unknown", Path: "/x", Value: 1.0},
				{Interface: "com.example.SrvProps", Path: "/a/b/c", Value: int32(1)},
				{Interface: "com.example.SrvProps", Path: "/a/rate", Value: "wrong type"},
				{Interface: "com.example.SrvObj", Path: "/c", Object: map[string]any{"op": "x", "zzz": 1.0}},
				{Interface: "com.example.SrvObj", Path: "/c/op", Kind: msghubemu.KindIndividual, Value: "individual on object"},
			} {
				if err := h.Push(id.String(), bad); err != nil {
					t.Fatal(err)
				}
			}
			rec.wait(t, "events", func() bool { return len(rec.data) == 4 && len(rec.remote) == 1 && len(rec.dropped) == 5 })
			if d := rec.data[1]; d.Path != "/b/rate" || d.Value != int32(-1) {
				t.Fatalf("property %+v", d)
			}
			if d := rec.data[2]; d.Interface.Name != "com.example.SrvObj" || !reflect.DeepEqual(d.Value, map[string]any{"op": "go", "n": int64(9)}) {
				t.Fatalf("object %+v", d)
			}
			if d := rec.data[3]; !d.Unset || d.Path != "/b/rate" || d.Value != nil {
				t.Fatalf("unset %+v", d)
			}
			if e := rec.remote[0]; e.Description != "receive failed" || !reflect.DeepEqual(e.Source, []string{"cause"}) {
				t.Fatalf("remote error %+v", e)
			}
			for k, want := range []string{"not in the introspection", "no mapping", "a string value for a integer mapping", `key "zzz"`, "object-aggregated"} {
				if !strings.Contains(rec.dropped[k], want) {
					t.Fatalf("dropped %d: %q does not say %q", k, rec.dropped[k], want)
				}
			}

			// Interfaces while attached.
			in2 := in.Clone()
			ext := parse(t, extra).Get("com.example.Extra")
			in2.Add(ext)
			if err := c.UpdateIntrospection(ctx, in2, []*interfaces.Interface{ext}, nil); err != nil {
				t.Fatal(err)
			}
			gone := in2.Remove("com.example.Obj")
			if err := c.UpdateIntrospection(ctx, in2, nil, []*interfaces.Interface{gone}); err != nil {
				t.Fatal(err)
			}
			got := h.Introspection(id.String())
			if strings.Join(got, " ") != "com.example.Data:1:0 com.example.DevProps:1:0 com.example.Extra:1:2 com.example.SrvObj:1:0 com.example.SrvProps:1:0" {
				t.Fatalf("introspection after updates %v", got)
			}

			// Close detaches; every call carried the node id.
			if err := c.Close(ctx); err != nil {
				t.Fatal(err)
			}
			select {
			case <-c.Done():
			default:
				t.Fatal("Done not closed after Close")
			}
			if c.Err() != nil {
				t.Fatalf("Err after Close: %v", c.Err())
			}
			if h.Attached(id.String()) {
				t.Fatal("still attached after Close")
			}
			if a := h.Attaches(); a[0].Ended != "detach" {
				t.Fatalf("attach ended %q", a[0].Ended)
			}
			methods := map[string]int{}
			for _, call := range h.Calls() {
				if call.NodeID != id.String() || call.MetadataKey != "node-id" {
					t.Fatalf("call without the node id: %+v", call)
				}
				methods[call.Method]++
			}
			if methods["Attach"] != 1 || methods["Send"] != 5 || methods["AddInterfaces"] != 1 || methods["RemoveInterfaces"] != 1 || methods["Detach"] != 1 {
				t.Fatalf("calls %v", methods)
			}
			if _, err := c.Send(ctx, msgs[:1]); !errors.Is(err, transport.ErrDisconnected) {
				t.Fatalf("send after close: %v", err)
			}
		})
	}
}

func TestStatusMappingAndLoss(t *testing.T) {
	t.Parallel()
	h := startHub(t, msghubemu.Protocol07)
	in := parse(t, devData, devProps)
	ctx := within(t, 20*time.Second)

	// A refused Attach: the status comes back mapped, nothing stays open.
	h.Fail("Attach", codes.InvalidArgument, "bad interface")
	_, err := newTransport(t, h, uuid.New()).Connect(ctx, transport.Session{Introspection: in, Handler: newRecorder()})
	var se *StatusError
	if !errors.As(err, &se) || se.Code != codes.InvalidArgument || se.Op != "attach" || !errors.Is(err, transport.ErrRejected) {
		t.Fatalf("refused attach: %v", err)
	}
	h.Fail("Attach", codes.Unauthenticated, "who are you")
	_, err = newTransport(t, h, uuid.New()).Connect(ctx, transport.Session{Introspection: in, Handler: newRecorder()})
	if !errors.As(err, &se) || se.Code != codes.Unauthenticated {
		t.Fatalf("unauthenticated attach: %v", err)
	}

	id := uuid.New()
	c, err := newTransport(t, h, id).Connect(ctx, transport.Session{Introspection: in, Handler: newRecorder()})
	if err != nil {
		t.Fatal(err)
	}
	ts := time.Now()
	m := msgOf(t, in, "com.example.Data", "/a/value", 1.0, &ts)
	// INTERNAL: refused, the attachment stays.
	h.Fail("Send", codes.Internal, "Unable to publish astarte message, err: boom")
	n, err := c.Send(ctx, []*transport.Message{m, m})
	if n != 0 || !errors.As(err, &se) || se.Code != codes.Internal || !strings.Contains(se.Description, "boom") || !errors.Is(err, transport.ErrRejected) {
		t.Fatalf("internal: %d %v", n, err)
	}
	select {
	case <-c.Done():
		t.Fatal("a refused message ended the attachment")
	default:
	}
	// UNAVAILABLE: disconnected, the attachment ends.
	h.Fail("Send", codes.Unavailable, "overloaded")
	if _, err := c.Send(ctx, []*transport.Message{m}); !errors.Is(err, transport.ErrDisconnected) {
		t.Fatalf("unavailable: %v", err)
	}
	<-c.Done()
	if !errors.Is(c.Err(), transport.ErrDisconnected) {
		t.Fatalf("Err %v", c.Err())
	}
	_ = c.Close(ctx)

	// UNAUTHENTICATED on Send: the hub forgot the node; mapped, and the
	// attachment ends so the device re-attaches.
	c, err = newTransport(t, h, id).Connect(ctx, transport.Session{Introspection: in, Handler: newRecorder()})
	if err != nil {
		t.Fatal(err)
	}
	h.Fail("Send", codes.Unauthenticated, "node not attached")
	if _, err := c.Send(ctx, []*transport.Message{m}); !errors.As(err, &se) || se.Code != codes.Unauthenticated ||
		errors.Is(err, transport.ErrDisconnected) || errors.Is(err, transport.ErrRejected) {
		t.Fatalf("unauthenticated send: %v", err)
	}
	<-c.Done()
	_ = c.Close(ctx)

	// The hub ends the stream with UNAVAILABLE, or restarts.
	for _, how := range []string{"end stream", "restart"} {
		rec := newRecorder()
		c, err = newTransport(t, h, id).Connect(ctx, transport.Session{Introspection: in, Handler: rec})
		if err != nil {
			t.Fatal(err)
		}
		if how == "end stream" {
			if err := h.EndStream(id.String(), codes.Unavailable, "bye"); err != nil {
				t.Fatal(err)
			}
		} else if err := h.Restart(); err != nil {
			t.Fatal(err)
		}
		select {
		case <-c.Done():
		case <-ctx.Done():
			t.Fatalf("%s: the attachment did not end", how)
		}
		if !errors.Is(c.Err(), transport.ErrDisconnected) {
			t.Fatalf("%s: Err %v", how, c.Err())
		}
		_ = c.Close(ctx)
	}
	// A later Attach works (the restarted hub is back on its address).
	c, err = newTransport(t, h, id).Connect(ctx, transport.Session{Introspection: in, Handler: newRecorder()})
	for k := 0; err != nil && k < 50; k++ {
		time.Sleep(50 * time.Millisecond) // the restarted server's listener
		c, err = newTransport(t, h, id).Connect(ctx, transport.Session{Introspection: in, Handler: newRecorder()})
	}
	if err != nil {
		t.Fatal(err)
	}
	_ = c.Close(ctx)
}

func TestConnectFailures(t *testing.T) {
	t.Parallel()
	in := parse(t, devData)
	// A listener that never speaks HTTP/2: the attach times out.
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = lis.Close() })
	var conns []net.Conn
	var mu sync.Mutex
	go func() {
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			_ = c.Close()
		}
	})
	tr, err := New(Config{Address: lis.Addr().String(), NodeID: uuid.New(), AttachTimeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = tr.Connect(within(t, 10*time.Second), transport.Session{Introspection: in, Handler: newRecorder()})
	if !errors.Is(err, transport.ErrDisconnected) || time.Since(start) > 5*time.Second {
		t.Fatalf("silent hub: %v after %s", err, time.Since(start))
	}
	// Nothing listening: UNAVAILABLE, disconnected.
	dead, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := dead.Addr().String()
	_ = dead.Close()
	tr, _ = New(Config{Address: addr, NodeID: uuid.New()})
	if _, err := tr.Connect(within(t, 10*time.Second), transport.Session{Introspection: in, Handler: newRecorder()}); !errors.Is(err, transport.ErrDisconnected) {
		t.Fatalf("no hub: %v", err)
	}
	// A cancelled context.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := tr.Connect(ctx, transport.Session{Introspection: in, Handler: newRecorder()}); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled: %v", err)
	}
	// Bad configurations.
	for _, cfg := range []Config{
		{Address: "nohost", NodeID: uuid.New()},
		{Address: ":50051", NodeID: uuid.New()},
		{Address: "127.0.0.1:99999", NodeID: uuid.New()},
		{Address: "127.0.0.1:1"},
		{Address: "127.0.0.1:1", NodeID: uuid.New(), Protocol: "0.6"},
	} {
		if _, err := New(cfg); err == nil {
			t.Fatalf("config %+v accepted", cfg)
		}
	}
	tr, err = New(Config{NodeID: uuid.New()})
	if err != nil || tr.cfg.Address != DefaultAddress || tr.Protocol() != Protocol07 || tr.Name() != "grpc" {
		t.Fatalf("defaults %+v %v", tr, err)
	}
}

// A shared pool keeps one channel per hub while attachments use it, and
// closes it when the last one ends, lost or closed.
func TestPoolSharesAndReleasesChannels(t *testing.T) {
	t.Parallel()
	h := startHub(t, msghubemu.Protocol07)
	pool := NewPool()
	in := parse(t, devData)
	ctx := within(t, 20*time.Second)
	var conns []transport.Conn
	ids := []uuid.UUID{uuid.New(), uuid.New()}
	for _, id := range ids {
		tr, err := New(Config{Address: h.Addr(), NodeID: id, Pool: pool})
		if err != nil {
			t.Fatal(err)
		}
		c, err := tr.Connect(ctx, transport.Session{Introspection: in, Handler: newRecorder()})
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	refs := func() int {
		pool.mu.Lock()
		defer pool.mu.Unlock()
		if pc := pool.conns[h.Addr()]; pc != nil {
			return pc.refs
		}
		return 0
	}
	pool.mu.Lock()
	n := len(pool.conns)
	pool.mu.Unlock()
	if n != 1 || refs() != 2 {
		t.Fatalf("pool %v refs %d", pool.conns, refs())
	}
	// Lost (the device does not Close it): released.
	if err := h.EndStream(ids[0].String(), codes.Unavailable, "bye"); err != nil {
		t.Fatal(err)
	}
	<-conns[0].Done()
	if refs() != 1 {
		t.Fatalf("refs after a loss %d", refs())
	}
	_ = conns[0].Close(ctx) // no double release
	if refs() != 1 {
		t.Fatalf("refs after closing a lost conn %d", refs())
	}
	if err := conns[1].Close(ctx); err != nil {
		t.Fatal(err)
	}
	if refs() != 0 || len(pool.conns) != 0 {
		t.Fatalf("pool after the last close %v", pool.conns)
	}
}

// Send's context: the caller's values (the node id), no deadline on the
// wire, but cancelled when the caller's deadline passes; stop releases it.
func TestWithoutDeadline(t *testing.T) {
	t.Parallel()
	parent, cancel := context.WithTimeout(metadata.AppendToOutgoingContext(context.Background(), MetadataNodeID, "n1"), 50*time.Millisecond)
	defer cancel()
	ctx, stop := withoutDeadline(parent)
	defer stop()
	if _, ok := ctx.Deadline(); ok {
		t.Fatal("the context has a deadline")
	}
	if md, _ := metadata.FromOutgoingContext(ctx); len(md.Get(MetadataNodeID)) != 1 {
		t.Fatalf("node id lost: %v", md)
	}
	select {
	case <-ctx.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("not cancelled when the caller's deadline passed")
	}
	if !errors.Is(context.Cause(ctx), context.DeadlineExceeded) {
		t.Fatalf("cause %v, want the caller's deadline", context.Cause(ctx))
	}

	// stop cancels it at once, the caller still running.
	parent2, cancel2 := context.WithTimeout(context.Background(), time.Hour)
	defer cancel2()
	ctx2, stop2 := withoutDeadline(parent2)
	stop2()
	if ctx2.Err() == nil || parent2.Err() != nil {
		t.Fatalf("after stop: %v, caller %v", ctx2.Err(), parent2.Err())
	}
}
