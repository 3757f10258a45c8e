package connector

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/connector-host/connector-host/plugins/astarte/internal/interfaces"
	"github.com/connector-host/connector-host/plugins/astarte/internal/payload"
)

// send_batch over MQTT: per-message results in order with the counts;
// values arrive per path in batch order; an object, an explicit timestamp;
// a discard message while offline fails alone with service_error.
func TestSendBatch(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	id := h.pairDevice()
	h.ok("add_interface", map[string]any{"device_id": id, "interface": obj(sensors)})
	h.ok("add_interface", map[string]any{"device_id": id, "interface": obj(geo)})
	h.ok("connect", map[string]any{"device_id": id, "wait": true})
	var msgs []any
	for k := 0; k < 300; k++ {
		msgs = append(msgs, map[string]any{"interface": "org.astarte-platform.genericsensors.Values", "path": fmt.Sprintf("/s%d/value", k%3),
			"value": k, "timestamp": "2024-01-01T00:00:00Z"})
	}
	msgs = append(msgs, map[string]any{"interface": "com.example.Geo", "path": "/g", "values": map[string]any{"lat": 1.5, "lon": 2}})
	res := h.ok("send_batch", map[string]any{"device_id": id, "messages": msgs})
	if fmt.Sprint(res["delivered"], res["queued_stored"], res["queued_volatile"], res["failed"]) != "301 0 0 0" {
		t.Fatalf("counts %v %v %v %v", res["delivered"], res["queued_stored"], res["queued_volatile"], res["failed"])
	}
	results := res["results"].([]any)
	for k, r := range results {
		m := r.(map[string]any)
		if m["index"] != float64(k) || m["ok"] != true || m["delivery"] != "delivered" || m["error"] != nil {
			t.Fatalf("result %d: %v", k, m)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	vals := map[string][]float64{}
	if err := h.emu.Wait(ctx, func() bool {
		vals = map[string][]float64{}
		n := 0
		for _, m := range h.emu.MessagesFrom("test/" + id) {
			if strings.HasSuffix(m.Topic, "/value") {
				v, err := payload.Decode(interfaces.Double, m.Payload)
				if err != nil {
					t.Fatal(err)
				}
				vals[m.Topic] = append(vals[m.Topic], v.Value.(float64))
				n++
			}
		}
		return n >= 300
	}); err != nil {
		t.Fatal(err)
	}
	for p := 0; p < 3; p++ {
		got := vals[fmt.Sprintf("test/%s/org.astarte-platform.genericsensors.Values/s%d/value", id, p)]
		if len(got) != 100 {
			t.Fatalf("path %d: %d values", p, len(got))
		}
		for j, v := range got {
			if v != float64(p+3*j) {
				t.Fatalf("path %d: order %v", p, got)
			}
		}
	}

	// Offline: stored ones queued, a discard one fails alone.
	if err := h.emu.StopBroker(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for h.ok("status", map[string]any{"device_id": id})["state"] == "connected" && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	res = h.ok("send_batch", map[string]any{"device_id": id, "messages": []any{
		map[string]any{"interface": "org.astarte-platform.genericsensors.Values", "path": "/a/value", "value": 1, "timestamp": "2024-01-01T00:00:00Z"},
		map[string]any{"interface": "org.astarte-platform.genericsensors.Values", "path": "/a/count", "value": "9007199254740993"},
	}})
	results = res["results"].([]any)
	first, second := results[0].(map[string]any), results[1].(map[string]any)
	e, _ := second["error"].(map[string]any)
	if first["delivery"] != "queued_stored" || second["ok"] != false || e == nil || e["code"] != "service_error" ||
		!strings.Contains(fmt.Sprint(e["message"]), "retention discard") || e["retryable"] != true || res["failed"] != float64(1) {
		t.Fatalf("offline batch: %v", res)
	}
}

// send_batch refuses a batch with any invalid message as bad_request
// naming each one (index, field, reason), and bad sizes.
func TestSendBatchBadRequests(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	id := "AAAAAAAAAAAAAAAAAAAAAA"
	h.ok("add_interface", map[string]any{"device_id": id, "interface": obj(sensors)})
	h.ok("add_interface", map[string]any{"device_id": id, "interface": obj(geo)})
	ok := map[string]any{"interface": "org.astarte-platform.genericsensors.Values", "path": "/s/value", "value": 1, "timestamp": "2024-01-01T00:00:00Z"}
	batch := []any{ok,
		map[string]any{"interface": "org.astarte-platform.genericsensors.Values", "path": "/s/value", "value": "x", "timestamp": "2024-01-01T00:00:00Z"},
		map[string]any{"interface": "com.example.Nope", "path": "/x", "value": 1},
		map[string]any{"interface": "com.example.Geo", "path": "/g", "value": 1},
		map[string]any{"interface": "org.astarte-platform.genericsensors.Values", "path": "/s/value", "value": 1},
	}
	status, m := h.call("send_batch", map[string]any{"device_id": id, "messages": batch})
	e, _ := m["error"].(map[string]any)
	msg := fmt.Sprint(e["message"])
	if status != 400 || e["error_code"] != "astarte.bad_request" {
		t.Fatalf("invalid batch: %d %v", status, m)
	}
	for _, part := range []string{"4 of 5 messages are invalid; nothing was sent", "request.messages[1].value: ", "wants a number",
		"request.messages[2].interface: ", "not in the device introspection", "request.messages[3].values: ", "object-aggregated",
		"request.messages[4].timestamp: ", "timestamp is required"} {
		if !strings.Contains(msg, part) {
			t.Fatalf("message %q does not name %q", msg, part)
		}
	}
	if strings.Contains(msg, "messages[0]") {
		t.Fatalf("a valid message is named: %q", msg)
	}
	// Shapes the schema refuses.
	h.fail("send_batch", map[string]any{"device_id": id, "messages": []any{}}, "bad_request", "request.messages")
	h.fail("send_batch", map[string]any{"device_id": id, "messages": []any{map[string]any{"interface": "a.b", "value": 1}}}, "bad_request", "request.messages[0].path: is required")
	h.fail("send_batch", map[string]any{"device_id": id, "messages": []any{map[string]any{"interface": "a.b", "path": "/x", "val": 1}}}, "bad_request", "request.messages[0].val: is not a known field")
	big := make([]any, 10001)
	for k := range big {
		big[k] = ok
	}
	h.fail("send_batch", map[string]any{"device_id": id, "messages": big}, "bad_request", "request.messages")
}

// An MQTT connect for a device without a stored credentials secret fails
// at once with not_found naming what to do, and leaves nothing retrying.
func TestConnectWithoutCredentials(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	id := h.ok("generate_device_id", map[string]any{})["device_id"].(string)
	h.ok("add_interface", map[string]any{"device_id": id, "interface": obj(sensors)})
	for _, wait := range []bool{false, true} {
		status, m := h.call("connect", map[string]any{"device_id": id, "wait": wait, "timeout_ms": 2000})
		e, _ := m["error"].(map[string]any)
		msg := fmt.Sprint(e["message"])
		if status != 404 || e["error_code"] != "astarte.not_found" || !strings.Contains(msg, "credentials secret") ||
			!strings.Contains(msg, "register_device") || !strings.Contains(msg, "import_credentials_secret") {
			t.Fatalf("connect without credentials (wait %v): %d %v", wait, status, m)
		}
	}
	if st := h.ok("status", map[string]any{"device_id": id}); st["state"] != "disconnected" || st["last_error"] != nil {
		t.Fatalf("status after the refused connect: %v", st)
	}
	if _, ok, _ := h.plugin.store.Meta(context.Background(), id, metaAutoconnect); ok {
		t.Fatal("a refused connect was saved for reconnection after a restart")
	}
	// With a secret imported, connect goes on to obtain the certificate.
	secret := h.emu.RegisterDevice(id)
	h.ok("import_credentials_secret", map[string]any{"device_id": id, "credentials_secret": secret})
	if st := h.ok("connect", map[string]any{"device_id": id, "wait": true}); st["state"] != "connected" {
		t.Fatalf("connect with an imported secret: %v", st)
	}
}

// The realm a device was first used in is saved with its data: after a
// plugin restart the same device id in another realm is a conflict, as it
// is within one process.
func TestRealmPersistedAcrossRestart(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	id := "BBBBBBBBBBBBBBBBBBBBBA"
	h.ok("add_interface", map[string]any{"device_id": id, "interface": obj(devProps)})
	h.settings["realm"] = "other"
	h.fail("list_interfaces", map[string]any{"device_id": id}, "conflict", `realm "test"`)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := h.integ.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	h.integ = h.start(filepath.Join(h.dir, "data"))
	h.fail("list_interfaces", map[string]any{"device_id": id}, "conflict", `belongs to realm "test"`)
	h.fail("send_batch", map[string]any{"device_id": id, "messages": []any{map[string]any{"interface": "a.b", "path": "/x", "value": 1}}}, "conflict", `realm "test"`)
	h.settings["realm"] = "test"
	if got := h.ok("list_interfaces", map[string]any{"device_id": id}); got["introspection"] != "com.example.DevProps:1:0" {
		t.Fatalf("same realm after restart: %v", got)
	}
}

// jsonValue keeps numbers exact and decodes every JSON type, through its
// fast paths (numbers, plain strings) and the decoder alike.
func TestJSONValue(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		`12345678901234567890`: "12345678901234567890 json.Number",
		`-1.5e3`:               "-1.5e3 json.Number",
		`"plain é"`:            "plain é string",
		`"esc\"aped\n"`:        "esc\"aped\n string",
		`"\u00e9"`:             "é string",
		`true`:                 "true bool",
		`null`:                 "<nil> <nil>",
		`[1,"a"]`:              "[1 a] []interface {}",
		`{"a":2}`:              "map[a:2] map[string]interface {}",
	} {
		var j jsonValue
		if err := j.UnmarshalJSON([]byte(in)); err != nil {
			t.Fatalf("%s: %v", in, err)
		}
		if got := fmt.Sprintf("%v %T", j.v, j.v); got != want {
			t.Fatalf("%s: got %q, want %q", in, got, want)
		}
	}
	var j jsonValue
	if err := j.UnmarshalJSON([]byte("\"\xff\"")); err != nil || j.v != "\ufffd" {
		t.Fatalf("invalid UTF-8: %q %v", j.v, err)
	}
}
