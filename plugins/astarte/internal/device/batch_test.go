package device

// SendBatch against every transport (the table of transports_test.go).

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/connector-host/connector-host/plugins/astarte/internal/interfaces"
)

// batchIface has stored, discard and explicit-timestamp mappings under a
// path parameter, so a batch can spread over many paths.
const batchIface = `{"interface_name":"com.example.Batch","version_major":1,"version_minor":0,"type":"datastream","ownership":"device",
  "mappings":[{"endpoint":"/%{s}/stored","type":"integer","reliability":"guaranteed","retention":"stored"},
              {"endpoint":"/%{s}/discard","type":"integer","reliability":"unreliable"},
              {"endpoint":"/%{s}/ts","type":"double","reliability":"guaranteed","explicit_timestamp":true}]}`

// connected opens a device with docs on u and waits until it is live.
func connected(t *testing.T, u upstream, docs ...string) (string, *Device, context.Context) {
	t.Helper()
	id, tr := u.newDevice(t)
	d := sharedDevice(t, openStore(t, t.TempDir()), id, docs...)
	ctx := within(t, 60*time.Second)
	if err := d.Connect(tr); err != nil {
		t.Fatal(err)
	}
	if err := d.WaitDrained(ctx); err != nil {
		t.Fatal(err)
	}
	return id, d, ctx
}

// byPath groups received values by interface+path, in arrival order.
func byPath(got []upMsg) map[string][]any {
	out := map[string][]any{}
	for _, m := range got {
		out[m.iface+m.path] = append(out[m.iface+m.path], m.value)
	}
	return out
}

// firstSeen drops repeats (a QoS 1 message whose acknowledgement was lost
// with the connection is sent again), keeping first arrivals in order.
func firstSeen(vals []any) []any {
	seen := map[string]bool{}
	var out []any
	for _, v := range vals {
		k := fmt.Sprint(v)
		if !seen[k] {
			seen[k] = true
			out = append(out, v)
		}
	}
	return out
}

// sharedBatch: a batch interleaving 8 paths, an object interface and
// explicit timestamps is delivered whole; each path's values arrive in
// batch order.
func sharedBatch(t *testing.T, u upstream) {
	docs := []string{batchIface, geoObject}
	id, d, ctx := connected(t, u, docs...)
	ts := time.Date(2025, 6, 17, 10, 20, 30, 456e6, time.UTC)
	var items []BatchItem
	want := map[string][]any{}
	for k := 0; k < 400; k++ {
		path := fmt.Sprintf("/s%d/stored", k%8)
		items = append(items, BatchItem{Interface: "com.example.Batch", Path: path, Value: k})
		want["com.example.Batch"+path] = append(want["com.example.Batch"+path], int32(k))
		if k%50 == 0 {
			items = append(items, BatchItem{Interface: "com.example.Batch", Path: "/t/ts", Value: float64(k) + 0.5, Timestamp: &ts})
			want["com.example.Batch/t/ts"] = append(want["com.example.Batch/t/ts"], float64(k)+0.5)
			items = append(items, BatchItem{Interface: "com.example.Geo", Path: "/g", Timestamp: &ts,
				Values: map[string]any{"lat": float64(k), "lon": 2.5, "tags": []any{"a"}}})
			want["com.example.Geo/g"] = append(want["com.example.Geo/g"], map[string]any{"lat": float64(k), "lon": 2.5, "tags": []string{"a"}})
		}
	}
	res, err := d.SendBatch(ctx, items)
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != len(items) {
		t.Fatalf("%d results for %d messages", len(res), len(items))
	}
	for k, r := range res {
		if r.Err != nil || r.Delivery != Delivered {
			t.Fatalf("message %d: %+v", k, r)
		}
	}
	got := byPath(waitReceived(t, u, id, introspectionOf(t, docs...), len(items)))
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("received by path:\n got %v\nwant %v", got, want)
	}
	if st, _ := d.Status(ctx); st.Sent != int64(len(items)) {
		t.Fatalf("status sent %d, want %d", st.Sent, len(items))
	}
}

// sharedBatchValidation: a batch with invalid messages is refused whole,
// each invalid one named by index and field with the reason; nothing
// reaches the upstream.
func sharedBatchValidation(t *testing.T, u upstream) {
	docs := []string{batchIface, geoObject, devProps}
	id, d, ctx := connected(t, u, docs...)
	ts := time.Now()
	items := []BatchItem{
		{Interface: "com.example.Batch", Path: "/a/stored", Value: 1},
		{Interface: "com.example.Nope", Path: "/x", Value: 1},
		{Interface: "com.example.Batch", Path: "/a/nope", Value: 1},
		{Interface: "com.example.Batch", Path: "/a/stored", Value: "one"},
		{Interface: "com.example.Batch", Path: "/a/ts", Value: 1.5},
		{Interface: "com.example.Geo", Path: "/g", Timestamp: &ts, Values: map[string]any{"alt": 1.0}},
		{Interface: "com.example.Geo", Path: "/g", Value: 1.0, Timestamp: &ts},
		{Interface: "com.example.DevProps", Path: "/fixed", Value: 1},
		{Interface: "com.example.Batch", Path: "/b/stored", Value: 2},
		{Interface: "com.example.Batch", Path: "/b/stored", Values: map[string]any{"x": 1}},
		{Interface: "com.example.Batch", Path: "/b/stored", Value: 1, Values: map[string]any{"x": 1}},
		{Interface: "com.example.Batch", Path: "/b/stored"},
	}
	_, err := d.SendBatch(ctx, items)
	var be *InvalidBatchError
	if !errors.As(err, &be) {
		t.Fatalf("err %v, want an *InvalidBatchError", err)
	}
	var got []string
	for _, it := range be.Items {
		var ie *interfaces.Error
		if !errors.As(it.Err, &ie) {
			t.Fatalf("item %d: %v is not an interface error", it.Index, it.Err)
		}
		got = append(got, fmt.Sprintf("%d.%s", it.Index, it.Field))
	}
	want := []string{"1.interface", "2.path", "3.value", "4.timestamp", "5.values.alt", "6.values", "7.interface", "9.value", "10.values", "11.value"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("invalid items %v, want %v", got, want)
	}
	msg := be.Format("request.")
	for _, part := range []string{"10 of 12 messages are invalid; nothing was sent", "request.messages[1].interface: ", "not in the device introspection",
		"request.messages[2].path: ", `"/a/nope"`, "request.messages[3].value: ", "request.messages[4].timestamp: ", "timestamp is required",
		"request.messages[5].values.alt: ", "request.messages[6].values: ", "object-aggregated: give values", "request.messages[7].interface: ",
		"request.messages[9].value: ", "individual: give value instead of values", "request.messages[10].values: ", "not both",
		"request.messages[11].value: ", "value is missing"} {
		if !strings.Contains(msg, part) {
			t.Fatalf("message %q does not contain %q", msg, part)
		}
	}
	if got := u.received(t, id, introspectionOf(t, docs...)); len(got) != 0 {
		t.Fatalf("a refused batch reached the upstream: %+v", got)
	}
	if _, err := d.SendBatch(ctx, nil); !errors.Is(err, ErrBatchSize) {
		t.Fatalf("empty batch: %v", err)
	}
	if _, err := d.SendBatch(ctx, make([]BatchItem, MaxBatch+1)); !errors.Is(err, ErrBatchSize) {
		t.Fatalf("too large batch: %v", err)
	}
	// The listing stops at 100 invalid messages.
	many := make([]BatchItem, 150)
	for k := range many {
		many[k] = BatchItem{Interface: "com.example.Batch", Path: "/a/stored", Value: "x"}
	}
	_, err = d.SendBatch(ctx, many)
	if !errors.As(err, &be) || len(be.Items) != 150 || !strings.HasSuffix(err.Error(), "; and 50 more") || strings.Contains(err.Error(), "messages[100]") {
		t.Fatalf("150 invalid: %d items, %.200q...", len(be.Items), err)
	}
}

// sharedBatchUpstreamLost: the upstream goes down after 150 messages of a
// 1,200-message batch on 3 paths (stored) and one discard path. No message
// is lost or dropped unreported: stored ones are delivered or queued
// (and delivered after the upstream is back), discard ones delivered or
// failed as offline; each path's values arrive in batch order.
func sharedBatchUpstreamLost(t *testing.T, u upstream) {
	docs := []string{batchIface}
	in := introspectionOf(t, docs...)
	id, d, ctx := connected(t, u, docs...)
	var items []BatchItem
	for k := 0; k < 1200; k++ {
		path := fmt.Sprintf("/s%d/stored", k%3)
		if k%4 == 3 {
			path = "/d/discard"
		}
		items = append(items, BatchItem{Interface: "com.example.Batch", Path: path, Value: k})
	}
	u.crashAfter(t, 150)
	res, err := d.SendBatch(ctx, items)
	if err != nil {
		t.Fatal(err)
	}
	u.waitDown(t)
	counts := map[string]int{}
	for k, r := range res {
		discard := items[k].Path == "/d/discard"
		switch {
		case r.Err == nil && (r.Delivery == Delivered || (!discard && r.Delivery == QueuedStored)):
			counts[string(r.Delivery)]++
		case r.Err != nil && discard && errors.Is(r.Err, ErrOffline):
			counts["offline"]++
		default:
			t.Fatalf("message %d (%s): %+v", k, items[k].Path, r)
		}
	}
	// (QoS 0 writes over MQTT may all complete before the loss is seen, so
	// an offline discard is not required.)
	if counts[string(Delivered)] == 0 || counts[string(QueuedStored)] == 0 {
		t.Fatalf("outcomes %v: the upstream was not lost mid-batch", counts)
	}
	st, _ := d.Status(ctx)
	if st.QueuedStored != counts[string(QueuedStored)] {
		t.Fatalf("queue holds %d, %d reported queued", st.QueuedStored, counts[string(QueuedStored)])
	}
	u.up(t)
	if err := d.WaitDrained(ctx); err != nil {
		t.Fatal(err)
	}
	got := byPath(u.received(t, id, in))
	for p := 0; p < 3; p++ {
		path := fmt.Sprintf("com.example.Batch/s%d/stored", p)
		var want []any
		for k := range items {
			if items[k].Path == path[len("com.example.Batch"):] {
				want = append(want, int32(k))
			}
		}
		if vals := firstSeen(got[path]); !reflect.DeepEqual(vals, want) {
			t.Fatalf("%s: received (first arrivals) %v\nwant %v", path, vals, want)
		}
	}
	// The discard path is unreliable (QoS 0 over MQTT): "delivered" means
	// written to the connection, unconfirmed. Over grpc every Send is
	// confirmed, so each one reported delivered arrived. A message
	// reported failed may have arrived all the same (its answer was lost
	// with the hub). Either way what arrived is in batch order.
	vals := firstSeen(got["com.example.Batch/d/discard"])
	arrived := map[int32]bool{}
	last := int32(-1)
	for _, v := range vals {
		n := v.(int32)
		if n <= last {
			t.Fatalf("discard path: received out of order: %v", vals)
		}
		last, arrived[n] = n, true
	}
	if _, grpc := u.(*hubUpstream); grpc {
		for k, r := range res {
			if items[k].Path == "/d/discard" && r.Err == nil && !arrived[int32(k)] {
				t.Fatalf("grpc: message %d reported delivered never arrived (%v)", k, vals)
			}
		}
	}
}

// sharedBatchOffline: a batch sent while the upstream is down follows
// retention like send: stored queued (and delivered in order after
// reconnecting), discard failed as offline.
func sharedBatchOffline(t *testing.T, u upstream) {
	docs := []string{batchIface}
	in := introspectionOf(t, docs...)
	id, d, ctx := connected(t, u, docs...)
	sub := d.Subscribe(0)
	u.down(t)
	nextEvent(t, sub, EventDisconnected)
	var items []BatchItem
	for k := 0; k < 600; k++ {
		items = append(items, BatchItem{Interface: "com.example.Batch", Path: fmt.Sprintf("/s%d/stored", k%2), Value: k})
	}
	items = append(items, BatchItem{Interface: "com.example.Batch", Path: "/x/discard", Value: -1})
	res, err := d.SendBatch(ctx, items)
	if err != nil {
		t.Fatal(err)
	}
	for k, r := range res[:600] {
		if r.Err != nil || r.Delivery != QueuedStored {
			t.Fatalf("message %d: %+v", k, r)
		}
	}
	if r := res[600]; !errors.Is(r.Err, ErrOffline) {
		t.Fatalf("discard offline: %+v", r)
	}
	u.up(t)
	if err := d.WaitDrained(ctx); err != nil {
		t.Fatal(err)
	}
	got := byPath(waitReceived(t, u, id, in, 600))
	for p := 0; p < 2; p++ {
		var want []any
		for k := p; k < 600; k += 2 {
			want = append(want, int32(k))
		}
		if vals := got[fmt.Sprintf("com.example.Batch/s%d/stored", p)]; !reflect.DeepEqual(vals, want) {
			t.Fatalf("path %d after reconnecting: %v", p, vals)
		}
	}
}
