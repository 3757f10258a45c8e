package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"slices"
	"strings"
	"testing"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/connector-host/connector-host/host/config"
	stoaemu "github.com/connector-host/connector-host/testkit/emulators/stoa"
	"github.com/connector-host/connector-host/testkit/harness"
)

// The end-to-end tests run the built plugin under a real host (real plugin
// process, real HTTP API) against the Stoa emulator.

const (
	email        = "analyst@example.com"
	password     = "stoa-password-SENTINEL-3f9a"
	clientID     = "stoa-client"
	clientSecret = "stoa-client-secret-SENTINEL-8c21"
)

func startEmu(t testing.TB) *stoaemu.Server {
	t.Helper()
	srv := stoaemu.New(stoaemu.Options{Email: email, Password: password, ClientID: clientID, ClientSecret: clientSecret})
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	return srv
}

// startHost starts a host whose stoa connector points at srv.
func startHost(t testing.TB, srv *stoaemu.Server) *harness.Host {
	t.Helper()
	bin := harness.Build(t, "./plugins/stoa", "connector-stoa")
	settings := map[string]any{"auth_base_url": srv.AuthURL(), "api_base_url": srv.APIURL(), "timeout_s": 10}
	return harness.StartHost(t, []harness.Plugin{{Path: bin}}, func(c *config.Config) {
		c.Connectors["stoa"] = config.Connector{Settings: settings}
	})
}

var (
	restAuth = map[string]any{"basic": map[string]any{"username": email, "password": password}}
	ccAuth   = map[string]any{"oauth_client_credentials": map[string]any{"client_id": clientID, "client_secret": clientSecret}}
)

func exampleOrder() map[string]any {
	return map[string]any{"product_group_name": "exampleGroup", "product_name": "exampleProduct", "workspace": "apps", "owner_id": "owner123"}
}

func invoke(t testing.TB, h *harness.Host, capability string, request, auth any, extra ...map[string]any) *harness.Response {
	t.Helper()
	env := map[string]any{"request": request, "auth": auth}
	for _, x := range extra {
		for k, v := range x {
			env[k] = v
		}
	}
	b, err := json.Marshal(env)
	if err != nil {
		t.Fatal(err)
	}
	return h.Post(t, "/v1/connectors/stoa/"+capability, string(b))
}

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

// failure checks an error envelope and returns its message.
func failure(t testing.TB, r *harness.Response, status int, code string) string {
	t.Helper()
	m := r.JSON(t)
	e, _ := m["error"].(map[string]any)
	if r.Status != status || m["is_error"] != true || e["error_code"] != code {
		t.Fatalf("got %d %s, want %d %s", r.Status, r.Body, status, code)
	}
	msg, _ := e["message"].(string)
	return msg
}

// stream splits an NDJSON answer into its rows and its final line.
func stream(t testing.TB, r *harness.Response) (rows [][]byte, final map[string]any) {
	t.Helper()
	if r.Status != http.StatusOK || !strings.HasPrefix(r.Header.Get("Content-Type"), "application/x-ndjson") {
		t.Fatalf("stream answer %d %s: %.500s", r.Status, r.Header.Get("Content-Type"), r.Body)
	}
	lines := bytes.Split(bytes.TrimSuffix(r.Body, []byte("\n")), []byte("\n"))
	if err := json.Unmarshal(lines[len(lines)-1], &final); err != nil {
		t.Fatalf("final line %q: %v", lines[len(lines)-1], err)
	}
	return lines[:len(lines)-1], final
}

// expected returns the oracle rows of ids.
func expected(t testing.TB, srv *stoaemu.Server, ids, columns []string) ([]string, []map[string]any) {
	t.Helper()
	var cols []string
	var rows []map[string]any
	for _, id := range ids {
		exp, err := srv.ExpectedRows(id, columns)
		if err != nil {
			t.Fatal(err)
		}
		cols, rows = exp.Columns, append(rows, exp.Rows...)
	}
	return cols, rows
}

func compare(t testing.TB, got [][]byte, cols []string, want []map[string]any) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%d rows, want %d", len(got), len(want))
	}
	for i := range got {
		if err := stoaemu.CompareRow(got[i], cols, want[i]); err != nil {
			t.Fatalf("row %d: %v\n%s", i, err, got[i])
		}
	}
}

func noSecretsLogged(t testing.TB, h *harness.Host, more ...string) {
	t.Helper()
	logs := h.Logs.String()
	for _, s := range append([]string{password, clientSecret, "Signature="}, more...) {
		if strings.Contains(logs, s) {
			t.Errorf("%q appears in the host or plugin logs", s)
		}
	}
}

func TestE2EAuthModes(t *testing.T) {
	t.Parallel()
	srv := startEmu(t)
	h := startHost(t, srv)
	cfg := clientcredentials.Config{ClientID: clientID, ClientSecret: clientSecret, TokenURL: srv.AuthURL() + "/oauth/token/", AuthStyle: oauth2.AuthStyleInHeader}
	tok, err := cfg.Token(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	desc := srv.Keys(0)
	slices.Reverse(desc)
	cols, want := expected(t, srv, desc[:20], nil)
	for _, mode := range []struct {
		name string
		auth any
	}{
		{"rest", restAuth},
		{"oauth access token", map[string]any{"oauth": map[string]any{"access_token": tok.AccessToken}}},
		{"oauth client credentials", ccAuth},
	} {
		before := srv.Stats()
		for range 3 {
			if ids := success(t, invoke(t, h, "order", exampleOrder(), mode.auth))["order_ids"].([]any); len(ids) != 20 {
				t.Fatalf("%s: order %v", mode.name, ids)
			}
		}
		rows, final := stream(t, invoke(t, h, "fetch", exampleOrder(), mode.auth))
		compare(t, rows, cols, want)
		if page, _ := final["page"].(map[string]any); page["token"] != "20" {
			t.Errorf("%s: final line %v, want the next page token 20", mode.name, final)
		}
		after := srv.Stats()
		logins, tokens := after.Logins-before.Logins, after.TokenRequests-before.TokenRequests
		switch mode.name {
		case "rest":
			if logins != 1 || tokens != 0 {
				t.Errorf("rest: %d logins, %d token requests for 4 calls, want 1 and 0", logins, tokens)
			}
		case "oauth access token":
			if logins != 0 || tokens != 0 {
				t.Errorf("oauth: %d logins, %d token requests, want none (the token was given)", logins, tokens)
			}
		default:
			if logins != 0 || tokens != 1 {
				t.Errorf("client credentials: %d logins, %d token requests for 4 calls, want 0 and 1", logins, tokens)
			}
		}
		if r := success(t, invoke(t, h, "validate_credentials", map[string]any{}, mode.auth)); r["valid"] != true {
			t.Errorf("%s: validate_credentials %v", mode.name, r)
		}
	}
	msg := failure(t, invoke(t, h, "validate_credentials", map[string]any{}, map[string]any{"basic": map[string]any{"username": email, "password": "not-" + password}}), 401, "stoa.unauthorized")
	if !strings.Contains(msg, "rejected the email and password") {
		t.Errorf("message %q", msg)
	}
	failure(t, invoke(t, h, "validate_credentials", map[string]any{}, map[string]any{"oauth_client_credentials": map[string]any{"client_id": clientID, "client_secret": "x"}}), 401, "stoa.unauthorized")
	noSecretsLogged(t, h, tok.AccessToken)
}

func TestE2EBadInput(t *testing.T) {
	t.Parallel()
	srv := startEmu(t)
	h := startHost(t, srv)
	with := func(k string, v any) map[string]any {
		r := exampleOrder()
		if v == nil {
			delete(r, k)
		} else {
			r[k] = v
		}
		return r
	}
	for _, tc := range []struct {
		capability string
		request    map[string]any
		field      string
	}{
		{"order", with("limit", 21), "limit"},
		{"order", with("limit", 0), "limit"},
		{"order", with("offset", -1), "offset"},
		{"order", with("workspace", "desk"), "workspace"},
		{"order", with("owner_id", nil), "owner_id"},
		{"fetch", with("owner_id", ""), "owner_id"},
		{"fetch", with("columns", []string{"id", "id"}), "columns"},
		{"sign", map[string]any{"order_ids": []string{"a", "a"}}, "order_ids"},
		{"export", with("path", "../outside.parquet"), "path"},
		{"export", with("format", "xlsx"), "format"},
	} {
		if tc.capability == "export" {
			if _, ok := tc.request["path"]; !ok {
				tc.request["path"] = "x.parquet"
			}
		}
		msg := failure(t, invoke(t, h, tc.capability, tc.request, restAuth), 400, "stoa.bad_request")
		if !strings.Contains(msg, tc.field) {
			t.Errorf("%s %v: message %q does not name %s", tc.capability, tc.request, msg, tc.field)
		}
	}
	if st := srv.Stats(); st.Logins+st.Orders+st.Signs+st.ObjectGets != 0 {
		t.Errorf("bad input reached Stoa: %+v", st)
	}
	// An unknown column is known once the first object is read, before any
	// row: a plain 400.
	msg := failure(t, invoke(t, h, "fetch", with("columns", []string{"id", "colour"}), restAuth), 400, "stoa.bad_request")
	if !strings.Contains(msg, `columns[1]: unknown column "colour"`) {
		t.Errorf("message %q", msg)
	}
	failure(t, invoke(t, h, "order", with("owner_id", "nobody"), restAuth), 404, "stoa.not_found")
	failure(t, invoke(t, h, "order", exampleOrder(), restAuth, map[string]any{"page": map[string]any{"token": "abc"}}), 400, "stoa.invalid_page_token")
}

func TestE2EFaultsAndExport(t *testing.T) {
	t.Parallel()
	srv := startEmu(t)
	h := startHost(t, srv)
	ids := srv.Keys(0)[:4]
	anyIDs := make([]any, len(ids))
	for i, id := range ids {
		anyIDs[i] = id
	}
	fetch := map[string]any{"order_ids": anyIDs}
	cols, want := expected(t, srv, ids, nil)

	// A 5xx, then success; an expired signature: complete data.
	srv.InjectFault(ids[1], stoaemu.Fault{Status: 503, Times: 1})
	srv.InjectFault(ids[2], stoaemu.Fault{ExpiredSignature: true, Times: 1})
	rows, final := stream(t, invoke(t, h, "fetch", fetch, restAuth))
	compare(t, rows, cols, want)
	if _, ok := final["page"]; !ok {
		t.Errorf("final line %v", final)
	}

	// A truncated object that stays truncated: an error naming it after the
	// rows before it, or, with allow_partial, the others' rows then the
	// error listing it.
	srv.InjectFault(ids[1], stoaemu.Fault{Truncate: true})
	rows, final = stream(t, invoke(t, h, "fetch", fetch, restAuth))
	_, before := expected(t, srv, ids[:1], nil)
	compare(t, rows, cols, before)
	e, _ := final["error"].(map[string]any)
	if msg, _ := e["message"].(string); e["error_code"] != "stoa.connection_closed" || !strings.Contains(msg, ids[1]) {
		t.Errorf("final line %v", final)
	}
	partial := map[string]any{"order_ids": anyIDs, "allow_partial": true}
	rows, final = stream(t, invoke(t, h, "fetch", partial, restAuth))
	_, others := expected(t, srv, []string{ids[0], ids[2], ids[3]}, nil)
	compare(t, rows, cols, others)
	e, _ = final["error"].(map[string]any)
	if msg, _ := e["message"].(string); e["app_error_code"] != "stoa.partial_fetch" || !strings.Contains(msg, ids[1]) || !strings.Contains(msg, "1 of 4 objects failed") {
		t.Errorf("final line %v", final)
	}
	srv.ClearFaults()

	// Export: the Parquet file reads back (arrow-go) equal to the fetched rows.
	rows, _ = stream(t, invoke(t, h, "fetch", fetch, restAuth))
	res := success(t, invoke(t, h, "export", map[string]any{"order_ids": anyIDs, "path": "exports/four.parquet"}, restAuth))
	path, _ := res["path"].(string)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("export result %v: %v", res, err)
	}
	if !strings.HasPrefix(path, h.Config.DataDir) || res["rows"] != float64(len(rows)) || res["bytes"] != float64(len(b)) {
		t.Errorf("export result %v (data dir %s)", res, h.Config.DataDir)
	}
	exp, err := stoaemu.ExpectedFromParquet(b, nil)
	if err != nil {
		t.Fatal(err)
	}
	compare(t, rows, exp.Columns, exp.Rows)
	noSecretsLogged(t, h)
}
