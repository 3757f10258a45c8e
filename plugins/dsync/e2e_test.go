package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/connector-host/connector-host/host/config"
	dsyncemu "github.com/connector-host/connector-host/testkit/emulators/dsync"
	"github.com/connector-host/connector-host/testkit/harness"
)

// The end-to-end tests run the built plugin under a real host (real plugin
// process, real HTTP API) against the DSYNC emulator, and play the
// platform's side of the inbound API with the emulator's Poller through the
// host's /v1/inbound/dsync routes.

const (
	platformKey = "dsync-platform-key-SENTINEL-7d1e"
	inboundKey  = "dsync-inbound-key-SENTINEL-42aa"
	productTok  = "product-0123456789abcdef0123456789abcdef"
	orderTok    = "orderline-fedcba9876543210fedcba9876543210"
)

// entitiesJSON is the data layout of the tests: a product keyed by a text
// SKU with a nested field, and an order line keyed by a number whose
// endpoint path has a space (so escaped paths cross the host).
const entitiesJSON = `[
 {"entity_name":"product","treekey":"product","endpoint_url":"/entity/product","entity_token":"` + productTok + `","fields":[
  {"treekey":"product.sku","type":"text","name":"sku","primary_key":true,"required":true,"description":"SKU"},
  {"treekey":"product.name","type":"text","name":"name","required":true},
  {"treekey":"product.price","type":"number","name":"price"},
  {"treekey":"product.tags","type":"text","name":"tags","multiple":true},
  {"treekey":"product.size.width","type":"number","name":"width"}]},
 {"entity_name":"order line","treekey":"order","endpoint_url":"/entity/order line","entity_token":"` + orderTok + `","fields":[
  {"treekey":"order.id","type":"number","name":"id","primary_key":true,"required":true},
  {"treekey":"order.placed","type":"datetime","name":"placed"},
  {"treekey":"order.email","type":"email","name":"email"}]}]`

func binary(t testing.TB) string {
	return harness.Build(t, "./plugins/dsync", "connector-dsync")
}

func startEmu(t testing.TB) *dsyncemu.Emulator {
	t.Helper()
	e, err := dsyncemu.Start(dsyncemu.Config{APIKey: platformKey, IDKeys: map[string]string{productTok: "sku", orderTok: "id"}}, "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.Close() })
	return e
}

// startHost starts a host with the dsync plugin whose default settings
// point at emu; dataDir "" means a fresh temporary one.
func startHost(t testing.TB, emu *dsyncemu.Emulator, dataDir string, configure ...func(*config.Config)) *harness.Host {
	t.Helper()
	var entities any
	if err := json.Unmarshal([]byte(entitiesJSON), &entities); err != nil {
		t.Fatal(err)
	}
	settings := map[string]any{
		"realtime_endpoint": emu.RealtimeURL(),
		"data_layout":       map[string]any{"data_layout": entities},
		"inbound_api_key":   inboundKey,
	}
	return harness.StartHost(t, []harness.Plugin{{Path: binary(t)}}, append([]func(*config.Config){func(c *config.Config) {
		if dataDir != "" {
			c.DataDir = dataDir
		}
		c.Connectors["dsync"] = config.Connector{Settings: settings}
	}}, configure...)...)
}

// invoke calls a capability through the host's HTTP API with the platform
// key as token auth (none when key is "").
func invoke(t testing.TB, h *harness.Host, capability string, request any, key string, extra ...map[string]any) *harness.Response {
	t.Helper()
	env := map[string]any{"request": request}
	if key != "" {
		env["auth"] = map[string]any{"token": map[string]any{"token": key}}
	}
	for _, x := range extra {
		for k, v := range x {
			env[k] = v
		}
	}
	b, err := json.Marshal(env)
	if err != nil {
		t.Fatal(err)
	}
	return h.Post(t, "/v1/connectors/dsync/"+capability, string(b))
}

// success returns the response of a success envelope, failing otherwise.
func success(t testing.TB, r *harness.Response) map[string]any {
	t.Helper()
	if r.Status != http.StatusOK {
		t.Fatalf("status %d: %s", r.Status, r.Body)
	}
	resp, ok := r.JSON(t)["response"].(map[string]any)
	if !ok {
		t.Fatalf("no response object: %s", r.Body)
	}
	return resp
}

// failure checks an error envelope's status and code and returns its
// message and retryable flag as sent.
func failure(t testing.TB, r *harness.Response, status int, code string) string {
	t.Helper()
	m := r.JSON(t)
	e, _ := m["error"].(map[string]any)
	if r.Status != status || m["is_error"] != true || e["error_code"] != code || e["status_code"] != float64(status) || e["app_id"] != "dsync" {
		t.Fatalf("got %d %s, want %d %s", r.Status, r.Body, status, code)
	}
	msg, _ := e["message"].(string)
	return msg
}

func noSecretsLogged(t testing.TB, h *harness.Host) {
	t.Helper()
	logs := h.Logs.String()
	for _, s := range []string{platformKey, inboundKey} {
		if strings.Contains(logs, s) {
			t.Errorf("a secret appears in the host or plugin logs")
		}
	}
}

func compactJSON(t testing.TB, s string) string {
	t.Helper()
	var b bytes.Buffer
	if err := json.Compact(&b, []byte(s)); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// callsSince waits until the platform recorded want calls after the first
// n (a reset or abandoned call is recorded after the client moved on) and
// returns every call after the first n.
func callsSince(t testing.TB, emu *dsyncemu.Emulator, n, want int) []dsyncemu.Call {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	calls, err := emu.WaitCalls(ctx, n+want)
	if err != nil {
		t.Fatalf("%v (have %d)", err, len(emu.Calls())-n)
	}
	return calls[n:]
}

// TestRealtimeWireThroughHost checks that realtime_create, _update and
// _delete land on the platform with the exact method, headers and body of
// PROTOCOLS.md — update as PUT — and that the record is sent unchanged
// (large integers and nested values included).
func TestRealtimeWireThroughHost(t *testing.T) {
	t.Parallel()
	emu := startEmu(t)
	h := startHost(t, emu, "")

	created := `{"sku": "A-1", "name": "Chair", "price": 9007199254740993, "size": {"width": 0.5}, "tags": ["a", "b"]}`
	updated := `{"sku":"A-1","name":"Table","price":1e21,"tags":[]}`
	steps := []struct {
		capability, request, method, body, entityID string
	}{
		{"realtime_create", `{"entity_token":"` + productTok + `","data":` + created + `}`, http.MethodPost, compactJSON(t, created), ""},
		{"realtime_update", `{"entity_token":"` + productTok + `","data":` + updated + `}`, http.MethodPut, updated, ""},
		{"realtime_delete", `{"entity_token":"` + productTok + `","entity_id":"A-1"}`, http.MethodDelete, "", "A-1"},
	}
	for i, st := range steps {
		r := h.Post(t, "/v1/connectors/dsync/"+st.capability, `{"request":`+st.request+`,"auth":{"token":{"token":"`+platformKey+`"}}}`)
		resp := success(t, r)
		if resp["status"] != float64(200) || resp["attempts"] != float64(1) {
			t.Errorf("%s: response %v", st.capability, resp)
		}
		data, _ := resp["data"].(map[string]any)
		if data["status"] != float64(200) || data["data"].(map[string]any)["entity_id"] != "A-1" {
			t.Errorf("%s: platform answer not passed on: %v", st.capability, resp)
		}
		calls := emu.Calls()
		if len(calls) != i+1 {
			t.Fatalf("%s: %d calls at the platform, want %d", st.capability, len(calls), i+1)
		}
		c := calls[i]
		if c.Method != st.method || c.Path != dsyncemu.RealtimePath || c.Status != http.StatusOK {
			t.Errorf("%s: %s %s → %d, want %s %s → 200", st.capability, c.Method, c.Path, c.Status, st.method, dsyncemu.RealtimePath)
		}
		wantHeader := map[string][]string{
			"Content-Type": {"application/json"},
			"Auth-Token":   {platformKey},
			"Entity-Token": {productTok},
		}
		if st.entityID != "" {
			wantHeader["Entity-Id"] = []string{st.entityID}
		}
		for _, k := range []string{"Content-Type", "Auth-Token", "Entity-Token", "Entity-Id"} {
			if got := c.Header[k]; !slices.Equal(got, wantHeader[k]) {
				t.Errorf("%s: header %s = %q, want %q", st.capability, k, got, wantHeader[k])
			}
		}
		if string(c.Body) != st.body {
			t.Errorf("%s: body\n got %s\nwant %s", st.capability, c.Body, st.body)
		}
	}
	if got := emu.Counters(); got.Creates != 1 || got.Updates != 1 || got.Deletes != 1 || got.Rejected != 0 {
		t.Errorf("platform counters %+v", got)
	}
	noSecretsLogged(t, h)
}

// TestRealtimeErrorsThroughHost checks the codes and messages of platform
// refusals and bad requests.
func TestRealtimeErrorsThroughHost(t *testing.T) {
	t.Parallel()
	emu := startEmu(t)
	h := startHost(t, emu, "")
	if r := invoke(t, h, "realtime_create", map[string]any{"entity_token": productTok, "data": map[string]any{"sku": "E-1"}}, platformKey); r.Status != 200 {
		t.Fatalf("create: %d %s", r.Status, r.Body)
	}
	tests := []struct {
		name       string
		capability string
		request    map[string]any
		key        string
		status     int
		code       string
		msg        string
	}{
		{"wrong key", "realtime_update", map[string]any{"entity_token": productTok, "data": map[string]any{"sku": "E-1"}}, "not-the-key",
			401, "dsync.unauthorized", "platform answered 401: Unauthorized"},
		{"no key", "realtime_create", map[string]any{"entity_token": productTok, "data": map[string]any{"sku": "E-2"}}, "",
			401, "dsync.unauthenticated", "auth.token"},
		{"entity not in layout", "realtime_create", map[string]any{"entity_token": "other-tok", "data": map[string]any{"sku": "E-2"}}, platformKey,
			400, "dsync.bad_request", `entity_token: "other-tok" is not in the configured data layout`},
		{"data missing", "realtime_update", map[string]any{"entity_token": productTok}, platformKey,
			400, "dsync.bad_request", "data"},
		{"update of a missing record", "realtime_update", map[string]any{"entity_token": productTok, "data": map[string]any{"sku": "nope"}}, platformKey,
			404, "dsync.not_found", `platform answered 404: entity "nope" not found`},
		{"duplicate create", "realtime_create", map[string]any{"entity_token": productTok, "data": map[string]any{"sku": "E-1"}}, platformKey,
			409, "dsync.conflict", `platform answered 409: entity "E-1" already exists`},
		{"delete without id", "realtime_delete", map[string]any{"entity_token": productTok, "entity_id": ""}, platformKey,
			400, "dsync.bad_request", "entity_id"},
	}
	for _, tt := range tests {
		r := invoke(t, h, tt.capability, tt.request, tt.key)
		if msg := failure(t, r, tt.status, tt.code); !strings.Contains(msg, tt.msg) {
			t.Errorf("%s: message %q lacks %q", tt.name, msg, tt.msg)
		}
	}
	if got := emu.Counters(); got.Creates != 1 || got.Updates != 0 {
		t.Errorf("platform counters %+v", got)
	}
	noSecretsLogged(t, h)
}

// TestRealtimeRetriesThroughHost checks that update and delete survive
// injected 5xx, 429 (waiting the Retry-After) and resets, and that a create
// is never sent twice once it may have reached the platform.
func TestRealtimeRetriesThroughHost(t *testing.T) {
	t.Parallel()
	emu := startEmu(t)
	h := startHost(t, emu, "")
	rec := func(sku, name string) map[string]any { return map[string]any{"sku": sku, "name": name} }
	for _, sku := range []string{"R-1", "R-2", "R-3"} {
		success(t, invoke(t, h, "realtime_create", map[string]any{"entity_token": productTok, "data": rec(sku, "v1")}, platformKey))
	}

	t.Run("update survives 503, 500 and 429 with Retry-After", func(t *testing.T) {
		n := len(emu.Calls())
		emu.Inject(dsyncemu.Fault{Method: "PUT", Status: 503}, dsyncemu.Fault{Method: "PUT", Status: 500},
			dsyncemu.Fault{Method: "PUT", Status: 429, RetryAfter: "1"})
		start := time.Now()
		resp := success(t, invoke(t, h, "realtime_update", map[string]any{"entity_token": productTok, "data": rec("R-1", "v2")}, platformKey))
		if elapsed := time.Since(start); elapsed < time.Second {
			t.Errorf("update took %s: Retry-After: 1 not honoured", elapsed)
		}
		if resp["attempts"] != float64(4) {
			t.Errorf("attempts %v, want 4", resp["attempts"])
		}
		calls := callsSince(t, emu, n, 4)
		var statuses []int
		for _, c := range calls {
			if c.Method != http.MethodPut || string(c.Body) != `{"name":"v2","sku":"R-1"}` {
				t.Errorf("retry sent %s %s", c.Method, c.Body)
			}
			statuses = append(statuses, c.Status)
		}
		if !slices.Equal(statuses, []int{503, 500, 429, 200}) {
			t.Errorf("statuses %v", statuses)
		}
		if r, _ := emu.Record(productTok, "R-1"); r.Version != 2 || string(r.Data) != `{"name":"v2","sku":"R-1"}` {
			t.Errorf("stored %+v", r)
		}
	})

	t.Run("delete survives 502 and a connection reset", func(t *testing.T) {
		n := len(emu.Calls())
		emu.Inject(dsyncemu.Fault{Method: "DELETE", Status: 502}, dsyncemu.Fault{Method: "DELETE", Reset: true})
		resp := success(t, invoke(t, h, "realtime_delete", map[string]any{"entity_token": productTok, "entity_id": "R-2"}, platformKey))
		if resp["attempts"] != float64(3) || resp["already_applied"] != nil {
			t.Errorf("response %v", resp)
		}
		if calls := callsSince(t, emu, n, 3); len(calls) != 3 {
			t.Errorf("%d calls, want 3", len(calls))
		}
		if _, ok := emu.Record(productTok, "R-2"); ok {
			t.Error("R-2 still stored")
		}
	})

	t.Run("delete whose answer was lost counts the 404 of the retry as done", func(t *testing.T) {
		emu.Inject(dsyncemu.Fault{Method: "DELETE", Status: 503, After: true})
		resp := success(t, invoke(t, h, "realtime_delete", map[string]any{"entity_token": productTok, "entity_id": "R-3"}, platformKey))
		if resp["attempts"] != float64(2) || resp["already_applied"] != true || resp["status"] != float64(404) {
			t.Errorf("response %v", resp)
		}
	})

	t.Run("update gives up after 4 attempts", func(t *testing.T) {
		n := len(emu.Calls())
		emu.Inject(dsyncemu.Fault{Method: "PUT", Status: 503, Times: 4, Message: "maintenance"})
		r := invoke(t, h, "realtime_update", map[string]any{"entity_token": productTok, "data": rec("R-1", "v3")}, platformKey)
		msg := failure(t, r, 503, "dsync.service_error")
		if !strings.Contains(msg, "platform answered 503: maintenance (after 4 attempts)") {
			t.Errorf("message %q", msg)
		}
		if calls := callsSince(t, emu, n, 4); len(calls) != 4 {
			t.Errorf("%d calls, want 4", len(calls))
		}
	})

	// A create is sent once, whatever happens after it may have reached the
	// platform; the caller learns what happened.
	creates := []struct {
		name   string
		fault  dsyncemu.Fault
		stored bool
		status int
		code   string
		msg    string
	}{
		{"answer lost after storing", dsyncemu.Fault{Method: "POST", Status: 503, After: true}, true, 503, "dsync.service_error", "platform answered 503"},
		{"connection reset after storing", dsyncemu.Fault{Method: "POST", Reset: true, After: true}, true, 502, "dsync.connection_closed", "not repeated to avoid creating the record twice"},
		{"connection reset before storing", dsyncemu.Fault{Method: "POST", Reset: true}, false, 502, "dsync.connection_closed", "not repeated"},
		{"500", dsyncemu.Fault{Method: "POST", Status: 500}, false, 502, "dsync.bad_gateway", "platform answered 500"},
		{"429", dsyncemu.Fault{Method: "POST", Status: 429, RetryAfter: "0"}, false, 429, "dsync.rate_limit", "platform answered 429"},
	}
	for i, tt := range creates {
		t.Run("create not repeated: "+tt.name, func(t *testing.T) {
			sku := fmt.Sprintf("C-%d", i)
			n := len(emu.Calls())
			before := emu.Counters().Creates
			emu.Inject(tt.fault)
			r := invoke(t, h, "realtime_create", map[string]any{"entity_token": productTok, "data": rec(sku, "v1")}, platformKey)
			if msg := failure(t, r, tt.status, tt.code); !strings.Contains(msg, tt.msg) {
				t.Errorf("message %q lacks %q", msg, tt.msg)
			}
			if calls := callsSince(t, emu, n, 1); len(calls) != 1 || calls[0].Method != http.MethodPost {
				t.Errorf("%d calls at the platform, want one POST", len(calls))
			}
			_, stored := emu.Record(productTok, sku)
			if stored != tt.stored || emu.Counters().Creates-before != map[bool]int64{true: 1, false: 0}[tt.stored] {
				t.Errorf("stored %v, want %v", stored, tt.stored)
			}
		})
	}

	t.Run("create retried while the platform cannot be reached", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		closed := "http://" + ln.Addr().String() + "/api/realtime"
		_ = ln.Close()
		r := invoke(t, h, "realtime_create", map[string]any{"entity_token": productTok, "data": rec("U-1", "v1")}, platformKey,
			map[string]any{"settings": map[string]any{"realtime_endpoint": closed}})
		if msg := failure(t, r, 502, "dsync.connection_rejected"); !strings.Contains(msg, "(after 4 attempts)") {
			t.Errorf("message %q", msg)
		}
	})
	if n := emu.PendingFaults(); n != 0 {
		t.Errorf("%d injected faults not consumed", n)
	}
	noSecretsLogged(t, h)
}

// TestBatchThroughHost checks realtime_batch: per-operation results,
// operations on one record in input order, retries inside the batch.
func TestBatchThroughHost(t *testing.T) {
	t.Parallel()
	emu := startEmu(t)
	h := startHost(t, emu, "")
	var ops []map[string]any
	for i := range 20 {
		sku := fmt.Sprintf("B-%d", i)
		ops = append(ops,
			map[string]any{"op": "create", "entity_token": productTok, "data": map[string]any{"sku": sku, "name": "v1"}},
			map[string]any{"op": "update", "entity_token": productTok, "data": map[string]any{"sku": sku, "name": "v2"}})
		if i%2 == 0 {
			ops = append(ops, map[string]any{"op": "delete", "entity_token": productTok, "entity_id": sku})
		}
	}
	ops = append(ops, map[string]any{"op": "create", "entity_token": "unknown-tok", "data": map[string]any{"sku": "x"}})
	emu.Inject(dsyncemu.Fault{Method: "PUT", Status: 503, Times: 3})
	resp := success(t, invoke(t, h, "realtime_batch", map[string]any{"operations": ops, "concurrency": 6}, platformKey))
	if resp["succeeded"] != float64(len(ops)-1) || resp["failed"] != float64(1) {
		t.Fatalf("batch: %v", resp)
	}
	results := resp["results"].([]any)
	last := results[len(results)-1].(map[string]any)
	if last["ok"] != false || last["error"].(map[string]any)["code"] != "bad_request" ||
		!strings.Contains(last["error"].(map[string]any)["message"].(string), fmt.Sprintf("operations[%d].entity_token", len(ops)-1)) {
		t.Errorf("invalid operation: %v", last)
	}
	order := map[string][]string{}
	for _, c := range emu.Calls() {
		if c.Status != http.StatusOK {
			continue
		}
		order[c.EntityID] = append(order[c.EntityID], c.Method)
	}
	for i := range 20 {
		sku := fmt.Sprintf("B-%d", i)
		want := []string{"POST", "PUT"}
		if i%2 == 0 {
			want = append(want, "DELETE")
		}
		if !slices.Equal(order[sku], want) {
			t.Errorf("%s: applied %v, want %v", sku, order[sku], want)
		}
		r, ok := emu.Record(productTok, sku)
		if ok == (i%2 == 0) || (ok && string(r.Data) != `{"name":"v2","sku":"`+sku+`"}`) {
			t.Errorf("%s: stored %v %+v", sku, ok, r)
		}
	}
}

// TestGenerateDataLayoutThroughHost checks that every violation is reported
// at once, each with its path, as a 400 of the HTTP API.
func TestGenerateDataLayoutThroughHost(t *testing.T) {
	t.Parallel()
	emu := startEmu(t)
	h := startHost(t, emu, "")
	tests := []struct {
		name     string
		entities string
		want     []string
	}{
		{"no entities", `[]`, []string{"entities: at least one entity is required"}},
		{"many violations", `[
			{"entity_name":"a","treekey":"a","endpoint_url":"/a","entity_token":"t","fields":[
				{"treekey":"a.x","name":"x","type":"int"},{"treekey":"a.x","name":"y","type":"text"},{"name":"z"}]},
			{"entity_token":"t","fields":[]}]`, []string{
			`entities[0].fields[0].type: unknown field type "int"`,
			`entities[0].fields[1].treekey: "a.x" is already used by entities[0].fields[0]`,
			"entities[0].fields[2].treekey: is required",
			"entities[0].fields[2].type: is required",
			"entities[1].entity_name: is required",
			"entities[1].treekey: is required",
			"entities[1].endpoint_url: is required",
			`entities[1].entity_token: "t" is already used by entities[0]`,
			"entities[1].fields: at least one field is required",
		}},
	}
	for _, tt := range tests {
		r := h.Post(t, "/v1/connectors/dsync/generate_data_layout", `{"request":{"entities":`+tt.entities+`}}`)
		msg := failure(t, r, 400, "dsync.bad_request")
		for _, w := range tt.want {
			if !strings.Contains(msg, w) {
				t.Errorf("%s: message lacks %q:\n%s", tt.name, w, msg)
			}
		}
	}
	// The request schema names a field of the wrong type.
	r := h.Post(t, "/v1/connectors/dsync/generate_data_layout", `{"request":{"entities":[{"fields":[{"multiple":"yes"}]}]}}`)
	if msg := failure(t, r, 400, "dsync.bad_request"); !strings.Contains(msg, "multiple") {
		t.Errorf("schema error %q does not name the field", msg)
	}
}

// TestInboundThroughHost plays the platform against the connector through
// the host: layout, create, get, update, list, delete (the Poller's cycle),
// then the refusals: wrong key, invalid records, unknown paths.
func TestInboundThroughHost(t *testing.T) {
	t.Parallel()
	emu := startEmu(t)
	// Inbound routes stay public when the host API needs a token.
	h := startHost(t, emu, "", func(c *config.Config) { c.APIToken = "host-api-token" })
	base := h.URL + "/v1/inbound/dsync"
	ctx := context.Background()

	// The layout served equals generate_data_layout's output for the same
	// entities, inside the platform's envelope.
	gen := h.Do(t, http.MethodPost, "/v1/connectors/dsync/generate_data_layout", `{"request":{"entities":`+entitiesJSON+`}}`,
		http.Header{"Authorization": {"Bearer host-api-token"}})
	if gen.Status != 200 {
		t.Fatalf("generate_data_layout: %d %s", gen.Status, gen.Body)
	}
	var genEnv struct {
		Response json.RawMessage `json:"response"`
	}
	if err := json.Unmarshal(gen.Body, &genEnv); err != nil {
		t.Fatal(err)
	}
	dl := h.Do(t, http.MethodGet, "/v1/inbound/dsync/datalayout", "", http.Header{"Auth-Token": {inboundKey}})
	if want := `{"status":200,"message":"OK","detail":"","data":` + string(genEnv.Response) + `}`; dl.Status != 200 || string(dl.Body) != want {
		t.Errorf("datalayout: %d\n got %s\nwant %s", dl.Status, dl.Body, want)
	}
	if ct := dl.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("datalayout Content-Type %q", ct)
	}

	p := &dsyncemu.Poller{BaseURL: base, APIKey: inboundKey, Client: harness.Client}
	rep, err := p.Cycle(ctx, 3)
	if err != nil {
		t.Fatalf("poller cycle: %v", err)
	}
	if rep != (dsyncemu.Report{Entities: 2, Created: 6, Updated: 6, Listed: 6, Deleted: 6}) {
		t.Errorf("report %+v", rep)
	}

	// A primary key with characters that need escaping crosses the host.
	entities, err := p.DataLayout(ctx)
	if err != nil {
		t.Fatal(err)
	}
	product := entities[0]
	odd := "A/1 ü?#%"
	if _, err := p.Create(ctx, product, map[string]any{"sku": odd, "name": "odd"}); err != nil {
		t.Fatalf("create %q: %v", odd, err)
	}
	if got, err := p.Get(ctx, product, odd); err != nil || string(got) != `{"name":"odd","sku":"A/1 ü?#%"}` {
		t.Errorf("get %q: %s %v", odd, got, err)
	}
	if _, err := p.Update(ctx, product, odd, map[string]any{"sku": odd, "name": "odd2"}); err != nil {
		t.Errorf("update %q: %v", odd, err)
	}
	if err := p.Delete(ctx, product, odd); err != nil {
		t.Errorf("delete %q: %v", odd, err)
	}

	type answer struct {
		Status  int             `json:"status"`
		Message string          `json:"message"`
		Detail  string          `json:"detail"`
		Data    json.RawMessage `json:"data"`
	}
	send := func(method, path, body string, header http.Header) (int, answer) {
		t.Helper()
		r := h.Do(t, method, "/v1/inbound/dsync"+path, body, header)
		var a answer
		if err := json.Unmarshal(r.Body, &a); err != nil {
			t.Fatalf("%s %s: %d %s", method, path, r.Status, r.Body)
		}
		return r.Status, a
	}
	withKey := func(k string) http.Header {
		hd := http.Header{"Content-Type": {"application/json"}}
		if k != "" {
			hd.Set("Auth-Token", k)
		}
		return hd
	}

	// Wrong or missing key: 401 on every route, nothing stored.
	for _, k := range []string{"", "wrong", inboundKey + "x", strings.ToUpper(inboundKey)} {
		for _, rq := range []struct{ method, path, body string }{
			{"GET", "/datalayout", ""},
			{"GET", "/entity/product", ""},
			{"GET", "/entity/product/x", ""},
			{"POST", "/entity/product", `{"sku":"k","name":"k"}`},
			{"PUT", "/entity/product/k", `{"sku":"k","name":"k"}`},
			{"DELETE", "/entity/product/k", ""},
			{"GET", "/entity/order%20line", ""},
			{"GET", "/no/such/path", ""},
		} {
			status, a := send(rq.method, rq.path, rq.body, withKey(k))
			if status != 401 || a.Status != 401 || a.Message != "Unauthorized" {
				t.Errorf("key %q: %s %s → %d %+v, want 401", k, rq.method, rq.path, status, a)
			}
		}
	}
	// The host API token is not what the platform sends.
	if status, _ := send("GET", "/datalayout", "", http.Header{"Authorization": {"Bearer host-api-token"}}); status != 401 {
		t.Errorf("host token accepted as inbound key: %d", status)
	}

	// Invalid records: 400 naming each field.
	type violation struct{ Path, Reason string }
	invalid := []struct {
		method, path, body string
		want               []violation
	}{
		{"POST", "/entity/product", `{"sku":5,"name":"x"}`, []violation{{"sku", "text"}}},
		{"POST", "/entity/product", `{"name":"x"}`, []violation{{"sku", "is required"}}},
		{"POST", "/entity/product", `{"sku":"v","name":"x","color":"red"}`, []violation{{"color", "unknown field"}}},
		{"POST", "/entity/product", `{"sku":"v","name":"x","size":{"width":"wide"}}`, []violation{{"size.width", "number"}}},
		{"POST", "/entity/product", `{"sku":"v","name":"x","tags":"one"}`, []violation{{"tags", "array"}}},
		{"POST", "/entity/product", `{"sku":"v","price":"cheap","tags":[1]}`, []violation{{"name", "is required"}, {"price", "number"}, {"tags[0]", "text"}}},
		{"POST", "/entity/order%20line", `{"id":1,"email":"not an address","placed":"yesterday"}`, []violation{{"email", "email"}, {"placed", ""}}},
		{"POST", "/entity/product", `[1,2]`, []violation{{"", "JSON object"}}},
	}
	for _, tt := range invalid {
		status, a := send(tt.method, tt.path, tt.body, withKey(inboundKey))
		var data struct{ Violations []violation }
		_ = json.Unmarshal(a.Data, &data)
		if status != 400 || a.Status != 400 || len(data.Violations) != len(tt.want) {
			t.Errorf("%s %s %s → %d %+v, want 400 with %d violations", tt.method, tt.path, tt.body, status, a, len(tt.want))
			continue
		}
		for i, w := range tt.want {
			got := data.Violations[i]
			if got.Path != w.Path || !strings.Contains(got.Reason, w.Reason) || !strings.Contains(a.Detail, w.Path) {
				t.Errorf("%s %s: violation %d = %+v (detail %q), want path %q reason containing %q", tt.method, tt.body, i, got, a.Detail, w.Path, w.Reason)
			}
		}
	}
	// A valid create, then an invalid replacement of it.
	if status, a := send("POST", "/entity/product", `{"sku":"ok","name":"x"}`, withKey(inboundKey)); status != 200 {
		t.Fatalf("create: %d %+v", status, a)
	}
	if status, a := send("PUT", "/entity/product/ok", `{"sku":"ok","name":7}`, withKey(inboundKey)); status != 400 || !strings.Contains(a.Detail, "name") {
		t.Errorf("invalid update: %d %+v", status, a)
	}
	if got, err := p.Get(ctx, product, "ok"); err != nil || string(got) != `{"sku":"ok","name":"x"}` {
		t.Errorf("record after refused update: %s %v", got, err)
	}
	others := []struct {
		method, path, body string
		header             http.Header
		status             int
	}{
		{"POST", "/entity/product", `{"sku":"ok","name":"x"}`, withKey(inboundKey), 409},
		{"GET", "/entity/product/missing", "", withKey(inboundKey), 404},
		{"GET", "/entity/nothing", "", withKey(inboundKey), 404},
		{"GET", "/entity/product?limit=0", "", withKey(inboundKey), 400},
		{"GET", "/entity/product?cursor=garbage", "", withKey(inboundKey), 400},
		{"POST", "/entity/product", `{"sku":"t","name":"x"}`, http.Header{"Auth-Token": {inboundKey}, "Content-Type": {"text/plain"}}, 415},
		{"POST", "/datalayout", `{}`, withKey(inboundKey), 405},
	}
	for _, tt := range others {
		status, a := send(tt.method, tt.path, tt.body, tt.header)
		if status != tt.status || a.Status != tt.status {
			t.Errorf("%s %s → %d %+v, want %d", tt.method, tt.path, status, a, tt.status)
		}
	}
	// A method no route declares is refused by the host with 405 and the
	// declared methods.
	if r := h.Do(t, http.MethodPatch, "/v1/inbound/dsync/entity/product/ok", `{}`, withKey(inboundKey)); r.Status != 405 || r.Header.Get("Allow") != "DELETE, GET, POST, PUT" {
		t.Errorf("PATCH: %d %s %v", r.Status, r.Body, r.Header)
	}
	noSecretsLogged(t, h)
}

// TestInboundRecordsSurviveRestart stores records through the inbound API,
// kills the plugin process (SIGKILL) and checks the records after the
// supervisor's restart, then stops the whole host and checks them again
// with a new host on the same data directory.
func TestInboundRecordsSurviveRestart(t *testing.T) {
	t.Parallel()
	emu := startEmu(t)
	dataDir := t.TempDir()
	ctx := context.Background()
	want := map[string]string{}

	t.Run("plugin killed", func(t *testing.T) {
		h := startHost(t, emu, dataDir)
		p := &dsyncemu.Poller{BaseURL: h.URL + "/v1/inbound/dsync", APIKey: inboundKey, Client: harness.Client}
		entities, err := p.DataLayout(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entities {
			for k := range 3 {
				rec, id, err := dsyncemu.SampleRecord(e, k, false)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := p.Create(ctx, e, rec); err != nil {
					t.Fatalf("create: %v", err)
				}
				b, _ := json.Marshal(rec)
				want[e.EntityToken+"/"+id] = string(b)
			}
		}

		sup, ok := h.Router().Supervisor("dsync")
		if !ok {
			t.Fatal("no dsync supervisor")
		}
		old := sup.Current()
		if old == nil {
			t.Fatal("dsync is not running")
		}
		if err := syscall.Kill(old.PID(), syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		select {
		case <-old.Exited():
		case <-time.After(10 * time.Second):
			t.Fatal("plugin did not exit after SIGKILL")
		}
		sup.ReportBroken(old) // so that the next call waits for the new process
		actx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		inst, err := sup.Acquire(actx)
		if err != nil {
			t.Fatal(err)
		}
		if inst.Generation != old.Generation+1 || inst.PID() == old.PID() {
			t.Fatalf("generation %d pid %d after generation %d pid %d", inst.Generation, inst.PID(), old.Generation, old.PID())
		}
		checkRecords(t, p, entities, want)

		// Change a record in the restarted process.
		rec, id, _ := dsyncemu.SampleRecord(entities[0], 1, true)
		if _, err := p.Update(ctx, entities[0], id, rec); err != nil {
			t.Fatal(err)
		}
		b, _ := json.Marshal(rec)
		want[entities[0].EntityToken+"/"+id] = string(b)
		noSecretsLogged(t, h)
	})
	if t.Failed() {
		return
	}

	t.Run("host restarted", func(t *testing.T) {
		h := startHost(t, emu, dataDir)
		p := &dsyncemu.Poller{BaseURL: h.URL + "/v1/inbound/dsync", APIKey: inboundKey, Client: harness.Client}
		entities, err := p.DataLayout(ctx)
		if err != nil {
			t.Fatal(err)
		}
		checkRecords(t, p, entities, want)
	})
}

// checkRecords lists every entity and compares with want (token/id →
// record JSON).
func checkRecords(t *testing.T, p *dsyncemu.Poller, entities []dsyncemu.Entity, want map[string]string) {
	t.Helper()
	got := map[string]string{}
	for _, e := range entities {
		all, err := p.ListAll(context.Background(), e)
		if err != nil {
			t.Fatalf("list %s: %v", e.EntityName, err)
		}
		for _, raw := range all {
			var rec map[string]any
			dec := json.NewDecoder(bytes.NewReader(raw))
			dec.UseNumber()
			if err := dec.Decode(&rec); err != nil {
				t.Fatal(err)
			}
			pk := "sku"
			if e.EntityToken == orderTok {
				pk = "id"
			}
			got[e.EntityToken+"/"+fmt.Sprint(rec[pk])] = compactJSONSorted(t, raw)
		}
	}
	if len(got) != len(want) {
		t.Errorf("%d records, want %d: %v", len(got), len(want), got)
	}
	for k, w := range want {
		if got[k] != compactJSONSorted(t, json.RawMessage(w)) {
			t.Errorf("record %s = %s, want %s", k, got[k], w)
		}
	}
}

// compactJSONSorted re-encodes raw with sorted keys and exact numbers.
func compactJSONSorted(t testing.TB, raw json.RawMessage) string {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestSlowPlatformThroughHost checks that a platform slower than the
// connector's deadline ends the call with request_timeout at the deadline
// (no retry past it), and that a slow answer within it succeeds.
func TestSlowPlatformThroughHost(t *testing.T) {
	t.Parallel()
	emu := startEmu(t)
	h := startHost(t, emu, "", func(c *config.Config) {
		cc := c.Connectors["dsync"]
		cc.Timeout = config.Duration(time.Second)
		c.Connectors["dsync"] = cc
	})
	success(t, invoke(t, h, "realtime_create", map[string]any{"entity_token": productTok, "data": map[string]any{"sku": "S-1"}}, platformKey))
	n := len(emu.Calls())
	emu.Inject(dsyncemu.Fault{Method: "PUT", Delay: 200 * time.Millisecond})
	success(t, invoke(t, h, "realtime_update", map[string]any{"entity_token": productTok, "data": map[string]any{"sku": "S-1", "name": "slow"}}, platformKey))

	emu.Inject(dsyncemu.Fault{Method: "PUT", Delay: 30 * time.Second})
	start := time.Now()
	r := invoke(t, h, "realtime_update", map[string]any{"entity_token": productTok, "data": map[string]any{"sku": "S-1", "name": "late"}}, platformKey)
	elapsed := time.Since(start)
	failure(t, r, http.StatusGatewayTimeout, "dsync.request_timeout")
	if elapsed < 900*time.Millisecond || elapsed > 10*time.Second {
		t.Errorf("timed out after %s, want about the 1s deadline", elapsed)
	}
	if calls := callsSince(t, emu, n, 2); len(calls) != 2 {
		t.Errorf("%d calls, want 2 (the late update is not retried past the deadline)", len(calls))
	}
	if u := emu.Counters().Updates; u != 1 {
		t.Errorf("%d updates applied, want 1", u)
	}
	if rec, _ := emu.Record(productTok, "S-1"); !strings.Contains(string(rec.Data), "slow") {
		t.Errorf("stored %s", rec.Data)
	}
}
