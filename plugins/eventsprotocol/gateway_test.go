package main

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/connector-host/connector-host/host/config"
	"github.com/connector-host/connector-host/sdk"
	"github.com/connector-host/connector-host/testkit/harness"
)

// startGateway runs a host with the events-protocol plugin and the
// reference plugin; configure may restrict the callbacks.
func startGateway(t *testing.T, configure ...func(*config.Config)) *harness.Host {
	t.Helper()
	bin := harness.Build(t, "./plugins/eventsprotocol", "connector-events-protocol")
	return harness.StartHost(t, []harness.Plugin{{Path: bin}, {Path: harness.Reference(t)}}, configure...)
}

type answer struct {
	Name     string          `json:"name"`
	Version  int             `json:"version"`
	ID       string          `json:"id"`
	FlowID   string          `json:"flowId"`
	Payload  json.RawMessage `json:"payload"`
	Identity json.RawMessage `json:"identity"`
	Metadata json.RawMessage `json:"metadata"`
}

func postEvent(t *testing.T, h *harness.Host, path, name string, payload string) answer {
	t.Helper()
	body := fmt.Sprintf(`{"name":%q,"version":1,"id":"id-1","flowId":"flow-1","payload":%s,"identity":{"user":"u1"},"auth":{},"metadata":{"m":1}}`, name, payload)
	r := h.Post(t, path, body)
	if r.Status != 200 {
		t.Fatalf("%s: HTTP %d %s", name, r.Status, r.Body)
	}
	var a answer
	if err := json.Unmarshal(r.Body, &a); err != nil {
		t.Fatalf("%s: %v %s", name, err, r.Body)
	}
	return a
}

func TestGatewayEchoThroughHost(t *testing.T) {
	t.Parallel()
	h := startGateway(t)
	for _, path := range []string{"/events", "/events/"} {
		a := postEvent(t, h, path, "reference:echo", `{"request":{"message":"via events"},"settings":{"greeting":"hey"}}`)
		if a.Name != "reference:echo:response" || a.ID != "id-1" || a.FlowID != "flow-1" || string(a.Identity) != `{"user":"u1"}` || string(a.Metadata) != `{"m":1}` {
			t.Fatalf("%s answer: %+v", path, a)
		}
		var p struct {
			Response struct {
				Message  string `json:"message"`
				Greeting string `json:"greeting"`
			} `json:"response"`
		}
		if err := json.Unmarshal(a.Payload, &p); err != nil || p.Response.Message != "via events" || p.Response.Greeting != "hey" {
			t.Fatalf("payload %s", a.Payload)
		}
	}
}

func TestGatewayErrorTypes(t *testing.T) {
	t.Parallel()
	h := startGateway(t)
	want := map[sdk.Code]string{
		sdk.BadRequest: "badRequest", sdk.Unauthorized: "unauthorized", sdk.Unauthenticated: "unauthorized",
		sdk.PermissionDenied: "forbidden", sdk.NotFound: "notFound", sdk.AuthenticationExpired: "expired",
	}
	for _, code := range sdk.Codes() {
		t.Run(string(code), func(t *testing.T) {
			t.Parallel()
			a := postEvent(t, h, "/events", "reference:fail", fmt.Sprintf(`{"request":{"code":%q,"message":"m"}}`, code))
			typ, ok := want[code]
			if !ok {
				typ = "error"
			}
			if a.Name != "reference:fail:"+typ {
				t.Fatalf("name %q, want reference:fail:%s", a.Name, typ)
			}
			var p struct {
				Code       string         `json:"code"`
				Parameters map[string]any `json:"parameters"`
			}
			_ = json.Unmarshal(a.Payload, &p)
			if p.Code != "reference."+string(code) || p.Parameters["message"] != "m" {
				t.Fatalf("payload %s", a.Payload)
			}
		})
	}
	// A request the capability's schema refuses is a badRequest too.
	if a := postEvent(t, h, "/events", "reference:echo", `{"request":{"message":1}}`); a.Name != "reference:echo:badRequest" || !strings.Contains(string(a.Payload), "request.message") {
		t.Fatalf("schema error: %+v %s", a, a.Payload)
	}
}

func TestGatewayUnknownTargets(t *testing.T) {
	t.Parallel()
	h := startGateway(t)
	for _, name := range []string{"nope:echo", "reference:nope", "reference:echo:extra", "some:thing:else"} {
		a := postEvent(t, h, "/events", name, `{"request":{}}`)
		if a.Name != name+":notFound" || !strings.Contains(string(a.Payload), `"code":"EVENT_NOT_FOUND"`) {
			t.Errorf("%s: %+v %s", name, a, a.Payload)
		}
	}
	// Version 2 of a connector event does not exist.
	r := h.Post(t, "/events", `{"name":"reference:echo","version":2,"id":"a","flowId":"b","payload":{}}`)
	if !strings.Contains(string(r.Body), `"name":"reference:echo:notFound"`) {
		t.Fatalf("v2: %s", r.Body)
	}
	// Not an event at all, and a wrong method.
	if r := h.Post(t, "/events", `{"nope":1}`); r.Status != 200 || !strings.Contains(string(r.Body), `"badProtocol"`) {
		t.Fatalf("bad event: %d %s", r.Status, r.Body)
	}
	if r := h.Get(t, "/events"); r.Status != 405 {
		t.Fatalf("GET /events: %d", r.Status)
	}
}

func TestGatewayCallbacksAreRestricted(t *testing.T) {
	t.Parallel()
	h := startGateway(t, func(c *config.Config) {
		c.Connectors["events-protocol"] = config.Connector{Callbacks: []string{"reference/echo"}}
	})
	if a := postEvent(t, h, "/events", "reference:echo", `{"request":{}}`); a.Name != "reference:echo:response" {
		t.Fatalf("allowed capability: %+v", a)
	}
	a := postEvent(t, h, "/events", "reference:noop", `{"request":{}}`)
	if a.Name != "reference:noop:forbidden" || !strings.Contains(string(a.Payload), "not allowed") {
		t.Fatalf("denied capability: %+v %s", a, a.Payload)
	}
	if a := postEvent(t, h, "/events", "events_protocol:send_event", `{"request":{}}`); a.Name != "events_protocol:send_event:forbidden" {
		t.Fatalf("denied connector: %+v", a)
	}
}

func TestGatewayNeedsAPIToken(t *testing.T) {
	t.Parallel()
	h := startGateway(t, func(c *config.Config) { c.APIToken = "gw-token-123" })
	if r := h.Post(t, "/events", `{"name":"reference:noop","version":1,"payload":{"request":{}}}`); r.Status != 401 {
		t.Fatalf("without token: %d %s", r.Status, r.Body)
	}
}
