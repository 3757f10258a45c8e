package eventsprotocol

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/google/uuid"
)

type profileReq struct {
	UserID  string   `json:"userId"`
	Age     int      `json:"age" jsonschema:"minimum=0"`
	Address *address `json:"address,omitempty"`
	Tags    []string `json:"tags,omitempty"`
}

type address struct {
	City string `json:"city"`
}

type profileResp struct {
	Greeting string `json:"greeting"`
}

// syncBuffer is a log sink safe for concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// testProcessor registers handlers for every answer path.
func testProcessor(t *testing.T) (*Processor, *syncBuffer) {
	t.Helper()
	reg := NewRegistry()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(Register(reg, "get:user:profile", 1, func(_ context.Context, r Request[profileReq]) (profileResp, error) {
		return profileResp{Greeting: fmt.Sprintf("hello %s (%d)", r.Payload.UserID, r.Payload.Age)}, nil
	}))
	must(Register(reg, "get:user:fail", 1, func(_ context.Context, r Request[map[string]any]) (any, error) {
		return nil, &EventError{Type: ErrorType(fmt.Sprint(r.Payload["type"])), Code: "USER_CODE",
			Parameters: map[string]any{"detail": r.Payload["detail"]}}
	}))
	must(reg.Add("get:user:wrapped", 1, HandlerFunc(func(context.Context, *Event) (any, error) {
		return nil, fmt.Errorf("layer: %w", &EventError{Type: ErrorForbidden, Code: "NO"})
	})))
	must(reg.Add("get:user:redirect", 1, HandlerFunc(func(context.Context, *Event) (any, error) {
		return nil, &Redirect{URL: "https://example.com/login", QueryParameters: map[string]any{"next": "/x"}}
	})))
	must(reg.Add("get:user:plain", 1, HandlerFunc(func(context.Context, *Event) (any, error) {
		return nil, errors.New("database password=hunter2 refused")
	})))
	must(reg.Add("get:user:panic", 1, HandlerFunc(func(context.Context, *Event) (any, error) {
		panic("boom")
	})))
	must(reg.Add("get:user:nilerr", 1, HandlerFunc(func(context.Context, *Event) (any, error) {
		var e *EventError
		return nil, e
	})))
	must(reg.Add("get:user:unmarshalable", 1, HandlerFunc(func(context.Context, *Event) (any, error) {
		return map[string]any{"f": func() {}}, nil
	})))
	must(reg.Add("get:user:badparams", 1, HandlerFunc(func(context.Context, *Event) (any, error) {
		return nil, &EventError{Type: ErrorBadRequest, Code: "X", Parameters: map[string]any{"c": make(chan int)}}
	})))
	must(reg.Add("get:user:panicmarshal", 1, HandlerFunc(func(context.Context, *Event) (any, error) {
		return panicMarshaler{}, nil
	})))
	must(reg.Add("get:user:raw", 1, HandlerFunc(func(_ context.Context, ev *Event) (any, error) {
		return ev.Payload, nil
	})))
	reg.SetResolver(func(name string, version int) (Handler, bool) {
		if name == "dyn:thing" && version == 1 {
			return constHandler(map[string]string{"from": "resolver"}), true
		}
		if name == "dyn:panic" {
			panic("resolver panic")
		}
		return nil, false
	})
	logs := &syncBuffer{}
	p := NewProcessor(reg)
	p.Logger = slog.New(slog.NewJSONHandler(logs, nil))
	return p, logs
}

type panicMarshaler struct{}

func (panicMarshaler) MarshalJSON() ([]byte, error) { panic("marshal panic") }

// body builds a request body for name with payload and fixed copied fields.
func body(name string, payload string) []byte {
	return []byte(`{"name":"` + name + `","version":1,"id":"id-1","flowId":"flow-1","payload":` + payload +
		`,"identity":{"userId":"42"},"auth":{"token":"tok-secret"},"metadata":{"origin":"t"}}`)
}

// errorPayload decodes an error event's payload.
func errorPayload(t *testing.T, ev *Event) (code string, params map[string]any) {
	t.Helper()
	var p struct {
		Code       string         `json:"code"`
		Parameters map[string]any `json:"parameters"`
	}
	if err := json.Unmarshal(ev.Payload, &p); err != nil {
		t.Fatalf("error payload %s: %v", ev.Payload, err)
	}
	if p.Parameters == nil {
		t.Fatalf("error payload %s has no parameters object", ev.Payload)
	}
	return p.Code, p.Parameters
}

func checkCopied(t *testing.T, resp *Event) {
	t.Helper()
	if resp.Version != 1 || resp.ID != "id-1" || resp.FlowID != "flow-1" ||
		string(resp.Identity) != `{"userId":"42"}` || string(resp.Auth) != `{"token":"tok-secret"}` ||
		string(resp.Metadata) != `{"origin":"t"}` {
		t.Errorf("copied fields differ: %+v", resp)
	}
}

func TestProcessSuccess(t *testing.T) {
	t.Parallel()
	p, _ := testProcessor(t)
	resp := p.Process(context.Background(), body("get:user:profile", `{"userId":"u1","age":30,"unknown":true}`))
	if resp.Name != "get:user:profile:response" || string(resp.Payload) != `{"greeting":"hello u1 (30)"}` {
		t.Errorf("resp = %s %s", resp.Name, resp.Payload)
	}
	checkCopied(t, resp)

	resp = p.Process(context.Background(), body("get:user:raw", `{"n":12345678901234567890}`))
	if string(resp.Payload) != `{"n":12345678901234567890}` {
		t.Errorf("raw payload = %s", resp.Payload)
	}

	resp = p.Process(context.Background(), body("dyn:thing", `{}`))
	if resp.Name != "dyn:thing:response" || string(resp.Payload) != `{"from":"resolver"}` {
		t.Errorf("resolver answer = %s %s", resp.Name, resp.Payload)
	}
	checkCopied(t, resp)
}

func TestProcessBadProtocol(t *testing.T) {
	t.Parallel()
	p, _ := testProcessor(t)
	tests := []struct {
		body       string
		fields     map[string]any
		keepIDs    bool
		wantIDFrom string
	}{
		{`{{{`, map[string]any{"body": "is not valid JSON"}, false, ""},
		{`[1]`, map[string]any{"body": "must be a JSON object"}, false, ""},
		{`{"id":"keep-me","flowId":"keep-flow","version":1,"payload":{}}`, map[string]any{"name": "is required"}, true, "keep-me"},
		{`{"name":"BAD","version":"x","payload":[],"id":5}`, map[string]any{
			"name": "must match " + NamePattern, "version": "must be an integer, not string",
			"payload": "must be an object, not array", "id": "must be a string, not number"}, false, ""},
		{`{"name":"get:user:profile","version":1,"payload":{},"auth":"tok"}`, map[string]any{"auth": "must be an object, not string"}, false, ""},
	}
	for _, tt := range tests {
		resp := p.Process(context.Background(), []byte(tt.body))
		if resp.Name != "badProtocol" || resp.Version != 1 {
			t.Errorf("%s: name/version = %q %d", tt.body, resp.Name, resp.Version)
		}
		code, params := errorPayload(t, resp)
		if code != CodeInvalidCommunicationProtocol {
			t.Errorf("%s: code = %q", tt.body, code)
		}
		if !reflect.DeepEqual(params, map[string]any{"fields": tt.fields}) {
			t.Errorf("%s: parameters = %v, want fields %v", tt.body, params, tt.fields)
		}
		if tt.keepIDs {
			if resp.ID != tt.wantIDFrom || resp.FlowID != "keep-flow" {
				t.Errorf("%s: ids not kept: %q %q", tt.body, resp.ID, resp.FlowID)
			}
		} else if _, err := uuid.Parse(resp.ID); err != nil {
			t.Errorf("%s: id %q is not a fresh UUID", tt.body, resp.ID)
		}
		if string(resp.Auth) != "{}" || string(resp.Identity) != "{}" || string(resp.Metadata) != "{}" {
			t.Errorf("%s: badProtocol carries request objects: %+v", tt.body, resp)
		}
	}
}

func TestProcessNotFound(t *testing.T) {
	t.Parallel()
	p, _ := testProcessor(t)
	for _, tt := range []struct {
		body    []byte
		name    string
		version float64
	}{
		{body("get:nothing:here", `{}`), "get:nothing:here", 1},
		{[]byte(`{"name":"get:user:profile","version":9,"payload":{}}`), "get:user:profile", 9},
		{body("dyn:other", `{}`), "dyn:other", 1},
	} {
		resp := p.Process(context.Background(), tt.body)
		if resp.Name != tt.name+":notFound" {
			t.Errorf("name = %q", resp.Name)
		}
		code, params := errorPayload(t, resp)
		if code != CodeEventNotFound || !reflect.DeepEqual(params, map[string]any{"event": tt.name, "version": tt.version}) {
			t.Errorf("payload = %s", resp.Payload)
		}
	}
	resp := p.Process(context.Background(), body("get:nothing:here", `{}`))
	checkCopied(t, resp)
}

func TestProcessBadRequest(t *testing.T) {
	t.Parallel()
	p, _ := testProcessor(t)
	tests := []struct {
		payload string
		fields  map[string]any
	}{
		{`{}`, map[string]any{"payload.userId": "is required", "payload.age": "is required"}},
		{`{"userId":"u"}`, map[string]any{"payload.age": "is required"}},
		{`{"userId":1,"age":"old"}`, map[string]any{"payload.userId": "got number, want string", "payload.age": "got string, want integer"}},
		{`{"userId":"u","age":1.5}`, map[string]any{"payload.age": "got number, want integer"}},
		{`{"userId":"u","age":-1}`, map[string]any{"payload.age": "minimum: got -1, want 0"}},
		{`{"userId":"u","age":1,"address":{}}`, map[string]any{"payload.address.city": "is required"}},
		{`{"userId":"u","age":1,"tags":["a",2]}`, map[string]any{"payload.tags.1": "got number, want string"}},
	}
	for _, tt := range tests {
		resp := p.Process(context.Background(), body("get:user:profile", tt.payload))
		if resp.Name != "get:user:profile:badRequest" {
			t.Errorf("%s: name = %q (%s)", tt.payload, resp.Name, resp.Payload)
			continue
		}
		code, params := errorPayload(t, resp)
		if code != CodeMissingFields || !reflect.DeepEqual(params, map[string]any{"fields": tt.fields}) {
			t.Errorf("%s: payload = %s, want fields %v", tt.payload, resp.Payload, tt.fields)
		}
		checkCopied(t, resp)
	}
}

func TestProcessEventErrors(t *testing.T) {
	t.Parallel()
	p, _ := testProcessor(t)
	for _, typ := range ErrorTypes() {
		resp := p.Process(context.Background(), body("get:user:fail", `{"type":"`+string(typ)+`","detail":"d"}`))
		if resp.Name != "get:user:fail:"+string(typ) {
			t.Errorf("name = %q", resp.Name)
		}
		code, params := errorPayload(t, resp)
		if code != "USER_CODE" || !reflect.DeepEqual(params, map[string]any{"detail": "d"}) {
			t.Errorf("%s payload = %s", typ, resp.Payload)
		}
		checkCopied(t, resp)
	}
	resp := p.Process(context.Background(), body("get:user:fail", `{"type":"madeUp"}`))
	if resp.Name != "get:user:fail:error" {
		t.Errorf("invalid type: name = %q", resp.Name)
	}
	resp = p.Process(context.Background(), body("get:user:wrapped", `{}`))
	if code, _ := errorPayload(t, resp); resp.Name != "get:user:wrapped:forbidden" || code != "NO" {
		t.Errorf("wrapped EventError = %s %s", resp.Name, resp.Payload)
	}
}

func TestProcessRedirect(t *testing.T) {
	t.Parallel()
	p, _ := testProcessor(t)
	resp := p.Process(context.Background(), body("get:user:redirect", `{}`))
	if resp.Name != "get:user:redirect:redirect" ||
		string(resp.Payload) != `{"queryParameters":{"next":"/x"},"url":"https://example.com/login"}` {
		t.Errorf("redirect = %s %s", resp.Name, resp.Payload)
	}
	checkCopied(t, resp)
}

func TestProcessUnhandled(t *testing.T) {
	t.Parallel()
	p, logs := testProcessor(t)
	for _, name := range []string{"get:user:plain", "get:user:panic", "get:user:nilerr",
		"get:user:unmarshalable", "get:user:badparams", "get:user:panicmarshal", "dyn:panic"} {
		resp := p.Process(context.Background(), body(name, `{}`))
		if resp.Name != name+":error" {
			t.Errorf("%s: name = %q", name, resp.Name)
		}
		code, params := errorPayload(t, resp)
		if code != CodeUnhandledError || len(params) != 0 {
			t.Errorf("%s: payload = %s", name, resp.Payload)
		}
		checkCopied(t, resp)
		if strings.Contains(string(resp.Payload), "hunter2") {
			t.Errorf("%s: error message leaked into the answer", name)
		}
	}
	out := logs.String()
	if !strings.Contains(out, "get:user:plain") || !strings.Contains(out, "boom") {
		t.Errorf("failures not logged: %s", out)
	}
	if strings.Contains(out, "tok-secret") {
		t.Error("event auth was logged")
	}
}

func TestProcessNoRegistry(t *testing.T) {
	t.Parallel()
	resp := (&Processor{}).Process(context.Background(), body("get:user:profile", `{}`))
	if resp.Name != "get:user:profile:notFound" {
		t.Errorf("name = %q", resp.Name)
	}
}

func TestProcessorHTTP(t *testing.T) {
	t.Parallel()
	p, _ := testProcessor(t)
	p.MaxBodyBytes = 512
	srv := httptest.NewServer(p)
	t.Cleanup(srv.Close)

	post := func(b []byte) (*http.Response, *Event) {
		t.Helper()
		resp, err := http.Post(srv.URL+"/events/", "application/json", bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		data, _ := io.ReadAll(resp.Body)
		ev, err := ParseResponse(data)
		if err != nil {
			t.Fatalf("answer %s: %v", data, err)
		}
		return resp, ev
	}
	for _, tt := range []struct {
		body []byte
		name string
	}{
		{body("get:user:profile", `{"userId":"u","age":1}`), "get:user:profile:response"},
		{body("get:user:profile", `{}`), "get:user:profile:badRequest"},
		{body("get:user:nothing", `{}`), "get:user:nothing:notFound"},
		{body("get:user:panic", `{}`), "get:user:panic:error"},
		{[]byte(`nope`), "badProtocol"},
	} {
		resp, ev := post(tt.body)
		if resp.StatusCode != http.StatusOK || ev.Name != tt.name {
			t.Errorf("status %d name %q, want 200 %q", resp.StatusCode, ev.Name, tt.name)
		}
		if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
			t.Errorf("Content-Type = %q", ct)
		}
	}

	resp, ev := post(body("get:user:profile", `{"pad":"`+strings.Repeat("x", 600)+`"}`))
	if resp.StatusCode != http.StatusRequestEntityTooLarge || ev.Name != "badProtocol" {
		t.Errorf("too large: %d %q", resp.StatusCode, ev.Name)
	}
	if _, params := errorPayload(t, ev); !strings.Contains(fmt.Sprint(params), "512") {
		t.Errorf("too large parameters = %v", params)
	}

	for _, m := range []string{http.MethodGet, http.MethodPut, http.MethodDelete} {
		req, _ := http.NewRequest(m, srv.URL+"/events", nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != http.MethodPost {
			t.Errorf("%s: %d Allow=%q", m, resp.StatusCode, resp.Header.Get("Allow"))
		}
	}
}

func TestTypedHandler(t *testing.T) {
	t.Parallel()
	h, err := Typed(func(_ context.Context, r Request[profileReq]) (profileResp, error) {
		return profileResp{Greeting: r.Payload.UserID + " " + r.Event.Name}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var schema map[string]any
	if err := json.Unmarshal(h.PayloadSchema(), &schema); err != nil {
		t.Fatal(err)
	}
	if schema["type"] != "object" || !reflect.DeepEqual(schema["required"], []any{"userId", "age"}) {
		t.Errorf("schema = %s", h.PayloadSchema())
	}
	got, err := h.Handle(context.Background(), &Event{Name: "get:x", Payload: json.RawMessage(`{"userId":"u","age":2}`)})
	if err != nil || got.(profileResp).Greeting != "u get:x" {
		t.Errorf("Handle = %v, %v", got, err)
	}
	// A nil payload is validated as {}.
	_, err = h.Handle(context.Background(), &Event{Name: "get:x"})
	var evErr *EventError
	if !errors.As(err, &evErr) || evErr.Code != CodeMissingFields {
		t.Errorf("nil payload: %v", err)
	}
	if _, err := Typed[profileReq, profileResp](nil); err == nil {
		t.Error("Typed(nil): no error")
	}
	defer func() {
		if recover() == nil {
			t.Error("MustTyped(nil) did not panic")
		}
	}()
	MustTyped[profileReq, profileResp](nil)
}

// A payload type whose decoding fails after the schema accepted it.
type strictPayload struct{ V string }

func (s *strictPayload) UnmarshalJSON(b []byte) error { return errors.New("rejected") }

func TestTypedHandlerDecodeFailure(t *testing.T) {
	t.Parallel()
	h := MustTyped(func(context.Context, Request[strictPayload]) (any, error) { return nil, nil })
	_, err := h.Handle(context.Background(), &Event{Payload: json.RawMessage(`{"V":"x"}`)})
	var evErr *EventError
	if !errors.As(err, &evErr) || evErr.Type != ErrorBadRequest || evErr.Code != CodeMissingFields {
		t.Fatalf("err = %v", err)
	}
	if _, ok := evErr.Parameters["fields"].(map[string]any)["payload"]; !ok {
		t.Errorf("parameters = %v", evErr.Parameters)
	}
}
