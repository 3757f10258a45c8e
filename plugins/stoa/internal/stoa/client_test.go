package stoa

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/connector-host/connector-host/sdk"
	stoaemu "github.com/connector-host/connector-host/testkit/emulators/stoa"
)

func TestSettingsResolve(t *testing.T) {
	t.Parallel()
	cfg, err := Settings{}.Resolve()
	if err != nil {
		t.Fatal(err)
	}
	want := Config{Environment: "prod", AuthBaseURL: ProdAuthURL, APIBaseURL: ProdAPIURL, DownloadWorkers: 10, Timeout: 60 * time.Second}
	if cfg != want {
		t.Errorf("defaults %+v, want %+v", cfg, want)
	}
	cfg, err = Settings{Environment: "dev", APIBaseURL: "http://127.0.0.1:9/api/", DownloadWorkers: 3, TimeoutS: 0.5}.Resolve()
	want = Config{Environment: "dev", AuthBaseURL: DevAuthURL, APIBaseURL: "http://127.0.0.1:9/api", DownloadWorkers: 3, Timeout: 500 * time.Millisecond}
	if err != nil || cfg != want {
		t.Errorf("dev with overrides: %+v %v, want %+v", cfg, err, want)
	}
	tests := []struct {
		s     Settings
		field string
	}{
		{Settings{Environment: "staging"}, "settings.environment"},
		{Settings{Environment: "PROD"}, "settings.environment"},
		{Settings{AuthBaseURL: "ftp://x"}, "settings.auth_base_url"},
		{Settings{AuthBaseURL: "/relative"}, "settings.auth_base_url"},
		{Settings{APIBaseURL: "https://user:" + stoaemu.DefaultPassword + "@host/api"}, "settings.api_base_url"},
		{Settings{APIBaseURL: "https://host/api?x=1"}, "settings.api_base_url"},
		{Settings{APIBaseURL: "http://[::1"}, "settings.api_base_url"},
		{Settings{DownloadWorkers: -1}, "settings.download_workers"},
		{Settings{DownloadWorkers: 65}, "settings.download_workers"},
		{Settings{TimeoutS: -1}, "settings.timeout_s"},
		{Settings{TimeoutS: math.NaN()}, "settings.timeout_s"},
		{Settings{TimeoutS: 3601}, "settings.timeout_s"},
		{Settings{TimeoutS: 1e-12}, "settings.timeout_s"},
	}
	for _, tc := range tests {
		_, err := tc.s.Resolve()
		wantCode(t, err, sdk.BadRequest, tc.field+":")
	}
}

func TestNewCredentials(t *testing.T) {
	t.Parallel()
	_, err := New(Settings{}, Credentials{Password: "x"}, Options{})
	wantCode(t, err, sdk.BadRequest, "auth.basic.username")
	_, err = New(Settings{}, Credentials{Email: "a@b"}, Options{})
	wantCode(t, err, sdk.BadRequest, "auth.basic.password")
	_, err = New(Settings{Environment: "x"}, restCreds, Options{})
	wantCode(t, err, sdk.BadRequest, "settings.environment")
	if _, err := New(Settings{}, Credentials{AccessToken: "t"}, Options{}); err != nil {
		t.Errorf("bearer credentials: %v", err)
	}
}

func TestOrderValidation(t *testing.T) {
	t.Parallel()
	srv := startEmu(t, stoaemu.Options{})
	c := newClient(t, srv, restCreds, Options{}, nil)
	mod := func(f func(*OrderRequest)) OrderRequest { r := exampleOrder(); f(&r); return r }
	tests := []struct {
		r     OrderRequest
		field string
	}{
		{mod(func(r *OrderRequest) { r.ProductGroupName = "" }), "request.product_group_name: is required"},
		{mod(func(r *OrderRequest) { r.ProductName = "" }), "request.product_name: is required"},
		{mod(func(r *OrderRequest) { r.Workspace = "" }), "request.workspace: is required"},
		{mod(func(r *OrderRequest) { r.Workspace = "other" }), `request.workspace: must be "apps" or "cart", got "other"`},
		{mod(func(r *OrderRequest) { r.OwnerID = "" }), "request.owner_id: is required"},
		{mod(func(r *OrderRequest) { r.Offset = intp(-1) }), "request.offset: must be 0 or more, got -1"},
		{mod(func(r *OrderRequest) { r.Limit = intp(0) }), "request.limit: must be between 1 and 20, got 0"},
		{mod(func(r *OrderRequest) { r.Limit = intp(21) }), "request.limit: must be between 1 and 20, got 21"},
		{mod(func(r *OrderRequest) { r.Limit = intp(-5) }), "request.limit"},
	}
	for _, tc := range tests {
		_, err := c.Order(context.Background(), tc.r)
		wantCode(t, err, sdk.BadRequest, tc.field)
		_, err = c.Fetch(context.Background(), FetchRequest{OrderRequest: tc.r}, func(json.RawMessage) error { return nil })
		wantCode(t, err, sdk.BadRequest, tc.field)
	}
	// Every check ran before any network call.
	if st := srv.Stats(); st.Logins != 0 || st.Orders != 0 {
		t.Errorf("validation reached the network: %+v", st)
	}
}

func TestOrder(t *testing.T) {
	t.Parallel()
	authModes(t, stoaemu.Options{}, func(t *testing.T, srv *stoaemu.Server, creds Credentials) {
		c := newClient(t, srv, creds, Options{}, nil)
		ctx := context.Background()
		all := srv.Keys(0)
		desc := slices.Clone(all)
		slices.Reverse(desc)

		r, _ := exampleOrder().Normalized()
		ids, err := c.Order(ctx, r)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(ids, desc[:20]) {
			t.Errorf("first page %v, want %v", ids, desc[:20])
		}
		q, _ := url.ParseQuery(srv.Stats().LastOrderQuery)
		want := url.Values{"product_group_name": {"exampleGroup"}, "product_name": {"exampleProduct"}, "workspace": {"apps"},
			"owner_id": {"owner123"}, "version": {"1.0"}, "offset": {"0"}, "limit": {"20"}, "ascending": {"False"}}
		if q.Encode() != want.Encode() {
			t.Errorf("order query %v, want %v (the Python client's encoding)", q, want)
		}
		tok := NextPageToken(r, len(ids))
		off, err := OffsetFromPageToken(tok)
		if err != nil || off != 20 {
			t.Fatalf("page token %q → %d, %v", tok, off, err)
		}
		r.Offset = &off
		ids, err = c.Order(ctx, r)
		if err != nil || !slices.Equal(ids, desc[20:]) {
			t.Errorf("second page %v %v, want %v", ids, err, desc[20:])
		}
		if tok := NextPageToken(r, len(ids)); tok != "" {
			t.Errorf("last page has next token %q", tok)
		}

		asc := exampleOrder()
		asc.Ascending, asc.Offset, asc.Limit = true, intp(2), intp(3)
		ids, err = c.Order(ctx, asc)
		if err != nil || !slices.Equal(ids, all[2:5]) {
			t.Errorf("ascending page %v %v, want %v", ids, err, all[2:5])
		}
		if q, _ := url.ParseQuery(srv.Stats().LastOrderQuery); q.Get("ascending") != "True" {
			t.Errorf("ascending sent as %q, want True", q.Get("ascending"))
		}

		none := exampleOrder()
		none.OwnerID = "nobody"
		_, err = c.Order(ctx, none)
		wantCode(t, err, sdk.NotFound, `owner_id="nobody"`)
		beyond := exampleOrder()
		beyond.Offset = intp(500)
		_, err = c.Order(ctx, beyond)
		wantCode(t, err, sdk.NotFound, "offset 500")
	})
}

func TestPageTokens(t *testing.T) {
	t.Parallel()
	for _, bad := range []string{"", "-1", "x", "01", "1e3", " 5", "99999999999999999999"} {
		_, err := OffsetFromPageToken(bad)
		wantCode(t, err, sdk.InvalidPageToken, "page.token")
	}
	r, _ := exampleOrder().Normalized()
	if tok := NextPageToken(r, 19); tok != "" {
		t.Errorf("short page → %q", tok)
	}
	if tok := NextPageToken(OrderRequest{}, 20); tok != "" {
		t.Errorf("unnormalized → %q", tok)
	}
}

func FuzzOffsetFromPageToken(f *testing.F) {
	for _, s := range []string{"0", "20", "-1", "x", "1073741824", "1073741825"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, tok string) {
		n, err := OffsetFromPageToken(tok)
		if err != nil {
			return
		}
		if n < 0 || n > maxOffset {
			t.Fatalf("offset %d out of range", n)
		}
		r := OrderRequest{Offset: intp(n - 20), Limit: intp(20)}
		if n >= 20 && NextPageToken(r, 20) != tok {
			t.Fatalf("token %q does not round-trip", tok)
		}
	})
}

func TestRESTTokenCache(t *testing.T) {
	t.Parallel()
	srv := startEmu(t, stoaemu.Options{})
	cache := NewTokenCache()
	c1 := newClient(t, srv, restCreds, Options{TokenCache: cache}, nil)
	c2 := newClient(t, srv, restCreds, Options{TokenCache: cache}, nil)
	ctx := context.Background()
	for _, c := range []*Client{c1, c2, c1} {
		if _, err := c.Order(ctx, exampleOrder()); err != nil {
			t.Fatal(err)
		}
	}
	if st := srv.Stats(); st.Logins != 1 {
		t.Fatalf("logins %d, want 1 shared by both clients", st.Logins)
	}
	// An expired token is re-obtained once, transparently.
	srv.ExpireTokens()
	if _, err := c2.Order(ctx, exampleOrder()); err != nil {
		t.Fatalf("after token expiry: %v", err)
	}
	if st := srv.Stats(); st.Logins != 2 || st.Unauthorized != 1 {
		t.Errorf("after expiry: logins %d unauthorized %d, want 2 and 1", st.Logins, st.Unauthorized)
	}
	// A 401 that persists: one re-login, then unauthorized — no loop.
	srv.InjectFault("/api/", stoaemu.Fault{Status: http.StatusUnauthorized})
	_, err := c1.Order(ctx, exampleOrder())
	wantCode(t, err, sdk.Unauthorized, "even after a fresh login")
	if st := srv.Stats(); st.Logins != 3 {
		t.Errorf("logins %d, want 3", st.Logins)
	}
	srv.ClearFaults()

	// Concurrent first use logs in once.
	srv2 := startEmu(t, stoaemu.Options{})
	c3 := newClient(t, srv2, restCreds, Options{}, nil)
	ids := srv2.Keys(0)[:8]
	if _, err := c3.Sign(ctx, ids); err != nil {
		t.Fatal(err)
	}
	if st := srv2.Stats(); st.Logins != 1 || st.Signs != 8 {
		t.Errorf("concurrent signs: logins %d signs %d", st.Logins, st.Signs)
	}
}

func TestLoginErrors(t *testing.T) {
	t.Parallel()
	srv := startEmu(t, stoaemu.Options{})
	bad := newClient(t, srv, Credentials{Email: stoaemu.DefaultEmail, Password: "wrong-" + stoaemu.DefaultPassword}, Options{}, nil)
	err := bad.Validate(context.Background())
	se := wantCode(t, err, sdk.Unauthorized, "rejected the email and password", "Unable to log in")
	if strings.Contains(se.Error(), "wrong-") {
		t.Errorf("error leaks the password: %v", se)
	}
	_, err = bad.Order(context.Background(), exampleOrder())
	wantCode(t, err, sdk.Unauthorized)

	good := newClient(t, srv, restCreds, Options{}, nil)
	if err := good.Validate(context.Background()); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	if _, err := good.Order(context.Background(), exampleOrder()); err != nil {
		t.Fatal(err)
	}
	if st := srv.Stats(); st.Logins != 3 {
		t.Errorf("logins %d, want 3 (Validate's login is cached for the order)", st.Logins)
	}

	// A login answer without a token, a 5xx that persists, a dead server.
	srv.InjectFault("/auth/rest-auth/login/", stoaemu.Fault{Status: 200, Body: `{"user":{}}`, Times: 1})
	wantCode(t, good.Validate(context.Background()), sdk.InvalidResponse, "no access_token")
	srv.InjectFault("/auth/rest-auth/login/", stoaemu.Fault{Status: 503})
	wantCode(t, good.Validate(context.Background()), sdk.ServiceError, "HTTP 503")
	srv.ClearFaults()
	dead := startEmu(t, stoaemu.Options{})
	dc := newClient(t, dead, restCreds, Options{}, nil)
	dead.Close()
	wantConnectionFailure(t, dc.Validate(context.Background()), "login")
}

func TestBearerMode(t *testing.T) {
	t.Parallel()
	srv := startEmu(t, stoaemu.Options{})
	tok := oauthToken(t, srv)
	c := newClient(t, srv, Credentials{AccessToken: tok}, Options{}, nil)
	ctx := context.Background()
	if err := c.Validate(ctx); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if _, err := c.Order(ctx, exampleOrder()); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.Sign(ctx, srv.Keys(0)[:5]); err != nil {
		t.Fatal(err)
	}
	if st := srv.Stats(); st.TokenRequests != 1 || st.Logins != 0 {
		t.Errorf("token requests %d logins %d, want 1 and 0", st.TokenRequests, st.Logins)
	}
	srv.ExpireTokens()
	_, err := c.Order(ctx, exampleOrder())
	wantCode(t, err, sdk.Unauthorized, "rejected the access token")
	if st := srv.Stats(); st.Logins != 0 || st.TokenRequests != 1 {
		t.Errorf("bearer mode must not log in or fetch tokens: %+v", st)
	}
	noSecrets(t, err.Error())
	if strings.Contains(err.Error(), tok) {
		t.Errorf("error leaks the token")
	}
}

func TestSign(t *testing.T) {
	t.Parallel()
	authModes(t, stoaemu.Options{}, func(t *testing.T, srv *stoaemu.Server, creds Credentials) {
		c := newClient(t, srv, creds, Options{}, nil)
		ctx := context.Background()
		ids := srv.Keys(0)[:12]
		sigs, err := c.Sign(ctx, ids)
		if err != nil {
			t.Fatal(err)
		}
		if len(sigs) != len(ids) {
			t.Fatalf("%d signatures, want %d", len(sigs), len(ids))
		}
		for _, id := range ids[:3] {
			resp, err := http.Get(sigs[id])
			if err != nil || resp.StatusCode != 200 {
				t.Fatalf("presigned URL of %s: %v %v", id, resp, err)
			}
			resp.Body.Close()
		}

		for _, tc := range []struct {
			ids   []string
			field string
		}{
			{nil, "request.order_ids: must list at least one"},
			{[]string{"a", ""}, "request.order_ids[1]: must not be empty"},
			{[]string{"a", "b", "a"}, `request.order_ids[2]: "a" repeats request.order_ids[0]`},
		} {
			_, err := c.Sign(ctx, tc.ids)
			wantCode(t, err, sdk.BadRequest, tc.field)
		}
		_, err = c.Sign(ctx, []string{ids[0], "unknown.parquet"})
		wantCode(t, err, sdk.NotFound, `"unknown.parquet"`)

		srv.InjectFault("/api/v2/sign/", stoaemu.Fault{Status: 200, Body: `{"url": ""}`, Times: 1})
		_, err = c.Sign(ctx, ids[:1])
		wantCode(t, err, sdk.InvalidResponse, "no url", ids[0])
		srv.InjectFault("/api/v2/sign/", stoaemu.Fault{Status: 200, Body: `{}`, Times: 1})
		_, err = c.Sign(ctx, ids[:1])
		wantCode(t, err, sdk.InvalidResponse, "no url")
		srv.InjectFault("/api/v2/sign/", stoaemu.Fault{Status: 200, Body: `{"url": "not a url"}`, Times: 1})
		_, err = c.Sign(ctx, ids[:1])
		wantCode(t, err, sdk.InvalidResponse, "not an absolute")
		srv.InjectFault("/api/v2/sign/", stoaemu.Fault{Status: 200, Body: `[1,2]`, Times: 1})
		_, err = c.Sign(ctx, ids[:1])
		wantCode(t, err, sdk.InvalidResponse, "not the expected JSON")
		// A 502 then success is retried.
		srv.InjectFault("/api/v2/sign/", stoaemu.Fault{Status: 502, Times: 1})
		if _, err := c.Sign(ctx, ids[:1]); err != nil {
			t.Errorf("sign after one 502: %v", err)
		}
	})
}

func TestRetryAfter(t *testing.T) {
	t.Parallel()
	now := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	for v, want := range map[string]time.Duration{
		"0": 0, "3": 3 * time.Second, " 7 ": 7 * time.Second,
		"Wed, 01 Jan 2025 00:00:10 GMT": 10 * time.Second,
		"Tue, 31 Dec 2024 00:00:00 GMT": 0,
		"999999999999":                  24 * time.Hour,
	} {
		got, ok := parseRetryAfter(v, now)
		if !ok || got != want {
			t.Errorf("parseRetryAfter(%q) = %v %v, want %v", v, got, ok, want)
		}
	}
	for _, v := range []string{"", "-1", "soon", "1.5"} {
		if _, ok := parseRetryAfter(v, now); ok {
			t.Errorf("parseRetryAfter(%q) accepted", v)
		}
	}

	// Against the emulator: Retry-After is honoured, a long one fails fast.
	srv := startEmu(t, stoaemu.Options{})
	c := newClient(t, srv, restCreds, Options{}, nil)
	srv.InjectFault("/api/v2/order/", stoaemu.Fault{Status: 429, RetryAfter: "1", Times: 1})
	begin := time.Now()
	if _, err := c.Order(context.Background(), exampleOrder()); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(begin); d < time.Second {
		t.Errorf("retried after %v, before Retry-After: 1", d)
	}
	srv.InjectFault("/api/v2/order/", stoaemu.Fault{Status: 429, RetryAfter: "3600", Times: 1})
	_, err := c.Order(context.Background(), exampleOrder())
	se := wantCode(t, err, sdk.RateLimit, "Retry-After")
	if se.Retryable {
		t.Error("a Retry-After beyond the limit is reported as retryable now")
	}
}

func FuzzParseRetryAfter(f *testing.F) {
	for _, s := range []string{"0", "120", "Wed, 21 Oct 2015 07:28:00 GMT", "-5", "x", "9223372036854775807"} {
		f.Add(s)
	}
	now := time.Unix(1_700_000_000, 0)
	f.Fuzz(func(t *testing.T, v string) {
		d, ok := parseRetryAfter(v, now)
		if !ok && d != 0 {
			t.Fatalf("rejected value with duration %v", d)
		}
		if d < 0 {
			t.Fatalf("negative delay %v for %q", d, v)
		}
	})
}

func TestTimeout(t *testing.T) {
	t.Parallel()
	srv := startEmu(t, stoaemu.Options{})
	c := newClient(t, srv, restCreds, Options{Retry: RetryPolicy{Attempts: 2, BaseDelay: time.Millisecond, MaxDelay: time.Millisecond}}, func(s *Settings) { s.TimeoutS = 0.2 })
	srv.InjectFault("/api/v2/order/", stoaemu.Fault{Delay: time.Second})
	begin := time.Now()
	_, err := c.Order(context.Background(), exampleOrder())
	se := wantCode(t, err, sdk.RequestTimeout, "timeout_s")
	if !se.Retryable {
		t.Error("timeout not retryable")
	}
	if d := time.Since(begin); d > 900*time.Millisecond {
		t.Errorf("two attempts with timeout 0.2s took %v", d)
	}
	if st := srv.Stats(); st.Orders != 2 {
		t.Errorf("orders %d, want 2 attempts", st.Orders)
	}
	srv.ClearFaults()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err = c.Order(ctx, exampleOrder())
	wantCode(t, err, sdk.RequestTimeout, "cancelled")
}

func TestClientCredentialsMode(t *testing.T) {
	t.Parallel()
	srv := startEmu(t, stoaemu.Options{})
	creds := Credentials{ClientID: stoaemu.DefaultClientID, ClientSecret: stoaemu.DefaultClientSecret}
	cache := NewTokenCache()
	c := newClient(t, srv, creds, Options{TokenCache: cache}, nil)
	c2 := newClient(t, srv, creds, Options{TokenCache: cache}, nil)
	ctx := context.Background()
	for _, cl := range []*Client{c, c2, c} {
		if _, err := cl.Order(ctx, exampleOrder()); err != nil {
			t.Fatal(err)
		}
	}
	var got collector
	if _, err := c2.Fetch(ctx, FetchRequest{OrderIDs: srv.Keys(0)[:3]}, got.emit); err != nil {
		t.Fatal(err)
	}
	if st := srv.Stats(); st.TokenRequests != 1 || st.Logins != 0 {
		t.Errorf("token requests %d logins %d, want one token for every call", st.TokenRequests, st.Logins)
	}
	srv.ExpireTokens()
	if _, err := c.Order(ctx, exampleOrder()); err != nil {
		t.Fatalf("after expiry: %v", err)
	}
	if st := srv.Stats(); st.TokenRequests != 2 {
		t.Errorf("token requests %d, want 2 (one new token after the 401)", st.TokenRequests)
	}
	if err := c.Validate(ctx); err != nil {
		t.Fatal(err)
	}

	_, err := New(Settings{}, Credentials{ClientID: "x"}, Options{})
	wantCode(t, err, sdk.BadRequest, "auth.oauth_client_credentials.client_secret")
	bad := newClient(t, srv, Credentials{ClientID: stoaemu.DefaultClientID, ClientSecret: "wrong"}, Options{}, nil)
	se := wantCode(t, bad.Validate(ctx), sdk.Unauthorized, "rejected the client credentials", "invalid_client")
	if strings.Contains(se.Error(), "wrong") {
		t.Errorf("error leaks the secret: %v", se)
	}
	srv.InjectFault("/auth/oauth/token/", stoaemu.Fault{Status: 200, Body: `{"token_type":"Bearer"}`, Times: 1})
	wantCode(t, c.Validate(ctx), sdk.InvalidResponse, "access_token")
	srv.InjectFault("/auth/oauth/token/", stoaemu.Fault{Status: 503, Times: 1})
	if err := c.Validate(ctx); err != nil {
		t.Errorf("one 503 is retried: %v", err)
	}
	dead := startEmu(t, stoaemu.Options{})
	dc := newClient(t, dead, creds, Options{}, nil)
	dead.Close()
	wantConnectionFailure(t, dc.Validate(ctx), "oauth token")
}

// wantConnectionFailure accepts the codes of a server that is gone (refused,
// or reset when the port was just closed).
func wantConnectionFailure(t *testing.T, err error, part string) {
	t.Helper()
	var se *sdk.Error
	if !errors.As(err, &se) {
		t.Fatalf("error %v, want *sdk.Error", err)
	}
	switch se.Code {
	case sdk.ConnectionRejected, sdk.ConnectionClosed, sdk.ClientCallError:
	default:
		t.Fatalf("code %s (%v), want a connection failure", se.Code, se)
	}
	if !strings.Contains(se.Message, part) || !se.Retryable {
		t.Errorf("message %q (retryable %v), want %q and retryable", se.Message, se.Retryable, part)
	}
}
