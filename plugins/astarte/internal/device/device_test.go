package device

import (
	"context"
	"errors"
	"math"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/connector-host/connector-host/plugins/astarte/internal/interfaces"
	"github.com/connector-host/connector-host/plugins/astarte/internal/payload"
	astarteemu "github.com/connector-host/connector-host/testkit/emulators/astarte"
)

var ts0 = time.Date(2024, 7, 8, 9, 10, 11, 123_000_000, time.UTC)

// values holds one value per Astarte type, keyed by type name.
var values = map[string]any{
	"double":           -12.5,
	"integer":          int32(math.MinInt32),
	"boolean":          true,
	"longinteger":      int64(math.MaxInt64),
	"string":           "ünïcode",
	"binaryblob":       []byte{0, 1, 254, 255},
	"datetime":         ts0,
	"doublearray":      []float64{0.5, -1e300},
	"integerarray":     []int32{math.MaxInt32, 0},
	"booleanarray":     []bool{false, true, false},
	"longintegerarray": []int64{math.MinInt64, 1},
	"stringarray":      []string{"", "x"},
	"binaryblobarray":  [][]byte{{}, {7}},
	"datetimearray":    []time.Time{ts0, ts0.Add(time.Millisecond)},
}

// TestRegisterPairConnectSend is the main path of issue 8: register →
// pair → connect; the broker sees introspection, emptyCache, then the
// properties, in order and at QoS 2; every type and an object arrive as
// exactly the sent values and timestamps.
func TestRegisterPairConnectSend(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	id := r.pair(t)
	base := "test/" + id
	d := r.device(t, id, allTypes, geoObject, devProps, srvProps, srvData)
	ctx := within(t, 30*time.Second)

	// Properties set before connecting are sent in the handshake.
	for _, p := range []struct{ path, v string }{{"/a/name", "first"}, {"/b/name", "second"}} {
		if got, err := d.SetProperty(ctx, "com.example.DevProps", p.path, p.v); err != nil || got != Pending {
			t.Fatalf("SetProperty offline = %v %v", got, err)
		}
	}
	sub := d.Subscribe(0)
	if err := d.Connect(r.transport(t, id, nil)); err != nil {
		t.Fatal(err)
	}
	if err := d.Connect(r.transport(t, id, nil)); err == nil {
		t.Fatal("second Connect accepted")
	}
	nextEvent(t, sub, EventConnected)
	if err := d.WaitDrained(ctx); err != nil {
		t.Fatal(err)
	}
	msgs, err := r.emu.WaitMessages(ctx, base, 5)
	if err != nil {
		t.Fatal(err)
	}
	wantTopics := []string{base, base + "/control/emptyCache", base + "/com.example.DevProps/a/name",
		base + "/com.example.DevProps/b/name", base + "/control/producer/properties"}
	for k, w := range wantTopics {
		if msgs[k].Topic != w || msgs[k].QoS != 2 {
			t.Fatalf("handshake message %d = %s QoS %d, want %s QoS 2", k, msgs[k].Topic, msgs[k].QoS, w)
		}
	}
	if string(msgs[0].Payload) != "com.example.AllTypes:1:0;com.example.DevProps:1:0;com.example.Geo:1:0;com.example.SrvData:1:0;com.example.SrvProps:1:0" {
		t.Fatalf("introspection %q", msgs[0].Payload)
	}
	if pv, _ := payload.Decode(interfaces.String, msgs[2].Payload); pv.Value != "first" {
		t.Fatalf("property payload %v", pv)
	}
	if len(msgs) != 5 {
		t.Fatalf("unexpected extra messages: %+v", msgs[5:])
	}

	// Every type, with explicit timestamps, arrives exactly.
	r.emu.ResetMessages()
	order := []string{}
	for _, ty := range interfaces.MappingTypes() {
		ts := ts0.Add(time.Duration(len(order)) * time.Second)
		got, err := d.Send(ctx, "com.example.AllTypes", "/s1/"+string(ty), values[string(ty)], &ts)
		if err != nil || got != Delivered {
			t.Fatalf("Send %s = %v %v", ty, got, err)
		}
		order = append(order, string(ty))
	}
	recv := r.emu.MessagesFrom(base)
	if len(recv) != 14 {
		t.Fatalf("broker got %d data messages", len(recv))
	}
	for k, ty := range order {
		m := recv[k]
		if m.Topic != base+"/com.example.AllTypes/s1/"+ty || m.QoS != 1 {
			t.Fatalf("%s: topic %s QoS %d", ty, m.Topic, m.QoS)
		}
		dec, err := payload.Decode(interfaces.MappingType(ty), m.Payload)
		if err != nil || !reflect.DeepEqual(dec.Value, values[ty]) {
			t.Fatalf("%s: decoded %#v %v, want %#v", ty, dec.Value, err, values[ty])
		}
		if want := ts0.Add(time.Duration(k) * time.Second); dec.Timestamp == nil || !dec.Timestamp.Equal(want) {
			t.Fatalf("%s: timestamp %v, want %v", ty, dec.Timestamp, want)
		}
		// Independent check of the wire types with the BSON library.
		if tv := bson.Raw(m.Payload).Lookup("t"); tv.Type != bson.TypeDateTime {
			t.Fatalf("%s: t is BSON %s", ty, tv.Type)
		}
	}

	// Object aggregation: "v" is a document keyed by the last segment.
	r.emu.ResetMessages()
	if got, err := d.SendObject(ctx, "com.example.Geo", "/gps1", map[string]any{"lat": 45.5, "lon": 9.25, "tags": []any{"a", "b"}}, &ts0); err != nil || got != Delivered {
		t.Fatalf("SendObject = %v %v", got, err)
	}
	recv = r.emu.MessagesFrom(base)
	if len(recv) != 1 || recv[0].Topic != base+"/com.example.Geo/gps1" || recv[0].QoS != 2 {
		t.Fatalf("object message %+v", recv)
	}
	var doc struct {
		V map[string]any `bson:"v"`
		T time.Time      `bson:"t"`
	}
	if err := bson.Unmarshal(recv[0].Payload, &doc); err != nil {
		t.Fatal(err)
	}
	if doc.V["lat"] != 45.5 || doc.V["lon"] != 9.25 || !doc.T.Equal(ts0) || len(doc.V) != 3 {
		t.Fatalf("object %+v", doc)
	}

	// Properties while connected: set, unchanged, unset (empty payload).
	r.emu.ResetMessages()
	if got, _ := d.SetProperty(ctx, "com.example.DevProps", "/a/name", "first"); got != Unchanged {
		t.Fatalf("same value = %v", got)
	}
	if got, err := d.SetProperty(ctx, "com.example.DevProps", "/a/name", "third"); err != nil || got != Delivered {
		t.Fatalf("SetProperty = %v %v", got, err)
	}
	if got, err := d.UnsetProperty(ctx, "com.example.DevProps", "/b/name"); err != nil || got != Delivered {
		t.Fatalf("UnsetProperty = %v %v", got, err)
	}
	if got, _ := d.UnsetProperty(ctx, "com.example.DevProps", "/b/name"); got != Unchanged {
		t.Fatalf("second unset = %v", got)
	}
	recv = r.emu.MessagesFrom(base)
	if len(recv) != 2 || recv[0].QoS != 2 || recv[1].Topic != base+"/com.example.DevProps/b/name" || len(recv[1].Payload) != 0 {
		t.Fatalf("property messages %+v", recv)
	}
	if v, ok, _ := d.Property(ctx, "com.example.DevProps", "/a/name"); !ok || v != "third" {
		t.Fatalf("Property = %v %v", v, ok)
	}
	if _, ok, _ := d.Property(ctx, "com.example.DevProps", "/b/name"); ok {
		t.Fatal("unset property still set")
	}

	// Server → device: data, property, unset and consumer/properties purge.
	rate, _ := payload.Encode(int32(42), nil)
	if err := r.emu.PublishData(id, "com.example.SrvProps", "/s1/rate", rate, 2); err != nil {
		t.Fatal(err)
	}
	e := nextEvent(t, sub, EventDataReceived)
	if e.Interface != "com.example.SrvProps" || e.Path != "/s1/rate" || e.Value != int32(42) || e.DeviceID != id {
		t.Fatalf("event %+v", e)
	}
	if v, ok, _ := d.Property(ctx, "com.example.SrvProps", "/s1/rate"); !ok || v != int32(42) {
		t.Fatalf("server property not stored: %v %v", v, ok)
	}
	cmd, _ := payload.EncodeObject(map[string]any{"op": "reboot", "arg": int64(3)}, &ts0)
	if err := r.emu.PublishData(id, "com.example.SrvData", "/cmd", cmd, 2); err != nil {
		t.Fatal(err)
	}
	e = nextEvent(t, sub, EventDataReceived)
	if obj, _ := e.Value.(map[string]any); e.Path != "/cmd" || obj["op"] != "reboot" || obj["arg"] != int64(3) || e.Timestamp == nil || !e.Timestamp.Equal(ts0) {
		t.Fatalf("object event %+v", e)
	}
	if err := r.emu.PublishData(id, "com.example.SrvProps", "/s2/rate", rate, 2); err != nil {
		t.Fatal(err)
	}
	nextEvent(t, sub, EventDataReceived)
	if err := r.emu.PublishData(id, "com.example.SrvProps", "/s2/rate", nil, 2); err != nil {
		t.Fatal(err)
	}
	if e = nextEvent(t, sub, EventPropertyUnset); e.Path != "/s2/rate" {
		t.Fatalf("unset event %+v", e)
	}
	// Astarte lists no server property: /s1/rate is purged.
	if err := r.emu.PublishConsumerProperties(id, nil); err != nil {
		t.Fatal(err)
	}
	if e = nextEvent(t, sub, EventPropertyUnset); e.Interface != "com.example.SrvProps" || e.Path != "/s1/rate" {
		t.Fatalf("purge event %+v", e)
	}
	if _, ok, _ := d.Property(ctx, "com.example.SrvProps", "/s1/rate"); ok {
		t.Fatal("purged property still stored")
	}
	props, err := d.Properties(ctx, "")
	if err != nil || len(props) != 1 || props[0].Path != "/a/name" || props[0].Ownership != interfaces.DeviceOwned {
		t.Fatalf("Properties = %+v %v", props, err)
	}

	st, err := d.Status(ctx)
	if err != nil || st.State != Connected || st.Transport != "mqtt" || st.Received != 4 || st.Sent < 17 {
		t.Fatalf("status %+v %v", st, err)
	}
	if err := d.Disconnect(ctx); err != nil {
		t.Fatal(err)
	}
	if e = nextEvent(t, sub, EventDisconnected); !e.Requested {
		t.Fatalf("disconnect event %+v", e)
	}
	if d.State() != Disconnected {
		t.Fatal(d.State())
	}
}

func TestValidationErrors(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	d := r.device(t, "AAAAAAAAAAAAAAAAAAAAAA", allTypes, geoObject, devProps, srvProps, retention)
	ctx := context.Background()
	ts := time.Now()
	cases := []struct {
		name     string
		call     func() (Delivery, error)
		notFound bool
		want     string
	}{
		{"unknown interface", func() (Delivery, error) { return d.Send(ctx, "com.example.Nope", "/x", 1, nil) }, true, "not in the device introspection"},
		{"server-owned", func() (Delivery, error) { return d.SetProperty(ctx, "com.example.SrvProps", "/a/rate", 1) }, false, "server-owned"},
		{"send on properties", func() (Delivery, error) { return d.Send(ctx, "com.example.DevProps", "/a/name", "x", nil) }, false, "use set_property"},
		{"property on datastream", func() (Delivery, error) { return d.SetProperty(ctx, "com.example.Retention", "/stored", 1) }, false, "use send"},
		{"send on object", func() (Delivery, error) { return d.Send(ctx, "com.example.Geo", "/g/lat", 1.0, &ts) }, false, "use send_aggregate"},
		{"object on individual", func() (Delivery, error) {
			return d.SendObject(ctx, "com.example.Retention", "/stored", map[string]any{"x": 1}, nil)
		}, false, "use send for each"},
		{"unknown path", func() (Delivery, error) { return d.Send(ctx, "com.example.Retention", "/nope", 1, nil) }, false, "no mapping matches"},
		{"empty parameter", func() (Delivery, error) { return d.Send(ctx, "com.example.AllTypes", "//double", 1.0, &ts) }, false, "empty level"},
		{"wildcard parameter", func() (Delivery, error) { return d.Send(ctx, "com.example.AllTypes", "/+/double", 1.0, &ts) }, false, "must not contain"},
		{"int32 overflow", func() (Delivery, error) { return d.Send(ctx, "com.example.AllTypes", "/s/integer", 3e9, &ts) }, false, "32-bit range"},
		{"NaN", func() (Delivery, error) { return d.Send(ctx, "com.example.AllTypes", "/s/double", math.NaN(), &ts) }, false, "NaN"},
		{"Inf", func() (Delivery, error) { return d.Send(ctx, "com.example.AllTypes", "/s/double", math.Inf(-1), &ts) }, false, "infinity"},
		{"string too long", func() (Delivery, error) {
			return d.Send(ctx, "com.example.AllTypes", "/s/string", strings.Repeat("x", 65537), &ts)
		}, false, "more than 65536"},
		{"blob too long", func() (Delivery, error) {
			return d.Send(ctx, "com.example.AllTypes", "/s/binaryblob", make([]byte, 65537), &ts)
		}, false, "more than 65536"},
		{"array too long", func() (Delivery, error) {
			return d.Send(ctx, "com.example.AllTypes", "/s/booleanarray", make([]bool, 1025), &ts)
		}, false, "more than 1024"},
		{"wrong type", func() (Delivery, error) { return d.Send(ctx, "com.example.AllTypes", "/s/boolean", "yes", &ts) }, false, "true or false"},
		{"missing timestamp", func() (Delivery, error) { return d.Send(ctx, "com.example.AllTypes", "/s/double", 1.0, nil) }, false, "timestamp is required"},
		{"unexpected timestamp", func() (Delivery, error) { return d.Send(ctx, "com.example.Retention", "/stored", 1, &ts) }, false, "cannot be set"},
		{"unset not allowed", func() (Delivery, error) { return d.UnsetProperty(ctx, "com.example.DevProps", "/fixed") }, false, "allow_unset"},
		{"object unknown key", func() (Delivery, error) {
			return d.SendObject(ctx, "com.example.Geo", "/g", map[string]any{"alt": 1.0}, &ts)
		}, false, `key "alt"`},
		{"object empty", func() (Delivery, error) { return d.SendObject(ctx, "com.example.Geo", "/g", map[string]any{}, &ts) }, false, "no values"},
		{"object bad path", func() (Delivery, error) {
			return d.SendObject(ctx, "com.example.Geo", "/g/lat", map[string]any{"lat": 1.0}, &ts)
		}, false, "object base path"},
		{"object bad value", func() (Delivery, error) {
			return d.SendObject(ctx, "com.example.Geo", "/g", map[string]any{"lat": "north"}, &ts)
		}, false, "wants a number"},
	}
	for _, c := range cases {
		got, err := c.call()
		if err == nil {
			t.Errorf("%s: accepted (%v)", c.name, got)
			continue
		}
		var ie *interfaces.Error
		if !errors.As(err, &ie) || ie.Interface == "" {
			t.Errorf("%s: %v is not an interface error naming the interface", c.name, err)
			continue
		}
		if errors.Is(err, interfaces.ErrNotFound) != c.notFound {
			t.Errorf("%s: not-found = %v for %v", c.name, !c.notFound, err)
		}
		if !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %q does not contain %q", c.name, err, c.want)
		}
	}
	_, err := d.Send(ctx, "com.example.Retention", "/discard", 1, nil)
	if !errors.Is(err, ErrOffline) || errors.Is(err, interfaces.ErrInvalid) || !strings.Contains(err.Error(), `"com.example.Retention"`) ||
		!strings.Contains(err.Error(), "discard") {
		t.Fatalf("discard offline = %v", err)
	}
	// Nothing reached the broker.
	if n := len(r.emu.Messages()); n != 0 {
		t.Fatalf("broker received %d messages", n)
	}
	if _, _, err := d.Property(ctx, "com.example.Retention", "/stored"); err == nil {
		t.Fatal("Property on a datastream accepted")
	}
	if _, err := d.Properties(ctx, "com.example.Retention"); err == nil {
		t.Fatal("Properties on a datastream accepted")
	}
	if err := d.RemoveInterface(ctx, "com.example.Nope"); !errors.Is(err, interfaces.ErrNotFound) {
		t.Fatalf("RemoveInterface unknown = %v", err)
	}
}

func TestOfflineRetentionAndReconnect(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	id := r.pair(t)
	base := "test/" + id
	d := r.device(t, id, retention, devProps)
	ctx := within(t, 30*time.Second)
	sub := d.Subscribe(0)
	if err := d.Connect(r.transport(t, id, nil)); err != nil {
		t.Fatal(err)
	}
	nextEvent(t, sub, EventConnected)
	if err := d.WaitDrained(ctx); err != nil {
		t.Fatal(err)
	}
	if err := r.emu.StopBroker(); err != nil {
		t.Fatal(err)
	}
	if e := nextEvent(t, sub, EventDisconnected); e.Requested || e.Reason == "" {
		t.Fatalf("disconnect event %+v", e)
	}
	r.emu.ResetMessages()

	if _, err := d.Send(ctx, "com.example.Retention", "/discard", 1, nil); !errors.Is(err, ErrOffline) {
		t.Fatalf("discard while offline = %v", err)
	}
	for k := 0; k < 20; k++ {
		if got, err := d.Send(ctx, "com.example.Retention", "/stored", k, nil); err != nil || got != QueuedStored {
			t.Fatalf("stored %d = %v %v", k, got, err)
		}
	}
	for k := 0; k < 5; k++ { // the volatile queue holds 3: the 2 oldest are dropped
		if got, err := d.Send(ctx, "com.example.Retention", "/volatile", 100+k, nil); err != nil || got != QueuedVolatile {
			t.Fatalf("volatile %d = %v %v", k, got, err)
		}
	}
	if got, err := d.SetProperty(ctx, "com.example.DevProps", "/x/name", "offline"); err != nil || got != Pending {
		t.Fatalf("property offline = %v %v", got, err)
	}
	st, _ := d.Status(ctx)
	if st.State != Connecting || st.Draining || st.QueuedStored != 20 || st.QueuedVolatile != 3 || st.VolatileDropped != 2 || st.LastError == "" {
		t.Fatalf("status offline %+v", st)
	}

	if err := r.emu.StartBroker(); err != nil {
		t.Fatal(err)
	}
	nextEvent(t, sub, EventConnected)
	if err := d.WaitDrained(ctx); err != nil {
		t.Fatal(err)
	}
	msgs := r.emu.MessagesFrom(base)
	// Fresh session after the broker restart: the handshake (introspection,
	// emptyCache, the device properties, the purge list), then the property
	// changes still pending, then 20 stored, then 3 volatile. The device
	// retries in the background, so the attempt that gets through may have
	// read its property snapshot before SetProperty: the property is then
	// not in the handshake but follows it as a pending change (purge, then
	// set). Either way Astarte ends with the property set, and it comes
	// before the queues.
	topics := make([]string, len(msgs))
	for k, m := range msgs {
		topics[k] = strings.TrimPrefix(m.Topic, base)
	}
	if len(msgs) != 4+20+3 {
		t.Fatalf("broker got %d messages: %v", len(msgs), topics)
	}
	const propTopic, purgeTopic = "/com.example.DevProps/x/name", "/control/producer/properties"
	if topics[0] != "" || topics[1] != "/control/emptyCache" {
		t.Fatalf("handshake does not start with introspection, emptyCache: %v", topics[:4])
	}
	switch {
	case topics[2] == propTopic && topics[3] == purgeTopic: // in the handshake: the purge list keeps it
		entries, err := astarteemu.DecodePropertyList(msgs[3].Payload)
		if err != nil || !reflect.DeepEqual(entries, []string{"com.example.DevProps/x/name"}) {
			t.Fatalf("purge list %q %v after the property", entries, err)
		}
	case topics[2] == purgeTopic && topics[3] == propTopic: // a pending change after the handshake
	default:
		t.Fatalf("handshake and pending property %v", topics[:4])
	}
	for _, k := range []int{0, 1, 2, 3} {
		if msgs[k].QoS != 2 {
			t.Fatalf("%s QoS %d", topics[k], msgs[k].QoS)
		}
	}
	if pv, _ := payload.Decode(interfaces.String, msgs[slices.Index(topics, propTopic)].Payload); pv.Value != "offline" {
		t.Fatalf("property payload %v", pv)
	}
	for k := 0; k < 20; k++ {
		m := msgs[4+k]
		v, _ := payload.Decode(interfaces.Integer, m.Payload)
		if m.Topic != base+"/com.example.Retention/stored" || v.Value != int32(k) || m.QoS != 1 {
			t.Fatalf("stored %d: %s %v", k, m.Topic, v.Value)
		}
	}
	for k := 0; k < 3; k++ {
		v, _ := payload.Decode(interfaces.Integer, msgs[24+k].Payload)
		if v.Value != int32(102+k) {
			t.Fatalf("volatile %d = %v", k, v.Value)
		}
	}
	st, _ = d.Status(ctx)
	if st.QueuedStored != 0 || st.QueuedVolatile != 0 || st.State != Connected || st.Draining {
		t.Fatalf("status after drain %+v", st)
	}
	// Live again: stored messages go straight out.
	if got, err := d.Send(ctx, "com.example.Retention", "/stored", 99, nil); err != nil || got != Delivered {
		t.Fatalf("live stored = %v %v", got, err)
	}
}

func TestExpiredMessagesDroppedAndCounted(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	id := r.pair(t)
	g := newGate()
	g.Close()
	d := r.device(t, id, retention)
	ctx := within(t, 30*time.Second)
	if err := d.Connect(r.transport(t, id, g)); err != nil {
		t.Fatal(err)
	}
	for k := 0; k < 6; k++ {
		path := "/stored"
		if k%2 == 1 {
			path = "/expiring" // expiry 1 s
		}
		if _, err := d.Send(ctx, "com.example.Retention", path, k, nil); err != nil {
			t.Fatal(err)
		}
	}
	r.clock.Advance(2 * time.Second)
	g.Open()
	if err := d.WaitDrained(ctx); err != nil {
		t.Fatal(err)
	}
	var got []int32
	for _, m := range r.emu.MessagesFrom("test/" + id) {
		if strings.Contains(m.Topic, "com.example.Retention") {
			v, _ := payload.Decode(interfaces.Integer, m.Payload)
			got = append(got, v.Value.(int32))
		}
	}
	if !reflect.DeepEqual(got, []int32{0, 2, 4}) {
		t.Fatalf("delivered %v, want [0 2 4]", got)
	}
	if st, _ := d.Status(ctx); st.ExpiredDropped != 3 {
		t.Fatalf("expired dropped %d", st.ExpiredDropped)
	}
}

// A resumed session (network blip) does not republish the handshake; a
// property changed meanwhile is sent on its own.
func TestResumedSessionSendsOnlyPendingChanges(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	id := r.pair(t)
	base := "test/" + id
	g := newGate()
	d := r.device(t, id, devProps, srvProps)
	ctx := within(t, 30*time.Second)
	sub := d.Subscribe(0)
	if err := d.Connect(r.transport(t, id, g)); err != nil {
		t.Fatal(err)
	}
	nextEvent(t, sub, EventConnected)
	if err := d.WaitDrained(ctx); err != nil {
		t.Fatal(err)
	}
	g.Close()
	r.emu.ResetMessages()
	if err := r.emu.KickClient(base); err != nil {
		t.Fatal(err)
	}
	nextEvent(t, sub, EventDisconnected)
	if got, err := d.SetProperty(ctx, "com.example.DevProps", "/k/name", "during-blip"); err != nil || got != Pending {
		t.Fatalf("SetProperty = %v %v", got, err)
	}
	g.Open()
	nextEvent(t, sub, EventConnected)
	if err := d.WaitDrained(ctx); err != nil {
		t.Fatal(err)
	}
	msgs := r.emu.MessagesFrom(base)
	if len(msgs) != 1 || msgs[0].Topic != base+"/com.example.DevProps/k/name" || msgs[0].QoS != 2 {
		t.Fatalf("after resume %+v", msgs)
	}
	rows, _ := r.store.Properties(ctx, id)
	for _, row := range rows {
		if row.Pending {
			t.Fatalf("still pending: %+v", row)
		}
	}
	// Server data still flows on the resumed session's subscriptions.
	v, _ := payload.Encode(int32(1), nil)
	if err := r.emu.PublishData(id, "com.example.SrvProps", "/z/rate", v, 2); err != nil {
		t.Fatal(err)
	}
	if e := nextEvent(t, sub, EventDataReceived); e.Path != "/z/rate" {
		t.Fatalf("event %+v", e)
	}
}

func TestInterfacesWhileConnectedAndPersisted(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	id := r.pair(t)
	base := "test/" + id
	d := r.device(t, id, devProps)
	ctx := within(t, 30*time.Second)
	if err := d.Connect(r.transport(t, id, nil)); err != nil {
		t.Fatal(err)
	}
	if err := d.WaitDrained(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := d.SetProperty(ctx, "com.example.DevProps", "/p/name", "v"); err != nil {
		t.Fatal(err)
	}
	r.emu.ResetMessages()
	if err := d.AddInterface(ctx, parse(t, srvProps)); err != nil {
		t.Fatal(err)
	}
	msgs := r.emu.MessagesFrom(base)
	if len(msgs) != 1 || string(msgs[0].Payload) != "com.example.DevProps:1:0;com.example.SrvProps:1:0" {
		t.Fatalf("introspection after add %+v", msgs)
	}
	if r.emu.Subscriptions(base)[base+"/com.example.SrvProps/#"] != 2 {
		t.Fatal("new server interface not subscribed")
	}
	if err := d.RemoveInterface(ctx, "com.example.DevProps"); err != nil {
		t.Fatal(err)
	}
	if msgs = r.emu.MessagesFrom(base); len(msgs) != 2 || string(msgs[1].Payload) != "com.example.SrvProps:1:0" {
		t.Fatalf("introspection after remove %+v", msgs)
	}
	if rows, _ := r.store.Properties(ctx, id); len(rows) != 0 {
		t.Fatalf("properties of the removed interface kept: %+v", rows)
	}
	// Interfaces survive a restart of the device (saved in the store).
	if err := d.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Send(ctx, "com.example.SrvProps", "/x", 1, nil); !errors.Is(err, ErrClosed) {
		t.Fatalf("closed device = %v", err)
	}
	d2, err := New(ctx, r.config(id))
	if err != nil {
		t.Fatal(err)
	}
	if names := d2.Interfaces(); len(names) != 1 || names[0].Name != "com.example.SrvProps" {
		t.Fatalf("restored interfaces %v", names)
	}
	// A new major version drops the values stored under the old one.
	if err := d2.AddInterface(ctx, parse(t, devProps)); err != nil {
		t.Fatal(err)
	}
	if _, err := d2.SetProperty(ctx, "com.example.DevProps", "/q/name", "old"); err != nil {
		t.Fatal(err)
	}
	v2 := strings.Replace(devProps, `"version_major":1`, `"version_major":2`, 1)
	if err := d2.AddInterface(ctx, parse(t, v2)); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := d2.Property(ctx, "com.example.DevProps", "/q/name"); ok {
		t.Fatal("value of the old major survived")
	}
}

func TestManagerServesManyDevices(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	m := NewManager(Config{Realm: "test", Store: r.store, BackoffMin: 20 * time.Millisecond, BackoffMax: 200 * time.Millisecond})
	ctx := within(t, 30*time.Second)
	ids := []string{r.pair(t), r.pair(t), r.pair(t)}
	for _, id := range ids {
		d, err := m.Device(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if err := d.AddInterface(ctx, parse(t, retention)); err != nil {
			t.Fatal(err)
		}
		if err := d.Connect(r.transport(t, id, nil)); err != nil {
			t.Fatal(err)
		}
	}
	for k, id := range ids {
		d, _ := m.Lookup(id)
		if err := d.WaitDrained(ctx); err != nil {
			t.Fatal(err)
		}
		if _, err := d.Send(ctx, "com.example.Retention", "/stored", k, nil); err != nil {
			t.Fatal(err)
		}
	}
	for k, id := range ids {
		msgs := r.emu.MessagesFrom("test/" + id)
		last := msgs[len(msgs)-1]
		v, _ := payload.Decode(interfaces.Integer, last.Payload)
		if v.Value != int32(k) {
			t.Fatalf("device %d got %v", k, v.Value)
		}
	}
	if again, _ := m.Device(ctx, ids[0]); again == nil || len(m.IDs()) != 3 {
		t.Fatal("Device did not return the open device")
	}
	if _, err := m.DeviceInRealm(ctx, "other", ids[0]); !errors.Is(err, ErrRealmConflict) {
		t.Fatalf("same id in another realm: %v", err)
	}
	if err := m.Forget(ctx, ids[2]); err != nil || len(m.IDs()) != 2 {
		t.Fatalf("Forget %v %v", err, m.IDs())
	}
	if err := m.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Device(ctx, ids[0]); !errors.Is(err, ErrClosed) {
		t.Fatalf("closed manager = %v", err)
	}
	// The realm is saved with the device's data: a new manager on the same
	// store (a restarted plugin) refuses the id in another realm too, even
	// for a device that was forgotten from memory only; the store's
	// ForgetDevice frees it.
	m2 := NewManager(Config{Realm: "test", Store: r.store})
	t.Cleanup(func() { _ = m2.Close(context.Background()) })
	for _, id := range []string{ids[0], ids[2]} {
		_, err := m2.DeviceInRealm(ctx, "other", id)
		if !errors.Is(err, ErrRealmConflict) || !strings.Contains(err.Error(), `belongs to realm "test"`) {
			t.Fatalf("after restart, %s in another realm: %v", id, err)
		}
	}
	if d, err := m2.Device(ctx, ids[0]); err != nil || d.Realm() != "test" {
		t.Fatalf("after restart, same realm: %v", err)
	}
	if err := r.store.ForgetDevice(ctx, ids[2]); err != nil {
		t.Fatal(err)
	}
	if d, err := m2.DeviceInRealm(ctx, "other", ids[2]); err != nil || d.Realm() != "other" {
		t.Fatalf("forgotten id in another realm: %v", err)
	}
}

func TestSlowSubscriberDropsEventsNotDevice(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	id := r.pair(t)
	d := r.device(t, id, srvProps)
	ctx := within(t, 30*time.Second)
	slow := d.Subscribe(1)
	fast := d.Subscribe(100)
	if err := d.Connect(r.transport(t, id, nil)); err != nil {
		t.Fatal(err)
	}
	nextEvent(t, fast, EventConnected)
	v, _ := payload.Encode(int32(1), nil)
	for k := 0; k < 5; k++ {
		if err := r.emu.PublishData(id, "com.example.SrvProps", "/n/rate", v, 2); err != nil {
			t.Fatal(err)
		}
	}
	for k := 0; k < 5; k++ {
		nextEvent(t, fast, EventDataReceived)
	}
	// emit offers each event to the subscribers in map order: the fast one
	// can have the last event before the slow one's drop is counted.
	for deadline := time.Now().Add(5 * time.Second); slow.Dropped() < 5 && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
	if slow.Dropped() != 5 {
		t.Fatalf("slow subscriber dropped %d", slow.Dropped())
	}
	st, _ := d.Status(ctx)
	if st.EventsDropped != 5 || st.Received != 5 {
		t.Fatalf("status %+v", st)
	}
	slow.Close()
	if _, ok := <-slow.Events(); !ok {
		// drained the one buffered event; the channel closes next
		if _, ok := <-slow.Events(); ok {
			t.Fatal("closed subscription still delivers")
		}
	}
}

// Disconnect stops a device that is retrying (broker down) at once, and
// the device connects again on a later Connect.
func TestDisconnectWhileRetrying(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	id := r.pair(t)
	d := r.device(t, id, retention)
	ctx := within(t, 30*time.Second)
	if err := r.emu.StopBroker(); err != nil {
		t.Fatal(err)
	}
	if err := d.Connect(r.transport(t, id, nil)); err != nil {
		t.Fatal(err)
	}
	if d.State() != Connecting {
		t.Fatalf("state %s while retrying", d.State())
	}
	if err := d.Disconnect(ctx); err != nil {
		t.Fatal(err)
	}
	if d.State() != Disconnected {
		t.Fatalf("state %s after Disconnect", d.State())
	}
	if err := r.emu.StartBroker(); err != nil {
		t.Fatal(err)
	}
	if err := d.Connect(r.transport(t, id, nil)); err != nil {
		t.Fatal(err)
	}
	if err := d.WaitState(ctx, Connected); err != nil {
		t.Fatal(err)
	}
}
