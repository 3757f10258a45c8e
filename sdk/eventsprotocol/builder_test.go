package eventsprotocol

import (
	"encoding/json"
	"testing"
)

// request is an event whose copied fields all carry distinctive values,
// including a number that float64 would round.
func request(t *testing.T) *Event {
	t.Helper()
	ev, err := ParseEvent([]byte(`{"name":"get:user:profile","version":7,"id":"id-123","flowId":"flow-456",
		"payload":{"q":1},
		"identity":{"userId":"42","big":12345678901234567890},
		"auth":{"token":"s3cr3t"},
		"metadata":{"origin":"tests","nested":{"a":[1,2]}}}`))
	if err != nil {
		t.Fatal(err)
	}
	return ev
}

// assertCopied checks that only name and payload differ from req.
func assertCopied(t *testing.T, req, resp *Event) {
	t.Helper()
	if resp.Version != req.Version || resp.ID != req.ID || resp.FlowID != req.FlowID {
		t.Errorf("version/id/flowId = %d %q %q, want %d %q %q", resp.Version, resp.ID, resp.FlowID, req.Version, req.ID, req.FlowID)
	}
	for _, f := range []struct {
		name      string
		got, want json.RawMessage
	}{{"identity", resp.Identity, req.Identity}, {"auth", resp.Auth, req.Auth}, {"metadata", resp.Metadata, req.Metadata}} {
		if string(f.got) != string(f.want) {
			t.Errorf("%s = %s, want %s", f.name, f.got, f.want)
		}
	}
}

func TestResponseFor(t *testing.T) {
	t.Parallel()
	req := request(t)
	resp, err := ResponseFor(req, map[string]string{"MyEventPayload": "x"})
	if err != nil {
		t.Fatal(err)
	}
	if resp.Name != "get:user:profile:response" {
		t.Errorf("name = %q", resp.Name)
	}
	if string(resp.Payload) != `{"MyEventPayload":"x"}` {
		t.Errorf("payload = %s", resp.Payload)
	}
	assertCopied(t, req, resp)
	if string(req.Payload) != `{"q":1}` || req.Name != "get:user:profile" {
		t.Errorf("request modified: %+v", req)
	}
	// Serialized, the copied fields are unchanged too.
	data, _ := json.Marshal(resp)
	back, err := ParseResponse(data)
	if err != nil {
		t.Fatal(err)
	}
	assertCopied(t, req, back)

	nilResp, err := ResponseFor(req, nil)
	if err != nil || string(nilResp.Payload) != "{}" {
		t.Errorf("nil payload = %s, %v", nilResp.Payload, err)
	}
	if _, err := ResponseFor(req, make(chan int)); err == nil {
		t.Error("unmarshalable payload: no error")
	}
}

func TestRedirectFor(t *testing.T) {
	t.Parallel()
	req := request(t)
	resp, err := RedirectFor(req, "https://example.com/next", map[string]any{"a": "b"})
	if err != nil {
		t.Fatal(err)
	}
	if resp.Name != "get:user:profile:redirect" {
		t.Errorf("name = %q", resp.Name)
	}
	if string(resp.Payload) != `{"queryParameters":{"a":"b"},"url":"https://example.com/next"}` {
		t.Errorf("payload = %s", resp.Payload)
	}
	assertCopied(t, req, resp)
	resp, _ = RedirectFor(req, "https://example.com", nil)
	if string(resp.Payload) != `{"queryParameters":{},"url":"https://example.com"}` {
		t.Errorf("nil queryParameters: payload = %s", resp.Payload)
	}
}

func TestErrorFor(t *testing.T) {
	t.Parallel()
	req := request(t)
	for _, typ := range ErrorTypes() {
		resp, err := ErrorFor(req, typ, "SOME_CODE", map[string]any{"k": 1})
		if err != nil {
			t.Fatal(err)
		}
		if want := "get:user:profile:" + string(typ); resp.Name != want {
			t.Errorf("name = %q, want %q", resp.Name, want)
		}
		if string(resp.Payload) != `{"code":"SOME_CODE","parameters":{"k":1}}` {
			t.Errorf("payload = %s", resp.Payload)
		}
		assertCopied(t, req, resp)
		if kind, et := Classify(resp); kind != KindError || et != typ {
			t.Errorf("Classify(%s) = %s %s", resp.Name, kind, et)
		}
	}
	resp, _ := ErrorFor(req, "notAType", "C", nil)
	if resp.Name != "get:user:profile:error" || string(resp.Payload) != `{"code":"C","parameters":{}}` {
		t.Errorf("invalid type: %s %s", resp.Name, resp.Payload)
	}
	resp, _ = ErrorFor(&Event{}, ErrorBadProtocol, "C", nil)
	if resp.Name != "badProtocol" || resp.ID == "" || resp.FlowID == "" {
		t.Errorf("nameless request: %+v", resp)
	}
	if _, err := ErrorFor(req, ErrorGeneric, "C", map[string]any{"f": func() {}}); err == nil {
		t.Error("unmarshalable parameters: no error")
	}
}

func TestClassify(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		kind Kind
		typ  ErrorType
	}{
		{"get:event:response", KindResponse, ""},
		{"get:event:redirect", KindRedirect, ""},
		{"get:event:error", KindError, ErrorGeneric},
		{"get:event:notFound", KindError, ErrorNotFound},
		{"get:event:userDenied", KindError, ErrorUserDenied},
		{"badProtocol", KindError, ErrorBadProtocol},
		{"eventNotFound", KindError, "eventNotFound"},
		{"get:event:somethingNew", KindError, "somethingNew"},
	}
	for _, tt := range tests {
		kind, typ := Classify(&Event{Name: tt.name})
		if kind != tt.kind || typ != tt.typ {
			t.Errorf("Classify(%q) = %s %q, want %s %q", tt.name, kind, typ, tt.kind, tt.typ)
		}
	}
}

func TestErrorTypes(t *testing.T) {
	t.Parallel()
	want := []string{"error", "badProtocol", "badRequest", "unauthorized", "notFound", "forbidden",
		"userDenied", "resourceDenied", "expired", "gone", "unprocessable", "unknown"}
	got := ErrorTypes()
	if len(got) != len(want) {
		t.Fatalf("ErrorTypes() = %v", got)
	}
	for i := range want {
		if string(got[i]) != want[i] || !got[i].Valid() {
			t.Errorf("ErrorTypes()[%d] = %q, want %q", i, got[i], want[i])
		}
	}
	for _, bad := range []ErrorType{"", "Error", "eventNotFound", "response"} {
		if bad.Valid() {
			t.Errorf("%q.Valid() = true", bad)
		}
	}
}

func TestBadProtocolFor(t *testing.T) {
	t.Parallel()
	a := BadProtocolFor(map[string]string{"body": "must not exceed 10 bytes"})
	b := BadProtocolFor(nil)
	if a.Name != NameBadProtocol || a.Version != 1 || a.ID == "" || a.FlowID == "" || a.ID == b.ID || a.FlowID == b.FlowID {
		t.Fatalf("events %+v %+v: want badProtocol v1 with fresh ids each", a, b)
	}
	if string(a.Payload) != `{"code":"INVALID_COMMUNICATION_PROTOCOL","parameters":{"fields":{"body":"must not exceed 10 bytes"}}}` {
		t.Errorf("payload %s", a.Payload)
	}
	if string(b.Payload) != `{"code":"INVALID_COMMUNICATION_PROTOCOL","parameters":{"fields":{}}}` {
		t.Errorf("payload without fields %s", b.Payload)
	}
	for _, o := range []json.RawMessage{a.Identity, a.Auth, a.Metadata} {
		if string(o) != "{}" {
			t.Errorf("identity/auth/metadata %s, want {}", o)
		}
	}
	if _, err := ParseResponse(mustMarshal(t, a)); err != nil {
		t.Errorf("not a valid response event: %v", err)
	}
}

func mustMarshal(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
