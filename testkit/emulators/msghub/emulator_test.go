package msghubemu

import (
	"context"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/emptypb"
)

const (
	devData = `{"interface_name":"com.example.Data","version_major":1,"version_minor":0,"type":"datastream","ownership":"device",
	  "mappings":[{"endpoint":"/%{s}/value","type":"double"},{"endpoint":"/s/tags","type":"stringarray"}]}`
	devObject = `{"interface_name":"com.example.Obj","version_major":1,"version_minor":0,"type":"datastream","ownership":"device","aggregation":"object",
	  "mappings":[{"endpoint":"/g/lat","type":"double"},{"endpoint":"/g/lon","type":"double"}]}`
	devProps = `{"interface_name":"com.example.DevProps","version_major":1,"version_minor":0,"type":"properties","ownership":"device",
	  "mappings":[{"endpoint":"/name","type":"string","allow_unset":true},{"endpoint":"/fixed","type":"integer"}]}`
	srvProps = `{"interface_name":"com.example.SrvProps","version_major":1,"version_minor":0,"type":"properties","ownership":"server",
	  "mappings":[{"endpoint":"/%{n}/rate","type":"integer","allow_unset":true}]}`
	devDataV2 = `{"interface_name":"com.example.Data","version_major":2,"version_minor":0,"type":"datastream","ownership":"device",
	  "mappings":[{"endpoint":"/v","type":"double"}]}`
)

var protocols = []Protocol{Protocol07, Protocol08}

type client struct {
	t  *testing.T
	h  *Hub
	cc *grpc.ClientConn
}

func newHub(t *testing.T, p Protocol) (*Hub, *client) {
	t.Helper()
	h, err := Start(Options{Protocol: p})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h.Close() })
	cc, err := grpc.NewClient(h.Addr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cc.Close() })
	return h, &client{t: t, h: h, cc: cc}
}

func ctxWith(t *testing.T, kv ...string) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return metadata.AppendToOutgoingContext(ctx, kv...)
}

const svc = "/astarteplatform.msghub.MessageHub/"

// attach opens an Attach stream and waits for the hub's answer (headers or
// the refusal).
func (c *client) attach(ctx context.Context, docs ...string) (grpc.ClientStream, error) {
	node := c.h.NewMessage("Node").ProtoReflect()
	list := node.Mutable(node.Descriptor().Fields().ByName("interfaces_json")).List()
	for _, d := range docs {
		list.Append(protoreflect.ValueOfString(d))
	}
	st, err := c.cc.NewStream(ctx, &grpc.StreamDesc{StreamName: "Attach", ServerStreams: true}, svc+"Attach")
	if err != nil {
		return nil, err
	}
	if err := st.SendMsg(node.Interface()); err != nil {
		return nil, err
	}
	if err := st.CloseSend(); err != nil {
		return nil, err
	}
	md, err := st.Header()
	if err != nil {
		return nil, err
	}
	if md == nil {
		return nil, st.RecvMsg(c.h.NewMessage("MessageHubEvent"))
	}
	return st, nil
}

func (c *client) recv(st grpc.ClientStream) (proto.Message, error) {
	ev := c.h.NewMessage("MessageHubEvent")
	return ev, st.RecvMsg(ev)
}

func (c *client) send(ctx context.Context, d Data) error {
	m, err := c.h.Encode(d)
	if err != nil {
		c.t.Fatal(err)
	}
	return c.cc.Invoke(ctx, svc+"Send", m, &emptypb.Empty{})
}

func (c *client) sendRaw(ctx context.Context, text string) error {
	m := c.h.NewMessage("AstarteMessage")
	if err := prototext.Unmarshal([]byte(text), m); err != nil {
		c.t.Fatal(err)
	}
	return c.cc.Invoke(ctx, svc+"Send", m, &emptypb.Empty{})
}

func wantCode(t *testing.T, what string, err error, code codes.Code, contains string) {
	t.Helper()
	if status.Code(err) != code || !strings.Contains(status.Convert(err).Message(), contains) {
		t.Fatalf("%s: %v, want %s containing %q", what, err, code, contains)
	}
}

func TestMetadataRules(t *testing.T) {
	t.Parallel()
	for _, p := range protocols {
		t.Run(string(p), func(t *testing.T) {
			t.Parallel()
			h, c := newHub(t, p)
			_, err := c.attach(ctxWith(t), devData)
			wantCode(t, "attach without id", err, codes.Unauthenticated, "node not authenticated")
			_, err = c.attach(ctxWith(t, "node-id", "not-a-uuid"), devData)
			wantCode(t, "attach with a bad id", err, codes.InvalidArgument, "invalid node id")
			_, err = c.attach(ctxWith(t, "node-id-bin", "short"), devData)
			wantCode(t, "attach with a bad binary id", err, codes.InvalidArgument, "invalid node id")
			id := uuid.NewString()
			err = c.send(ctxWith(t, "node-id", id), Data{Interface: "com.example.Data", Path: "/a/value", Kind: KindIndividual, Value: 1.0})
			wantCode(t, "send before attach", err, codes.Unauthenticated, "not attached")
			err = c.cc.Invoke(ctxWith(t, "node-id", id), svc+"Detach", &emptypb.Empty{}, &emptypb.Empty{})
			wantCode(t, "detach before attach", err, codes.Unauthenticated, "not attached")

			// node-id-bin is read first.
			bin := uuid.New()
			if _, err := c.attach(ctxWith(t, "node-id-bin", string(bin[:]), "node-id", id), devData); err != nil {
				t.Fatal(err)
			}
			if !h.Attached(bin.String()) || h.Attached(id) {
				t.Fatalf("attached %v", h.Nodes())
			}
			calls := h.Calls()
			last := calls[len(calls)-1]
			if last.Method != "Attach" || last.MetadataKey != "node-id-bin" || last.NodeID != bin.String() || last.Code != codes.OK {
				t.Fatalf("last call %+v", last)
			}
			if calls[0].Code != codes.Unauthenticated || calls[0].NodeID != "" {
				t.Fatalf("first call %+v", calls[0])
			}
		})
	}
}

func TestAttachSendDetach(t *testing.T) {
	t.Parallel()
	for _, p := range protocols {
		t.Run(string(p), func(t *testing.T) {
			t.Parallel()
			h, c := newHub(t, p)
			id := uuid.NewString()
			ctx := ctxWith(t, "node-id", id)
			if _, err := c.attach(ctx, `{"interface_name":`); status.Code(err) != codes.InvalidArgument {
				t.Fatalf("bad interface: %v", err)
			}
			st, err := c.attach(ctx, devData, devObject, devProps, srvProps)
			if err != nil {
				t.Fatal(err)
			}
			want := []string{"com.example.Data:1:0", "com.example.DevProps:1:0", "com.example.Obj:1:0", "com.example.SrvProps:1:0"}
			if got := h.Introspection(id); !reflect.DeepEqual(got, want) {
				t.Fatalf("introspection %v", got)
			}
			ts := time.Date(2024, 5, 6, 7, 8, 9, 123000000, time.UTC)
			good := []Data{
				{Interface: "com.example.Data", Path: "/a/value", Kind: KindIndividual, Value: 2.5, Timestamp: &ts},
				{Interface: "com.example.Data", Path: "/s/tags", Kind: KindIndividual, Value: []string{"x", ""}},
				{Interface: "com.example.Obj", Path: "/g", Kind: KindObject, Object: map[string]any{"lat": 1.5, "lon": -2.0}, Timestamp: &ts},
				{Interface: "com.example.DevProps", Path: "/name", Kind: KindIndividual, Value: "dev"},
				{Interface: "com.example.DevProps", Path: "/name", Kind: KindUnset},
			}
			if p == Protocol08 {
				good[3].Kind = KindProperty
			}
			for _, d := range good {
				if err := c.send(ctx, d); err != nil {
					t.Fatalf("send %+v: %v", d, err)
				}
			}
			sends := h.SendsFrom(id)
			if len(sends) != len(good) {
				t.Fatalf("%d sends recorded", len(sends))
			}
			for k, s := range sends {
				g := good[k]
				if s.Code != codes.OK || s.Data.Interface != g.Interface || s.Data.Path != g.Path || s.Data.Kind != g.Kind ||
					!reflect.DeepEqual(s.Data.Value, g.Value) || !reflect.DeepEqual(s.Data.Object, g.Object) ||
					!reflect.DeepEqual(s.Data.Timestamp, g.Timestamp) {
					t.Fatalf("send %d recorded %+v, want %+v", k, s.Data, g)
				}
			}
			refused := []struct {
				name string
				d    Data
				want string
			}{
				{"undeclared", Data{Interface: "com.example.Nope", Path: "/a", Kind: KindIndividual, Value: 1.0}, "not found"},
				{"server-owned", Data{Interface: "com.example.SrvProps", Path: "/a/rate", Kind: KindIndividual, Value: int32(1)}, "server-owned"},
				{"unset on datastream", Data{Interface: "com.example.Data", Path: "/a/value", Kind: KindUnset}, "unset on a datastream"},
				{"unset not allowed", Data{Interface: "com.example.DevProps", Path: "/fixed", Kind: KindUnset}, "unset not allowed"},
				{"type mismatch", Data{Interface: "com.example.Data", Path: "/a/value", Kind: KindIndividual, Value: int32(1)}, "type mismatch"},
				{"unknown path", Data{Interface: "com.example.Data", Path: "/a/b/c", Kind: KindIndividual, Value: 1.0}, "no mapping"},
				{"object on individual", Data{Interface: "com.example.Data", Path: "/a", Kind: KindObject, Object: map[string]any{"value": 1.0}}, "object"},
				{"individual on object", Data{Interface: "com.example.Obj", Path: "/g/lat", Kind: KindIndividual, Value: 1.0}, "object-aggregated"},
			}
			for _, r := range refused {
				err := c.send(ctx, r.d)
				wantCode(t, r.name, err, codes.Internal, "Unable to publish astarte message, err: ")
				if !strings.Contains(err.Error(), r.want) {
					t.Fatalf("%s: %v does not say %q", r.name, err, r.want)
				}
			}
			err = c.sendRaw(ctx, `interface_name:"com.example.Data" path:"/a/value"`)
			wantCode(t, "no payload", err, codes.Internal, "no payload")
			if got := h.DeviceProperties(); len(got) != 0 {
				t.Fatalf("device properties after unset %v", got)
			}

			if err := c.cc.Invoke(ctx, svc+"Detach", &emptypb.Empty{}, &emptypb.Empty{}); err != nil {
				t.Fatal(err)
			}
			if _, err := c.recv(st); !errors.Is(err, io.EOF) {
				t.Fatalf("stream after detach: %v", err)
			}
			if h.Attached(id) || len(h.DeviceIntrospection()) != 0 {
				t.Fatalf("still attached after detach: %v", h.DeviceIntrospection())
			}
			if a := h.Attaches(); a[len(a)-1].Ended != "detach" {
				t.Fatalf("attach record %+v", a[len(a)-1])
			}
			err = c.send(ctx, good[0])
			wantCode(t, "send after detach", err, codes.Unauthenticated, "not attached")
		})
	}
}

func TestEventsReplayAndStreamEnds(t *testing.T) {
	t.Parallel()
	for _, p := range protocols {
		t.Run(string(p), func(t *testing.T) {
			t.Parallel()
			h, c := newHub(t, p)
			if err := h.SetServerProperty("com.example.SrvProps", "/a/rate", int32(7)); err != nil {
				t.Fatal(err)
			}
			if err := h.SetServerProperty("com.example.Other", "/x", "not replayed"); err != nil {
				t.Fatal(err)
			}
			id := uuid.NewString()
			ctx := ctxWith(t, "node-id", id)
			st, err := c.attach(ctx, srvProps)
			if err != nil {
				t.Fatal(err)
			}
			expect := func(text string) {
				t.Helper()
				got, err := c.recv(st)
				if err != nil {
					t.Fatal(err)
				}
				want := h.NewMessage("MessageHubEvent")
				if err := prototext.Unmarshal([]byte(text), want); err != nil {
					t.Fatal(err)
				}
				if !proto.Equal(got, want) {
					t.Fatalf("event %v, want %v", prototext.Format(got), text)
				}
			}
			prop, unset := `astarte_data:{astarte_individual:{astarte_integer:%s}}`, `astarte_unset:{}`
			if p == Protocol08 {
				prop, unset = `property_individual:{data:{integer:%s}}`, `property_individual:{}`
			}
			msg := func(path, payload string) string {
				return `message:{interface_name:"com.example.SrvProps" path:"` + path + `" ` + payload + `}`
			}
			expect(msg("/a/rate", strings.Replace(prop, "%s", "7", 1)))
			if err := h.SetServerProperty("com.example.SrvProps", "/b/rate", int32(0)); err != nil {
				t.Fatal(err)
			}
			expect(msg("/b/rate", strings.Replace(prop, "%s", "0", 1)))
			if err := h.UnsetServerProperty("com.example.SrvProps", "/a/rate"); err != nil {
				t.Fatal(err)
			}
			expect(msg("/a/rate", unset))
			if err := h.PushError(id, "receive failed", "bson error", "eof"); err != nil {
				t.Fatal(err)
			}
			expect(`error:{description:"receive failed" source:["bson error","eof"]}`)

			// A second Attach of the node ends the first stream cleanly.
			st2, err := c.attach(ctx, srvProps)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := c.recv(st); !errors.Is(err, io.EOF) {
				t.Fatalf("old stream after re-attach: %v", err)
			}
			st = st2
			expect(msg("/b/rate", strings.Replace(prop, "%s", "0", 1))) // replay
			if err := h.EndStream(id, codes.Unavailable, "going away"); err != nil {
				t.Fatal(err)
			}
			if _, err := c.recv(st); status.Code(err) != codes.Unavailable {
				t.Fatalf("ended stream: %v", err)
			}
			if h.Attached(id) {
				t.Fatal("node still attached after EndStream")
			}
		})
	}
}

func TestRestartAndFailures(t *testing.T) {
	t.Parallel()
	h, c := newHub(t, Protocol07)
	id := uuid.NewString()
	ctx := ctxWith(t, "node-id", id)
	st, err := c.attach(ctx, devData)
	if err != nil {
		t.Fatal(err)
	}
	addr := h.Addr()
	h.Stop()
	if _, err := c.recv(st); status.Code(err) != codes.Unavailable {
		t.Fatalf("stream on a stopped hub: %v", err)
	}
	if err := h.Start(); err != nil {
		t.Fatal(err)
	}
	if h.Addr() != addr {
		t.Fatalf("restarted on %s, was %s", h.Addr(), addr)
	}
	if h.Attached(id) {
		t.Fatal("a restarted hub remembers the node")
	}
	var st2 grpc.ClientStream
	deadline := time.Now().Add(10 * time.Second)
	for st2 == nil {
		st2, err = c.attach(ctxWith(t, "node-id", id), devData)
		if err != nil && time.Now().After(deadline) {
			t.Fatal(err)
		}
	}
	h.Fail("Send", codes.Unavailable, "busy")
	err = c.send(ctx, Data{Interface: "com.example.Data", Path: "/a/value", Kind: KindIndividual, Value: 1.0})
	wantCode(t, "injected failure", err, codes.Unavailable, "busy")
	if err := c.send(ctx, Data{Interface: "com.example.Data", Path: "/a/value", Kind: KindIndividual, Value: 1.0}); err != nil {
		t.Fatal(err)
	}
	// Another node with a conflicting major version is refused.
	_, err = c.attach(ctxWith(t, "node-id", uuid.NewString()), devDataV2)
	wantCode(t, "conflict", err, codes.Internal, "conflicts")
	// Dropping the stream without Detach is recorded.
	cctx, cancel := context.WithCancel(ctxWith(t, "node-id", uuid.NewString()))
	if _, err := c.attach(cctx, devProps); err != nil {
		t.Fatal(err)
	}
	cancel()
	if err := h.Wait(ctxWith(t), func() bool {
		a := h.Attaches()
		return a[len(a)-1].Ended == "client gone"
	}); err != nil {
		t.Fatal(err)
	}
	_ = st2
}

// StopAfter: the hub handles exactly n more Sends, fails the next one with
// UNAVAILABLE and stops; it starts again.
func TestStopAfter(t *testing.T) {
	t.Parallel()
	h, c := newHub(t, Protocol07)
	id := uuid.NewString()
	ctx := ctxWith(t, "node-id", id)
	if _, err := c.attach(ctx, devData); err != nil {
		t.Fatal(err)
	}
	h.StopAfter("Send", 3)
	d := Data{Interface: "com.example.Data", Path: "/a/value", Kind: KindIndividual, Value: 1.0}
	for k := 0; k < 3; k++ {
		if err := c.send(ctx, d); err != nil {
			t.Fatalf("send %d: %v", k, err)
		}
	}
	wantCode(t, "send after the count", c.send(ctx, d), codes.Unavailable, "")
	if err := h.Wait(ctxWith(t), func() bool { return !h.Running() }); err != nil {
		t.Fatal(err)
	}
	if n := len(h.SendsFrom(id)); n != 3 {
		t.Fatalf("%d sends recorded, want 3", n)
	}
	if err := h.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := c.attach(ctxWith(t, "node-id", id), devData)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := c.send(ctx, d); err != nil {
		t.Fatalf("send after restart: %v", err)
	}
}

func TestInterfacesWhileAttached(t *testing.T) {
	t.Parallel()
	for _, p := range protocols {
		t.Run(string(p), func(t *testing.T) {
			t.Parallel()
			h, c := newHub(t, p)
			a, b := uuid.NewString(), uuid.NewString()
			if _, err := c.attach(ctxWith(t, "node-id", a), devData); err != nil {
				t.Fatal(err)
			}
			if _, err := c.attach(ctxWith(t, "node-id", b), devData); err != nil {
				t.Fatal(err)
			}
			add := func(id string, docs ...string) error {
				m := h.NewMessage("InterfacesJson").ProtoReflect()
				l := m.Mutable(m.Descriptor().Fields().ByName("interfaces_json")).List()
				for _, d := range docs {
					l.Append(protoreflect.ValueOfString(d))
				}
				return c.cc.Invoke(ctxWith(t, "node-id", id), svc+"AddInterfaces", m.Interface(), &emptypb.Empty{})
			}
			remove := func(id string, names ...string) error {
				m := h.NewMessage("InterfacesName").ProtoReflect()
				l := m.Mutable(m.Descriptor().Fields().ByName("names")).List()
				for _, n := range names {
					l.Append(protoreflect.ValueOfString(n))
				}
				return c.cc.Invoke(ctxWith(t, "node-id", id), svc+"RemoveInterfaces", m.Interface(), &emptypb.Empty{})
			}
			if err := add(a, devProps); err != nil {
				t.Fatal(err)
			}
			wantCode(t, "bad interface", add(a, `{}`), codes.Internal, "interface_name")
			wantCode(t, "conflict", add(a, devDataV2), codes.Internal, "conflicts")
			if err := c.send(ctxWith(t, "node-id", a), Data{Interface: "com.example.DevProps", Path: "/fixed", Kind: map[Protocol]Kind{Protocol07: KindIndividual, Protocol08: KindProperty}[p], Value: int32(3)}); err != nil {
				t.Fatal(err)
			}
			if got := h.DeviceIntrospection(); !reflect.DeepEqual(got, []string{"com.example.Data:1:0", "com.example.DevProps:1:0"}) {
				t.Fatalf("device introspection %v", got)
			}
			if err := remove(a, "com.example.Data", "com.example.Unknown"); err != nil {
				t.Fatal(err)
			}
			// b still uses com.example.Data.
			if got := h.DeviceIntrospection(); !reflect.DeepEqual(got, []string{"com.example.Data:1:0", "com.example.DevProps:1:0"}) {
				t.Fatalf("device introspection %v", got)
			}
			if got := h.Introspection(a); !reflect.DeepEqual(got, []string{"com.example.DevProps:1:0"}) {
				t.Fatalf("node introspection %v", got)
			}
			if p == Protocol08 {
				out := h.NewMessage("StoredProperties")
				in := h.NewMessage("PropertyFilter")
				if err := c.cc.Invoke(ctxWith(t, "node-id", a), svc+"GetAllProperties", in, out); err != nil {
					t.Fatal(err)
				}
				want := h.NewMessage("StoredProperties")
				if err := prototext.Unmarshal([]byte(`properties:{interface_name:"com.example.DevProps" path:"/fixed" version_major:1 ownership:DEVICE data:{integer:3}}`), want); err != nil {
					t.Fatal(err)
				}
				if !proto.Equal(out, want) {
					t.Fatalf("GetAllProperties %v", prototext.Format(out))
				}
			}
			if err := remove(a, "com.example.DevProps"); err != nil {
				t.Fatal(err)
			}
			if len(h.DeviceProperties()) != 0 {
				t.Fatalf("properties of a removed interface kept: %v", h.DeviceProperties())
			}
			if err := add(uuid.NewString(), devProps); status.Code(err) != codes.Unauthenticated {
				t.Fatalf("add from a stranger: %v", err)
			}
		})
	}
}

func TestOptionsAndHooksErrors(t *testing.T) {
	t.Parallel()
	if _, err := Start(Options{Addr: "0.0.0.0:0"}); err == nil {
		t.Fatal("non-loopback address accepted")
	}
	if _, err := Start(Options{Protocol: "0.9"}); err == nil {
		t.Fatal("unknown protocol accepted")
	}
	h, _ := newHub(t, Protocol08)
	if err := h.Push(uuid.NewString(), Data{}); err == nil {
		t.Fatal("push to a stranger accepted")
	}
	if err := h.PushError("nope", "x"); err == nil {
		t.Fatal("push to a bad id accepted")
	}
	if err := h.SetServerProperty("i", "/p", struct{}{}); err == nil {
		t.Fatal("a value of no Astarte type accepted")
	}
	if _, err := h.Encode(Data{Kind: "weird"}); err == nil {
		t.Fatal("unknown kind encoded")
	}
	if err := h.EndStream(uuid.NewString(), codes.Unavailable, ""); err == nil {
		t.Fatal("EndStream of a stranger accepted")
	}
	if _, err := wireFor("x"); err == nil || !strings.Contains(err.Error(), "unknown protocol") {
		t.Fatalf("wireFor: %v", err)
	}
	if err := h.PushRaw(uuid.NewString(), &emptypb.Empty{}); err == nil {
		t.Fatal("raw push to a stranger accepted")
	}
}
