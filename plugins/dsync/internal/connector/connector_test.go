package connector

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	dsyncemu "github.com/connector-host/connector-host/testkit/emulators/dsync"
)

const apiKey = "platform-key-1"

var entities = `[{"entity_name":"product","treekey":"product","endpoint_url":"/entity/product","entity_token":"product-tok",
	"fields":[{"treekey":"product.sku","type":"text","name":"sku","primary_key":true,"required":true},{"treekey":"product.name","type":"text","name":"name"}]}]`

func invoke(t *testing.T, capability string, env string) (int, map[string]any, string) {
	t.Helper()
	integ := New()
	if err := integ.Validate(); err != nil {
		t.Fatal(err)
	}
	status, body := integ.Invoke(context.Background(), capability, []byte(env))
	var out map[string]any
	if err := json.Unmarshal(body, &out); err != nil {
		t.Fatalf("%s: %s", capability, body)
	}
	return status, out, string(body)
}

func settingsJSON(endpoint string) string {
	return `{"realtime_endpoint":"` + endpoint + `","data_layout":{"data_layout":` + entities + `},"inbound_api_key":"in-key"}`
}

func TestGenerateDataLayoutCapability(t *testing.T) {
	t.Parallel()
	status, _, body := invoke(t, "generate_data_layout", `{"request":{"entities":`+entities+`}}`)
	if status != 200 || !strings.Contains(body, `"response":{"data_layout":[{"entity_name":"product","treekey":"product","endpoint_url":"/entity/product","entity_token":"product-tok","fields":[{"id":"","treekey":"product.sku","value":"","type":"text","multiple":false,"date_format":"","required":true,"functions":[],"primary_key":true,"foreign_key":"","bool_settings":"","name":"sku","description":""}`) {
		t.Fatalf("%d %s", status, body)
	}
	status, out, body := invoke(t, "generate_data_layout", `{"request":{"entities":[{"entity_name":"a","treekey":"a","endpoint_url":"/a","entity_token":"t","fields":[{"treekey":"x","name":"x","type":"int"}]},{"entity_token":"t","fields":[]}]}}`)
	if status != 400 {
		t.Fatalf("%d %s", status, body)
	}
	msg := out["error"].(map[string]any)["message"].(string)
	for _, want := range []string{`entities[0].fields[0].type: unknown field type "int"`, "entities[1].entity_name: is required", "entities[1].treekey: is required",
		"entities[1].endpoint_url: is required", `entities[1].entity_token: "t" is already used by entities[0]`, "entities[1].fields: at least one field is required"} {
		if !strings.Contains(msg, want) {
			t.Errorf("message lacks %q: %s", want, msg)
		}
	}
}

func TestGenerateEntityTokenCapability(t *testing.T) {
	t.Parallel()
	status, out, body := invoke(t, "generate_entity_token", `{"request":{"entity_name":"Order Line"}}`)
	tok, _ := out["response"].(map[string]any)["entity_token"].(string)
	if status != 200 || !regexp.MustCompile(`^orderline-[0-9a-f]{32}$`).MatchString(tok) {
		t.Fatalf("%d %s", status, body)
	}
	if status, _, body := invoke(t, "generate_entity_token", `{"request":{"entity_name":"  "}}`); status != 400 || !strings.Contains(body, "entity_name: is required") {
		t.Fatalf("%d %s", status, body)
	}
}

func TestRealtimeCapabilities(t *testing.T) {
	t.Parallel()
	e, err := dsyncemu.Start(dsyncemu.Config{APIKey: apiKey, IDKeys: map[string]string{"product-tok": "sku"}}, "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.Close() })
	auth := `"auth":{"token":{"token":"` + apiKey + `"}}`
	set := `"settings":` + settingsJSON(e.RealtimeURL())
	steps := []struct {
		capability, request string
		status              int
		want                string
	}{
		{"realtime_create", `{"entity_token":"product-tok","data":{"sku":"a","name":"Chair"}}`, 200, `"status":200`},
		{"realtime_update", `{"entity_token":"product-tok","data":{"sku":"a","name":"Table"}}`, 200, `"attempts":1`},
		{"realtime_create", `{"entity_token":"product-tok","data":{"sku":"a"}}`, 409, `"error_code":"dsync.conflict"`},
		{"realtime_delete", `{"entity_token":"other","entity_id":"a"}`, 400, `entity_token: \"other\" is not in the configured data layout`},
		{"realtime_batch", `{"operations":[{"op":"create","entity_token":"product-tok","data":{"sku":"b"}},{"op":"update","entity_token":"product-tok","data":{"sku":"b","name":"B"}},{"op":"delete","entity_token":"product-tok","entity_id":"b"},{"op":"delete","entity_token":"nope","entity_id":"b"}],"concurrency":4}`,
			200, `"succeeded":3,"failed":1`},
		{"realtime_delete", `{"entity_token":"product-tok","entity_id":"a"}`, 200, `"status":200`},
		{"validate_credentials", `{"probe":true}`, 200, `"valid":true,"checked_with_service":true`},
		{"validate_credentials", `{}`, 200, `"valid":true,"checked_with_service":false`},
	}
	for _, s := range steps {
		status, _, body := invoke(t, s.capability, `{"request":`+s.request+`,`+set+`,`+auth+`}`)
		if status != s.status || !strings.Contains(body, s.want) {
			t.Errorf("%s %s: %d %s", s.capability, s.request, status, body)
		}
		if strings.Contains(body, apiKey) {
			t.Errorf("%s leaks the API key: %s", s.capability, body)
		}
	}
	var methods []string
	for _, c := range e.Calls() {
		if c.EntityToken == "product-tok" {
			methods = append(methods, c.Method)
		}
	}
	if strings.Join(methods, " ") != "POST PUT POST POST PUT DELETE DELETE" {
		t.Fatalf("methods %v", methods)
	}
	badAuth := `"auth":{"token":{"token":"wrong"}}`
	status, _, body := invoke(t, "validate_credentials", `{"request":{"probe":true},`+set+`,`+badAuth+`}`)
	if status != 401 || !strings.Contains(body, "the platform rejected the API key") {
		t.Fatalf("%d %s", status, body)
	}
	status, _, body = invoke(t, "realtime_create", `{"request":{"entity_token":"product-tok","data":{"sku":"z"}},`+set+`,`+badAuth+`}`)
	if status != 401 || !strings.Contains(body, `"error_code":"dsync.unauthorized"`) {
		t.Fatalf("%d %s", status, body)
	}
}

func TestInboundThroughConnector(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	settings := json.RawMessage(settingsJSON("http://127.0.0.1:1/api/realtime"))
	start := func() (*httptest.Server, *inboundState) {
		st := newInboundState(func() string { return dir }, func(*http.Request) json.RawMessage { return settings })
		srv := httptest.NewServer(st)
		t.Cleanup(func() { srv.Close(); _ = st.Close() })
		return srv, st
	}
	srv, st := start()
	p := &dsyncemu.Poller{BaseURL: srv.URL, APIKey: "in-key"}
	if _, err := p.Cycle(context.Background(), 3); err != nil {
		t.Fatal(err)
	}
	ents, err := p.DataLayout(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Create(context.Background(), ents[0], map[string]any{"sku": "keep", "name": "K"}); err != nil {
		t.Fatal(err)
	}
	srv.Close()
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	srv2, _ := start()
	p2 := &dsyncemu.Poller{BaseURL: srv2.URL, APIKey: "in-key"}
	if got, err := p2.Get(context.Background(), ents[0], "keep"); err != nil || !strings.Contains(string(got), `"K"`) {
		t.Fatalf("after restart: %s %v", got, err)
	}
	bad := &dsyncemu.Poller{BaseURL: srv2.URL, APIKey: "wrong"}
	if _, err := bad.DataLayout(context.Background()); err == nil || !strings.Contains(err.Error(), "401") {
		t.Fatalf("wrong key: %v", err)
	}
	// Unconfigured inbound API.
	empty := newInboundState(func() string { return dir }, func(*http.Request) json.RawMessage { return nil })
	rec := httptest.NewRecorder()
	empty.ServeHTTP(rec, httptest.NewRequest("GET", "/datalayout", nil))
	if rec.Code != 503 || !strings.Contains(rec.Body.String(), "inbound_api_key is not set") {
		t.Fatalf("%d %s", rec.Code, rec.Body)
	}
}

// TestRecordSentUnchanged checks that records reach the platform as the
// caller wrote them (compacted): integers above 2^53, exponents and key
// order survive, and data that is not an object is refused naming the field.
func TestRecordSentUnchanged(t *testing.T) {
	t.Parallel()
	e, err := dsyncemu.Start(dsyncemu.Config{APIKey: apiKey, IDKeys: map[string]string{"product-tok": "sku"}}, "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.Close() })
	env := func(capability, request string) (int, string) {
		status, _, body := invoke(t, capability, `{"request":`+request+`,"settings":`+settingsJSON(e.RealtimeURL())+`,"auth":{"token":{"token":"`+apiKey+`"}}}`)
		return status, body
	}
	rec := `{ "sku" : "n-1", "name": "x", "big": 123456789012345678901234567890, "f": 1E21, "neg": -0.0 }`
	const sent = `{"sku":"n-1","name":"x","big":123456789012345678901234567890,"f":1E21,"neg":-0.0}`
	if status, body := env("realtime_create", `{"entity_token":"product-tok","data":`+rec+`}`); status != 200 {
		t.Fatalf("create: %d %s", status, body)
	}
	if status, body := env("realtime_batch", `{"operations":[{"op":"update","entity_token":"product-tok","data":`+rec+`},{"op":"delete","entity_token":"product-tok","entity_id":"n-1"}]}`); status != 200 || !strings.Contains(body, `"succeeded":2`) {
		t.Fatalf("batch: %d %s", status, body)
	}
	calls := e.Calls()
	if len(calls) != 3 || string(calls[0].Body) != sent || string(calls[1].Body) != sent || len(calls[2].Body) != 0 {
		t.Fatalf("calls %+v", calls)
	}
	for _, tt := range []struct {
		capability, request, want string
	}{
		{"realtime_create", `{"entity_token":"product-tok","data":null}`, "data"},
		{"realtime_update", `{"entity_token":"product-tok","data":[1]}`, "data"},
		{"realtime_update", `{"entity_token":"product-tok"}`, "data"},
		{"realtime_batch", `{"operations":[{"op":"create","entity_token":"product-tok","data":"x"}]}`, "request.operations[0].data"},
	} {
		status, body := env(tt.capability, tt.request)
		if status != 400 || !strings.Contains(body, tt.want) {
			t.Errorf("%s %s: %d %s", tt.capability, tt.request, status, body)
		}
	}
	if status, body := env("realtime_batch", `{"operations":[{"op":"create","entity_token":"product-tok"}]}`); status != 200 || !strings.Contains(body, `"failed":1`) || !strings.Contains(body, "data") {
		t.Errorf("batch create without data: %d %s", status, body)
	}
	if n := len(e.Calls()); n != 3 {
		t.Errorf("%d calls, want no more after the refusals", n)
	}
}

// TestBatchOperationErrorsNameTheOperation: every operation refused before
// sending — by the client's own checks as by the layout's — names its field
// under operations[i], and nothing is sent for it.
func TestBatchOperationErrorsNameTheOperation(t *testing.T) {
	t.Parallel()
	e, err := dsyncemu.Start(dsyncemu.Config{APIKey: apiKey, IDKeys: map[string]string{"product-tok": "sku"}}, "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.Close() })
	ops := `[
		{"op":"create","entity_token":"product-tok","data":{"sku":"ok-1"}},
		{"op":"delete","entity_token":"product-tok"},
		{"op":"update","entity_token":"product-tok"},
		{"op":"delete","entity_token":"product-tok","entity_id":"a\nb"},
		{"op":"create","entity_token":"nope","data":{"sku":"x"}},
		{"op":"create","entity_token":"product-tok\r\nX-Evil: 1","data":{"sku":"x"}}
	]`
	status, out, body := invoke(t, "realtime_batch", `{"request":{"operations":`+ops+`},"settings":`+settingsJSON(e.RealtimeURL())+`,"auth":{"token":{"token":"`+apiKey+`"}}}`)
	if status != 200 {
		t.Fatalf("%d %s", status, body)
	}
	want := []string{
		"",
		"operations[1].entity_id: is required for delete",
		"operations[2].data: the record must be a JSON object",
		"operations[3].entity_id: contains characters not allowed in a header",
		`operations[4].entity_token: "nope" is not in the configured data layout`,
		"operations[5].entity_token: contains characters not allowed in a header",
	}
	results := out["response"].(map[string]any)["results"].([]any)
	if len(results) != len(want) {
		t.Fatalf("%d results: %s", len(results), body)
	}
	for i, w := range want {
		r := results[i].(map[string]any)
		if w == "" {
			if r["ok"] != true {
				t.Errorf("operation %d: %v", i, r)
			}
			continue
		}
		e, _ := r["error"].(map[string]any)
		if r["ok"] != false || e["code"] != "bad_request" || e["message"] != w {
			t.Errorf("operation %d: %v, want bad_request %q", i, r, w)
		}
	}
	if n := len(e.Calls()); n != 1 {
		t.Errorf("%d requests reached the platform, want only the valid create", n)
	}
}

// TestRecordBody: a compact record is sent as is (no copy), one with white
// space is compacted, anything but an object is refused naming the field.
func TestRecordBody(t *testing.T) {
	t.Parallel()
	compact := Record(`{"sku":"a-b","n":[1,2]}`)
	got, err := compact.body("data")
	if err != nil || string(got) != string(compact) || &got[0] != &compact[0] {
		t.Fatalf("compact record: %s %v (copied: %v)", got, err, err == nil && &got[0] != &compact[0])
	}
	spaced := Record("{ \"sku\" : \"a b\",\n \"n\": [1, 2] }")
	if got, err := spaced.body("data"); err != nil || string(got) != `{"sku":"a b","n":[1,2]}` {
		t.Fatalf("spaced record: %s %v", got, err)
	}
	// White space inside a string only: compacted, i.e. unchanged.
	if got, err := Record(`{"sku":"a b"}`).body("data"); err != nil || string(got) != `{"sku":"a b"}` {
		t.Fatalf("space in a string: %s %v", got, err)
	}
	for _, r := range []Record{nil, Record(`null`), Record(`[1]`), Record(`"x"`), Record(`{"a":`)} {
		if _, err := r.body("operations[3].data"); err == nil || !strings.Contains(err.Error(), "operations[3].data") {
			t.Errorf("%q: %v", r, err)
		}
	}
}
