package main

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/connector-host/connector-host/sdk"
	"github.com/connector-host/connector-host/sdk/eventsprotocol"
	eventsemu "github.com/connector-host/connector-host/testkit/emulators/events"
)

func integration(t *testing.T) *sdk.Integration {
	t.Helper()
	integ, err := newIntegration(eventsprotocol.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	if err := integ.Validate(); err != nil {
		t.Fatal(err)
	}
	return integ
}

func emulator(t *testing.T) *eventsemu.Server {
	t.Helper()
	emu := eventsemu.New()
	if err := emu.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = emu.Close() })
	return emu
}

// invoke runs a capability in-process and decodes the envelope.
func invoke(t *testing.T, integ *sdk.Integration, capability string, request any) (int, map[string]any) {
	t.Helper()
	env, err := json.Marshal(map[string]any{"request": request})
	if err != nil {
		t.Fatal(err)
	}
	status, body := integ.Invoke(context.Background(), capability, env)
	var out map[string]any
	if err := json.Unmarshal(body, &out); err != nil {
		t.Fatalf("envelope %s: %v", body, err)
	}
	return status, out
}

func errorCode(out map[string]any) string {
	e, _ := out["error"].(map[string]any)
	s, _ := e["error_code"].(string)
	return s
}

func TestNewIntegrationNilRegistry(t *testing.T) {
	t.Parallel()
	if _, err := newIntegration(nil); err == nil {
		t.Error("nil registry: no error")
	}
}

func TestSendEvent(t *testing.T) {
	t.Parallel()
	integ := integration(t)
	emu := emulator(t)
	tests := []struct {
		req       map[string]any
		kind      string
		errorType string
		name      string
		payload   string
	}{
		{map[string]any{"name": eventsemu.NameEcho, "payload": map[string]any{"n": 1, "s": "x"}},
			"response", "", "emulator:echo:response", `{"n":1,"s":"x"}`},
		{map[string]any{"name": "get:event:example", "payload": map[string]any{"example": "example"}},
			"response", "", "get:event:example:response", `{"MyEventPayload":"example"}`},
		{map[string]any{"name": eventsemu.NameRedirect, "payload": map[string]any{"url": "https://x.test"}},
			"redirect", "", "emulator:redirect:redirect", `{"queryParameters":{},"url":"https://x.test"}`},
		{map[string]any{"name": eventsemu.NameFail, "payload": map[string]any{"type": "userDenied", "code": "DENIED"}},
			"error", "userDenied", "emulator:fail:userDenied", `{"code":"DENIED","parameters":{}}`},
		{map[string]any{"name": "get:nothing", "payload": map[string]any{}},
			"error", "notFound", "get:nothing:notFound", `{"code":"EVENT_NOT_FOUND","parameters":{"event":"get:nothing","version":1}}`},
	}
	for _, tt := range tests {
		tt.req["url"] = emu.URL()
		tt.req["version"] = 1
		tt.req["id"] = "id-1"
		tt.req["flow_id"] = "flow-1"
		tt.req["identity"] = map[string]any{"userId": "42"}
		tt.req["auth"] = map[string]any{"token": "tok"}
		tt.req["metadata"] = map[string]any{"origin": "test"}
		status, out := invoke(t, integ, "send_event", tt.req)
		if status != http.StatusOK {
			t.Fatalf("%v: status %d %v", tt.req["name"], status, out)
		}
		resp := out["response"].(map[string]any)
		ev := resp["event"].(map[string]any)
		payload, _ := json.Marshal(ev["payload"])
		errorType, _ := resp["error_type"].(string)
		if resp["kind"] != tt.kind || errorType != tt.errorType || ev["name"] != tt.name {
			t.Errorf("%v: %v", tt.req["name"], resp)
		}
		if string(payload) != tt.payload {
			t.Errorf("%v: payload %s, want %s", tt.req["name"], payload, tt.payload)
		}
		if ev["id"] != "id-1" || ev["flowId"] != "flow-1" {
			t.Errorf("%v: ids %v %v", tt.req["name"], ev["id"], ev["flowId"])
		}
		for k, want := range map[string]string{"identity": `{"userId":"42"}`, "auth": `{"token":"tok"}`, "metadata": `{"origin":"test"}`} {
			got, _ := json.Marshal(ev[k])
			if string(got) != want {
				t.Errorf("%v: %s = %s, want %s", tt.req["name"], k, got, want)
			}
		}
	}
	// The big number travels unrounded: check the raw envelope.
	env, _ := json.Marshal(map[string]any{"request": map[string]any{"url": emu.URL(), "name": eventsemu.NameEcho, "version": 1,
		"payload": json.RawMessage(`{"n":12345678901234567890}`)}})
	_, body := integ.Invoke(context.Background(), "send_event", env)
	if !strings.Contains(string(body), `"payload":{"n":12345678901234567890}`) {
		t.Errorf("big number rounded: %s", body)
	}
	// Absent ids are fresh UUIDs, sent to the service.
	got := emu.Received()
	last := got[len(got)-1]
	if last.ID == "" || last.FlowID == "" || last.ID == "id-1" {
		t.Errorf("last received ids %q %q", last.ID, last.FlowID)
	}
}

func TestSendEventFailures(t *testing.T) {
	t.Parallel()
	integ := integration(t)
	emu := emulator(t)
	tests := []struct {
		req    map[string]any
		status int
		code   string
	}{
		{map[string]any{"name": eventsemu.NameSlow, "payload": map[string]any{"ms": 30000}, "timeout_ms": 100},
			http.StatusGatewayTimeout, "events-protocol.request_timeout"},
		{map[string]any{"name": eventsemu.NameHTTPStatus, "payload": map[string]any{"status": 503}},
			http.StatusBadGateway, "events-protocol.bad_gateway"},
		{map[string]any{"name": eventsemu.NameInvalidJSON, "payload": map[string]any{}},
			http.StatusBadGateway, "events-protocol.invalid_response"},
		{map[string]any{"name": eventsemu.NameInvalidEvent, "payload": map[string]any{}},
			http.StatusBadGateway, "events-protocol.invalid_response"},
		{map[string]any{"name": "Bad Name", "payload": map[string]any{}},
			http.StatusBadRequest, "events-protocol.bad_request"},
		{map[string]any{"name": eventsemu.NameEcho, "payload": []int{1}},
			http.StatusBadRequest, "events-protocol.bad_request"},
		{map[string]any{"name": eventsemu.NameEcho, "payload": map[string]any{}, "timeout_ms": 0},
			http.StatusOK, ""},
		{map[string]any{"name": eventsemu.NameEcho, "payload": map[string]any{}, "timeout_ms": -5},
			http.StatusBadRequest, "events-protocol.bad_request"},
		{map[string]any{"name": eventsemu.NameEcho, "payload": map[string]any{}, "auth": "not-an-object"},
			http.StatusBadRequest, "events-protocol.bad_request"},
	}
	for _, tt := range tests {
		tt.req["url"] = emu.URL()
		tt.req["version"] = 1
		status, out := invoke(t, integ, "send_event", tt.req)
		if status != tt.status || errorCode(out) != tt.code {
			t.Errorf("%v: %d %s, want %d %s (%v)", tt.req, status, errorCode(out), tt.status, tt.code, out)
		}
	}
	for _, url := range []string{"ftp://127.0.0.1/x", "not a url", "http:///events", "mailto:a@example.com"} {
		status, out := invoke(t, integ, "send_event", map[string]any{"url": url, "name": "get:event", "version": 1, "payload": map[string]any{}})
		msg, _ := out["error"].(map[string]any)["message"].(string)
		if status != http.StatusBadRequest || errorCode(out) != "events-protocol.bad_request" || !strings.Contains(msg, "request.url") {
			t.Errorf("url %q: %d %v", url, status, out)
		}
	}
}

func TestProcessEvent(t *testing.T) {
	t.Parallel()
	integ := integration(t)
	seed := json.RawMessage(`{"name":"get:event:example","version":1,"id":"9230c47c-3bcf-11ea-b77f-2e728ce88125",
		"flowId":"a47830ca-3bcf-11ea-a232-2e728ce88125","payload":{"example":"example"},
		"identity":{"userId":"USER_ID"},"metadata":{"date":"00-00-0000"}}`)
	tests := []struct {
		req     map[string]any
		name    string
		payload string
	}{
		{map[string]any{"event": seed}, "get:event:example:response", `{"MyEventPayload":"example"}`},
		{map[string]any{"raw": string(seed)}, "get:event:example:response", `{"MyEventPayload":"example"}`},
		{map[string]any{"event": json.RawMessage(`{"name":"get:event:example","version":1,"payload":{}}`)},
			"get:event:example:badRequest", `{"code":"MISSING_FIELDS","parameters":{"fields":{"payload.example":"is required"}}}`},
		{map[string]any{"event": json.RawMessage(`{"name":"get:other","version":1,"payload":{}}`)},
			"get:other:notFound", `{"code":"EVENT_NOT_FOUND","parameters":{"event":"get:other","version":1}}`},
		{map[string]any{"event": json.RawMessage(`{"name":"get:event:example","version":1,"payload":{},"auth":"x"}`)},
			"badProtocol", `{"code":"INVALID_COMMUNICATION_PROTOCOL","parameters":{"fields":{"auth":"must be an object, not string"}}}`},
		{map[string]any{"event": json.RawMessage(`[1,2]`)},
			"badProtocol", `{"code":"INVALID_COMMUNICATION_PROTOCOL","parameters":{"fields":{"body":"must be a JSON object"}}}`},
		{map[string]any{"raw": "{not json"},
			"badProtocol", `{"code":"INVALID_COMMUNICATION_PROTOCOL","parameters":{"fields":{"body":"is not valid JSON"}}}`},
	}
	for _, tt := range tests {
		status, out := invoke(t, integ, "process_event", tt.req)
		if status != http.StatusOK {
			t.Fatalf("%v: %d %v", tt.req, status, out)
		}
		ev := out["response"].(map[string]any)
		payload, _ := json.Marshal(ev["payload"])
		if ev["name"] != tt.name || string(payload) != tt.payload {
			t.Errorf("%v:\n got %v %s\nwant %s %s", tt.req, ev["name"], payload, tt.name, tt.payload)
		}
	}
	status, out := invoke(t, integ, "process_event", map[string]any{"event": seed})
	ev := out["response"].(map[string]any)
	if status != 200 || ev["id"] != "9230c47c-3bcf-11ea-b77f-2e728ce88125" || ev["flowId"] != "a47830ca-3bcf-11ea-a232-2e728ce88125" {
		t.Errorf("ids not copied: %v", ev)
	}
	for _, tt := range []struct {
		req   map[string]any
		field string
	}{{map[string]any{}, "request.event"}, {map[string]any{"event": seed, "raw": "x"}, "request.raw"}} {
		status, out := invoke(t, integ, "process_event", tt.req)
		msg, _ := out["error"].(map[string]any)["message"].(string)
		if status != http.StatusBadRequest || errorCode(out) != "events-protocol.bad_request" || !strings.Contains(msg, tt.field) {
			t.Errorf("%v: %d %v, want bad_request naming %s", tt.req, status, out, tt.field)
		}
	}
}

// Handlers run by process_event can reach the host through the context
// (the plugin is not under a host here, so the callback says so).
func TestProcessEventHostInContext(t *testing.T) {
	t.Parallel()
	reg := eventsprotocol.NewRegistry()
	var sawHost bool
	var hostErr error
	reg.SetResolver(func(name string, version int) (eventsprotocol.Handler, bool) {
		return eventsprotocol.HandlerFunc(func(ctx context.Context, ev *eventsprotocol.Event) (any, error) {
			h := hostFrom(ctx)
			sawHost = h != nil
			if h != nil {
				_, hostErr = h.Connectors(ctx)
			}
			return map[string]any{}, nil
		}), true
	})
	integ, err := newIntegration(reg)
	if err != nil {
		t.Fatal(err)
	}
	status, out := invoke(t, integ, "process_event", map[string]any{"event": map[string]any{"name": "reference:echo", "version": 1, "payload": map[string]any{}}})
	if status != http.StatusOK || out["response"].(map[string]any)["name"] != "reference:echo:response" {
		t.Fatalf("%d %v", status, out)
	}
	if !sawHost || !errors.Is(hostErr, sdk.ErrNoHost) {
		t.Errorf("host in context = %v, Connectors error = %v", sawHost, hostErr)
	}
	if hostFrom(context.Background()) != nil {
		t.Error("hostFrom outside a call is not nil")
	}
}
