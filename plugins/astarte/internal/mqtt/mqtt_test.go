package mqtt

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/connector-host/connector-host/plugins/astarte/internal/interfaces"
	"github.com/connector-host/connector-host/plugins/astarte/internal/pairing"
	"github.com/connector-host/connector-host/plugins/astarte/internal/payload"
	"github.com/connector-host/connector-host/plugins/astarte/internal/transport"
	astarteemu "github.com/connector-host/connector-host/testkit/emulators/astarte"
)

const (
	dsIface = `{"interface_name":"com.example.Data","version_major":1,"version_minor":0,"type":"datastream","ownership":"device",
	  "mappings":[{"endpoint":"/u","type":"double","reliability":"unreliable"},{"endpoint":"/g","type":"integer","reliability":"guaranteed"},
	  {"endpoint":"/q","type":"string","reliability":"unique"}]}`
	objIface = `{"interface_name":"com.example.Obj","version_major":1,"version_minor":0,"type":"datastream","ownership":"device","aggregation":"object",
	  "mappings":[{"endpoint":"/%{id}/a","type":"double","reliability":"guaranteed"},{"endpoint":"/%{id}/b","type":"boolean","reliability":"guaranteed"}]}`
	propIface = `{"interface_name":"com.example.Props","version_major":2,"version_minor":1,"type":"properties","ownership":"device",
	  "mappings":[{"endpoint":"/%{n}/name","type":"string","allow_unset":true}]}`
	srvProps = `{"interface_name":"com.example.ServerProps","version_major":1,"version_minor":0,"type":"properties","ownership":"server",
	  "mappings":[{"endpoint":"/%{n}/rate","type":"integer","allow_unset":true}]}`
	srvData = `{"interface_name":"com.example.ServerData","version_major":1,"version_minor":0,"type":"datastream","ownership":"server","aggregation":"object",
	  "mappings":[{"endpoint":"/cmd/x","type":"longinteger","explicit_timestamp":true},{"endpoint":"/cmd/y","type":"stringarray","explicit_timestamp":true}]}`
)

func parse(t testing.TB, doc string) *interfaces.Interface {
	t.Helper()
	i, err := interfaces.Parse([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	return i
}

func introspection(t testing.TB, docs ...string) *interfaces.Introspection {
	in := &interfaces.Introspection{}
	for _, d := range docs {
		in.Add(parse(t, d))
	}
	return in
}

// recorder is a transport.Handler that records calls.
type recorder struct {
	mu      sync.Mutex
	data    []transport.Inbound
	purges  [][]payload.PropertyPath
	dropped []error
	ch      chan struct{}
}

func newRecorder() *recorder { return &recorder{ch: make(chan struct{}, 100)} }

func (r *recorder) Data(_ context.Context, in transport.Inbound) {
	r.mu.Lock()
	r.data = append(r.data, in)
	r.mu.Unlock()
	r.ch <- struct{}{}
}

func (r *recorder) PurgeProperties(_ context.Context, keep []payload.PropertyPath) {
	r.mu.Lock()
	r.purges = append(r.purges, keep)
	r.mu.Unlock()
	r.ch <- struct{}{}
}

func (r *recorder) Dropped(err error) {
	r.mu.Lock()
	r.dropped = append(r.dropped, err)
	r.mu.Unlock()
	r.ch <- struct{}{}
}

func (r *recorder) wait(t *testing.T, n int) {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for k := 0; k < n; k++ {
		select {
		case <-r.ch:
		case <-timeout:
			t.Fatalf("handler called %d of %d times", k, n)
		}
	}
}

type env struct {
	emu  *astarteemu.Emulator
	id   string
	base string
	cert tls.Certificate
	tr   *Transport
}

func newEnv(t *testing.T) *env {
	t.Helper()
	emu, err := astarteemu.Start(astarteemu.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = emu.Close() })
	id, _ := pairing.NewDeviceID()
	cert, err := emu.IssueClientCertificate("test/"+id, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	e := &env{emu: emu, id: id, base: "test/" + id, cert: cert}
	e.tr, err = New(Config{Realm: "test", DeviceID: id, Window: 8, Endpoint: func(context.Context) (Endpoint, error) {
		return Endpoint{BrokerURL: emu.BrokerURL(), TLS: emu.ClientTLSConfig(cert)}, nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func (e *env) connect(t *testing.T, s transport.Session) transport.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	c, err := e.tr.Connect(ctx, s)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close(context.Background()) })
	return c
}

func TestHandshakeOrderQoSAndSubscriptions(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	in := introspection(t, dsIface, propIface, srvProps, srvData)
	props := parse(t, propIface)
	p1, _ := payload.Encode("alpha", nil)
	p2, _ := payload.Encode("beta", nil)
	rec := newRecorder()
	c := e.connect(t, transport.Session{Introspection: in, Handler: rec, DeviceProperties: []transport.Property{
		{Interface: props, Path: "/a/name", Payload: p1}, {Interface: props, Path: "/b/name", Payload: p2}}})
	if !c.Resynced() {
		t.Fatal("fresh session not resynced")
	}
	msgs := e.emu.MessagesFrom(e.base)
	want := []struct {
		topic   string
		payload []byte
	}{
		{e.base, []byte("com.example.Data:1:0;com.example.Props:2:1;com.example.ServerData:1:0;com.example.ServerProps:1:0")},
		{e.base + "/control/emptyCache", []byte("1")},
		{e.base + "/com.example.Props/a/name", p1},
		{e.base + "/com.example.Props/b/name", p2},
		{e.base + "/control/producer/properties", nil},
	}
	if len(msgs) != len(want) {
		t.Fatalf("broker saw %d messages: %+v", len(msgs), msgs)
	}
	for k, w := range want {
		if msgs[k].Topic != w.topic || msgs[k].QoS != 2 || (w.payload != nil && !bytes.Equal(msgs[k].Payload, w.payload)) {
			t.Fatalf("message %d = %s QoS %d %q, want %s QoS 2 %q", k, msgs[k].Topic, msgs[k].QoS, msgs[k].Payload, w.topic, w.payload)
		}
	}
	list, err := astarteemu.DecodePropertyList(msgs[4].Payload)
	if err != nil || strings.Join(list, ";") != "com.example.Props/a/name;com.example.Props/b/name" {
		t.Fatalf("purge list %v %v", list, err)
	}
	subs := e.emu.Subscriptions(e.base)
	for _, f := range []string{e.base + "/control/consumer/properties", e.base + "/com.example.ServerProps/#", e.base + "/com.example.ServerData/#"} {
		if subs[f] != 2 {
			t.Fatalf("subscriptions %v lack %s at QoS 2", subs, f)
		}
	}
	if len(subs) != 3 {
		t.Fatalf("subscriptions %v", subs)
	}
	// Subscriptions come before emptyCache, so nothing Astarte sends in
	// answer is lost.
	if conns := e.emu.Connections(); len(conns) != 1 || conns[0].CleanSession {
		t.Fatalf("connections %+v: want one persistent session", conns)
	}
}

func TestSendQoSAndPayloads(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	in := introspection(t, dsIface, objIface, propIface)
	c := e.connect(t, transport.Session{Introspection: in, Handler: newRecorder()})
	e.emu.ResetMessages()
	ds, obj, props := in.Get("com.example.Data"), in.Get("com.example.Obj"), in.Get("com.example.Props")
	mk := func(iface *interfaces.Interface, path string, v any) *transport.Message {
		m, err := iface.Lookup(path)
		if err != nil {
			t.Fatal(err)
		}
		data, _ := payload.Encode(v, nil)
		return &transport.Message{Interface: iface, Mapping: m, Path: path, Payload: data}
	}
	objData, _ := payload.EncodeObject(map[string]any{"a": 1.5, "b": true}, nil)
	byKey, _ := obj.LookupObject("/s1")
	msgs := []*transport.Message{
		mk(ds, "/u", 1.0), mk(ds, "/g", int32(2)), mk(ds, "/q", "three"),
		{Interface: obj, Mapping: byKey["a"], Path: "/s1", Object: true, Payload: objData},
		mk(props, "/x/name", "n"),
		{Interface: props, Mapping: props.Mappings[0], Path: "/x/name", Unset: true},
	}
	n, err := c.Send(context.Background(), msgs)
	if err != nil || n != len(msgs) {
		t.Fatalf("Send = %d %v", n, err)
	}
	wantQoS := []byte{0, 1, 2, 1, 2, 2}
	wantTopic := []string{"/com.example.Data/u", "/com.example.Data/g", "/com.example.Data/q", "/com.example.Obj/s1", "/com.example.Props/x/name", "/com.example.Props/x/name"}
	// QoS 0 is fire-and-forget: wait until the broker saw everything.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	got, err := e.emu.WaitMessages(ctx, e.base, len(msgs))
	if err != nil {
		t.Fatal(err)
	}
	for k := range msgs {
		if got[k].Topic != e.base+wantTopic[k] || got[k].QoS != wantQoS[k] {
			t.Fatalf("message %d: %s QoS %d, want %s QoS %d", k, got[k].Topic, got[k].QoS, wantTopic[k], wantQoS[k])
		}
	}
	if len(got[5].Payload) != 0 {
		t.Fatal("unset payload not empty")
	}
	var doc struct {
		V struct {
			A float64 `bson:"a"`
			B bool    `bson:"b"`
		} `bson:"v"`
	}
	if err := bson.Unmarshal(got[3].Payload, &doc); err != nil || doc.V.A != 1.5 || !doc.V.B {
		t.Fatalf("object payload %+v %v", doc, err)
	}
}

func TestInbound(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	in := introspection(t, srvProps, srvData, dsIface)
	rec := newRecorder()
	e.connect(t, transport.Session{Introspection: in, Handler: rec})
	ts := time.Date(2024, 1, 2, 3, 4, 5, 6_000_000, time.UTC)
	rate, _ := bson.Marshal(bson.D{{Key: "v", Value: int32(10)}})
	obj, _ := bson.Marshal(bson.D{{Key: "v", Value: bson.D{{Key: "x", Value: int64(7)}, {Key: "y", Value: bson.A{"a", "b"}}}}, {Key: "t", Value: bson.NewDateTimeFromTime(ts)}})
	steps := []func() error{
		func() error { return e.emu.PublishData(e.id, "com.example.ServerProps", "/s1/rate", rate, 2) },
		func() error { return e.emu.PublishData(e.id, "com.example.ServerProps", "/s1/rate", nil, 2) },
		func() error { return e.emu.PublishData(e.id, "com.example.ServerData", "/cmd", obj, 2) },
		func() error {
			return e.emu.PublishConsumerProperties(e.id, []string{"com.example.ServerProps/s2/rate"})
		},
		func() error {
			return e.emu.PublishData(e.id, "com.example.ServerProps", "/s1/rate", []byte{1, 2, 3}, 2)
		},
		func() error { return e.emu.PublishData(e.id, "com.example.ServerProps", "/s1/other", rate, 2) },
		func() error { return e.emu.Publish(e.base+"/control/consumer/properties", []byte{0, 0}, 2) },
	}
	for _, s := range steps {
		if err := s(); err != nil {
			t.Fatal(err)
		}
	}
	rec.wait(t, len(steps))
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.data) != 3 || len(rec.purges) != 1 || len(rec.dropped) != 3 {
		t.Fatalf("data %d purges %d dropped %d: %v", len(rec.data), len(rec.purges), len(rec.dropped), rec.dropped)
	}
	if d := rec.data[0]; d.Interface.Name != "com.example.ServerProps" || d.Path != "/s1/rate" || d.Value != int32(10) || d.Unset {
		t.Fatalf("property %+v", d)
	}
	if d := rec.data[1]; !d.Unset || d.Value != nil {
		t.Fatalf("unset %+v", d)
	}
	d := rec.data[2]
	fields := d.Value.(map[string]any)
	if d.Path != "/cmd" || fields["x"] != int64(7) || strings.Join(fields["y"].([]string), ",") != "a,b" || d.Timestamp == nil || !d.Timestamp.Equal(ts) {
		t.Fatalf("object %+v", d)
	}
	if p := rec.purges[0]; len(p) != 1 || p[0].Interface != "com.example.ServerProps" || p[0].Path != "/s2/rate" {
		t.Fatalf("purge %+v", p)
	}
}

func TestResumedSessionSkipsHandshake(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	in := introspection(t, dsIface, srvProps)
	c := e.connect(t, transport.Session{Introspection: in, Handler: newRecorder()})
	if err := c.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	e.emu.ResetMessages()
	c = e.connect(t, transport.Session{Introspection: in, Handler: newRecorder()})
	if c.Resynced() {
		t.Fatal("resumed session resynced")
	}
	if msgs := e.emu.MessagesFrom(e.base); len(msgs) != 0 {
		t.Fatalf("resumed session published %+v", msgs)
	}
	c.Close(context.Background())
	// A changed introspection forces the full handshake even when resumed.
	in2 := introspection(t, dsIface, srvProps, propIface)
	c = e.connect(t, transport.Session{Introspection: in2, Handler: newRecorder()})
	if !c.Resynced() || len(e.emu.MessagesFrom(e.base)) == 0 {
		t.Fatal("changed introspection did not resync")
	}
	// UpdateIntrospection while connected publishes it and subscribes.
	e.emu.ResetMessages()
	in3 := introspection(t, dsIface, srvProps, propIface, srvData)
	if err := c.UpdateIntrospection(context.Background(), in3, []*interfaces.Interface{in3.Get("com.example.ServerData")}, nil); err != nil {
		t.Fatal(err)
	}
	msgs := e.emu.MessagesFrom(e.base)
	if len(msgs) != 1 || string(msgs[0].Payload) != in3.String() || msgs[0].QoS != 2 {
		t.Fatalf("introspection update %+v", msgs)
	}
	if e.emu.Subscriptions(e.base)[e.base+"/com.example.ServerData/#"] != 2 {
		t.Fatal("added server interface not subscribed")
	}
}

func TestConnectionLoss(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	in := introspection(t, dsIface)
	c := e.connect(t, transport.Session{Introspection: in, Handler: newRecorder()})
	if err := e.emu.StopBroker(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-c.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("connection loss not noticed")
	}
	if c.Err() == nil {
		t.Fatal("no reason for the loss")
	}
	ds := in.Get("com.example.Data")
	m, _ := ds.Lookup("/g")
	data, _ := payload.Encode(int32(1), nil)
	n, err := c.Send(context.Background(), []*transport.Message{{Interface: ds, Mapping: m, Path: "/g", Payload: data}})
	if n != 0 || !errors.Is(err, transport.ErrDisconnected) {
		t.Fatalf("Send after loss = %d %v", n, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if _, err := e.tr.Connect(ctx, transport.Session{Introspection: in, Handler: newRecorder()}); err == nil {
		t.Fatal("connected to a stopped broker")
	}
}

func TestConnectErrors(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	in := introspection(t, dsIface)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for name, ep := range map[string]Endpoint{
		"plain mqtt": {BrokerURL: "mqtt://" + e.emu.BrokerAddr(), TLS: e.emu.ClientTLSConfig(e.cert)},
		"no host":    {BrokerURL: "mqtts://", TLS: e.emu.ClientTLSConfig(e.cert)},
		"no cert":    {BrokerURL: e.emu.BrokerURL(), TLS: &tls.Config{RootCAs: e.emu.CAPool()}},
		"untrusted":  {BrokerURL: e.emu.BrokerURL(), TLS: &tls.Config{Certificates: []tls.Certificate{e.cert}}},
	} {
		tr, _ := New(Config{Realm: "test", DeviceID: e.id, Endpoint: func(context.Context) (Endpoint, error) { return ep, nil }})
		if _, err := tr.Connect(ctx, transport.Session{Introspection: in, Handler: newRecorder()}); err == nil {
			t.Errorf("%s: connected", name)
		}
	}
	if _, err := New(Config{}); err == nil {
		t.Fatal("empty config accepted")
	}
	// A certificate for another device: the broker refuses the client id.
	other, _ := pairing.NewDeviceID()
	tr, _ := New(Config{Realm: "test", DeviceID: other, Endpoint: func(context.Context) (Endpoint, error) {
		return Endpoint{BrokerURL: e.emu.BrokerURL(), TLS: e.emu.ClientTLSConfig(e.cert)}, nil
	}})
	if _, err := tr.Connect(ctx, transport.Session{Introspection: in, Handler: newRecorder()}); err == nil {
		t.Fatal("connected with another device's certificate")
	}
	// Canceling the context aborts a connection attempt.
	cctx, ccancel := context.WithCancel(context.Background())
	ccancel()
	if _, err := e.tr.Connect(cctx, transport.Session{Introspection: in, Handler: newRecorder()}); err == nil {
		t.Fatal("canceled connect succeeded")
	}
}

// A device certificate only opens the device's own topic tree.
func TestDeviceConfinedToItsTree(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	other, _ := pairing.NewDeviceID()
	o := paho.NewClientOptions().AddBroker("tls://" + e.emu.BrokerAddr()).SetClientID(e.base).SetProtocolVersion(4).
		SetTLSConfig(e.emu.ClientTLSConfig(e.cert)).SetAutoReconnect(false)
	lost := make(chan struct{})
	o.SetConnectionLostHandler(func(paho.Client, error) { close(lost) })
	c := paho.NewClient(o)
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatal("raw connect failed")
	}
	defer c.Disconnect(0)
	c.Publish("test/"+other+"/com.example.Data/u", 1, false, []byte("x"))
	select {
	case <-lost: // MQTT 3.1.1 brokers close the connection on a denied QoS>0 publish
	case <-time.After(10 * time.Second):
		t.Fatal("publish outside the tree did not end the connection")
	}
	for _, m := range e.emu.Messages() {
		if strings.Contains(m.Topic, other) {
			t.Fatalf("message reached another device's tree: %+v", m)
		}
	}
	if d := e.emu.Denials(); len(d) != 1 || !d[0].Write || !strings.HasPrefix(d[0].Topic, "test/"+other) {
		t.Fatalf("denials %+v", d)
	}
}

type fakeMsg struct {
	paho.Message
	topic   string
	payload []byte
}

func (m fakeMsg) Topic() string   { return m.topic }
func (m fakeMsg) Payload() []byte { return m.payload }

func TestOnMessageDrops(t *testing.T) {
	t.Parallel()
	rec := newRecorder()
	tr, _ := New(Config{Realm: "r", DeviceID: "d", Endpoint: func(context.Context) (Endpoint, error) { return Endpoint{}, nil }})
	c := &conn{t: tr, handler: rec, intro: introspection(t, srvProps), done: make(chan struct{})}
	for _, topic := range []string{"other/d/x", "r/d/control/unknown", "r/d/com.example.Unknown/x", "r/d/com.example.ServerProps", "r/d/com.example.ServerProps/a/rate"} {
		c.onMessage(nil, fakeMsg{topic: topic, payload: []byte{1}})
	}
	rec.wait(t, 5)
	if len(rec.dropped) != 5 || len(rec.data) != 0 {
		t.Fatalf("dropped %v data %v", rec.dropped, rec.data)
	}
	for k, want := range []string{"outside the device tree", "unknown control", "not in the introspection", "has no path", "not a BSON document"} {
		if !strings.Contains(rec.dropped[k].Error(), want) {
			t.Errorf("drop %d = %v, want %q", k, rec.dropped[k], want)
		}
	}
}

// nopHandler discards what the transport delivers.
type nopHandler struct{}

func (nopHandler) Data(context.Context, transport.Inbound)                 {}
func (nopHandler) PurgeProperties(context.Context, []payload.PropertyPath) {}
func (nopHandler) Dropped(error)                                           {}

// FuzzOnMessage feeds arbitrary topics and payloads to the inbound parser.
func FuzzOnMessage(f *testing.F) {
	rate, _ := payload.Encode(int32(1), nil)
	list, _ := payload.EncodePropertyList([]payload.PropertyPath{{Interface: "com.example.ServerProps", Path: "/a/rate"}})
	f.Add("r/d/com.example.ServerProps/a/rate", rate)
	f.Add("r/d/control/consumer/properties", list)
	f.Add("r/d/com.example.ServerData/cmd", []byte{})
	tr, _ := New(Config{Realm: "r", DeviceID: "d", Endpoint: func(context.Context) (Endpoint, error) { return Endpoint{}, nil }})
	c := &conn{t: tr, handler: nopHandler{}, intro: introspection(f, srvProps, srvData, dsIface), done: make(chan struct{})}
	f.Fuzz(func(t *testing.T, topic string, data []byte) {
		c.onMessage(nil, fakeMsg{topic: topic, payload: data})
	})
}
