package eventsprotocol_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"

	"github.com/connector-host/connector-host/sdk/eventsprotocol"
)

type examplePayload struct {
	Example string `json:"example"`
}

type exampleResponse struct {
	MyEventPayload string `json:"MyEventPayload"`
}

// A typed handler, registered for get:event:example v1, answering through
// the Processor.
func Example() {
	reg := eventsprotocol.NewRegistry()
	err := eventsprotocol.Register(reg, "get:event:example", 1,
		func(_ context.Context, req eventsprotocol.Request[examplePayload]) (exampleResponse, error) {
			return exampleResponse{MyEventPayload: req.Payload.Example}, nil
		})
	if err != nil {
		panic(err)
	}
	p := eventsprotocol.NewProcessor(reg)

	resp := p.Process(context.Background(), []byte(`{"name":"get:event:example","version":1,
		"id":"9230c47c-3bcf-11ea-b77f-2e728ce88125","flowId":"a47830ca-3bcf-11ea-a232-2e728ce88125",
		"payload":{"example":"example"},"identity":{"userId":"USER_ID"},"metadata":{"date":"00-00-0000"}}`))
	out, _ := json.Marshal(resp)
	fmt.Println(string(out))

	resp = p.Process(context.Background(), []byte(`{"name":"get:event:example","version":1,"id":"i","flowId":"f","payload":{}}`))
	fmt.Println(resp.Name, string(resp.Payload))
	// Output:
	// {"name":"get:event:example:response","version":1,"id":"9230c47c-3bcf-11ea-b77f-2e728ce88125","flowId":"a47830ca-3bcf-11ea-a232-2e728ce88125","payload":{"MyEventPayload":"example"},"identity":{"userId":"USER_ID"},"auth":{},"metadata":{"date":"00-00-0000"}}
	// get:event:example:badRequest {"code":"MISSING_FIELDS","parameters":{"fields":{"payload.example":"is required"}}}
}

// The processor's answers to a body that is not an event and to an unknown
// event.
func ExampleProcessor_Process() {
	p := eventsprotocol.NewProcessor(eventsprotocol.NewRegistry())

	resp := p.Process(context.Background(), []byte(`{"name":"Not Valid","version":"1","id":"i","flowId":"f","payload":{}}`))
	fmt.Println(resp.Name, resp.ID, string(resp.Payload))

	resp = p.Process(context.Background(), []byte(`{"name":"get:missing","version":2,"id":"i","flowId":"f","payload":{}}`))
	fmt.Println(resp.Name, resp.ID, string(resp.Payload))
	// Output:
	// badProtocol i {"code":"INVALID_COMMUNICATION_PROTOCOL","parameters":{"fields":{"name":"must match ^[a-z_]+[a-z]:[a-z_]+[a-z](:[a-z]+[a-z])*$","version":"must be an integer, not string"}}}
	// get:missing:notFound i {"code":"EVENT_NOT_FOUND","parameters":{"event":"get:missing","version":2}}
}

// A handler answers with an error event or a redirect by returning
// *EventError or *Redirect.
func ExampleEventError() {
	reg := eventsprotocol.NewRegistry()
	_ = reg.Add("get:user", 1, eventsprotocol.HandlerFunc(func(_ context.Context, ev *eventsprotocol.Event) (any, error) {
		var p struct {
			UserID string `json:"userId"`
		}
		if err := ev.PayloadAs(&p); err != nil {
			return nil, err
		}
		if p.UserID == "" {
			return nil, &eventsprotocol.Redirect{URL: "https://example.com/login"}
		}
		return nil, &eventsprotocol.EventError{Type: eventsprotocol.ErrorNotFound, Code: "USER_NOT_FOUND",
			Parameters: map[string]any{"userId": p.UserID}}
	}))
	p := eventsprotocol.NewProcessor(reg)
	for _, payload := range []string{`{"userId":"42"}`, `{}`} {
		resp := p.Process(context.Background(), []byte(`{"name":"get:user","version":1,"payload":`+payload+`}`))
		fmt.Println(resp.Name, string(resp.Payload))
	}
	// Output:
	// get:user:notFound {"code":"USER_NOT_FOUND","parameters":{"userId":"42"}}
	// get:user:redirect {"queryParameters":{},"url":"https://example.com/login"}
}

// Builders copy id, flowId, identity, auth and metadata; only name and
// payload change.
func ExampleResponseFor() {
	req, _ := eventsprotocol.ParseEvent([]byte(`{"name":"get:event","version":3,"id":"i","flowId":"f",
		"payload":{},"identity":{"userId":"1"},"auth":{},"metadata":{"origin":"x"}}`))
	resp, _ := eventsprotocol.ResponseFor(req, map[string]int{"n": 1})
	redirect, _ := eventsprotocol.RedirectFor(req, "https://example.com", map[string]any{"q": "1"})
	failure, _ := eventsprotocol.ErrorFor(req, eventsprotocol.ErrorExpired, "TOKEN_EXPIRED", nil)
	for _, ev := range []*eventsprotocol.Event{resp, redirect, failure} {
		out, _ := json.Marshal(ev)
		fmt.Println(string(out))
	}
	// Output:
	// {"name":"get:event:response","version":3,"id":"i","flowId":"f","payload":{"n":1},"identity":{"userId":"1"},"auth":{},"metadata":{"origin":"x"}}
	// {"name":"get:event:redirect","version":3,"id":"i","flowId":"f","payload":{"queryParameters":{"q":"1"},"url":"https://example.com"},"identity":{"userId":"1"},"auth":{},"metadata":{"origin":"x"}}
	// {"name":"get:event:expired","version":3,"id":"i","flowId":"f","payload":{"code":"TOKEN_EXPIRED","parameters":{}},"identity":{"userId":"1"},"auth":{},"metadata":{"origin":"x"}}
}

// Sending an event: error events are answers; transport failures are
// errors whose kind errors.Is can test.
func ExampleClient_Send() {
	reg := eventsprotocol.NewRegistry()
	_ = eventsprotocol.Register(reg, "get:event:example", 1,
		func(_ context.Context, req eventsprotocol.Request[examplePayload]) (exampleResponse, error) {
			return exampleResponse{MyEventPayload: req.Payload.Example}, nil
		})
	srv := httptest.NewServer(eventsprotocol.NewProcessor(reg))
	defer srv.Close()

	var client eventsprotocol.Client
	for _, name := range []string{"get:event:example", "get:event:other"} {
		ev, _ := eventsprotocol.NewEvent(name, 1, map[string]string{"example": "hi"})
		resp, err := client.Send(context.Background(), srv.URL+"/events", ev, 0)
		if err != nil {
			fmt.Println("error:", err)
			continue
		}
		fmt.Println(resp.Kind, resp.ErrorType, string(resp.Event.Payload))
	}

	notEvents := httptest.NewServer(http.NotFoundHandler())
	defer notEvents.Close()
	ev, _ := eventsprotocol.NewEvent("get:event:example", 1, map[string]string{"example": "hi"})
	_, err := client.Send(context.Background(), notEvents.URL+"/events", ev, 0)
	var ce *eventsprotocol.ClientError
	if errors.As(err, &ce) {
		fmt.Println(errors.Is(err, eventsprotocol.ErrFailedDependency), ce.Code(), ce.StatusCode)
	}
	// Output:
	// response  {"MyEventPayload":"hi"}
	// error notFound {"code":"EVENT_NOT_FOUND","parameters":{"event":"get:event:other","version":1}}
	// true bad_gateway 404
}
