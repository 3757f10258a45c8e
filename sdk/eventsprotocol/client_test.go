package eventsprotocol_test

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/connector-host/connector-host/sdk"
	"github.com/connector-host/connector-host/sdk/eventsprotocol"
	eventsemu "github.com/connector-host/connector-host/testkit/emulators/events"
)

func startEmulator(t *testing.T) *eventsemu.Server {
	t.Helper()
	emu := eventsemu.New()
	if err := emu.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = emu.Close() })
	return emu
}

func event(t *testing.T, name string, payload any) *eventsprotocol.Event {
	t.Helper()
	ev, err := eventsprotocol.NewEvent(name, 1, payload)
	if err != nil {
		t.Fatal(err)
	}
	return ev
}

func TestClientResponses(t *testing.T) {
	t.Parallel()
	emu := startEmulator(t)
	var c eventsprotocol.Client
	ctx := context.Background()

	req := event(t, eventsemu.NameEcho, map[string]any{"hello": "world"})
	req.Identity = json.RawMessage(`{"userId":"7"}`)
	req.Auth = json.RawMessage(`{"token":"t"}`)
	req.Metadata = json.RawMessage(`{"origin":"client-test"}`)
	resp, err := c.Send(ctx, emu.URL(), req, 0)
	if err != nil {
		t.Fatal(err)
	}
	if resp.Kind != eventsprotocol.KindResponse || resp.ErrorType != "" || resp.Event.Name != "emulator:echo:response" {
		t.Errorf("echo: %+v", resp)
	}
	if string(resp.Event.Payload) != `{"hello":"world"}` || resp.Event.ID != req.ID || resp.Event.FlowID != req.FlowID ||
		string(resp.Event.Identity) != `{"userId":"7"}` || string(resp.Event.Auth) != `{"token":"t"}` ||
		string(resp.Event.Metadata) != `{"origin":"client-test"}` {
		t.Errorf("echo event = %+v", resp.Event)
	}

	resp, err = c.Send(ctx, emu.URL(), event(t, eventsemu.NameRedirect,
		map[string]any{"url": "https://example.com/go", "queryParameters": map[string]any{"a": "1"}}), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if resp.Kind != eventsprotocol.KindRedirect ||
		string(resp.Event.Payload) != `{"queryParameters":{"a":"1"},"url":"https://example.com/go"}` {
		t.Errorf("redirect: %+v %s", resp, resp.Event.Payload)
	}

	// Error events are answers, not Go errors.
	for _, typ := range eventsprotocol.ErrorTypes() {
		resp, err := c.Send(ctx, emu.URL(), event(t, eventsemu.NameFail,
			map[string]any{"type": typ, "code": "CODE_" + string(typ), "parameters": map[string]any{"p": 1}}), 0)
		if err != nil {
			t.Fatalf("%s: %v", typ, err)
		}
		if resp.Kind != eventsprotocol.KindError || resp.ErrorType != typ || resp.Event.Name != "emulator:fail:"+string(typ) {
			t.Errorf("%s: %+v", typ, resp)
		}
		if string(resp.Event.Payload) != `{"code":"CODE_`+string(typ)+`","parameters":{"p":1}}` {
			t.Errorf("%s: payload %s", typ, resp.Event.Payload)
		}
	}

	for _, tt := range []struct {
		ev   *eventsprotocol.Event
		typ  eventsprotocol.ErrorType
		name string
	}{
		{event(t, eventsemu.NamePanic, map[string]any{}), eventsprotocol.ErrorGeneric, "emulator:panic:error"},
		{event(t, "get:no:such", map[string]any{}), eventsprotocol.ErrorNotFound, "get:no:such:notFound"},
		{event(t, eventsemu.NameSlow, map[string]any{"ms": "soon"}), eventsprotocol.ErrorBadRequest, "emulator:slow:badRequest"},
	} {
		resp, err := c.Send(ctx, emu.URL(), tt.ev, 0)
		if err != nil {
			t.Fatal(err)
		}
		if resp.Kind != eventsprotocol.KindError || resp.ErrorType != tt.typ || resp.Event.Name != tt.name {
			t.Errorf("%s: %+v", tt.ev.Name, resp)
		}
	}
}

func TestClientFillsIDs(t *testing.T) {
	t.Parallel()
	emu := startEmulator(t)
	var c eventsprotocol.Client
	ev := &eventsprotocol.Event{Name: eventsemu.NameEcho, Version: 1, Payload: json.RawMessage(`{}`)}
	resp, err := c.Send(context.Background(), emu.URL(), ev, 0)
	if err != nil {
		t.Fatal(err)
	}
	if ev.ID != "" || ev.FlowID != "" {
		t.Errorf("Send modified the caller's event: %+v", ev)
	}
	got := emu.Received()
	if len(got) != 1 || got[0].ID == "" || got[0].FlowID == "" || got[0].ID == got[0].FlowID {
		t.Fatalf("received = %+v", got)
	}
	if resp.Event.ID != got[0].ID || resp.Event.FlowID != got[0].FlowID {
		t.Errorf("response ids %q %q, sent %q %q", resp.Event.ID, resp.Event.FlowID, got[0].ID, got[0].FlowID)
	}
	// The event is POSTed as JSON (the emulator serves POST only).
	if h := emu.ReceivedHeaders(); len(h) != 1 || h[0].Get("Content-Type") != "application/json; charset=utf-8" ||
		h[0].Get("Accept") != "application/json" {
		t.Errorf("request headers %v", h)
	}
	// Each event sent gets ids of its own.
	if _, err := c.Send(context.Background(), emu.URL(), ev, 0); err != nil {
		t.Fatal(err)
	}
	if got := emu.Received(); len(got) != 2 || got[1].ID == got[0].ID || got[1].FlowID == got[0].FlowID {
		t.Errorf("two sends of one id-less event share ids: %+v", got)
	}
}

// clientErr asserts that err is an *sdk.Error with code wrapping a
// *ClientError of kind.
func clientErr(t *testing.T, err error, kind error, code sdk.Code) *eventsprotocol.ClientError {
	t.Helper()
	var se *sdk.Error
	if !errors.As(err, &se) || se.Code != code {
		t.Fatalf("err = %v (%T), want *sdk.Error %s", err, err, code)
	}
	var ce *eventsprotocol.ClientError
	if !errors.As(err, &ce) || ce.Code() != code {
		t.Fatalf("err = %v, want a *ClientError inside", err)
	}
	for _, k := range []error{eventsprotocol.ErrTimeout, eventsprotocol.ErrFailedDependency, eventsprotocol.ErrBadProtocol} {
		if errors.Is(err, k) != errors.Is(k, kind) {
			t.Errorf("errors.Is(%v, %v) = %v", err, k, errors.Is(err, k))
		}
	}
	if se.RaisedIn() != "eventsprotocol.(*Client).Send" {
		t.Errorf("raised in %q", se.RaisedIn())
	}
	return ce
}

func TestClientTimeout(t *testing.T) {
	t.Parallel()
	emu := startEmulator(t)
	var c eventsprotocol.Client
	start := time.Now()
	_, err := c.Send(context.Background(), emu.URL(), event(t, eventsemu.NameSlow, map[string]any{"ms": 30000}), 100*time.Millisecond)
	if elapsed := time.Since(start); elapsed > 10*time.Second {
		t.Errorf("timeout took %s", elapsed)
	}
	ce := clientErr(t, err, eventsprotocol.ErrTimeout, sdk.RequestTimeout)
	if !strings.Contains(ce.Error(), "100ms") {
		t.Errorf("message = %q", ce.Error())
	}
	// A short wait within the timeout succeeds.
	resp, err := c.Send(context.Background(), emu.URL(), event(t, eventsemu.NameSlow, map[string]any{"ms": 1}), 5*time.Second)
	if err != nil || string(resp.Event.Payload) != `{"sleptMs":1}` {
		t.Errorf("short slow = %+v, %v", resp, err)
	}
	// The parent context's deadline also counts as a timeout.
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err = c.Send(ctx, emu.URL(), event(t, eventsemu.NameSlow, map[string]any{"ms": 30000}), 0)
	clientErr(t, err, eventsprotocol.ErrTimeout, sdk.RequestTimeout)
}

func TestClientCanceled(t *testing.T) {
	t.Parallel()
	emu := startEmulator(t)
	var c eventsprotocol.Client
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := c.Send(ctx, emu.URL(), event(t, eventsemu.NameEcho, map[string]any{}), 0)
	if !errors.Is(err, context.Canceled) || errors.Is(err, eventsprotocol.ErrTimeout) {
		t.Errorf("err = %v", err)
	}
}

func TestClientFailedDependency(t *testing.T) {
	t.Parallel()
	emu := startEmulator(t)
	var c eventsprotocol.Client
	for _, status := range []int{300, 400, 404, 500, 502, 503} {
		_, err := c.Send(context.Background(), emu.URL()+"?api_key=SECRETKEY", event(t, eventsemu.NameHTTPStatus, map[string]any{"status": status}), 0)
		ce := clientErr(t, err, eventsprotocol.ErrFailedDependency, sdk.BadGateway)
		if ce.StatusCode != status {
			t.Errorf("status = %d, want %d", ce.StatusCode, status)
		}
		if strings.Contains(err.Error(), "SECRETKEY") {
			t.Errorf("query leaked into %q", err)
		}
	}
	// Nothing listening: also a failed dependency (as the Kotlin client).
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	_, err = c.Send(context.Background(), "http://user:pa55word@"+addr+"/events?token=SECRETTOKEN", event(t, eventsemu.NameEcho, map[string]any{}), 0)
	ce := clientErr(t, err, eventsprotocol.ErrFailedDependency, sdk.BadGateway)
	if ce.StatusCode != 0 {
		t.Errorf("status = %d", ce.StatusCode)
	}
	for _, secret := range []string{"pa55word", "SECRETTOKEN"} {
		if strings.Contains(err.Error(), secret) {
			t.Errorf("secret %s leaked into %q", secret, err)
		}
	}
}

func TestClientBadProtocol(t *testing.T) {
	t.Parallel()
	emu := startEmulator(t)
	var c eventsprotocol.Client
	_, err := c.Send(context.Background(), emu.URL(), event(t, eventsemu.NameInvalidJSON, map[string]any{}), 0)
	ce := clientErr(t, err, eventsprotocol.ErrBadProtocol, sdk.InvalidResponse)
	if ce.Fields["body"] != "is not valid JSON" || ce.StatusCode != 200 {
		t.Errorf("invalid JSON: %+v", ce)
	}
	_, err = c.Send(context.Background(), emu.URL(), event(t, eventsemu.NameInvalidEvent, map[string]any{}), 0)
	ce = clientErr(t, err, eventsprotocol.ErrBadProtocol, sdk.InvalidResponse)
	for _, f := range []string{"name", "version", "payload"} {
		if ce.Fields[f] != "is required" || !strings.Contains(ce.Error(), f) {
			t.Errorf("invalid event: field %s: %+v", f, ce)
		}
	}
	// A response larger than the limit.
	big := eventsprotocol.Client{MaxResponseBytes: 64}
	_, err = big.Send(context.Background(), emu.URL(), event(t, eventsemu.NameEcho, map[string]any{"pad": strings.Repeat("x", 200)}), 0)
	clientErr(t, err, eventsprotocol.ErrBadProtocol, sdk.InvalidResponse)
}

func TestClientInvalidRequest(t *testing.T) {
	t.Parallel()
	var c eventsprotocol.Client
	good := event(t, eventsemu.NameEcho, map[string]any{})
	tests := []struct {
		url     string
		ev      *eventsprotocol.Event
		timeout time.Duration
		want    string
	}{
		{"http://127.0.0.1:1/events", nil, 0, "event is required"},
		{"http://127.0.0.1:1/events", good, -time.Second, "timeout"},
		{"ftp://127.0.0.1/events", good, 0, "url"},
		{"/events", good, 0, "url"},
		{"http://%zz", good, 0, "url"},
		{"http://127.0.0.1:1/events", &eventsprotocol.Event{Name: "Bad", Version: 1, Payload: json.RawMessage(`{}`)}, 0, "name"},
		{"http://127.0.0.1:1/events", &eventsprotocol.Event{Name: "get:event", Version: 1, Payload: json.RawMessage(`[]`)}, 0, "payload"},
		{"http://127.0.0.1:1/events", &eventsprotocol.Event{Name: "get:event", Version: 1, Payload: json.RawMessage(`{}`), Auth: json.RawMessage(`"x"`)}, 0, "auth"},
	}
	for _, tt := range tests {
		_, err := c.Send(context.Background(), tt.url, tt.ev, tt.timeout)
		var se *sdk.Error
		if !errors.As(err, &se) || se.Code != sdk.BadRequest || !strings.Contains(se.Message, tt.want) {
			t.Errorf("Send(%q) = %v, want bad_request about %s", tt.url, err, tt.want)
		}
	}
}

// A custom HTTP client's own timeout is classified as a timeout too.
func TestClientHTTPClientTimeout(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(release) })
	c := eventsprotocol.Client{HTTPClient: &http.Client{Timeout: 50 * time.Millisecond}}
	_, err := c.Send(context.Background(), srv.URL, event(t, eventsemu.NameEcho, map[string]any{}), time.Minute)
	clientErr(t, err, eventsprotocol.ErrTimeout, sdk.RequestTimeout)
}

func TestDefaultTimeout(t *testing.T) {
	t.Parallel()
	if eventsprotocol.DefaultTimeout != 15*time.Second {
		t.Errorf("DefaultTimeout = %s", eventsprotocol.DefaultTimeout)
	}
}
