package inbound

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/connector-host/connector-host/plugins/dsync/internal/layout"
	"github.com/connector-host/connector-host/plugins/dsync/internal/store"
	dsyncemu "github.com/connector-host/connector-host/testkit/emulators/dsync"
)

const inboundKey = "inbound-key-123"

func testLayout(t testing.TB) *layout.Layout {
	t.Helper()
	l, err := layout.Generate([]layout.Entity{
		{EntityName: "product", Treekey: "product", EndpointURL: "/entity/product", EntityToken: "product-aa", Fields: []layout.Field{
			{Treekey: "product.sku", Type: layout.TypeText, Name: "sku", PrimaryKey: true, Required: true},
			{Treekey: "product.name", Type: layout.TypeText, Name: "name", Required: true},
			{Treekey: "product.price", Type: layout.TypeNumber, Name: "price"},
			{Treekey: "product.homepage", Type: layout.TypeURL, Name: "homepage"},
			{Treekey: "product.size.width", Type: layout.TypeNumber, Name: "width"},
			{Treekey: "product.tags", Type: layout.TypeText, Multiple: true, Name: "tags"},
			{Treekey: "product.active", Type: layout.TypeBoolean, Name: "active"},
			{Treekey: "product.released", Type: layout.TypeDate, Name: "released"},
		}},
		{EntityName: "customer", Treekey: "customer", EndpointURL: "https://connector.example.com/entity/customer/", EntityToken: "customer-bb", Fields: []layout.Field{
			{Treekey: "customer.id", Type: layout.TypeNumber, Name: "id", PrimaryKey: true},
			{Treekey: "customer.email", Type: layout.TypeEmail, Name: "email", Required: true},
			{Treekey: "customer.seen", Type: layout.TypeDatetime, Name: "seen"},
			{Treekey: "customer.meta", Type: layout.TypeObject, Name: "meta"},
		}},
	})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// serve starts the handler on a real 127.0.0.1 server with its store in dir.
func serve(t *testing.T, dir, prefix string) (*httptest.Server, *store.Store) {
	t.Helper()
	l := testLayout(t)
	st, err := store.Open(dir, l)
	if err != nil {
		t.Fatal(err)
	}
	h, err := New(Config{Layout: l, Store: st, APIKey: inboundKey, Prefix: prefix, MaxBodyBytes: 4096})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(func() { srv.Close(); _ = st.Close() })
	return srv, st
}

func do(t *testing.T, method, url, key, body string, hdr map[string]string) (int, map[string]any, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if key != "" {
		req.Header.Set("Auth-Token", key)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var env map[string]any
	if err := json.Unmarshal(raw, &env); err != nil {
		t.Fatalf("%s %s: body is not JSON: %s", method, url, raw)
	}
	if int(env["status"].(float64)) != resp.StatusCode {
		t.Fatalf("envelope status %v != HTTP %d", env["status"], resp.StatusCode)
	}
	return resp.StatusCode, env, string(raw)
}

func TestPollerCycle(t *testing.T) {
	t.Parallel()
	srv, _ := serve(t, t.TempDir(), "")
	p := &dsyncemu.Poller{BaseURL: srv.URL, APIKey: inboundKey, Client: srv.Client()}
	rep, err := p.Cycle(context.Background(), 5)
	if err != nil {
		t.Fatalf("cycle: %v (%+v)", err, rep)
	}
	if rep != (dsyncemu.Report{Entities: 2, Created: 10, Updated: 10, Listed: 10, Deleted: 10}) {
		t.Fatalf("report %+v", rep)
	}
}

func TestPollerThroughPrefix(t *testing.T) {
	t.Parallel()
	srv, _ := serve(t, t.TempDir(), "/v1/inbound/dsync/")
	p := &dsyncemu.Poller{BaseURL: srv.URL + "/v1/inbound/dsync", APIKey: inboundKey, PageSize: 1}
	if _, err := p.Cycle(context.Background(), 2); err != nil {
		t.Fatal(err)
	}
	if st, _, _ := do(t, "GET", srv.URL+"/datalayout", inboundKey, "", nil); st != 404 {
		t.Fatalf("outside prefix: %d", st)
	}
}

func TestDataLayoutExact(t *testing.T) {
	t.Parallel()
	srv, _ := serve(t, t.TempDir(), "")
	st, _, raw := do(t, "GET", srv.URL+"/datalayout", inboundKey, "", nil)
	lj, _ := testLayout(t).JSON()
	if st != 200 || raw != `{"status":200,"message":"OK","detail":"","data":`+string(lj)+`}` {
		t.Fatalf("got %d %s", st, raw)
	}
	if st, _, _ := do(t, "POST", srv.URL+"/datalayout", inboundKey, "{}", nil); st != 405 {
		t.Fatalf("POST datalayout: %d", st)
	}
}

func TestWrongKey(t *testing.T) {
	t.Parallel()
	srv, st := serve(t, t.TempDir(), "")
	for _, key := range []string{"", "wrong", inboundKey + "x", strings.ToUpper(inboundKey)} {
		for _, c := range []struct{ method, path, body string }{
			{"GET", "/datalayout", ""},
			{"GET", "/entity/product", ""},
			{"POST", "/entity/product", `{"sku":"a","name":"b"}`},
			{"DELETE", "/entity/product/a", ""},
			{"GET", "/nowhere", ""},
		} {
			code, env, _ := do(t, c.method, srv.URL+c.path, key, c.body, nil)
			if code != 401 || env["message"] != "Unauthorized" {
				t.Fatalf("key %q %s %s: %d %v", key, c.method, c.path, code, env)
			}
		}
	}
	if n, _ := st.Count(context.Background(), "product-aa"); n != 0 {
		t.Fatal("unauthorized create stored a record")
	}
}

func TestRequests(t *testing.T) {
	t.Parallel()
	srv, _ := serve(t, t.TempDir(), "")
	u := srv.URL
	steps := []struct {
		method, path, body string
		hdr                map[string]string
		status             int
		detail             string
	}{
		{"POST", "/entity/product", `{"sku":"a/b c","name":"Chair","tags":["x"]}`, nil, 200, ""},
		{"POST", "/entity/product", `{"sku":"a/b c","name":"Chair"}`, nil, 409, `sku "a/b c" already exists`},
		{"GET", "/entity/product/a%2Fb%20c", "", nil, 200, ""},
		{"GET", "/entity/product?id=a%2Fb+c", "", nil, 200, ""},
		{"PUT", "/entity/product/a%2Fb%20c", `{"sku":"a/b c","name":"Table"}`, nil, 200, ""},
		{"PUT", "/entity/product", `{"sku":"a/b c","name":"Desk"}`, nil, 200, ""},
		{"PUT", "/entity/product/other", `{"sku":"a/b c","name":"Desk"}`, nil, 400, `does not match the record id "other"`},
		{"PUT", "/entity/product/missing", `{"sku":"missing","name":"Desk"}`, nil, 404, `sku "missing" not found`},
		{"POST", "/entity/product", `{"sku":"b","price":"cheap","size":{"width":"x"}}`, nil, 400, "invalid record: name: is required; price: must be a JSON number (type number); size.width: must be a JSON number"},
		{"POST", "/entity/product", `{"sku":"b","name":"n","colour":"red"}`, nil, 400, "colour: unknown field"},
		{"POST", "/entity/product", `not json`, nil, 400, "record is not valid JSON"},
		{"POST", "/entity/product", `{"sku":"b","name":"n"}`, map[string]string{"Content-Type": "text/plain"}, 415, "Content-Type must be application/json"},
		{"POST", "/entity/product", `{"sku":"` + strings.Repeat("x", 5000) + `","name":"n"}`, nil, 413, "body larger than 4096 bytes"},
		{"POST", "/entity/product/a", `{}`, nil, 405, "method POST not allowed"},
		{"PATCH", "/entity/product", `{}`, nil, 405, "method PATCH not allowed"},
		{"GET", "/entity/product?limit=abc", "", nil, 400, `limit: "abc" is not an integer`},
		{"GET", "/entity/product?limit=5000", "", nil, 400, "limit: must be between 1 and 1000"},
		{"GET", "/entity/product?limit=0", "", nil, 400, "limit: must be between 1 and 1000, got 0"},
		{"GET", "/entity/product?limit=-3", "", nil, 400, "limit: must be between 1 and 1000, got -3"},
		{"GET", "/entity/product?cursor=bogus", "", nil, 400, "cursor: "},
		{"GET", "/entity/product/a/b", "", nil, 404, "no inbound endpoint"},
		{"GET", "/entity/products", "", nil, 404, "no inbound endpoint"},
		{"GET", "/entity/customer/abc", "", nil, 400, `id: record id "abc" is not a number`},
		{"POST", "/entity/customer/", `{"id":12,"email":"a@example.com","meta":{"k":[1]}}`, nil, 200, ""},
		{"DELETE", "/entity/customer", "", map[string]string{"Entity-Id": "12"}, 200, ""},
		{"DELETE", "/entity/customer", "", nil, 400, "id: name the record to delete"},
		{"DELETE", "/entity/product?id=a%2Fb%20c", "", nil, 200, ""},
		{"DELETE", "/entity/product/a%2Fb%20c", "", nil, 404, "not found"},
	}
	for _, s := range steps {
		code, env, raw := do(t, s.method, u+s.path, inboundKey, s.body, s.hdr)
		if code != s.status || !strings.Contains(env["detail"].(string), s.detail) {
			t.Errorf("%s %s: got %d %s\nwant %d detail containing %q", s.method, s.path, code, raw, s.status, s.detail)
		}
		if code == 200 && env["message"] != "OK" {
			t.Errorf("%s %s: message %v", s.method, s.path, env["message"])
		}
	}
	// Validation errors list each field in data.violations.
	_, env, _ := do(t, "POST", u+"/entity/product", inboundKey, `{"sku":"b","price":"x"}`, nil)
	v := env["data"].(map[string]any)["violations"].([]any)
	if len(v) != 2 || v[0].(map[string]any)["path"] != "name" || v[1].(map[string]any)["path"] != "price" {
		t.Fatalf("violations %v", v)
	}
}

func TestRecordsSurviveRestart(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	srv, st := serve(t, dir, "")
	p := &dsyncemu.Poller{BaseURL: srv.URL, APIKey: inboundKey}
	entities, err := p.DataLayout(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	rec, id, err := dsyncemu.SampleRecord(entities[0], 1, false)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Create(context.Background(), entities[0], rec); err != nil {
		t.Fatal(err)
	}
	srv.Close()
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}

	srv2, _ := serve(t, dir, "")
	p2 := &dsyncemu.Poller{BaseURL: srv2.URL, APIKey: inboundKey}
	got, err := p2.Get(context.Background(), entities[0], id)
	if err != nil {
		t.Fatalf("after restart: %v", err)
	}
	want, _ := json.Marshal(rec)
	var a, b any
	_ = json.Unmarshal(got, &a)
	_ = json.Unmarshal(want, &b)
	if ga, _ := json.Marshal(a); string(ga) != string(mustMarshal(b)) {
		t.Fatalf("got %s want %s", got, want)
	}
	all, err := p2.ListAll(context.Background(), entities[0])
	if err != nil || len(all) != 1 {
		t.Fatalf("list after restart: %d %v", len(all), err)
	}
	// The poller's wrong-key view.
	bad := &dsyncemu.Poller{BaseURL: srv2.URL, APIKey: "nope"}
	var se *dsyncemu.StatusError
	if _, err := bad.DataLayout(context.Background()); !errors.As(err, &se) || se.Status != 401 {
		t.Fatalf("wrong key: %v", err)
	}
}

func mustMarshal(v any) []byte {
	b, _ := json.Marshal(v)
	return b
}

func TestNewErrors(t *testing.T) {
	t.Parallel()
	l := testLayout(t)
	st, err := store.Open(t.TempDir(), l)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	if _, err := New(Config{Layout: l, Store: st}); err == nil || strings.Contains(err.Error(), inboundKey) {
		t.Fatalf("missing key: %v", err)
	}
	if _, err := New(Config{Store: st, APIKey: "k"}); err == nil {
		t.Fatal("missing layout")
	}
	bad := l.Clone()
	bad.DataLayout[0].EndpointURL = "entity/product"
	bad.DataLayout[1].EndpointURL = "/datalayout"
	_, err = New(Config{Layout: bad, Store: st, APIKey: "k"})
	if err == nil || !strings.Contains(err.Error(), `data_layout[0].endpoint_url: "entity/product" must be a path starting with /`) ||
		!strings.Contains(err.Error(), `data_layout[1].endpoint_url: "/datalayout" is reserved`) {
		t.Fatalf("bad endpoints: %v", err)
	}
	dup := l.Clone()
	dup.DataLayout[1].EndpointURL = "/entity/product/"
	if _, err := New(Config{Layout: dup, Store: st, APIKey: "k"}); err == nil || !strings.Contains(err.Error(), `data_layout[1].endpoint_url: path "/entity/product" is already used by data_layout[0]`) {
		t.Fatalf("duplicate endpoints: %v", err)
	}
	other := l.Clone()
	other.DataLayout[0].EntityToken = "unknown"
	if _, err := New(Config{Layout: other, Store: st, APIKey: "k"}); err == nil || !strings.Contains(err.Error(), "data_layout[0].entity_token: entity is not in the store's layout") {
		t.Fatalf("store mismatch: %v", err)
	}
}
