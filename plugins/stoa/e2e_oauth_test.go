package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/connector-host/connector-host/host/config"
	stoaemu "github.com/connector-host/connector-host/testkit/emulators/stoa"
	"github.com/connector-host/connector-host/testkit/harness"
)

// The OAuth2 client-credentials mode through the host's OAuth module: the
// host asks the emulator's token endpoint (the operator points the declared
// token URL at it, connectors.stoa.oauth.token_url), stores the credential,
// and gives the plugin {"oauth":{"access_token":...}} for every call made
// with the credential_id.

// startOAuthHost starts a host whose stoa connector points at srv, the
// declared token URL overridden by the operator's configuration.
func startOAuthHost(t testing.TB, srv *stoaemu.Server) *harness.Host {
	t.Helper()
	bin := harness.Build(t, "./plugins/stoa", "connector-stoa")
	settings := map[string]any{"auth_base_url": srv.AuthURL(), "api_base_url": srv.APIURL(), "timeout_s": 10}
	return harness.StartHost(t, []harness.Plugin{{Path: bin}}, func(c *config.Config) {
		c.Connectors["stoa"] = config.Connector{
			Settings: settings,
			OAuth:    config.OAuthURLs{TokenURL: srv.AuthURL() + "/oauth/token/"},
		}
	})
}

// storeCredential calls handle_client_credentials_request with a
// credential_id and returns the response.
func storeCredential(t testing.TB, h *harness.Host, id, clientID, secret string) map[string]any {
	t.Helper()
	body, err := json.Marshal(map[string]any{
		"credential_id": id,
		"request":       map[string]any{"client_id": clientID, "client_secret": secret},
	})
	if err != nil {
		t.Fatal(err)
	}
	return success(t, h.Post(t, "/v1/connectors/stoa/handle_client_credentials_request", string(body)))
}

// withCredential calls a capability with a credential_id and no auth.
func withCredential(t testing.TB, h *harness.Host, capability, id string, request any) *harness.Response {
	t.Helper()
	b, err := json.Marshal(map[string]any{"credential_id": id, "request": request})
	if err != nil {
		t.Fatal(err)
	}
	return h.Post(t, "/v1/connectors/stoa/"+capability, string(b))
}

// TestDeclaredOAuth: the description the host serves declares the client
// credentials flow with HTTP Basic client authentication and a form body
// (PROTOCOLS.md), the prod token URL, and the host's capabilities for it.
func TestDeclaredOAuth(t *testing.T) {
	t.Parallel()
	srv := startEmu(t)
	for _, tc := range []struct {
		name string
		h    *harness.Host
		want string
	}{
		{"declared", startHost(t, srv), "https://auth.grasp-daas.com/oauth/token/"},
		{"operator override", startOAuthHost(t, srv), srv.AuthURL() + "/oauth/token/"},
	} {
		r := tc.h.Get(t, "/v1/connectors/stoa")
		var d struct {
			OAuth struct {
				TokenURL           string `json:"token_url"`
				Flow               string `json:"flow_type"`
				ClientAuth         string `json:"client_auth"`
				TokenRequestMethod string `json:"token_request_method"`
				TokenRequestBody   string `json:"token_request_body"`
			} `json:"oauth"`
			Capabilities []string `json:"capabilities"`
		}
		if err := json.Unmarshal(r.Body, &d); err != nil || r.Status != 200 {
			t.Fatalf("%s: %d %s: %v", tc.name, r.Status, r.Body, err)
		}
		o := d.OAuth
		if o.TokenURL != tc.want || o.Flow != "CLIENT_CREDENTIALS" || o.ClientAuth != "CLIENT_SECRET_BASIC" ||
			o.TokenRequestBody != "FORMDATA" || (o.TokenRequestMethod != "" && o.TokenRequestMethod != "POST") {
			t.Errorf("%s: oauth %+v, want token_url %s, CLIENT_CREDENTIALS, CLIENT_SECRET_BASIC, POST, FORMDATA\n%s", tc.name, o, tc.want, r.Body)
		}
		caps := map[string]bool{}
		for _, c := range d.Capabilities {
			caps[c] = true
		}
		for _, c := range []string{"handle_client_credentials_request", "refresh_access_token", "validate_credentials", "order", "sign", "fetch", "export"} {
			if !caps[c] {
				t.Errorf("%s: capability %s missing from %v", tc.name, c, caps)
			}
		}
		if caps["get_authorization_url"] {
			t.Errorf("%s: get_authorization_url offered for a client-credentials connector", tc.name)
		}
	}
}

// TestE2EHostOAuthClientCredentials: one token request for many calls of
// every kind (order, sign, fetch, validate_credentials, concurrent ones
// too); a token Stoa stops accepting → exactly one refresh and the calls
// succeed; the REST mode works on the same host.
func TestE2EHostOAuthClientCredentials(t *testing.T) {
	t.Parallel()
	srv := startEmu(t)
	h := startOAuthHost(t, srv)

	// Wrong secret: the host's token request is refused, nothing stored.
	r := h.Post(t, "/v1/connectors/stoa/handle_client_credentials_request",
		fmt.Sprintf(`{"credential_id":"bad","request":{"client_id":%q,"client_secret":"wrong-secret"}}`, clientID))
	failure(t, r, 401, "stoa.unauthorized")
	failure(t, withCredential(t, h, "order", "bad", exampleOrder()), 404, "stoa.not_found")

	resp := storeCredential(t, h, "cc1", clientID, clientSecret)
	if tok, _ := resp["access_token"].(string); tok == "" || resp["expires_at"] == nil {
		t.Fatalf("stored credential: %v", resp)
	}
	if b, _ := json.Marshal(resp); strings.Contains(string(b), clientSecret) || strings.Contains(string(b), "refresh_token") {
		t.Errorf("the answer of a stored flow carries the client secret or a refresh token: %s", b)
	}
	if st := srv.Stats(); st.TokenRequests != 2 || st.FailedTokenRequests != 1 || st.Logins != 0 {
		t.Fatalf("after storing: %+v, want 2 token requests (1 refused), no login", st)
	}

	desc := srv.Keys(0)
	for i, j := 0, len(desc)-1; i < j; i, j = i+1, j-1 {
		desc[i], desc[j] = desc[j], desc[i]
	}
	cols, want := expected(t, srv, desc[:20], nil)
	calls := func(round string) {
		t.Helper()
		for range 5 {
			ids, _ := success(t, withCredential(t, h, "order", "cc1", exampleOrder()))["order_ids"].([]any)
			if len(ids) != 20 || ids[0] != desc[0] {
				t.Fatalf("%s: order %v", round, ids)
			}
		}
		sigs, _ := success(t, withCredential(t, h, "sign", "cc1", map[string]any{"order_ids": desc[:3]}))["signatures"].(map[string]any)
		if len(sigs) != 3 {
			t.Fatalf("%s: sign %v", round, sigs)
		}
		v := success(t, withCredential(t, h, "validate_credentials", "cc1", map[string]any{}))
		if v["valid"] != true || v["mode"] != "bearer" {
			t.Errorf("%s: validate_credentials %v", round, v)
		}
		// Concurrent fetches: the rows equal the emulator's, cell by cell.
		var wg sync.WaitGroup
		res := make([]*harness.Response, 4)
		for i := range res {
			wg.Go(func() { res[i] = withCredential(t, h, "fetch", "cc1", exampleOrder()) })
		}
		wg.Wait()
		for _, r := range res {
			rows, final := stream(t, r)
			compare(t, rows, cols, want)
			if page, _ := final["page"].(map[string]any); page["token"] != "20" {
				t.Errorf("%s: final line %v", round, final)
			}
		}
	}
	calls("first token")
	if st := srv.Stats(); st.TokenRequests != 2 || st.Logins != 0 || st.Unauthorized != 0 {
		t.Fatalf("after 14 calls: %+v, want still 2 token requests, no login, no 401", st)
	}

	// Stoa stops accepting the token (revoked, or expired early): every
	// call in flight gets 401, the host refreshes once and retries each.
	srv.ExpireTokens()
	var wg sync.WaitGroup
	res := make([]*harness.Response, 8)
	for i := range res {
		wg.Go(func() { res[i] = withCredential(t, h, "order", "cc1", exampleOrder()) })
	}
	wg.Wait()
	for _, r := range res {
		if ids, _ := success(t, r)["order_ids"].([]any); len(ids) != 20 {
			t.Fatalf("after the token was revoked: %s", r.Body)
		}
	}
	st := srv.Stats()
	if st.TokenRequests != 3 || st.Unauthorized < 1 || st.Unauthorized > len(res) {
		t.Fatalf("after revoking the token: %+v, want exactly one more token request and 1..%d 401s", st, len(res))
	}
	calls("refreshed token")
	if after := srv.Stats(); after.TokenRequests != 3 || after.Unauthorized != st.Unauthorized {
		t.Fatalf("after more calls: %+v, want no new token request or 401", after)
	}

	// The REST login on the same host (the plugin's own auth_base_url).
	if ids, _ := success(t, invoke(t, h, "order", exampleOrder(), restAuth))["order_ids"].([]any); len(ids) != 20 {
		t.Fatalf("rest order: %v", ids)
	}
	if st := srv.Stats(); st.Logins != 1 || st.TokenRequests != 3 {
		t.Errorf("rest call: %+v, want one login", st)
	}
	noSecretsLogged(t, h)
}

// TestE2EHostOAuthRefreshAhead: the host refreshes a stored token before
// it expires (within half its lifetime for short-lived tokens): after the
// token is half-way through its life, calls — concurrent ones too — cost
// exactly one token request and never reach Stoa with an expired token.
func TestE2EHostOAuthRefreshAhead(t *testing.T) {
	t.Parallel()
	const ttl = 2 * time.Second
	srv := stoaemu.New(stoaemu.Options{Email: email, Password: password, ClientID: clientID, ClientSecret: clientSecret, TokenTTL: ttl})
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	h := startOAuthHost(t, srv)
	resp := storeCredential(t, h, "short", clientID, clientSecret)
	stored := time.Now()
	exp, err := time.Parse(time.RFC3339, fmt.Sprint(resp["expires_at"]))
	if err != nil || exp.Before(stored.Add(-ttl)) || exp.After(stored.Add(ttl+time.Second)) {
		t.Fatalf("expires_at %v (%v), want about %v from now", resp["expires_at"], err, ttl)
	}
	// Past half the lifetime (the host's refresh point for such a short
	// token), still before the token expires at Stoa.
	time.Sleep(time.Until(stored.Add(ttl/2 + 200*time.Millisecond)))
	var wg sync.WaitGroup
	res := make([]*harness.Response, 6)
	for i := range res {
		wg.Go(func() { res[i] = withCredential(t, h, "order", "short", exampleOrder()) })
	}
	wg.Wait()
	for _, r := range res {
		success(t, r)
	}
	if st := srv.Stats(); st.TokenRequests != 2 || st.Unauthorized != 0 {
		t.Fatalf("%+v, want exactly one refresh ahead of expiry (2 token requests) and no 401", st)
	}
	noSecretsLogged(t, h)
}

// TestE2ECLIClientCredentials: an operator stores the credential with
// `connector-host oauth client-credentials stoa` (the secret from the
// environment); a host on the same data directory then serves calls with
// the credential_id on the stored token — one token request in all.
func TestE2ECLIClientCredentials(t *testing.T) {
	t.Parallel()
	srv := startEmu(t)
	hostBin := harness.Build(t, "./cmd/connector-host", "connector-host")
	pluginBin := harness.Build(t, "./plugins/stoa", "connector-stoa")
	dir := t.TempDir()
	plugins := filepath.Join(dir, "plugins")
	if err := os.Mkdir(plugins, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(pluginBin, filepath.Join(plugins, "connector-stoa")); err != nil {
		t.Fatal(err)
	}
	dataDir := filepath.Join(dir, "data")
	settings := map[string]any{"auth_base_url": srv.AuthURL(), "api_base_url": srv.APIURL(), "timeout_s": 10}
	cfg, err := yaml.Marshal(map[string]any{
		"plugins_dir": plugins, "data_dir": dataDir,
		"connectors": map[string]any{"stoa": map[string]any{
			"settings": settings,
			"oauth":    map[string]any{"token_url": srv.AuthURL() + "/oauth/token/"},
		}},
	})
	if err != nil {
		t.Fatal(err)
	}
	cfgFile := filepath.Join(dir, "connector-host.yaml")
	if err := os.WriteFile(cfgFile, cfg, 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(hostBin, "oauth", "client-credentials", "stoa", "--config", cfgFile,
		"--credential-id", "ops", "--client-id", clientID, "--client-secret-env", "STOA_TEST_CLIENT_SECRET")
	cmd.Env = append(os.Environ(), "STOA_TEST_CLIENT_SECRET="+clientSecret)
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), `Stored credential "ops" for stoa`) {
		t.Fatalf("oauth client-credentials: %v\n%s", err, out)
	}
	if strings.Contains(string(out), clientSecret) {
		t.Errorf("the CLI printed the client secret:\n%s", out)
	}
	if st := srv.Stats(); st.TokenRequests != 1 || st.FailedTokenRequests != 0 {
		t.Fatalf("after the CLI: %+v, want one token request", st)
	}
	h := harness.StartHost(t, []harness.Plugin{{Path: pluginBin}}, func(c *config.Config) {
		c.DataDir = dataDir
		c.Connectors["stoa"] = config.Connector{Settings: settings, OAuth: config.OAuthURLs{TokenURL: srv.AuthURL() + "/oauth/token/"}}
	})
	for range 3 {
		if ids, _ := success(t, withCredential(t, h, "order", "ops", exampleOrder()))["order_ids"].([]any); len(ids) != 20 {
			t.Fatalf("order with the CLI's credential: %v", ids)
		}
	}
	if st := srv.Stats(); st.TokenRequests != 1 || st.Logins != 0 || st.Unauthorized != 0 {
		t.Fatalf("after 3 calls: %+v, want the stored token used (one token request in all)", st)
	}
	noSecretsLogged(t, h)
}
