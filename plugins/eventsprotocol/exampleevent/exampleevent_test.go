package exampleevent_test

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/connector-host/connector-host/plugins/eventsprotocol/exampleevent"
	"github.com/connector-host/connector-host/sdk/eventsprotocol"
)

func TestExampleEvent(t *testing.T) {
	t.Parallel()
	reg := eventsprotocol.NewRegistry()
	if err := exampleevent.Register(reg); err != nil {
		t.Fatal(err)
	}
	if err := exampleevent.Register(reg); err == nil {
		t.Error("second Register: no error")
	}
	p := eventsprotocol.NewProcessor(reg)
	// The seed's event, verbatim.
	in := `{"name":"get:event:example","version":1,"id":"9230c47c-3bcf-11ea-b77f-2e728ce88125",
		"flowId":"a47830ca-3bcf-11ea-a232-2e728ce88125","payload":{"example":"example"},
		"identity":{"userId":"USER_ID"},"metadata":{"date":"00-00-0000"}}`
	tests := []struct {
		body    string
		name    string
		payload string
	}{
		{in, "get:event:example:response", `{"MyEventPayload":"example"}`},
		{`{"name":"get:event:example","version":1,"payload":{"example":""}}`, "get:event:example:response", `{"MyEventPayload":""}`},
		{`{"name":"get:event:example","version":1,"payload":{}}`, "get:event:example:badRequest",
			`{"code":"MISSING_FIELDS","parameters":{"fields":{"payload.example":"is required"}}}`},
		{`{"name":"get:event:example","version":1,"payload":{"example":5}}`, "get:event:example:badRequest",
			`{"code":"MISSING_FIELDS","parameters":{"fields":{"payload.example":"got number, want string"}}}`},
		{`{"name":"get:event:example","version":2,"payload":{"example":"x"}}`, "get:event:example:notFound",
			`{"code":"EVENT_NOT_FOUND","parameters":{"event":"get:event:example","version":2}}`},
	}
	for _, tt := range tests {
		resp := p.Process(context.Background(), []byte(tt.body))
		if resp.Name != tt.name || string(resp.Payload) != tt.payload {
			t.Errorf("%s:\n got %s %s\nwant %s %s", tt.body, resp.Name, resp.Payload, tt.name, tt.payload)
		}
	}
	resp := p.Process(context.Background(), []byte(in))
	out, _ := json.Marshal(resp)
	want := `{"name":"get:event:example:response","version":1,"id":"9230c47c-3bcf-11ea-b77f-2e728ce88125","flowId":"a47830ca-3bcf-11ea-a232-2e728ce88125","payload":{"MyEventPayload":"example"},"identity":{"userId":"USER_ID"},"auth":{},"metadata":{"date":"00-00-0000"}}`
	if string(out) != want {
		t.Errorf("answer = %s\nwant     %s", out, want)
	}
}
