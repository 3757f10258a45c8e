package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/connector-host/connector-host/sdk/eventsprotocol"
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

// A send_event in flight ends when its caller goes away: the host cancels
// the plugin's call, whose HTTP request to the remote service is dropped
// (the service sees its request context end), and the plugin goes on
// serving.
func TestSendEventCancelledThroughHost(t *testing.T) {
	t.Parallel()
	bin := harness.Build(t, "./plugins/eventsprotocol", "connector-events-protocol")
	h := harness.StartHost(t, []harness.Plugin{{Path: bin}})
	emu := emulator(t)
	started, ended := make(chan struct{}), make(chan struct{})
	err := emu.Registry().Add("test:block", 1, eventsprotocol.HandlerFunc(func(ctx context.Context, _ *eventsprotocol.Event) (any, error) {
		close(started)
		<-ctx.Done()
		close(ended)
		return nil, ctx.Err()
	}))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := json.Marshal(map[string]any{"request": map[string]any{
		"url": emu.URL(), "name": "test:block", "version": 1, "payload": map[string]any{}, "timeout_ms": 600000}})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, h.URL+"/v1/connectors/events-protocol/send_event", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-Request-Id", "cancel-me-1")
	done := make(chan error, 1)
	go func() {
		resp, err := harness.Client.Do(req)
		if err == nil {
			_ = resp.Body.Close()
		}
		done <- err
	}()
	select {
	case <-started:
	case <-time.After(10 * time.Second):
		t.Fatal("the event never reached the remote service")
	}
	cancel()
	<-done
	select {
	case <-ended:
	case <-time.After(time.Second):
		t.Fatal("the remote service's request was still open 1 s after the caller went away")
	}
	if !h.Logs.WaitFor(`"request_id":"cancel-me-1"`, 2*time.Second) {
		t.Error("no log line of the cancelled call")
	}
	r := h.Post(t, "/v1/connectors/events-protocol/send_event",
		`{"request":{"url":"`+emu.URL()+`","name":"get:event:example","version":1,"payload":{"example":"x"}}}`)
	if r.Status != http.StatusOK {
		t.Fatalf("after the cancellation: %d %s", r.Status, r.Body)
	}
}
