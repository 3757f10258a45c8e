package eventsemu

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/connector-host/connector-host/sdk/eventsprotocol"
)

func start(t *testing.T) *Server {
	t.Helper()
	emu := New()
	if err := emu.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = emu.Close() })
	return emu
}

// post sends a raw body and returns status and body.
func post(t *testing.T, url, body string) (int, string) {
	t.Helper()
	resp, err := http.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(data)
}

func ev(name, payload string) string {
	return `{"name":"` + name + `","version":1,"id":"i","flowId":"f","payload":` + payload + `}`
}

func TestEmulatorAnswers(t *testing.T) {
	t.Parallel()
	emu := start(t)
	if !strings.HasPrefix(emu.URL(), "http://127.0.0.1:") || !strings.HasSuffix(emu.URL(), "/events") {
		t.Fatalf("URL = %q", emu.URL())
	}
	tests := []struct {
		body    string
		status  int
		name    string
		payload string
	}{
		{ev(NameEcho, `{"a":[1,"b"]}`), 200, "emulator:echo:response", `{"a":[1,"b"]}`},
		{ev(NameRedirect, `{"url":"https://x.test/y","queryParameters":{"q":"1"}}`), 200, "emulator:redirect:redirect",
			`{"queryParameters":{"q":"1"},"url":"https://x.test/y"}`},
		{ev(NameFail, `{"type":"forbidden","code":"NOPE","parameters":{"why":"x"}}`), 200, "emulator:fail:forbidden",
			`{"code":"NOPE","parameters":{"why":"x"}}`},
		{ev(NameFail, `{"type":"expired","code":"OLD"}`), 200, "emulator:fail:expired", `{"code":"OLD","parameters":{}}`},
		{ev(NameFail, `{}`), 200, "emulator:fail:badRequest",
			`{"code":"MISSING_FIELDS","parameters":{"fields":{"payload.code":"is required","payload.type":"is required"}}}`},
		{ev(NameSlow, `{"ms":1}`), 200, "emulator:slow:response", `{"sleptMs":1}`},
		{ev(NameSlow, `{"ms":-1}`), 200, "emulator:slow:badRequest",
			`{"code":"MISSING_FIELDS","parameters":{"fields":{"payload.ms":"minimum: got -1, want 0"}}}`},
		{ev(NamePanic, `{}`), 200, "emulator:panic:error", `{"code":"UNHANDLED_ERROR","parameters":{}}`},
		{ev("get:event:example", `{"example":"example"}`), 200, "get:event:example:response", `{"MyEventPayload":"example"}`},
		{ev("get:unknown", `{}`), 200, "get:unknown:notFound", `{"code":"EVENT_NOT_FOUND","parameters":{"event":"get:unknown","version":1}}`},
		{`{"version":1}`, 200, "badProtocol",
			`{"code":"INVALID_COMMUNICATION_PROTOCOL","parameters":{"fields":{"name":"is required","payload":"is required"}}}`},
	}
	for _, tt := range tests {
		for _, url := range []string{emu.URL(), emu.URL() + "/"} {
			status, body := post(t, url, tt.body)
			if status != tt.status {
				t.Errorf("%s: status %d, want %d", tt.body, status, tt.status)
			}
			got, err := eventsprotocol.ParseResponse([]byte(body))
			if err != nil {
				t.Fatalf("%s: answer %s: %v", tt.body, body, err)
			}
			if got.Name != tt.name || string(got.Payload) != tt.payload {
				t.Errorf("%s:\n got %s %s\nwant %s %s", tt.body, got.Name, got.Payload, tt.name, tt.payload)
			}
			if tt.name != "badProtocol" && (got.ID != "i" || got.FlowID != "f") {
				t.Errorf("%s: ids %q %q", tt.body, got.ID, got.FlowID)
			}
		}
	}
}

func TestEmulatorHTTPBehaviours(t *testing.T) {
	t.Parallel()
	emu := start(t)
	for _, s := range []int{301, 400, 404, 418, 500, 503} {
		status, _ := post(t, emu.URL(), ev(NameHTTPStatus, `{"status":`+itoa(s)+`}`))
		if status != s {
			t.Errorf("http_status %d: got %d", s, status)
		}
	}
	if status, _ := post(t, emu.URL(), ev(NameHTTPStatus, `{"status":42}`)); status != 500 {
		t.Errorf("out-of-range status: got %d, want 500", status)
	}
	status, body := post(t, emu.URL(), ev(NameInvalidJSON, `{}`))
	if status != 200 || body != InvalidJSONBody || json.Valid([]byte(body)) {
		t.Errorf("invalid_json: %d %q", status, body)
	}
	status, body = post(t, emu.URL(), ev(NameInvalidEvent, `{}`))
	if status != 200 || body != InvalidEventBody {
		t.Errorf("invalid_event: %d %q", status, body)
	}
	if _, err := eventsprotocol.ParseResponse([]byte(body)); err == nil {
		t.Error("invalid_event body parses as a response event")
	}
	resp, err := http.Get(emu.URL())
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET: %d", resp.StatusCode)
	}
	big := bytes.Repeat([]byte("x"), eventsprotocol.DefaultMaxBodyBytes+1)
	resp, err = http.Post(emu.URL(), "application/json", bytes.NewReader(big))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("oversized body: %d", resp.StatusCode)
	}
}

func itoa(n int) string {
	b, _ := json.Marshal(n)
	return string(b)
}

func TestEmulatorReceived(t *testing.T) {
	t.Parallel()
	emu := start(t)
	post(t, emu.URL(), ev(NameEcho, `{"n":1}`))
	post(t, emu.URL(), `not an event`)
	post(t, emu.URL(), ev(NameInvalidJSON, `{}`))
	got := emu.Received()
	if len(got) != 2 || got[0].Name != NameEcho || string(got[0].Payload) != `{"n":1}` || got[1].Name != NameInvalidJSON {
		t.Errorf("Received = %+v", got)
	}
	h := emu.ReceivedHeaders()
	if len(h) != 2 || h[0].Get("Content-Type") != "application/json" {
		t.Errorf("ReceivedHeaders = %v", h)
	}
	h[0].Set("Content-Type", "changed")
	if emu.ReceivedHeaders()[0].Get("Content-Type") != "application/json" {
		t.Error("ReceivedHeaders returned the emulator's own headers, not copies")
	}
}

// A slow handler stops when the client goes away, and Close does not wait
// for the full delay.
func TestEmulatorSlowBounded(t *testing.T) {
	t.Parallel()
	emu := start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, emu.URL(), strings.NewReader(ev(NameSlow, `{"ms":60000}`)))
	started := time.Now()
	if resp, err := http.DefaultClient.Do(req); err == nil {
		resp.Body.Close()
		t.Fatal("slow answer arrived before the client's deadline")
	}
	done := make(chan error, 1)
	go func() { done <- emu.Close() }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Close waited for the slow handler")
	}
	if time.Since(started) > 10*time.Second {
		t.Errorf("took %s", time.Since(started))
	}
}

func TestEmulatorLifecycle(t *testing.T) {
	t.Parallel()
	emu := New()
	if emu.URL() != "" {
		t.Errorf("URL before Start = %q", emu.URL())
	}
	if err := emu.Close(); err != nil {
		t.Errorf("Close before Start: %v", err)
	}
	if err := emu.Start(); err != nil {
		t.Fatal(err)
	}
	if err := emu.Start(); err == nil {
		t.Error("second Start: no error")
	}
	url := emu.URL()
	if err := emu.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if err := emu.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if _, err := http.Post(url, "application/json", strings.NewReader(ev(NameEcho, `{}`))); err == nil {
		t.Error("server still answering after Close")
	}
	bad := New()
	bad.Addr = "256.0.0.1:0"
	if err := bad.Start(); err == nil || !strings.Contains(err.Error(), "listen") {
		t.Errorf("bad address: %v", err)
	}
}

func TestEmulatorCustomHandler(t *testing.T) {
	t.Parallel()
	emu := start(t)
	err := emu.Registry().Add("test:custom", 1, eventsprotocol.HandlerFunc(func(context.Context, *eventsprotocol.Event) (any, error) {
		return map[string]bool{"custom": true}, nil
	}))
	if err != nil {
		t.Fatal(err)
	}
	_, body := post(t, emu.URL(), ev("test:custom", `{}`))
	if !strings.Contains(body, `"name":"test:custom:response"`) || !strings.Contains(body, `{"custom":true}`) {
		t.Errorf("custom handler answer = %s", body)
	}
}
