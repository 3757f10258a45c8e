package host_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/connector-host/connector-host/host/config"
	"github.com/connector-host/connector-host/testkit/harness"
)

// The host's side of the events gateway (host/events.go and the host
// callback), with real plugin processes over real HTTP on 127.0.0.1.

func startGatewayHost(t *testing.T, configure ...func(*config.Config)) *harness.Host {
	t.Helper()
	events := harness.Build(t, "./plugins/eventsprotocol", "connector-events-protocol")
	return harness.StartHost(t, []harness.Plugin{{Path: events}, {Path: harness.Reference(t)}}, configure...)
}

// errorEvent decodes an error event's payload.
func errorEvent(t *testing.T, ev gatewayEvent) (code string, params map[string]any) {
	t.Helper()
	var p struct {
		Code       string         `json:"code"`
		Parameters map[string]any `json:"parameters"`
	}
	if err := json.Unmarshal(ev.Payload, &p); err != nil {
		t.Fatalf("%s: payload %s: %v", ev.Name, ev.Payload, err)
	}
	return p.Code, p.Parameters
}

func TestGatewayHTTPRules(t *testing.T) {
	t.Parallel()
	const limit = 2048
	h := startGatewayHost(t, func(c *config.Config) { c.MaxBodyBytes = limit })

	// Other methods: 405 with Allow: POST, on both paths, and still an
	// event (badProtocol) in the body.
	for _, path := range []string{"/events", "/events/"} {
		for _, method := range []string{http.MethodGet, http.MethodPut, http.MethodDelete, http.MethodPatch} {
			r := h.Do(t, method, path, `{"name":"reference:noop","version":1,"payload":{}}`, nil)
			if r.Status != http.StatusMethodNotAllowed || r.Header.Get("Allow") != http.MethodPost ||
				!strings.Contains(string(r.Body), `"name":"badProtocol"`) {
				t.Errorf("%s %s: %d Allow=%q %s", method, path, r.Status, r.Header.Get("Allow"), r.Body)
			}
		}
	}

	// The body limit (max_body_bytes): 413 with a badProtocol event naming
	// the body; a body just under it is served.
	pad := func(n int) string {
		return `{"name":"reference:echo","version":1,"payload":{"request":{"message":"` + strings.Repeat("x", n) + `"}}}`
	}
	big := pad(limit)
	r := h.Post(t, "/events", big)
	if r.Status != http.StatusRequestEntityTooLarge || !strings.Contains(string(r.Body), `"name":"badProtocol"`) ||
		!strings.Contains(string(r.Body), `"body"`) || !strings.Contains(string(r.Body), "INVALID_COMMUNICATION_PROTOCOL") {
		t.Errorf("body over the limit: %d %.300s", r.Status, r.Body)
	}
	small := pad(limit - 400)
	if r := h.Post(t, "/events", small); r.Status != http.StatusOK || !strings.Contains(string(r.Body), `"name":"reference:echo:response"`) {
		t.Errorf("body under the limit: %d %.300s", r.Status, r.Body)
	}

	// Every event answer is HTTP 200 with JSON, error events included; a
	// body that is not JSON gets badProtocol, naming the body.
	for body, name := range map[string]string{
		`{not json`: "badProtocol",
		`{"name":"reference:fail","version":1,"payload":{"request":{"code":"rate_limit"}}}`: "reference:fail:error",
		`{"name":"reference:fail","version":1,"payload":{"request":{"code":"not_found"}}}`:  "reference:fail:notFound",
		`{"name":"reference:echo","version":1,"payload":{"request":{}}}`:                    "reference:echo:response",
	} {
		r := h.Post(t, "/events/", body)
		var ev gatewayEvent
		if r.Status != http.StatusOK || !strings.HasPrefix(r.Header.Get("Content-Type"), "application/json") ||
			json.Unmarshal(r.Body, &ev) != nil || ev.Name != name {
			t.Errorf("%s: %d %s %s, want 200 %s", body, r.Status, r.Header.Get("Content-Type"), r.Body, name)
		}
	}

	// The call has a request id: the caller's X-Request-Id, else a fresh
	// one; it is answered in X-Request-Id and tags the plugin's log lines.
	noop := `{"name":"reference:noop","version":1,"payload":{"request":{}}}`
	r = h.Do(t, http.MethodPost, "/events", noop, http.Header{"X-Request-Id": {"gw-req-5c1e"}})
	if r.Status != http.StatusOK || r.Header.Get("X-Request-Id") != "gw-req-5c1e" {
		t.Errorf("with X-Request-Id: %d %q", r.Status, r.Header.Get("X-Request-Id"))
	}
	// Both the events-protocol plugin and the connector it calls back
	// into tag their lines with it.
	tagged := func(module string) bool {
		for _, line := range strings.Split(h.Logs.String(), "\n") {
			if strings.Contains(line, `"@module":"`+module+`"`) && strings.Contains(line, `"request_id":"gw-req-5c1e"`) {
				return true
			}
		}
		return false
	}
	for _, module := range []string{"events-protocol", "reference"} {
		for deadline := time.Now().Add(2 * time.Second); !tagged(module) && time.Now().Before(deadline); {
			time.Sleep(10 * time.Millisecond)
		}
		if !tagged(module) {
			t.Errorf("no log line of the %s plugin tagged with the request id", module)
		}
	}
	for _, header := range []http.Header{nil, {"X-Request-Id": {strings.Repeat("x", 65)}}, {"X-Request-Id": {"a b"}}} {
		r = h.Do(t, http.MethodPost, "/events", noop, header)
		if id := r.Header.Get("X-Request-Id"); r.Status != http.StatusOK || !strings.HasPrefix(id, "ev-") || len(id) != 39 {
			t.Errorf("X-Request-Id %v: %d %q, want a fresh ev-<uuid>", header, r.Status, id)
		}
	}

	// Callbacks run unary capabilities: a streaming one is refused with
	// unsupported_operation (type error), not half-answered.
	ev := postGatewayEvent(t, h, "reference:stream", map[string]any{"request": map[string]any{"n": 2}})
	if code, _ := errorEvent(t, ev); ev.Name != "reference:stream:error" || code != "reference.unsupported_operation" {
		t.Errorf("streaming capability: %s %s", ev.Name, ev.Payload)
	}

	// The envelope's other members reach the connector: settings, and
	// include_raw_data (raw_data comes back in the success payload).
	ev = postGatewayEvent(t, h, "reference:echo", map[string]any{
		"request": map[string]any{"message": "m"}, "settings": map[string]any{"greeting": "g"}, "include_raw_data": true,
	})
	var ok struct {
		Response map[string]any `json:"response"`
		RawData  map[string]any `json:"raw_data"`
	}
	if err := json.Unmarshal(ev.Payload, &ok); err != nil || ev.Name != "reference:echo:response" ||
		ok.Response["greeting"] != "g" || ok.RawData["echoed"] != true {
		t.Errorf("envelope members: %s %s", ev.Name, ev.Payload)
	}
	// A payload that is not a request envelope is the connector's
	// bad_request, naming the member.
	ev = postGatewayEvent(t, h, "reference:echo", map[string]any{"request": map[string]any{}, "colour": "red"})
	if code, params := errorEvent(t, ev); ev.Name != "reference:echo:badRequest" || code != "reference.bad_request" ||
		!strings.Contains(params["message"].(string), "colour") {
		t.Errorf("unknown envelope member: %s %s", ev.Name, ev.Payload)
	}
}

// A caller that goes away cancels the whole chain: the events-protocol
// call, its host callback and the connector's call.
func TestGatewayCancellationReachesTheConnector(t *testing.T) {
	t.Parallel()
	h := startGatewayHost(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, h.URL+"/events",
		strings.NewReader(`{"name":"reference:sleep","version":1,"payload":{"request":{"ms":60000}}}`))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		resp, err := harness.Client.Do(req)
		if err == nil {
			_ = resp.Body.Close()
		}
		done <- err
	}()
	if !h.Logs.WaitFor("sleep started", 10*time.Second) {
		t.Fatal("the reference plugin never started the sleep")
	}
	cancel()
	if err := <-done; err == nil {
		t.Fatal("the request was answered although it sleeps for a minute")
	}
	if !h.Logs.WaitFor("sleep cancelled", 2*time.Second) {
		t.Fatalf("the connector's call was not cancelled within 2 s of the caller going away")
	}
	// Both plugins go on serving.
	if ev := postGatewayEvent(t, h, "reference:noop", map[string]any{"request": map[string]any{}}); ev.Name != "reference:noop:response" {
		t.Fatalf("after the cancellation: %s %s", ev.Name, ev.Payload)
	}
}

// connectors.events-protocol.callbacks decides what the gateway reaches.
func TestGatewayCallbackAllowList(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		callbacks []string
		// echo and noop: whether reference:echo / reference:noop are allowed.
		echo, noop bool
	}{
		{"every connector", []string{"*"}, true, true},
		{"one connector", []string{"reference"}, true, true},
		{"one capability", []string{"reference/echo"}, true, false},
		{"another connector", []string{"reference-oauth", "ref", "refer*"}, false, false},
		{"nothing", []string{}, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := startGatewayHost(t, func(c *config.Config) {
				c.Connectors["events-protocol"] = config.Connector{Callbacks: tt.callbacks}
			})
			for capability, allowed := range map[string]bool{"echo": tt.echo, "noop": tt.noop} {
				name := "reference:" + capability
				ev := postGatewayEvent(t, h, name, map[string]any{"request": map[string]any{}})
				code, params := errorEvent(t, ev)
				switch {
				case allowed && ev.Name != name+":response":
					t.Errorf("%s allowed by %v: %s %s", name, tt.callbacks, ev.Name, ev.Payload)
				case !allowed && (ev.Name != name+":forbidden" || code != "reference.permission_denied" ||
					!strings.Contains(params["message"].(string), "connectors.events-protocol.callbacks")):
					t.Errorf("%s not allowed by %v: %s %s", name, tt.callbacks, ev.Name, ev.Payload)
				}
			}
			// A capability that does not exist: not found where the whole
			// connector is allowed; forbidden otherwise, so a restricted
			// gateway does not reveal what exists.
			ev := postGatewayEvent(t, h, "reference:no_such_capability", map[string]any{"request": map[string]any{}})
			wholeConnector := len(tt.callbacks) > 0 && (tt.callbacks[0] == "*" || tt.callbacks[0] == "reference")
			if want := map[bool]string{true: ":notFound", false: ":forbidden"}[wholeConnector]; !strings.HasSuffix(ev.Name, want) {
				t.Errorf("reference:no_such_capability with %v: %s, want *%s", tt.callbacks, ev.Name, want)
			}
		})
	}
}

// Without the events-protocol plugin there is no gateway: POST /events is
// the host's not_found envelope, not an event.
func TestGatewayWithoutEventsPlugin(t *testing.T) {
	t.Parallel()
	h := harness.StartHost(t, []harness.Plugin{{Path: harness.Reference(t)}})
	r := h.Post(t, "/events", `{"name":"reference:noop","version":1,"payload":{"request":{}}}`)
	if r.Status != http.StatusNotFound || r.ErrorCode(t) != "host.not_found" {
		t.Fatalf("%d %s", r.Status, r.Body)
	}
}
