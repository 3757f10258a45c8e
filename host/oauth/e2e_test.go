package oauth_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/connector-host/connector-host/host/config"
	"github.com/connector-host/connector-host/host/oauth"
	"github.com/connector-host/connector-host/host/store"
	"github.com/connector-host/connector-host/testkit/harness"
	"github.com/connector-host/connector-host/testkit/oauthserver"
	"github.com/connector-host/connector-host/testkit/referenceoauth"
)

// End-to-end: a real OAuth server, a real host with real plugin processes,
// everything through the HTTP API.

const (
	app        = "reference-oauth"
	appCC      = "reference-oauth-cc"
	appOwn     = "reference-oauth-own"
	clientID   = "e2e-client"
	canary     = "CANARY-e2e-client-secret-51d0"
	ccClientID = "e2e-m2m"
)

type env struct {
	t       *testing.T
	srv     *oauthserver.Server
	h       *harness.Host
	dataDir string
	// secrets collects every secret value seen, for the canary scans.
	secretsMu sync.Mutex
	secrets   map[string]bool
}

func plugin(t *testing.T) string {
	return harness.Build(t, "./testkit/cmd/connector-reference-oauth", "connector-reference-oauth")
}

func startEnv(t *testing.T, srv *oauthserver.Server, dataDir string) *env {
	t.Helper()
	bin := plugin(t)
	h := harness.StartHost(t, []harness.Plugin{{AppID: app, Path: bin}, {AppID: appCC, Path: bin}, {AppID: appOwn, Path: bin}}, func(c *config.Config) {
		c.DataDir = dataDir
		settings := map[string]any{"port": srv.Port()}
		c.Connectors[app] = config.Connector{Settings: settings}
		c.Connectors[appCC] = config.Connector{Settings: settings, Env: map[string]string{
			referenceoauth.EnvAppID: appCC, referenceoauth.EnvFlow: "CLIENT_CREDENTIALS",
			referenceoauth.EnvClientAuth: "CLIENT_SECRET_BASIC", referenceoauth.EnvTokenBody: "JSON",
		}}
		c.Connectors[appOwn] = config.Connector{Settings: settings, Env: map[string]string{
			referenceoauth.EnvAppID: appOwn, referenceoauth.EnvOverrideRefresh: "1", referenceoauth.EnvPKCE: "0",
		}}
	})
	if err := srv.AddClient(oauthserver.Client{ID: clientID, Secret: canary, RedirectBase: h.URL + oauth.CallbackPath}); err != nil {
		t.Fatal(err)
	}
	if err := srv.AddClient(oauthserver.Client{ID: ccClientID, Secret: canary}); err != nil {
		t.Fatal(err)
	}
	return &env{t: t, srv: srv, h: h, dataDir: dataDir, secrets: map[string]bool{canary: true}}
}

func startServer(t *testing.T) *oauthserver.Server {
	t.Helper()
	srv, err := oauthserver.Start(oauthserver.Options{RequirePKCE: false})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	return srv
}

func (e *env) remember(values ...string) {
	e.secretsMu.Lock()
	defer e.secretsMu.Unlock()
	for _, v := range values {
		if v != "" {
			e.secrets[v] = true
		}
	}
}

func (e *env) post(path string, body any) *harness.Response {
	e.t.Helper()
	b, err := json.Marshal(body)
	if err != nil {
		e.t.Fatal(err)
	}
	return e.h.Post(e.t, path, string(b))
}

func (e *env) ok(r *harness.Response) map[string]any {
	e.t.Helper()
	if r.Status != http.StatusOK {
		e.t.Fatalf("status %d: %s", r.Status, r.Body)
	}
	resp, _ := r.JSON(e.t)["response"].(map[string]any)
	return resp
}

func wantError(t *testing.T, r *harness.Response, status int, code, part string) {
	t.Helper()
	if r.Status != status || r.ErrorCode(t) != code || !strings.Contains(string(r.Body), part) {
		t.Fatalf("got %d %s; want %d %s containing %q", r.Status, r.Body, status, code, part)
	}
}

var noRedirect = &http.Client{
	Timeout:       10 * time.Second,
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
}

// follow opens the authorization URL at the OAuth server (the user
// approving) and returns the redirect target.
func follow(t *testing.T, authURL string) *url.URL {
	t.Helper()
	resp, err := noRedirect.Get(authURL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("authorize answered %d", resp.StatusCode)
	}
	u, err := url.Parse(resp.Header.Get("Location"))
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// login runs the stored code flow for credentialID through the HTTP API
// and the callback route.
func (e *env) login(credentialID string) {
	e.t.Helper()
	got := e.ok(e.post("/v1/connectors/"+app+"/get_authorization_url", map[string]any{
		"credential_id": credentialID,
		"request":       map[string]any{"client_id": clientID, "client_secret": canary, "capabilities": []string{"whoami"}},
	}))
	redirect := follow(e.t, got["authorization_url"].(string))
	if redirect.Scheme+"://"+redirect.Host != e.h.URL || redirect.Path != oauth.CallbackPath {
		e.t.Fatalf("the server redirected to %s, not the host's callback", redirect)
	}
	cb := e.ok(e.h.Get(e.t, redirect.RequestURI()))
	if cb["credential_id"] != credentialID || cb["app_id"] != app || cb["status"] != "active" {
		e.t.Fatalf("callback answer %v", cb)
	}
	e.rememberStored(app, credentialID)
}

func (e *env) rememberStored(appID, id string) {
	c, err := e.h.OAuth().Store().Credential(context.Background(), appID, id)
	if err != nil {
		e.t.Fatal(err)
	}
	e.remember(c.Secrets.AccessToken, c.Secrets.RefreshToken, c.Secrets.ClientSecret)
}

// expire makes the stored access token look expired to the host.
func (e *env) expire(appID, id string) {
	e.t.Helper()
	st := e.h.OAuth().Store()
	c, err := st.Credential(context.Background(), appID, id)
	if err != nil {
		e.t.Fatal(err)
	}
	c.Expiry = time.Now().Add(-time.Minute)
	if err := st.UpdateCredential(context.Background(), c); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) whoami(appID, credentialID string) *harness.Response {
	return e.post("/v1/connectors/"+appID+"/whoami", map[string]any{"credential_id": credentialID, "request": map[string]any{}})
}

// checkNoSecrets scans the logs and every file of the data directory.
func (e *env) checkNoSecrets() {
	e.t.Helper()
	e.secretsMu.Lock()
	defer e.secretsMu.Unlock()
	if len(e.secrets) < 3 {
		e.t.Fatalf("only %d secrets collected", len(e.secrets))
	}
	logs := e.h.Logs.String()
	if !strings.Contains(logs, "whoami calling the resource") {
		e.t.Fatal("the plugin's canary log line is missing: the log scan would prove nothing")
	}
	files := 0
	err := filepath.Walk(e.dataDir, func(p string, info os.FileInfo, err error) error {
		if err != nil || info.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		files++
		for s := range e.secrets {
			if bytes.Contains(b, []byte(s)) {
				e.t.Errorf("%s contains a secret in clear", p)
			}
		}
		return nil
	})
	if err != nil {
		e.t.Fatal(err)
	}
	if files == 0 {
		e.t.Fatal("no data files scanned")
	}
	for s := range e.secrets {
		if strings.Contains(logs, s) {
			for _, line := range strings.Split(logs, "\n") {
				if strings.Contains(line, s) {
					e.t.Errorf("log line with a secret: %.300s", line)
				}
			}
		}
	}
}

func TestE2ECodeFlowStoredAndStateless(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	e := startEnv(t, srv, t.TempDir())

	// The host provides the OAuth capabilities, with schemas.
	info := e.h.Get(t, "/v1/connectors/"+app).JSON(t)
	caps := fmt.Sprint(info["capabilities"])
	for _, c := range []string{"get_authorization_url", "handle_authorization_callback", "refresh_access_token", "whoami"} {
		if !strings.Contains(caps, c) {
			t.Fatalf("capabilities %s lack %s", caps, c)
		}
	}
	if strings.Contains(caps, "handle_client_credentials_request") {
		t.Fatalf("code flow connector lists %s", caps)
	}

	// Stored flow: authorize URL → server → callback → stored → the
	// plugin receives the bearer token.
	wait := e.h.OAuth().AwaitLogin(app, "prod")
	e.login("prod")
	if res, err := wait(context.Background()); err != nil || res.Err != nil {
		t.Fatalf("await: %+v %v", res, err)
	}
	me := e.ok(e.whoami(app, "prod"))
	if me["client_id"] != clientID || me["user_id"] != "user-1" || me["scope"] != "profile:read" {
		t.Fatalf("whoami %v", me)
	}

	// Wrong and reused states are refused and store nothing.
	got := e.ok(e.post("/v1/connectors/"+app+"/get_authorization_url", map[string]any{
		"credential_id": "second", "request": map[string]any{"client_id": clientID, "client_secret": canary},
	}))
	redirect := follow(t, got["authorization_url"].(string))
	q := redirect.Query()
	wrong := url.Values{"code": {q.Get("code")}, "state": {q.Get("state") + "x"}}
	wantError(t, e.h.Get(t, oauth.CallbackPath+"?"+wrong.Encode()), 400, "host.bad_request", "unknown or already used")
	if r := e.h.Get(t, redirect.RequestURI()); r.Status != 200 {
		t.Fatalf("right state: %d %s", r.Status, r.Body)
	}
	e.rememberStored(app, "second")
	wantError(t, e.h.Get(t, redirect.RequestURI()), 400, "host.bad_request", "unknown or already used")
	// The provider refuses: a clear envelope, nothing stored.
	srv.FailAuthorize("access_denied", 1)
	got = e.ok(e.post("/v1/connectors/"+app+"/get_authorization_url", map[string]any{
		"credential_id": "denied", "request": map[string]any{"client_id": clientID, "client_secret": canary},
	}))
	redirect = follow(t, got["authorization_url"].(string))
	wantError(t, e.h.Get(t, redirect.RequestURI()), 403, app+".permission_denied", "access_denied")
	list, err := e.h.OAuth().List(context.Background(), app)
	if err != nil || len(list) != 2 {
		t.Fatalf("stored %v %v; want prod and second only", list, err)
	}
	wantError(t, e.whoami(app, "denied"), 404, app+".not_found", `no credential \"denied\"`)

	// Stateless, exactly as Lumos: the caller gets the tokens.
	got = e.ok(e.post("/v1/connectors/"+app+"/get_authorization_url", map[string]any{
		"request": map[string]any{"client_id": clientID, "scopes": []string{"profile:read"}, "redirect_uri": e.h.URL + "/elsewhere/cb", "state": "lumos"},
	}))
	if got["code_verifier"] == nil {
		t.Fatalf("no PKCE verifier: %v", got)
	}
	if err := srv.AddClient(oauthserver.Client{ID: clientID, Secret: canary}); err != nil { // allow the caller's redirect URI
		t.Fatal(err)
	}
	redirect = follow(t, got["authorization_url"].(string))
	tokens := e.ok(e.post("/v1/connectors/"+app+"/handle_authorization_callback", map[string]any{
		"request": map[string]any{"client_id": clientID, "client_secret": canary, "redirect_uri_with_code": redirect.String(), "state": "lumos", "code_verifier": got["code_verifier"]},
	}))
	e.remember(tokens["access_token"].(string), tokens["refresh_token"].(string))
	if tokens["token_type"] != "bearer" || tokens["state"] != "lumos" || tokens["refresh_token"] == "" || tokens["expires_at"] == nil {
		t.Fatalf("tokens %v", tokens)
	}
	r := e.post("/v1/connectors/"+app+"/whoami", map[string]any{"request": map[string]any{}, "auth": map[string]any{"oauth": map[string]any{"access_token": tokens["access_token"]}}})
	if e.ok(r)["user_id"] != "user-1" {
		t.Fatalf("whoami with the caller's token: %s", r.Body)
	}
	refreshed := e.ok(e.post("/v1/connectors/"+app+"/refresh_access_token", map[string]any{
		"request": map[string]any{"client_id": clientID, "client_secret": canary, "refresh_token": tokens["refresh_token"]},
	}))
	e.remember(refreshed["access_token"].(string), refreshed["refresh_token"].(string))
	if refreshed["access_token"] == tokens["access_token"] {
		t.Fatal("refresh returned the same token")
	}
	// PKCE: the server refuses the exchange without the right verifier.
	got = e.ok(e.post("/v1/connectors/"+app+"/get_authorization_url", map[string]any{
		"request": map[string]any{"client_id": clientID, "redirect_uri": e.h.URL + "/elsewhere/cb", "state": "s"},
	}))
	redirect = follow(t, got["authorization_url"].(string))
	wantError(t, e.post("/v1/connectors/"+app+"/handle_authorization_callback", map[string]any{
		"request": map[string]any{"client_id": clientID, "client_secret": canary, "redirect_uri_with_code": redirect.String(), "code_verifier": strings.Repeat("a", 43)},
	}), 400, app+".bad_request", "invalid_grant")

	// The plugin's own refresh_access_token wins over the host's.
	own := e.ok(e.post("/v1/connectors/"+appOwn+"/refresh_access_token", map[string]any{"request": map[string]any{}}))
	if own["implemented_by"] != "plugin" {
		t.Fatalf("override: %v", own)
	}

	// Client credentials (Basic auth, JSON body), stored.
	cc := e.ok(e.post("/v1/connectors/"+appCC+"/handle_client_credentials_request", map[string]any{
		"credential_id": "m2m", "request": map[string]any{"client_id": ccClientID, "client_secret": canary},
	}))
	e.remember(cc["access_token"].(string))
	if _, has := cc["refresh_token"]; has {
		t.Fatalf("stored client credentials returned a refresh token: %v", cc)
	}
	if me := e.ok(e.whoami(appCC, "m2m")); me["client_id"] != ccClientID {
		t.Fatalf("cc whoami %v", me)
	}
	last := srv.LastTokenRequests()
	if l := last[len(last)-1]; l.ClientAuth != "basic" || !strings.HasPrefix(l.ContentType, "application/json") {
		t.Fatalf("client credentials request was %s %s", l.ClientAuth, l.ContentType)
	}

	e.h.Close() // stop plugins and close the database before scanning
	e.checkNoSecrets()
}

func TestE2EConcurrentRefreshRetryAndRestart(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	dataDir := t.TempDir()
	e := startEnv(t, srv, dataDir)
	e.login("prod")
	first, _ := e.h.OAuth().Store().Credential(context.Background(), app, "prod")

	// 500 concurrent calls with an expired stored token: one refresh.
	e.expire(app, "prod")
	const n = 500
	var wg sync.WaitGroup
	statuses := make([]int, n)
	bodies := make([][]byte, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := e.whoami(app, "prod")
			statuses[i], bodies[i] = r.Status, r.Body
		}()
	}
	wg.Wait()
	for i := range statuses {
		if statuses[i] != 200 {
			t.Fatalf("call %d: %d %s", i, statuses[i], bodies[i])
		}
	}
	if got := srv.TokenRequests(oauthserver.GrantRefreshToken); got != 1 {
		t.Fatalf("%d refresh requests for %d concurrent calls, want 1", got, n)
	}
	e.rememberStored(app, "prod")
	rotated, _ := e.h.OAuth().Store().Credential(context.Background(), app, "prod")
	if rotated.Secrets.RefreshToken == first.Secrets.RefreshToken {
		t.Fatal("the refresh token did not rotate")
	}

	// The upstream rejects the access token: refresh once, retry once.
	if err := srv.RevokeAccessToken(rotated.Secrets.AccessToken); err != nil {
		t.Fatal(err)
	}
	if me := e.ok(e.whoami(app, "prod")); me["user_id"] != "user-1" {
		t.Fatalf("after rejection: %v", me)
	}
	if got := srv.TokenRequests(oauthserver.GrantRefreshToken); got != 2 {
		t.Fatalf("%d refresh requests after a rejection, want 2", got)
	}
	e.rememberStored(app, "prod")
	beforeRestart, _ := e.h.OAuth().Store().Credential(context.Background(), app, "prod")

	// Restart: a new host on the same data directory uses the rotated
	// refresh token (the server revoked every earlier one).
	e.h.Close()
	e.checkNoSecrets()
	e2 := startEnv(t, srv, dataDir)
	e2.secrets = e.secrets
	after, err := e2.h.OAuth().Store().Credential(context.Background(), app, "prod")
	if err != nil || after.Secrets.RefreshToken != beforeRestart.Secrets.RefreshToken {
		t.Fatalf("after restart: %v", err)
	}
	e2.expire(app, "prod")
	if me := e2.ok(e2.whoami(app, "prod")); me["user_id"] != "user-1" {
		t.Fatalf("after restart: %v", me)
	}
	if got := srv.TokenRequests(oauthserver.GrantRefreshToken); got != 3 {
		t.Fatalf("%d refresh requests, want 3", got)
	}
	e2.rememberStored(app, "prod")

	// The grant is revoked upstream: creds_revoked, marked, not retried.
	srv.FailToken("invalid_grant", 1)
	e2.expire(app, "prod")
	wantError(t, e2.whoami(app, "prod"), 401, app+".creds_revoked", "invalid_grant")
	c, _ := e2.h.OAuth().Store().Credential(context.Background(), app, "prod")
	if c.Status != store.StatusRevoked {
		t.Fatalf("status %s", c.Status)
	}
	before := srv.TokenRequests(oauthserver.GrantRefreshToken)
	wantError(t, e2.whoami(app, "prod"), 401, app+".creds_revoked", "revoked")
	if srv.TokenRequests(oauthserver.GrantRefreshToken) != before {
		t.Fatal("a revoked credential was refreshed again")
	}
	e2.h.Close()
	e2.checkNoSecrets()
}
