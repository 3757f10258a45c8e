package main_test

// send_batch end to end: a real host serving the real plugin process, over
// MQTT against the local Astarte and over grpc against the local Message
// Hub (0.7 and 0.8).

import (
	"encoding/json"
	"fmt"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
)

const batchSensors = `{"interface_name":"com.example.batch.Sensors","version_major":1,"version_minor":0,"type":"datastream","ownership":"device",
  "mappings":[{"endpoint":"/%{s}/value","type":"double","reliability":"guaranteed","retention":"stored"}]}`

// batchOf builds n messages on paths /s0/value../s<paths-1>/value with
// values first, first+1, ...
func batchOf(n, paths, first int) []any {
	out := make([]any, n)
	for k := range out {
		out[k] = map[string]any{"interface": "com.example.batch.Sensors", "path": fmt.Sprintf("/s%d/value", k%paths), "value": float64(first + k)}
	}
	return out
}

// checkResults requires a result per message, in order, each with one of
// the allowed deliveries, and returns the count of each delivery.
func checkResults(t *testing.T, resp map[string]any, n int, allowed ...string) map[string]int {
	t.Helper()
	results, _ := resp["results"].([]any)
	if len(results) != n {
		t.Fatalf("%d results for %d messages", len(results), n)
	}
	counts := map[string]int{}
	for k, r := range results {
		m := r.(map[string]any)
		d := fmt.Sprint(m["delivery"])
		if m["index"] != json.Number(fmt.Sprint(k)) || m["ok"] != true || !strings.Contains(strings.Join(allowed, ","), d) {
			t.Fatalf("result %d: %v (allowed %v)", k, m, allowed)
		}
		counts[d]++
	}
	return counts
}

// inOrder checks that, per path, the first arrivals of values are exactly
// first, first+paths, ... (a message whose acknowledgement was lost with
// the connection may arrive twice).
func inOrder(t *testing.T, byPath map[string][]float64, n, paths, first int) {
	t.Helper()
	for p := 0; p < paths; p++ {
		var want, got []float64
		for k := p; k < n; k += paths {
			want = append(want, float64(first+k))
		}
		seen := map[float64]bool{}
		for _, v := range byPath[fmt.Sprintf("/s%d/value", p)] {
			if v >= float64(first) && v < float64(first+n) && !seen[v] {
				seen[v] = true
				got = append(got, v)
			}
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("path /s%d/value: received %v\nwant %v", p, got, want)
		}
	}
}

// Over MQTT through the host: a 1,000-message batch on 4 paths is
// delivered whole and arrives in order per path; an invalid batch is a
// bad_request naming each invalid message, and nothing is published.
func TestHostSendBatch(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	id := s.pair()
	s.addInterfaces(id, batchSensors)
	s.connect(id)
	resp := s.ok("send_batch", map[string]any{"device_id": id, "messages": batchOf(1000, 4, 0)})
	if c := checkResults(t, resp, 1000, "delivered"); c["delivered"] != 1000 || resp["delivered"] != json.Number("1000") {
		t.Fatalf("counts %v %v", c, resp["delivered"])
	}
	if _, err := s.emu.WaitMessages(within(t, 20*time.Second), s.base(id), 1000); err != nil {
		t.Fatal(err)
	}
	byPath := map[string][]float64{}
	prefix := s.base(id) + "/com.example.batch.Sensors"
	for _, m := range s.emu.MessagesFrom(s.base(id)) {
		if path, ok := strings.CutPrefix(m.Topic, prefix); ok {
			if m.QoS != 1 {
				t.Fatalf("%s at QoS %d", m.Topic, m.QoS)
			}
			var doc struct {
				V float64 `bson:"v"`
			}
			if err := bson.Unmarshal(m.Payload, &doc); err != nil {
				t.Fatal(err)
			}
			byPath[path] = append(byPath[path], doc.V)
		}
	}
	inOrder(t, byPath, 1000, 4, 0)

	before := len(s.emu.MessagesFrom(s.base(id)))
	bad := batchOf(3, 1, 0)
	bad[1] = map[string]any{"interface": "com.example.batch.Sensors", "path": "/s0/value/extra", "value": 1.5}
	bad[2] = map[string]any{"interface": "com.example.batch.Sensors", "path": "/s0/value", "value": "hot"}
	s.fail("send_batch", map[string]any{"device_id": id, "messages": bad}, http.StatusBadRequest, "bad_request",
		"2 of 3 messages are invalid; nothing was sent", "request.messages[1].path: ", "request.messages[2].value: ")
	time.Sleep(100 * time.Millisecond)
	if after := len(s.emu.MessagesFrom(s.base(id))); after != before {
		t.Fatalf("a refused batch published %d messages", after-before)
	}
}

// Over grpc through the host, for 0.7 and 0.8: a batch is delivered in
// order per path; then the hub crashes after 150 Sends of a 1,200-message
// batch: every message is delivered or queued (none failed, none lost),
// and after the hub is back the queued ones arrive, in order per path.
func TestHubSendBatch(t *testing.T) {
	t.Parallel()
	for _, p := range hubProtocols {
		t.Run(string(p), func(t *testing.T) {
			t.Parallel()
			s := newHubStack(t, p)
			id, nodeID := s.device("", batchSensors)
			ctx := within(t, 60*time.Second)
			valuesByPath := func() map[string][]float64 {
				out := map[string][]float64{}
				for _, snd := range s.hub.SendsFrom(nodeID) {
					if snd.Code == 0 && snd.Data.Interface == "com.example.batch.Sensors" {
						out[snd.Data.Path] = append(out[snd.Data.Path], snd.Data.Value.(float64))
					}
				}
				return out
			}
			resp := s.ok("send_batch", map[string]any{"device_id": id, "messages": batchOf(600, 3, 0)})
			checkResults(t, resp, 600, "delivered")
			inOrder(t, valuesByPath(), 600, 3, 0)

			s.hub.StopAfter("Send", 150)
			resp = s.ok("send_batch", map[string]any{"device_id": id, "messages": batchOf(1200, 3, 10000)})
			c := checkResults(t, resp, 1200, "delivered", "queued_stored")
			// (At most 150 delivered: a Send the hub handled may have lost its
			// answer in the crash, and is then queued and sent again.)
			if c["delivered"] == 0 || c["delivered"] > 150 || c["queued_stored"] == 0 || resp["failed"] != json.Number("0") {
				t.Fatalf("outcomes %v (failed %v): the hub was not lost mid-batch", c, resp["failed"])
			}
			if err := s.hub.Wait(ctx, func() bool { return !s.hub.Running() }); err != nil {
				t.Fatal(err)
			}
			st := s.waitHubStatus(id, "offline with the queue", func(st map[string]any) bool { return st["state"] != "connected" })
			if st["queued_stored"] != json.Number(fmt.Sprint(c["queued_stored"])) {
				t.Fatalf("queue %v, %d reported queued", st["queued_stored"], c["queued_stored"])
			}
			if err := s.hub.Start(); err != nil {
				t.Fatal(err)
			}
			// Draining 1,050 messages one round trip each takes as long as
			// the machine's load makes it: wait while it progresses.
			s.waitHubDrained(id)
			inOrder(t, valuesByPath(), 1200, 3, 10000)
		})
	}
}
