package main

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	eventsemu "github.com/connector-host/connector-host/testkit/emulators/events"
	"github.com/connector-host/connector-host/testkit/harness"
)

// TestThroughHost runs the built plugin under a real host: both
// capabilities over the HTTP API, the transport failure codes, and no
// event credentials in any log line.
func TestThroughHost(t *testing.T) {
	t.Parallel()
	bin := harness.Build(t, "./plugins/eventsprotocol", "connector-events-protocol")
	h := harness.StartHost(t, []harness.Plugin{{Path: bin}})
	emu := emulator(t)
	const secret = "tok-e2e-SENTINEL-91f3"

	send := func(req map[string]any) *harness.Response {
		req["url"] = emu.URL()
		req["version"] = 1
		req["auth"] = map[string]any{"token": secret}
		b, _ := json.Marshal(map[string]any{"request": req})
		return h.Post(t, "/v1/connectors/events-protocol/send_event", string(b))
	}
	r := send(map[string]any{"name": "get:event:example", "payload": map[string]any{"example": "example"}})
	if r.Status != http.StatusOK {
		t.Fatalf("send_event: %d %s", r.Status, r.Body)
	}
	resp := r.JSON(t)["response"].(map[string]any)
	if resp["kind"] != "response" || resp["event"].(map[string]any)["name"] != "get:event:example:response" {
		t.Errorf("send_event response = %v", resp)
	}
	r = send(map[string]any{"name": eventsemu.NameFail, "payload": map[string]any{"type": "forbidden", "code": "NO"}})
	resp = r.JSON(t)["response"].(map[string]any)
	if r.Status != http.StatusOK || resp["kind"] != "error" || resp["error_type"] != "forbidden" {
		t.Errorf("error event: %d %v", r.Status, resp)
	}
	for _, tt := range []struct {
		req    map[string]any
		status int
		code   string
	}{
		{map[string]any{"name": eventsemu.NameSlow, "payload": map[string]any{"ms": 30000}, "timeout_ms": 100}, http.StatusGatewayTimeout, "events-protocol.request_timeout"},
		{map[string]any{"name": eventsemu.NameHTTPStatus, "payload": map[string]any{"status": 500}}, http.StatusBadGateway, "events-protocol.bad_gateway"},
		{map[string]any{"name": eventsemu.NameInvalidJSON, "payload": map[string]any{}}, http.StatusBadGateway, "events-protocol.invalid_response"},
	} {
		r := send(tt.req)
		if r.Status != tt.status || r.ErrorCode(t) != tt.code {
			t.Errorf("%v: %d %s, want %d %s", tt.req["name"], r.Status, r.ErrorCode(t), tt.status, tt.code)
		}
	}

	b, _ := json.Marshal(map[string]any{"request": map[string]any{"event": map[string]any{
		"name": "get:event:example", "version": 1, "id": "i-1", "flowId": "f-1",
		"payload": map[string]any{"example": "x"}, "auth": map[string]any{"token": secret}}}})
	r = h.Post(t, "/v1/connectors/events-protocol/process_event", string(b))
	ev := r.JSON(t)["response"].(map[string]any)
	if r.Status != http.StatusOK || ev["name"] != "get:event:example:response" || ev["id"] != "i-1" || ev["flowId"] != "f-1" {
		t.Errorf("process_event: %d %v", r.Status, ev)
	}
	if strings.Contains(h.Logs.String(), secret) {
		t.Errorf("event auth token found in the logs")
	}
}
