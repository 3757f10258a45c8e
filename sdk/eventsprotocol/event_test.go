package eventsprotocol

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/google/uuid"
)

func TestValidName(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		want bool
	}{
		{"get:event", true},
		{"get:event:example", true},
		{"get_all:user_events", true},
		{"a_b:c_d:ef:gh", true},
		{"reference:echo", true},
		{"events_protocol:send_event", true},
		{"_a:b_c", true},
		{"", false},
		{"get", false},                // no second segment
		{"a:b", false},                // segments need two letters
		{"get:", false},               // empty second segment
		{":event", false},             // empty first segment
		{"get_:event", false},         // first segment ends with _
		{"get:event_", false},         // second segment ends with _
		{"get:event:a", false},        // later segments need two letters
		{"get:event:ex_ample", false}, // later segments have no _
		{"Get:event", false},          // upper case
		{"get:eventExample", false},   // upper case
		{"get:event2", false},         // digits
		{"get-all:event", false},      // dash
		{"get:event:", false},         // trailing colon
		{"get::event", false},         // empty segment
		{" get:event", false},         // whitespace
		{"get:event\n", false},        // trailing newline
		{"get:event:response:xx", true},
	}
	for _, tt := range tests {
		if got := ValidName(tt.name); got != tt.want {
			t.Errorf("ValidName(%q) = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestParseEventValid(t *testing.T) {
	t.Parallel()
	body := `{"name":"get:event:example","version":2,"id":"i-1","flowId":"f-1",
		"payload":{"example":"x","n":12345678901234567890},
		"identity":{"userId":"42"},"auth":{"token":"t"},"metadata":{"origin":"test"},
		"extra":"ignored"}`
	ev, err := ParseEvent([]byte(body))
	if err != nil {
		t.Fatalf("ParseEvent: %v", err)
	}
	if ev.Name != "get:event:example" || ev.Version != 2 || ev.ID != "i-1" || ev.FlowID != "f-1" {
		t.Fatalf("header fields = %+v", ev)
	}
	// Raw values are kept byte for byte: the big number is not rounded.
	if got := string(ev.Payload); got != `{"example":"x","n":12345678901234567890}` {
		t.Errorf("payload = %s", got)
	}
	if string(ev.Identity) != `{"userId":"42"}` || string(ev.Auth) != `{"token":"t"}` || string(ev.Metadata) != `{"origin":"test"}` {
		t.Errorf("objects = %s %s %s", ev.Identity, ev.Auth, ev.Metadata)
	}
}

func TestParseEventDefaults(t *testing.T) {
	t.Parallel()
	for _, body := range []string{
		`{"name":"get:event","version":1,"payload":{}}`,
		`{"name":"get:event","version":1,"payload":{},"id":null,"flowId":null,"identity":null,"auth":null,"metadata":null}`,
		`{"name":"get:event","version":1,"payload":{},"id":"","flowId":""}`,
	} {
		ev, err := ParseEvent([]byte(body))
		if err != nil {
			t.Fatalf("ParseEvent(%s): %v", body, err)
		}
		for _, id := range []string{ev.ID, ev.FlowID} {
			if _, err := uuid.Parse(id); err != nil {
				t.Errorf("%s: id %q is not a UUID: %v", body, id, err)
			}
		}
		if ev.ID == ev.FlowID {
			t.Errorf("%s: id and flowId are the same UUID %s", body, ev.ID)
		}
		for name, v := range map[string]json.RawMessage{"identity": ev.Identity, "auth": ev.Auth, "metadata": ev.Metadata} {
			if string(v) != "{}" {
				t.Errorf("%s: %s = %s, want {}", body, name, v)
			}
		}
	}
}

// The Python original evaluates its id defaults once; each event here gets
// its own.
func TestParseEventFreshIDsPerEvent(t *testing.T) {
	t.Parallel()
	seen := map[string]bool{}
	for i := 0; i < 50; i++ {
		ev, err := ParseEvent([]byte(`{"name":"get:event","version":1,"payload":{}}`))
		if err != nil {
			t.Fatal(err)
		}
		if seen[ev.ID] || seen[ev.FlowID] {
			t.Fatalf("id reused after %d events", i)
		}
		seen[ev.ID], seen[ev.FlowID] = true, true
	}
	a, _ := NewEvent("get:event", 1, map[string]any{})
	b, _ := NewEvent("get:event", 1, map[string]any{})
	if a.ID == b.ID || a.FlowID == b.FlowID {
		t.Errorf("NewEvent reused ids: %+v %+v", a, b)
	}
}

func TestParseEventInvalid(t *testing.T) {
	t.Parallel()
	tests := []struct {
		body   string
		fields map[string]string
	}{
		{`not json`, map[string]string{"body": "is not valid JSON"}},
		{``, map[string]string{"body": "is not valid JSON"}},
		{`{"name":"get:event","version":1,"payload":{}} trailing`, map[string]string{"body": "is not valid JSON"}},
		{`[]`, map[string]string{"body": "must be a JSON object"}},
		{`"get:event"`, map[string]string{"body": "must be a JSON object"}},
		{`null`, map[string]string{"body": "must be a JSON object"}},
		{`{}`, map[string]string{"name": "is required", "version": "is required", "payload": "is required"}},
		{`{"name":null,"version":null,"payload":null}`, map[string]string{"name": "is required", "version": "is required", "payload": "is required"}},
		{`{"name":1,"version":1,"payload":{}}`, map[string]string{"name": "must be a string, not number"}},
		{`{"name":"","version":1,"payload":{}}`, map[string]string{"name": "must not be empty"}},
		{`{"name":"Get:Event","version":1,"payload":{}}`, map[string]string{"name": "must match " + NamePattern}},
		{`{"name":"get:event","version":"1","payload":{}}`, map[string]string{"version": "must be an integer, not string"}},
		{`{"name":"get:event","version":1.5,"payload":{}}`, map[string]string{"version": "must be a 32-bit integer"}},
		{`{"name":"get:event","version":1e0,"payload":{}}`, map[string]string{"version": "must be a 32-bit integer"}},
		{`{"name":"get:event","version":4294967296,"payload":{}}`, map[string]string{"version": "must be a 32-bit integer"}},
		{`{"name":"get:event","version":1,"payload":[]}`, map[string]string{"payload": "must be an object, not array"}},
		{`{"name":"get:event","version":1,"payload":"x"}`, map[string]string{"payload": "must be an object, not string"}},
		{`{"name":"get:event","version":1,"payload":{},"id":1}`, map[string]string{"id": "must be a string, not number"}},
		{`{"name":"get:event","version":1,"payload":{},"flowId":{}}`, map[string]string{"flowId": "must be a string, not object"}},
		{`{"name":"get:event","version":1,"payload":{},"identity":"u"}`, map[string]string{"identity": "must be an object, not string"}},
		{`{"name":"get:event","version":1,"payload":{},"auth":[1]}`, map[string]string{"auth": "must be an object, not array"}},
		{`{"name":"get:event","version":1,"payload":{},"metadata":true}`, map[string]string{"metadata": "must be an object, not boolean"}},
	}
	for _, tt := range tests {
		ev, err := ParseEvent([]byte(tt.body))
		var pe *ProtocolError
		if !errors.As(err, &pe) {
			t.Errorf("ParseEvent(%s) = %+v, %v; want *ProtocolError", tt.body, ev, err)
			continue
		}
		if !reflect.DeepEqual(pe.Fields, tt.fields) {
			t.Errorf("ParseEvent(%s) fields = %v, want %v", tt.body, pe.Fields, tt.fields)
		}
		for f := range tt.fields {
			if !strings.Contains(err.Error(), f) {
				t.Errorf("error %q does not name field %s", err, f)
			}
		}
	}
}

func TestParseResponseLenient(t *testing.T) {
	t.Parallel()
	ev, err := ParseResponse([]byte(`{"name":"badProtocol","version":1,"payload":{"code":"X"}}`))
	if err != nil {
		t.Fatalf("ParseResponse: %v", err)
	}
	if ev.Name != "badProtocol" || ev.ID == "" || ev.FlowID == "" {
		t.Errorf("ev = %+v", ev)
	}
	if _, err := ParseResponse([]byte(`{"name":"x:y:response","version":1,"payload":[1,2]}`)); err != nil {
		t.Errorf("array payload: %v", err)
	}
	_, err = ParseResponse([]byte(`{"name":"x:y:response","version":1}`))
	var pe *ProtocolError
	if !errors.As(err, &pe) || pe.Fields["payload"] != "is required" {
		t.Errorf("missing payload: %v", err)
	}
	_, err = ParseResponse([]byte(`{"name":"","version":1,"payload":{}}`))
	if !errors.As(err, &pe) || pe.Fields["name"] != "must not be empty" {
		t.Errorf("empty name: %v", err)
	}
}

func TestEventMarshalCamelCase(t *testing.T) {
	t.Parallel()
	ev := Event{Name: "get:event", Version: 3, ID: "i", FlowID: "f"}
	data, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"name":"get:event","version":3,"id":"i","flowId":"f","payload":{},"identity":{},"auth":{},"metadata":{}}`
	if string(data) != want {
		t.Errorf("Marshal = %s\nwant      %s", data, want)
	}
	// Pointer and value marshal the same.
	pdata, _ := json.Marshal(&ev)
	if string(pdata) != want {
		t.Errorf("Marshal(&ev) = %s", pdata)
	}
	back, err := ParseEvent(data)
	if err != nil {
		t.Fatal(err)
	}
	if back.ID != "i" || back.FlowID != "f" || back.Version != 3 {
		t.Errorf("round trip = %+v", back)
	}
}

func TestEventValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		ev     Event
		fields map[string]string
	}{
		{Event{Name: "get:event", Payload: json.RawMessage(`{}`)}, nil},
		{Event{Name: "get:event", Payload: json.RawMessage(`{}`), Auth: json.RawMessage(`{"a":1}`)}, nil},
		{Event{Name: "", Payload: json.RawMessage(`{}`)}, map[string]string{"name": "is required"}},
		{Event{Name: "bad", Payload: json.RawMessage(`{}`)}, map[string]string{"name": "must match " + NamePattern}},
		{Event{Name: "get:event"}, map[string]string{"payload": "is required"}},
		{Event{Name: "get:event", Payload: json.RawMessage(`[1]`)}, map[string]string{"payload": "must be an object, not array"}},
		{Event{Name: "get:event", Payload: json.RawMessage(`{"a":`)}, map[string]string{"payload": "is not valid JSON"}},
		{Event{Name: "get:event", Payload: json.RawMessage(`{}`), Metadata: json.RawMessage(`1`)}, map[string]string{"metadata": "must be an object, not number"}},
	}
	for i, tt := range tests {
		err := tt.ev.Validate()
		if tt.fields == nil {
			if err != nil {
				t.Errorf("%d: Validate = %v", i, err)
			}
			continue
		}
		var pe *ProtocolError
		if !errors.As(err, &pe) || !reflect.DeepEqual(pe.Fields, tt.fields) {
			t.Errorf("%d: Validate = %v, want fields %v", i, err, tt.fields)
		}
	}
}

func TestNewEvent(t *testing.T) {
	t.Parallel()
	ev, err := NewEvent("get:event:example", 1, map[string]string{"example": "x"})
	if err != nil {
		t.Fatal(err)
	}
	if string(ev.Payload) != `{"example":"x"}` || string(ev.Auth) != "{}" {
		t.Errorf("ev = %+v", ev)
	}
	if _, err := NewEvent("nope", 1, map[string]string{}); err == nil || !strings.Contains(err.Error(), "name") {
		t.Errorf("bad name: %v", err)
	}
	if _, err := NewEvent("get:event", 1, []int{1}); err == nil || !strings.Contains(err.Error(), "payload") {
		t.Errorf("array payload: %v", err)
	}
	if _, err := NewEvent("get:event", 1, func() {}); err == nil || !strings.Contains(err.Error(), "payload") {
		t.Errorf("unmarshalable payload: %v", err)
	}
}

func TestDecodeAccessors(t *testing.T) {
	t.Parallel()
	ev, err := ParseEvent([]byte(`{"name":"get:event","version":1,"payload":{"a":1},"identity":{"userId":"7"},"auth":{"t":"s"}}`))
	if err != nil {
		t.Fatal(err)
	}
	var p struct{ A int }
	var id struct {
		UserID string `json:"userId"`
	}
	var auth, md map[string]any
	if err := ev.PayloadAs(&p); err != nil || p.A != 1 {
		t.Errorf("PayloadAs = %v %+v", err, p)
	}
	if err := ev.IdentityAs(&id); err != nil || id.UserID != "7" {
		t.Errorf("IdentityAs = %v %+v", err, id)
	}
	if err := ev.AuthAs(&auth); err != nil || auth["t"] != "s" {
		t.Errorf("AuthAs = %v %+v", err, auth)
	}
	if err := ev.MetadataAs(&md); err != nil || len(md) != 0 {
		t.Errorf("MetadataAs = %v %+v", err, md)
	}
	var wrong []int
	if err := ev.PayloadAs(&wrong); err == nil || !strings.Contains(err.Error(), "payload") {
		t.Errorf("PayloadAs into slice = %v", err)
	}
	var none map[string]any
	if err := (&Event{}).IdentityAs(&none); err != nil {
		t.Errorf("IdentityAs of nil = %v", err)
	}
}
