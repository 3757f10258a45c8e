package oauth

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/connector-host/connector-host/host/router"
	"github.com/connector-host/connector-host/host/store"
	"github.com/connector-host/connector-host/internal/redact"
	"github.com/connector-host/connector-host/internal/wire"
	"github.com/connector-host/connector-host/sdk"
	"github.com/connector-host/connector-host/testkit/oauthserver"
)

const (
	testClientID     = "client-1"
	testClientSecret = "CANARY-client-secret-7f3a"
	testRedirect     = "http://127.0.0.1:1/cb"
)

type clock struct{ off atomic.Int64 }

func (c *clock) now() time.Time          { return time.Now().Add(time.Duration(c.off.Load())) }
func (c *clock) advance(d time.Duration) { c.off.Add(int64(d)) }

type fixture struct {
	t     *testing.T
	srv   *oauthserver.Server
	m     *Manager
	st    *store.SQLite
	dir   string
	desc  *wire.Description
	clock *clock
	logs  *syncBuffer
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func newFixture(t *testing.T, srvOpts oauthserver.Options, mut func(*wire.OAuthSettings)) *fixture {
	t.Helper()
	srv, err := oauthserver.Start(srvOpts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	if err := srv.AddClient(oauthserver.Client{ID: testClientID, Secret: testClientSecret}); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	st, err := store.Open(dir, "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	o := &wire.OAuthSettings{
		AuthorizationURL: "http://127.0.0.1:{port}/oauth/authorize",
		TokenURL:         "http://127.0.0.1:{port}/oauth/token",
		Scopes:           map[string]string{"whoami": "profile:read", "list_things": "things:read things:write profile:read"},
		Flow:             wire.FlowCode, ClientAuth: wire.ClientSecretPost, TokenRequestMethod: "POST", TokenRequestBody: wire.BodyForm,
		PKCE: true,
	}
	if mut != nil {
		mut(o)
	}
	desc := &wire.Description{AppID: "acme", AuthModels: []wire.AuthModel{{Kind: "oauth"}}, OAuth: o}
	c := &clock{}
	logs := &syncBuffer{}
	secrets := redact.NewSet()
	f := &fixture{t: t, srv: srv, st: st, dir: dir, desc: desc, clock: c, logs: logs}
	f.m, err = New(Options{
		Store: st, PublicURL: "http://127.0.0.1:1", Secrets: secrets, Now: c.now,
		Logger:    hclog.New(&hclog.LoggerOptions{Output: secrets.Writer(logs), Level: hclog.Trace, JSONFormat: true}),
		Describer: DescriberFunc(func(context.Context, string) (*wire.Description, *router.Failure) { return desc, nil }),
	})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *fixture) settings() json.RawMessage {
	return json.RawMessage(fmt.Sprintf(`{"port":%d}`, f.srv.Port()))
}

// invoke runs a builtin capability and decodes its response.
func (f *fixture) invoke(name, credentialID string, req any) (map[string]any, *wire.Error) {
	f.t.Helper()
	b, err := json.Marshal(req)
	if err != nil {
		f.t.Fatal(err)
	}
	res, handled := f.m.Invoke(context.Background(), "acme", f.desc, name, &wire.Call{Capability: name, Request: b, Settings: f.settings()}, credentialID)
	if !handled {
		f.t.Fatalf("%s not handled", name)
	}
	if res.Err != nil {
		return nil, res.Err
	}
	var out map[string]any
	if err := json.Unmarshal(res.Response, &out); err != nil {
		f.t.Fatal(err)
	}
	return out, nil
}

func (f *fixture) mustInvoke(name, credentialID string, req any) map[string]any {
	f.t.Helper()
	out, werr := f.invoke(name, credentialID, req)
	if werr != nil {
		f.t.Fatalf("%s: %s: %s", name, werr.Code, werr.Message)
	}
	return out
}

var noRedirect = &http.Client{
	Timeout:       10 * time.Second,
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
}

// follow opens an authorization URL at the server and returns where it
// redirects.
func follow(t *testing.T, authURL string) string {
	t.Helper()
	resp, err := noRedirect.Get(authURL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("authorize answered %d", resp.StatusCode)
	}
	return resp.Header.Get("Location")
}

func wantCode(t *testing.T, werr *wire.Error, code sdk.Code, msgPart string) {
	t.Helper()
	if werr == nil {
		t.Fatalf("succeeded; want %s", code)
	}
	if werr.Code != string(code) || !strings.Contains(werr.Message, msgPart) {
		t.Fatalf("got %s %q; want %s containing %q", werr.Code, werr.Message, code, msgPart)
	}
}

func keys(m map[string]any) string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	return strings.Join(sortStrings(ks), ",")
}

func sortStrings(s []string) []string {
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j] < s[j-1]; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
	return s
}

func TestStatelessCodeFlowLumosShapes(t *testing.T) {
	t.Parallel()
	f := newFixture(t, oauthserver.Options{}, nil)
	got := f.mustInvoke(sdk.GetAuthorizationURL, "", map[string]any{
		"client_id": testClientID, "scopes": []string{"extra"}, "capabilities": []string{"list_things"},
		"redirect_uri": testRedirect, "state": "lumos-state",
	})
	if keys(got) != "authorization_url,code_verifier" {
		t.Fatalf("response keys %s", keys(got))
	}
	au, _ := url.Parse(got["authorization_url"].(string))
	q := au.Query()
	if q.Get("state") != "lumos-state" || q.Get("client_id") != testClientID || q.Get("redirect_uri") != testRedirect ||
		q.Get("code_challenge_method") != "S256" || q.Get("scope") != "extra things:read things:write profile:read" {
		t.Fatalf("authorization URL %s", au)
	}
	redirect := follow(t, au.String())
	tokens := f.mustInvoke(sdk.HandleAuthorizationCallback, "", map[string]any{
		"client_id": testClientID, "client_secret": testClientSecret, "redirect_uri_with_code": redirect,
		"state": "lumos-state", "code_verifier": got["code_verifier"],
	})
	if keys(tokens) != "access_token,expires_at,refresh_token,state,token_type" || tokens["token_type"] != "bearer" || tokens["state"] != "lumos-state" {
		t.Fatalf("tokens %v", tokens)
	}
	exp, err := time.Parse(time.RFC3339, tokens["expires_at"].(string))
	if err != nil || time.Until(exp) < 50*time.Minute {
		t.Fatalf("expires_at %v %v", tokens["expires_at"], err)
	}
	refreshed := f.mustInvoke(sdk.RefreshAccessToken, "", map[string]any{
		"client_id": testClientID, "client_secret": testClientSecret, "refresh_token": tokens["refresh_token"],
	})
	if refreshed["access_token"] == tokens["access_token"] || refreshed["refresh_token"] == tokens["refresh_token"] || refreshed["token_type"] != "bearer" {
		t.Fatalf("refreshed %v", refreshed)
	}
	if _, ok := refreshed["state"]; ok {
		t.Fatal("refresh response has a state")
	}
	// Stateless use stores nothing.
	if list, _ := f.st.Credentials(context.Background(), ""); len(list) != 0 {
		t.Fatalf("stored %d credentials", len(list))
	}
}

func TestPKCE(t *testing.T) {
	t.Parallel()
	f := newFixture(t, oauthserver.Options{}, nil)
	start := func() (string, string) {
		got := f.mustInvoke(sdk.GetAuthorizationURL, "", map[string]any{"client_id": testClientID, "redirect_uri": testRedirect, "state": "s"})
		return follow(t, got["authorization_url"].(string)), got["code_verifier"].(string)
	}
	redirect, _ := start()
	_, werr := f.invoke(sdk.HandleAuthorizationCallback, "", map[string]any{"client_id": testClientID, "client_secret": testClientSecret, "redirect_uri_with_code": redirect})
	wantCode(t, werr, sdk.BadRequest, "request.code_verifier: is required")
	// The server itself refuses a wrong verifier.
	_, werr = f.invoke(sdk.HandleAuthorizationCallback, "", map[string]any{"client_id": testClientID, "client_secret": testClientSecret, "redirect_uri_with_code": redirect, "code_verifier": strings.Repeat("x", 50)})
	wantCode(t, werr, sdk.BadRequest, "invalid_grant")
	if werr.AppErrorCode != "oauth.invalid_grant" {
		t.Fatalf("app_error_code %q", werr.AppErrorCode)
	}
	redirect, verifier := start()
	f.mustInvoke(sdk.HandleAuthorizationCallback, "", map[string]any{"client_id": testClientID, "client_secret": testClientSecret, "redirect_uri_with_code": redirect, "code_verifier": verifier})
	if n := f.srv.TokenRequests(oauthserver.GrantAuthorizationCode); n != 2 {
		t.Fatalf("%d exchanges reached the server, want 2", n)
	}
}

func TestTokenRequestEncodings(t *testing.T) {
	t.Parallel()
	cases := []struct {
		auth, method, body string
		wantMethod, wantCT string
		wantAuth           string
	}{
		{wire.ClientSecretPost, "POST", wire.BodyForm, "POST", "application/x-www-form-urlencoded", "post"},
		{wire.ClientSecretBasic, "POST", wire.BodyForm, "POST", "application/x-www-form-urlencoded", "basic"},
		{wire.ClientSecretPost, "POST", wire.BodyJSON, "POST", "application/json", "post"},
		{wire.ClientSecretBasic, "POST", wire.BodyJSON, "POST", "application/json", "basic"},
		{wire.ClientSecretPost, "POST", wire.BodyQuery, "POST", "", "post"},
		{wire.ClientSecretPost, "GET", wire.BodyForm, "GET", "", "post"},
		{wire.ClientSecretBasic, "GET", wire.BodyQuery, "GET", "", "basic"},
	}
	for _, c := range cases {
		t.Run(c.auth+"/"+c.method+"/"+c.body, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, oauthserver.Options{}, func(o *wire.OAuthSettings) {
				o.Flow, o.ClientAuth, o.TokenRequestMethod, o.TokenRequestBody = wire.FlowClientCredentials, c.auth, c.method, c.body
			})
			tok := f.mustInvoke(sdk.HandleClientCredentialsRequest, "", map[string]any{"client_id": testClientID, "client_secret": testClientSecret, "scopes": []string{"a", "b"}})
			if tok["access_token"] == "" || tok["token_type"] != "bearer" {
				t.Fatalf("tokens %v", tok)
			}
			reqs := f.srv.LastTokenRequests()
			if len(reqs) != 1 {
				t.Fatalf("%d token requests", len(reqs))
			}
			r := reqs[0]
			if r.Method != c.wantMethod || !strings.HasPrefix(r.ContentType, c.wantCT) || (c.wantCT == "" && r.ContentType != "") || r.ClientAuth != c.wantAuth {
				t.Fatalf("request %s %q auth %s", r.Method, r.ContentType, r.ClientAuth)
			}
			if r.Params.Get("scope") != "a b" || r.Params.Get("grant_type") != "client_credentials" {
				t.Fatalf("params %v", r.Params)
			}
			if c.wantAuth == "basic" && r.Params.Get("client_secret") != "" {
				t.Fatal("basic auth also sent the secret in the parameters")
			}
		})
	}
}

func TestTokenErrorsMapToDocumentedCodes(t *testing.T) {
	t.Parallel()
	f := newFixture(t, oauthserver.Options{}, nil)
	doc := documentedCodes(t)
	for _, oerr := range oauthserver.ErrorCodes() {
		f.srv.FailToken(oerr, 1)
		_, werr := f.invoke(sdk.RefreshAccessToken, "", map[string]any{"client_id": testClientID, "client_secret": testClientSecret, "refresh_token": "r"})
		want, ok := doc.token[oerr]
		if !ok {
			t.Errorf("%s: not documented in docs/oauth.md", oerr)
			continue
		}
		if werr == nil || werr.Code != want || werr.AppErrorCode != "oauth."+oerr {
			t.Errorf("refresh %s: got %+v, documented %s", oerr, werr, want)
		}
		if !sdk.Code(want).Valid() {
			t.Errorf("%s: documented code %q is not a contract code", oerr, want)
		}
		// During a code exchange.
		f.srv.FailToken(oerr, 1)
		_, werr = f.invoke(sdk.HandleAuthorizationCallback, "", map[string]any{"client_id": testClientID, "client_secret": testClientSecret, "redirect_uri_with_code": testRedirect + "?code=c", "code_verifier": "v"})
		wantEx := want
		if w, ok := doc.exchange[oerr]; ok {
			wantEx = w
		}
		if werr == nil || werr.Code != wantEx {
			t.Errorf("exchange %s: got %+v, documented %s", oerr, werr, wantEx)
		}
	}
	// And the table in the code is exactly the documented one.
	for k, v := range TokenErrorCodes {
		if doc.token[k] != string(v) {
			t.Errorf("TokenErrorCodes[%s] = %s; docs say %q", k, v, doc.token[k])
		}
	}
	for k, v := range AuthorizationErrorCodes {
		if doc.authorization[k] != string(v) {
			t.Errorf("AuthorizationErrorCodes[%s] = %s; docs say %q", k, v, doc.authorization[k])
		}
	}
}

type docTables struct{ authorization, token, exchange map[string]string }

// documentedCodes reads the OAuth error table of docs/oauth.md: rows
// "| `error` | authorization code | token code | exchange code |".
func documentedCodes(t *testing.T) docTables {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "docs", "oauth.md"))
	if err != nil {
		t.Fatal(err)
	}
	d := docTables{map[string]string{}, map[string]string{}, map[string]string{}}
	for _, line := range strings.Split(string(b), "\n") {
		cells := strings.Split(strings.Trim(strings.TrimSpace(line), "|"), "|")
		if len(cells) != 4 || !strings.HasPrefix(strings.TrimSpace(cells[0]), "`") {
			continue
		}
		name := strings.Trim(strings.TrimSpace(cells[0]), "`")
		cell := func(i int) string {
			c := strings.TrimSpace(cells[i])
			if parts := strings.Split(c, "`"); len(parts) >= 3 {
				return parts[1] // the first `code` of the cell
			}
			return c
		}
		if c := cell(1); c != "—" && c != "" {
			d.authorization[name] = c
		}
		if c := cell(2); c != "—" && c != "" {
			d.token[name] = c
		}
		if c := cell(3); c != "—" && c != "" && c != cell(2) {
			d.exchange[name] = c
		}
	}
	if len(d.token) == 0 {
		t.Fatal("no OAuth error table in docs/oauth.md")
	}
	return d
}

func TestProviderErrorsAtCallback(t *testing.T) {
	t.Parallel()
	f := newFixture(t, oauthserver.Options{}, nil)
	doc := documentedCodes(t)
	for _, oerr := range oauthserver.ErrorCodes() {
		f.srv.FailAuthorize(oerr, 1)
		got := f.mustInvoke(sdk.GetAuthorizationURL, "", map[string]any{"client_id": testClientID, "redirect_uri": testRedirect, "state": "s"})
		redirect := follow(t, got["authorization_url"].(string))
		_, werr := f.invoke(sdk.HandleAuthorizationCallback, "", map[string]any{"client_id": testClientID, "client_secret": testClientSecret, "redirect_uri_with_code": redirect, "code_verifier": "v"})
		want := doc.authorization[oerr]
		if want == "" {
			want = string(UnknownOAuthErrorCode)
		}
		if werr == nil || werr.Code != want || !strings.Contains(werr.Message, oerr) {
			t.Errorf("%s: got %+v, want %s", oerr, werr, want)
		}
	}
	if n := f.srv.TokenRequests(oauthserver.GrantAuthorizationCode); n != 0 {
		t.Fatalf("%d exchanges after provider errors", n)
	}
}

func TestTemplateCheckedBeforeAnyRequest(t *testing.T) {
	t.Parallel()
	f := newFixture(t, oauthserver.Options{}, func(o *wire.OAuthSettings) {
		o.TokenURL = "https://{sub}.example.com/oauth/token"
		o.AuthorizationURL = "https://{sub}.example.com/oauth/authorize"
	})
	for _, sub := range []any{"evil.com/x", "a@b", "evil.com.", 1.5, map[string]any{"x": 1}} {
		call := &wire.Call{Request: json.RawMessage(`{"client_id":"c","client_secret":"s","refresh_token":"r"}`)}
		call.Settings, _ = json.Marshal(map[string]any{"sub": sub})
		res, _ := f.m.Invoke(context.Background(), "acme", f.desc, sdk.RefreshAccessToken, call, "")
		if res.Err == nil || res.Err.Code != string(sdk.BadRequest) || !strings.Contains(res.Err.Message, "sub") {
			t.Errorf("sub=%v: %+v", sub, res.Err)
		}
	}
	call := &wire.Call{Request: json.RawMessage(`{"client_id":"c","client_secret":"s","refresh_token":"r"}`), Settings: json.RawMessage(`{}`)}
	res, _ := f.m.Invoke(context.Background(), "acme", f.desc, sdk.RefreshAccessToken, call, "")
	if res.Err == nil || !strings.Contains(res.Err.Message, "settings.sub: required") {
		t.Fatalf("missing setting: %+v", res.Err)
	}
}

func TestRequestValidation(t *testing.T) {
	t.Parallel()
	f := newFixture(t, oauthserver.Options{}, nil)
	cases := []struct {
		name, capability, cred, body, want string
	}{
		{"unknown field", sdk.GetAuthorizationURL, "", `{"client_id":"c","bogus":1}`, "request.bogus: is not a field"},
		{"wrong type", sdk.GetAuthorizationURL, "", `{"client_id":5}`, "request.client_id: must be a string"},
		{"missing client_id", sdk.GetAuthorizationURL, "", `{"redirect_uri":"http://x/","state":"s"}`, "request.client_id: is required"},
		{"missing state", sdk.GetAuthorizationURL, "", `{"client_id":"c","redirect_uri":"http://x/"}`, "request.state: is required"},
		{"stored needs secret", sdk.GetAuthorizationURL, "cred", `{"client_id":"c"}`, "request.client_secret: is required with credential_id"},
		{"stored refuses state", sdk.GetAuthorizationURL, "cred", `{"client_id":"c","client_secret":"s","state":"x"}`, "request.state: must be empty"},
		{"stored refuses foreign redirect", sdk.GetAuthorizationURL, "cred", `{"client_id":"c","client_secret":"s","redirect_uri":"https://evil/cb"}`, "request.redirect_uri: must be the host's callback"},
		{"unknown capability scopes", sdk.GetAuthorizationURL, "", `{"client_id":"c","redirect_uri":"http://x/","state":"s","capabilities":["nope"]}`, "request.capabilities[0]"},
		{"bad credential id", sdk.GetAuthorizationURL, "bad id!", `{"client_id":"c"}`, "credential_id:"},
		{"no code", sdk.HandleAuthorizationCallback, "", `{"client_id":"c","client_secret":"s","redirect_uri_with_code":"http://x/cb?state=s","code_verifier":"v"}`, "has no code"},
		{"not a URL", sdk.HandleAuthorizationCallback, "", `{"client_id":"c","client_secret":"s","redirect_uri_with_code":"nope"}`, "not an absolute URL"},
		{"state mismatch", sdk.HandleAuthorizationCallback, "", `{"client_id":"c","client_secret":"s","redirect_uri_with_code":"http://x/cb?code=1&state=a","state":"b","code_verifier":"v"}`, "request.state: does not match"},
		{"refresh needs token", sdk.RefreshAccessToken, "", `{"client_id":"c","client_secret":"s"}`, "request.refresh_token: is required"},
		{"trailing data", sdk.RefreshAccessToken, "", `{"client_id":"c"} {}`, "unexpected data"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			res, _ := f.m.Invoke(context.Background(), "acme", f.desc, c.capability, &wire.Call{Request: json.RawMessage(c.body), Settings: f.settings()}, c.cred)
			if res.Err == nil || res.Err.Code != string(sdk.BadRequest) || !strings.Contains(res.Err.Message, c.want) {
				t.Fatalf("got %+v; want bad_request with %q", res.Err, c.want)
			}
		})
	}
	if n := f.srv.TokenRequests(oauthserver.GrantAuthorizationCode) + f.srv.TokenRequests(oauthserver.GrantRefreshToken); n != 0 {
		t.Fatalf("%d token requests for invalid input", n)
	}
}

func TestBuiltinCapabilities(t *testing.T) {
	t.Parallel()
	m := &Manager{}
	names := func(d *wire.Description) string {
		var out []string
		for _, c := range m.Capabilities(d) {
			if len(c.RequestSchema) == 0 || len(c.ResponseSchema) == 0 {
				t.Fatalf("%s has no schema", c.Name)
			}
			out = append(out, c.Name)
		}
		return strings.Join(out, ",")
	}
	code := &wire.Description{OAuth: &wire.OAuthSettings{Flow: wire.FlowCode}}
	if got := names(code); got != "get_authorization_url,handle_authorization_callback,refresh_access_token" {
		t.Fatalf("code flow: %s", got)
	}
	cc := &wire.Description{OAuth: &wire.OAuthSettings{Flow: wire.FlowClientCredentials, DisabledCapabilities: []string{"refresh_access_token"}}}
	if got := names(cc); got != "handle_client_credentials_request" {
		t.Fatalf("client credentials: %s", got)
	}
	own := &wire.Description{OAuth: &wire.OAuthSettings{Flow: wire.FlowCode}, Capabilities: []wire.Capability{{Name: "refresh_access_token"}}}
	if got := names(own); got != "get_authorization_url,handle_authorization_callback" {
		t.Fatalf("overridden: %s", got)
	}
	if got := names(&wire.Description{}); got != "" {
		t.Fatalf("no oauth: %s", got)
	}
	if _, handled := m.Invoke(context.Background(), "a", own, "refresh_access_token", &wire.Call{}, ""); handled {
		t.Fatal("handled a capability the plugin implements")
	}
	var schema map[string]any
	if err := json.Unmarshal(builtinCaps[sdk.HandleAuthorizationCallback].RequestSchema, &schema); err != nil {
		t.Fatal(err)
	}
	props := schema["properties"].(map[string]any)
	if props["client_secret"].(map[string]any)["x-secret"] != true {
		t.Fatalf("client_secret is not marked x-secret: %v", props["client_secret"])
	}
}

// login runs a stored code flow to the end through the callback handler.
func (f *fixture) login(credentialID string) *store.Credential {
	f.t.Helper()
	got := f.mustInvoke(sdk.GetAuthorizationURL, credentialID, map[string]any{"client_id": testClientID, "client_secret": testClientSecret, "capabilities": []string{"whoami"}})
	if _, ok := got["code_verifier"]; ok {
		f.t.Fatal("stored flow returned the code verifier")
	}
	redirect := follow(f.t, got["authorization_url"].(string))
	if !strings.HasPrefix(redirect, f.m.RedirectURI()+"?") {
		f.t.Fatalf("redirected to %s", redirect)
	}
	rec := f.callback(redirect)
	if rec.Code != 200 {
		f.t.Fatalf("callback: %d %s", rec.Code, rec.Body)
	}
	c, err := f.st.Credential(context.Background(), "acme", credentialID)
	if err != nil {
		f.t.Fatal(err)
	}
	return c
}

func (f *fixture) callback(redirect string) *httptest.ResponseRecorder {
	u, _ := url.Parse(redirect)
	rec := httptest.NewRecorder()
	f.m.CallbackHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, CallbackPath+"?"+u.RawQuery, nil))
	return rec
}

func TestStoredCodeFlowAndAuth(t *testing.T) {
	t.Parallel()
	f := newFixture(t, oauthserver.Options{}, nil)
	wait := f.m.AwaitLogin("acme", "prod")
	c := f.login("prod")
	res, err := wait(context.Background())
	if err != nil || res.Err != nil || res.Credential.ID != "prod" || res.Credential.Secrets != (store.Secrets{}) {
		t.Fatalf("await: %+v %v", res, err)
	}
	if c.Flow != wire.FlowCode || c.ClientID != testClientID || c.Secrets.RefreshToken == "" || c.Secrets.ClientSecret != testClientSecret ||
		strings.Join(c.Scopes, " ") != "profile:read" || c.URLParams["port"] == "" {
		t.Fatalf("stored %+v", c)
	}
	auth, werr := f.m.Auth(context.Background(), "acme", f.desc, "prod")
	if werr != nil {
		t.Fatal(werr)
	}
	var a struct {
		OAuth struct {
			AccessToken string `json:"access_token"`
			TokenType   string `json:"token_type"`
		} `json:"oauth"`
	}
	if err := json.Unmarshal(auth, &a); err != nil || a.OAuth.AccessToken != c.Secrets.AccessToken || a.OAuth.TokenType != "bearer" {
		t.Fatalf("auth %s", auth)
	}
	if strings.Contains(string(auth), c.Secrets.RefreshToken) {
		t.Fatal("the plugin would receive the refresh token")
	}
	// Client credentials kind when the plugin takes only that.
	ccDesc := *f.desc
	ccDesc.AuthModels = []wire.AuthModel{{Kind: "oauth_client_credentials"}}
	auth, werr = f.m.Auth(context.Background(), "acme", &ccDesc, "prod")
	if werr != nil || !strings.Contains(string(auth), `"oauth_client_credentials"`) || !strings.Contains(string(auth), testClientSecret) {
		t.Fatalf("cc auth %s %v", auth, werr)
	}
	noOAuth := *f.desc
	noOAuth.AuthModels = []wire.AuthModel{{Kind: "basic"}}
	_, werr = f.m.Auth(context.Background(), "acme", &noOAuth, "prod")
	wantCode(t, werr, sdk.BadRequest, "accepts no OAuth credentials")
	_, werr = f.m.Auth(context.Background(), "acme", f.desc, "nope")
	wantCode(t, werr, sdk.NotFound, `no credential "nope"`)

	// Nothing secret reached the database files or the logs.
	f.st.Close()
	for _, secret := range []string{testClientSecret, c.Secrets.AccessToken, c.Secrets.RefreshToken} {
		scanFiles(t, f.dir, secret)
		if strings.Contains(f.logs.String(), secret) {
			t.Fatalf("a log line contains a secret:\n%s", f.logs.String())
		}
	}
	if !strings.Contains(f.logs.String(), "oauth credential stored") {
		t.Fatalf("logs: %s", f.logs.String())
	}
}

func scanFiles(t *testing.T, dir, needle string) {
	t.Helper()
	err := filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err != nil || info.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if bytes.Contains(b, []byte(needle)) {
			t.Errorf("%s contains a secret", p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestCallbackStateRejections(t *testing.T) {
	t.Parallel()
	f := newFixture(t, oauthserver.Options{}, nil)
	start := func(cred string) string {
		got := f.mustInvoke(sdk.GetAuthorizationURL, cred, map[string]any{"client_id": testClientID, "client_secret": testClientSecret})
		return follow(t, got["authorization_url"].(string))
	}
	check := func(name string, rec *httptest.ResponseRecorder, code string, part string) {
		t.Helper()
		var env struct {
			IsError bool `json:"is_error"`
			Error   struct {
				ErrorCode string `json:"error_code"`
				Message   string `json:"message"`
				Status    int    `json:"status_code"`
			} `json:"error"`
		}
		if err := json.Unmarshal(rec.Body.Bytes(), &env); err != nil || !env.IsError || env.Error.ErrorCode != code || !strings.Contains(env.Error.Message, part) || env.Error.Status != rec.Code {
			t.Fatalf("%s: %d %s", name, rec.Code, rec.Body)
		}
	}
	redirect := start("one")
	u, _ := url.Parse(redirect)
	q := u.Query()
	wrong := url.Values{"code": {q.Get("code")}, "state": {"not-the-state"}}
	check("wrong state", f.callback(CallbackPath+"?"+wrong.Encode()), "host.bad_request", "unknown or already used")
	check("no state", f.callback(CallbackPath+"?code=x"), "host.bad_request", "state: missing")
	if rec := f.callback(redirect); rec.Code != 200 {
		t.Fatalf("first use: %d %s", rec.Code, rec.Body)
	}
	check("reused state", f.callback(redirect), "host.bad_request", "unknown or already used")

	// Expired: the clock moves past the 10 minutes.
	redirect = start("two")
	f.clock.advance(11 * time.Minute)
	check("expired state", f.callback(redirect), "host.bad_request", "expired")
	// Provider refusal.
	f.srv.FailAuthorize("access_denied", 1)
	redirect = start("three")
	check("access denied", f.callback(redirect), "acme.permission_denied", "access_denied")
	if rec := f.callback(redirect); !strings.Contains(rec.Body.String(), "unknown or already used") {
		t.Fatalf("state reusable after an error: %s", rec.Body)
	}
	// A state presented through the capability for another credential.
	redirect = start("four")
	_, werr := f.invoke(sdk.HandleAuthorizationCallback, "five", map[string]any{"redirect_uri_with_code": redirect})
	wantCode(t, werr, sdk.BadRequest, "another connector or credential_id")

	rec := httptest.NewRecorder()
	f.m.CallbackHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodPost, CallbackPath, nil))
	if rec.Code != 501 {
		t.Fatalf("POST: %d", rec.Code)
	}
	list, _ := f.st.Credentials(context.Background(), "")
	if len(list) != 1 || list[0].ID != "one" {
		t.Fatalf("stored %v; want only the completed flow", list)
	}
}

func TestSingleFlightRefresh(t *testing.T) {
	t.Parallel()
	f := newFixture(t, oauthserver.Options{}, nil)
	old := f.login("prod")
	f.clock.advance(2 * time.Hour) // the stored token is now expired
	const n = 500
	var wg sync.WaitGroup
	tokens := make([]string, n)
	errs := make([]*wire.Error, n)
	startLine := make(chan struct{})
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-startLine
			auth, werr := f.m.Auth(context.Background(), "acme", f.desc, "prod")
			errs[i] = werr
			tokens[i] = rejectedToken(auth)
		}()
	}
	close(startLine)
	wg.Wait()
	for i := range errs {
		if errs[i] != nil {
			t.Fatalf("call %d: %v", i, errs[i])
		}
		if tokens[i] == old.Secrets.AccessToken || tokens[i] != tokens[0] {
			t.Fatalf("call %d got token %q", i, tokens[i])
		}
	}
	if got := f.srv.TokenRequests(oauthserver.GrantRefreshToken); got != 1 {
		t.Fatalf("%d refresh requests, want 1", got)
	}
	now, _ := f.st.Credential(context.Background(), "acme", "prod")
	if now.Secrets.RefreshToken == old.Secrets.RefreshToken {
		t.Fatal("rotated refresh token not stored")
	}

	// The plugin rejects the token: one refresh for all who report it.
	var wg2 sync.WaitGroup
	rejected, _ := json.Marshal(map[string]any{"oauth": map[string]any{"access_token": tokens[0]}})
	for i := 0; i < 50; i++ {
		wg2.Add(1)
		go func() {
			defer wg2.Done()
			auth, werr := f.m.Refresh(context.Background(), "acme", f.desc, "prod", rejected)
			if werr != nil || rejectedToken(auth) == tokens[0] {
				t.Errorf("refresh: %s %v", auth, werr)
			}
		}()
	}
	wg2.Wait()
	if got := f.srv.TokenRequests(oauthserver.GrantRefreshToken); got != 2 {
		t.Fatalf("%d refresh requests, want 2", got)
	}
}

func TestInvalidGrantRevokes(t *testing.T) {
	t.Parallel()
	f := newFixture(t, oauthserver.Options{}, nil)
	c := f.login("prod")
	if err := f.srv.RevokeRefreshToken(c.Secrets.RefreshToken); err != nil {
		t.Fatal(err)
	}
	f.clock.advance(2 * time.Hour)
	_, werr := f.m.Auth(context.Background(), "acme", f.desc, "prod")
	wantCode(t, werr, sdk.CredsRevoked, "invalid_grant")
	stored, err := f.st.Credential(context.Background(), "acme", "prod")
	if err != nil || stored.Status != store.StatusRevoked {
		t.Fatalf("stored %+v %v", stored, err)
	}
	// Later calls fail at once, without asking the server again.
	before := f.srv.TokenRequests(oauthserver.GrantRefreshToken)
	_, werr = f.m.Auth(context.Background(), "acme", f.desc, "prod")
	wantCode(t, werr, sdk.CredsRevoked, "revoked")
	if f.srv.TokenRequests(oauthserver.GrantRefreshToken) != before {
		t.Fatal("a revoked credential was refreshed")
	}
	// A new login replaces it.
	f.login("prod")
	if _, werr := f.m.Auth(context.Background(), "acme", f.desc, "prod"); werr != nil {
		t.Fatal(werr)
	}
	// Operator revocation erases the secrets.
	if err := f.m.Revoke(context.Background(), "acme", "prod"); err != nil {
		t.Fatal(err)
	}
	stored, _ = f.st.Credential(context.Background(), "acme", "prod")
	if stored.Status != store.StatusRevoked || stored.Secrets != (store.Secrets{}) {
		t.Fatalf("after revoke: %+v", stored)
	}
	if err := f.m.Revoke(context.Background(), "acme", "nope"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("revoke missing: %v", err)
	}
}

func TestNoRefreshTokenExpired(t *testing.T) {
	t.Parallel()
	f := newFixture(t, oauthserver.Options{}, nil)
	c := &store.Credential{AppID: "acme", ID: "x", Flow: wire.FlowCode, ClientID: testClientID, TokenType: "bearer",
		Expiry: time.Now().Add(-time.Minute), Secrets: store.Secrets{AccessToken: "a", ClientSecret: testClientSecret}}
	if err := f.st.PutCredential(context.Background(), c); err != nil {
		t.Fatal(err)
	}
	_, werr := f.m.Auth(context.Background(), "acme", f.desc, "x")
	wantCode(t, werr, sdk.AuthenticationExpired, "no refresh token")
}

func TestStoredClientCredentials(t *testing.T) {
	t.Parallel()
	f := newFixture(t, oauthserver.Options{}, func(o *wire.OAuthSettings) { o.Flow = wire.FlowClientCredentials })
	tok := f.mustInvoke(sdk.HandleClientCredentialsRequest, "m2m", map[string]any{"client_id": testClientID, "client_secret": testClientSecret})
	if _, ok := tok["refresh_token"]; ok {
		t.Fatal("stored flow returned a refresh token")
	}
	f.clock.advance(2 * time.Hour)
	auth, werr := f.m.Auth(context.Background(), "acme", f.desc, "m2m")
	if werr != nil || rejectedToken(auth) == tok["access_token"] {
		t.Fatalf("auth %s %v", auth, werr)
	}
	if n := f.srv.TokenRequests(oauthserver.GrantClientCredentials); n != 2 {
		t.Fatalf("%d client credentials requests, want 2", n)
	}
	c, _ := f.st.Credential(context.Background(), "acme", "m2m")
	if strings.Join(c.Scopes, " ") != "things:read things:write profile:read" {
		t.Fatalf("scopes %v", c.Scopes)
	}
	// refresh_access_token with the credential_id forces a new token.
	out := f.mustInvoke(sdk.RefreshAccessToken, "m2m", map[string]any{})
	if out["access_token"] == rejectedToken(auth) {
		t.Fatal("forced refresh returned the same token")
	}
}

func TestTokenEndpointRedirectNotFollowed(t *testing.T) {
	t.Parallel()
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t.Error("the redirect was followed")
	}))
	defer target.Close()
	redirector := httptest.NewServer(http.RedirectHandler(target.URL+"/token", http.StatusTemporaryRedirect))
	defer redirector.Close()
	f := newFixture(t, oauthserver.Options{}, func(o *wire.OAuthSettings) {
		o.TokenURL = redirector.URL + "/token"
	})
	_, werr := f.invoke(sdk.RefreshAccessToken, "", map[string]any{"client_id": "c", "client_secret": "s", "refresh_token": "r"})
	if werr == nil || werr.Code != string(sdk.APIError) {
		t.Fatalf("got %+v", werr)
	}
}

func TestTransportErrors(t *testing.T) {
	t.Parallel()
	f := newFixture(t, oauthserver.Options{}, func(o *wire.OAuthSettings) {
		o.TokenURL = "http://127.0.0.1:1/token"
	})
	_, werr := f.invoke(sdk.RefreshAccessToken, "", map[string]any{"client_id": "c", "client_secret": testClientSecret, "refresh_token": "CANARY-refresh"})
	wantCode(t, werr, sdk.ConnectionRejected, "refused")
	for _, s := range []string{testClientSecret, "CANARY-refresh"} {
		if strings.Contains(werr.Message, s) {
			t.Fatal("error message shows a secret")
		}
	}
	garbage := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"token_type":"bearer"}`))
	}))
	defer garbage.Close()
	f2 := newFixture(t, oauthserver.Options{}, func(o *wire.OAuthSettings) { o.TokenURL = garbage.URL + "/token" })
	_, werr = f2.invoke(sdk.RefreshAccessToken, "", map[string]any{"client_id": "c", "client_secret": "s", "refresh_token": "r"})
	wantCode(t, werr, sdk.InvalidResponse, "access_token")
}
