package eventsprotocol

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"
)

// fuzzProcessor has a handler for each answer path.
func fuzzProcessor(f *testing.F) *Processor {
	reg := NewRegistry()
	if err := Register(reg, "get:event:example", 1, func(_ context.Context, r Request[profileReq]) (profileResp, error) {
		return profileResp{Greeting: r.Payload.UserID}, nil
	}); err != nil {
		f.Fatal(err)
	}
	_ = reg.Add("get:event:raw", 1, HandlerFunc(func(_ context.Context, ev *Event) (any, error) { return ev.Payload, nil }))
	_ = reg.Add("get:event:fail", 1, HandlerFunc(func(context.Context, *Event) (any, error) {
		return nil, &EventError{Type: ErrorUnauthorized, Code: "NO"}
	}))
	_ = reg.Add("get:event:redirect", 1, HandlerFunc(func(context.Context, *Event) (any, error) {
		return nil, &Redirect{URL: "https://example.com"}
	}))
	_ = reg.Add("get:event:boom", 1, HandlerFunc(func(context.Context, *Event) (any, error) { panic("boom") }))
	_ = reg.Add("get:event:err", 1, HandlerFunc(func(context.Context, *Event) (any, error) { return nil, errors.New("x") }))
	p := NewProcessor(reg)
	p.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	return p
}

func addSeeds(f *testing.F) {
	for _, s := range []string{
		`{"name":"get:event:example","version":1,"id":"i","flowId":"f","payload":{"userId":"u","age":1}}`,
		`{"name":"get:event:example","version":1,"payload":{}}`,
		`{"name":"get:event:raw","version":1,"payload":{"a":[1,2,{"b":null}]},"identity":{},"auth":{"t":"x"},"metadata":{}}`,
		`{"name":"get:event:fail","version":1,"payload":{}}`,
		`{"name":"get:event:boom","version":1,"payload":{}}`,
		`{"name":"get:nothing","version":2,"payload":{}}`,
		`{"name":"BAD","version":"1","payload":[]}`,
		`{"name":"x:y:response","version":1,"payload":null}`,
		`[]`, `null`, `{`, ``, `"\ud800"`,
	} {
		f.Add([]byte(s))
	}
}

// FuzzProcess: the processor answers every input with an event that
// serializes to a valid response, copies the request's ids, and never
// panics.
func FuzzProcess(f *testing.F) {
	p := fuzzProcessor(f)
	addSeeds(f)
	f.Fuzz(func(t *testing.T, body []byte) {
		resp := p.Process(context.Background(), body)
		if resp == nil {
			t.Fatal("nil answer")
		}
		data, err := json.Marshal(resp)
		if err != nil {
			t.Fatalf("answer does not marshal: %v", err)
		}
		back, err := ParseResponse(data)
		if err != nil {
			t.Fatalf("answer %s is not a valid response: %v", data, err)
		}
		req, perr := ParseEvent(body)
		if perr != nil {
			if back.Name != NameBadProtocol {
				t.Fatalf("invalid body answered %q", back.Name)
			}
			return
		}
		if !strings.HasPrefix(back.Name, req.Name+":") {
			t.Fatalf("answer %q to %q", back.Name, req.Name)
		}
		if back.Version != req.Version {
			t.Fatalf("version not copied: %+v vs %+v", back, req)
		}
		// ids given in the body are copied (absent ones are fresh).
		var given map[string]json.RawMessage
		_ = json.Unmarshal(body, &given)
		for field, got := range map[string]string{"id": back.ID, "flowId": back.FlowID} {
			var want string
			if json.Unmarshal(given[field], &want) == nil && want != "" && got != want {
				t.Fatalf("%s = %q, request had %q", field, got, want)
			}
		}
	})
}

// FuzzParseEvent: parsing never panics, and an accepted event round-trips.
func FuzzParseEvent(f *testing.F) {
	addSeeds(f)
	f.Fuzz(func(t *testing.T, body []byte) {
		ev, err := ParseEvent(body)
		if err != nil {
			var pe *ProtocolError
			if !errors.As(err, &pe) || len(pe.Fields) == 0 {
				t.Fatalf("error %v is not a *ProtocolError with fields", err)
			}
			return
		}
		if err := ev.Validate(); err != nil {
			t.Fatalf("accepted event fails Validate: %v", err)
		}
		data, err := json.Marshal(ev)
		if err != nil {
			t.Fatalf("accepted event does not marshal: %v", err)
		}
		back, err := ParseEvent(data)
		if err != nil {
			t.Fatalf("re-parse of %s: %v", data, err)
		}
		if back.Name != ev.Name || back.Version != ev.Version || back.ID != ev.ID || back.FlowID != ev.FlowID {
			t.Fatalf("round trip changed the event: %+v vs %+v", back, ev)
		}
	})
}

// FuzzParseResponse: the client's parser never panics; accepted responses
// classify and round-trip.
func FuzzParseResponse(f *testing.F) {
	addSeeds(f)
	f.Fuzz(func(t *testing.T, body []byte) {
		ev, err := ParseResponse(body)
		if err != nil {
			return
		}
		kind, typ := Classify(ev)
		if kind != KindError && typ != "" {
			t.Fatalf("Classify(%q) = %s %q", ev.Name, kind, typ)
		}
		data, err := json.Marshal(ev)
		if err != nil {
			t.Fatalf("accepted response does not marshal: %v", err)
		}
		if _, err := ParseResponse(data); err != nil {
			t.Fatalf("re-parse of %s: %v", data, err)
		}
	})
}
