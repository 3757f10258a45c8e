package oauthserver

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"
)

func start(t *testing.T, opts Options) *Server {
	t.Helper()
	s, err := Start(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	if err := s.AddClient(Client{ID: "app", Secret: "s3cret/+?", RedirectBase: "http://127.0.0.1:1/cb"}); err != nil {
		t.Fatal(err)
	}
	return s
}

var noRedirect = &http.Client{
	Timeout:       10 * time.Second,
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
}

// authorize follows an authorization URL and returns the redirect's query.
func authorize(t *testing.T, authURL string) url.Values {
	t.Helper()
	resp, err := noRedirect.Get(authURL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("authorize: status %d", resp.StatusCode)
	}
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(loc.String(), "http://127.0.0.1:1/cb") {
		t.Fatalf("redirected to %s", loc)
	}
	return loc.Query()
}

func config(s *Server, style oauth2.AuthStyle) *oauth2.Config {
	return &oauth2.Config{
		ClientID: "app", ClientSecret: "s3cret/+?", RedirectURL: "http://127.0.0.1:1/cb",
		Endpoint: oauth2.Endpoint{AuthURL: s.URL() + AuthorizePath, TokenURL: s.URL() + TokenPath, AuthStyle: style},
		Scopes:   []string{"read", "write"},
	}
}

func me(t *testing.T, s *Server, token string) (int, map[string]string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, s.URL()+ResourcePath, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := noRedirect.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body map[string]string
	_ = json.NewDecoder(resp.Body).Decode(&body)
	return resp.StatusCode, body
}

func TestCodeFlowPKCEAndRotation(t *testing.T) {
	t.Parallel()
	s := start(t, Options{RequirePKCE: true})
	ctx := context.Background()
	for _, style := range []oauth2.AuthStyle{oauth2.AuthStyleInHeader, oauth2.AuthStyleInParams} {
		conf := config(s, style)
		verifier := oauth2.GenerateVerifier()
		q := authorize(t, conf.AuthCodeURL("st-1", oauth2.S256ChallengeOption(verifier)))
		if q.Get("state") != "st-1" || q.Get("code") == "" {
			t.Fatalf("redirect query %v", q)
		}
		// Wrong verifier: refused, and the code is spent.
		_, err := conf.Exchange(ctx, q.Get("code"), oauth2.VerifierOption(oauth2.GenerateVerifier()))
		var re *oauth2.RetrieveError
		if !errors.As(err, &re) || re.ErrorCode != "invalid_grant" {
			t.Fatalf("wrong verifier: %v", err)
		}
		// No verifier at all: refused too (PKCE is required here).
		q = authorize(t, conf.AuthCodeURL("st-2", oauth2.S256ChallengeOption(verifier)))
		if _, err := conf.Exchange(ctx, q.Get("code")); !errors.As(err, &re) || re.ErrorCode != "invalid_request" {
			t.Fatalf("missing verifier: %v", err)
		}
		q = authorize(t, conf.AuthCodeURL("st-3", oauth2.S256ChallengeOption(verifier)))
		tok, err := conf.Exchange(ctx, q.Get("code"), oauth2.VerifierOption(verifier))
		if err != nil {
			t.Fatal(err)
		}
		if tok.RefreshToken == "" || tok.Expiry.IsZero() {
			t.Fatalf("token %+v", tok)
		}
		if st, body := me(t, s, tok.AccessToken); st != 200 || body["user_id"] != "user-1" || body["client_id"] != "app" {
			t.Fatalf("me: %d %v", st, body)
		}
		// Refresh rotates: the old refresh and access tokens stop working.
		tok2, err := conf.TokenSource(ctx, &oauth2.Token{RefreshToken: tok.RefreshToken}).Token()
		if err != nil {
			t.Fatal(err)
		}
		if tok2.RefreshToken == tok.RefreshToken || tok2.AccessToken == tok.AccessToken {
			t.Fatal("refresh did not rotate")
		}
		if st, _ := me(t, s, tok.AccessToken); st != 401 {
			t.Fatalf("old access token: %d", st)
		}
		if st, _ := me(t, s, tok2.AccessToken); st != 200 {
			t.Fatalf("new access token: %d", st)
		}
		_, err = conf.TokenSource(ctx, &oauth2.Token{RefreshToken: tok.RefreshToken}).Token()
		if !errors.As(err, &re) || re.ErrorCode != "invalid_grant" {
			t.Fatalf("old refresh token: %v", err)
		}
	}
	if n := s.TokenRequests(GrantRefreshToken); n != 4 {
		t.Fatalf("refresh requests %d, want 4", n)
	}
	if n := s.TokenRequests(GrantAuthorizationCode); n != 6 {
		t.Fatalf("code requests %d, want 6", n)
	}
	var basic, post int
	for _, r := range s.LastTokenRequests() {
		switch r.ClientAuth {
		case "basic":
			basic++
		case "post":
			post++
		}
	}
	if basic != 5 || post != 5 {
		t.Fatalf("basic %d post %d", basic, post)
	}
}

func TestPKCEOptionalButChecked(t *testing.T) {
	t.Parallel()
	s := start(t, Options{})
	conf := config(s, oauth2.AuthStyleInParams)
	verifier := oauth2.GenerateVerifier()
	q := authorize(t, conf.AuthCodeURL("st", oauth2.S256ChallengeOption(verifier)))
	var re *oauth2.RetrieveError
	if _, err := conf.Exchange(context.Background(), q.Get("code")); !errors.As(err, &re) || re.ErrorCode != "invalid_grant" {
		t.Fatalf("missing verifier: %v", err)
	}
	// Without PKCE the plain code flow works.
	q = authorize(t, conf.AuthCodeURL("st"))
	if _, err := conf.Exchange(context.Background(), q.Get("code")); err != nil {
		t.Fatal(err)
	}
}

func TestPKCERequired(t *testing.T) {
	t.Parallel()
	s := start(t, Options{RequirePKCE: true})
	resp, err := noRedirect.Get(config(s, oauth2.AuthStyleInParams).AuthCodeURL("x"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("status %d", resp.StatusCode)
	}
}

func TestClientCredentialsAndWrongSecret(t *testing.T) {
	t.Parallel()
	s := start(t, Options{AccessTokenLifetime: 90 * time.Second})
	ctx := context.Background()
	for _, style := range []oauth2.AuthStyle{oauth2.AuthStyleInHeader, oauth2.AuthStyleInParams} {
		cc := &clientcredentials.Config{ClientID: "app", ClientSecret: "s3cret/+?", TokenURL: s.URL() + TokenPath, Scopes: []string{"a"}, AuthStyle: style}
		tok, err := cc.Token(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if d := time.Until(tok.Expiry); d < 80*time.Second || d > 100*time.Second {
			t.Fatalf("lifetime %v", d)
		}
		if st, body := me(t, s, tok.AccessToken); st != 200 || body["scope"] != "a" {
			t.Fatalf("me %d %v", st, body)
		}
		cc.ClientSecret = "wrong"
		var re *oauth2.RetrieveError
		if _, err := cc.Token(ctx); !errors.As(err, &re) || re.ErrorCode != "invalid_client" {
			t.Fatalf("wrong secret: %v", err)
		}
	}
	if n := s.TokenRequests(GrantClientCredentials); n != 4 {
		t.Fatalf("count %d", n)
	}
}

func TestJSONQueryAndGETTokenRequests(t *testing.T) {
	t.Parallel()
	s := start(t, Options{})
	cases := []struct {
		method, contentType, body, query string
	}{
		{http.MethodPost, "application/json", `{"grant_type":"client_credentials","client_id":"app","client_secret":"s3cret/+?"}`, ""},
		{http.MethodPost, "", "", "grant_type=client_credentials&client_id=app&client_secret=s3cret%2F%2B%3F"},
		{http.MethodGet, "", "", "grant_type=client_credentials&client_id=app&client_secret=s3cret%2F%2B%3F"},
	}
	for _, c := range cases {
		req, _ := http.NewRequest(c.method, s.URL()+TokenPath+"?"+c.query, strings.NewReader(c.body))
		if c.contentType != "" {
			req.Header.Set("Content-Type", c.contentType)
		}
		resp, err := noRedirect.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var body map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&body)
		resp.Body.Close()
		if resp.StatusCode != 200 || body["access_token"] == nil {
			t.Fatalf("%s %s: %d %v", c.method, c.contentType, resp.StatusCode, body)
		}
	}
	reqs := s.LastTokenRequests()
	if len(reqs) != 3 || reqs[0].ContentType != "application/json" || reqs[2].Method != http.MethodGet {
		t.Fatalf("recorded %+v", reqs)
	}
}

func TestInjectedErrors(t *testing.T) {
	t.Parallel()
	s := start(t, Options{})
	ctx := context.Background()
	for _, code := range ErrorCodes() {
		s.FailToken(code, 1)
		cc := &clientcredentials.Config{ClientID: "app", ClientSecret: "s3cret/+?", TokenURL: s.URL() + TokenPath, AuthStyle: oauth2.AuthStyleInParams}
		_, err := cc.Token(ctx)
		var re *oauth2.RetrieveError
		if !errors.As(err, &re) || re.ErrorCode != code || re.Response.StatusCode < 400 {
			t.Fatalf("%s: %v", code, err)
		}
		s.FailAuthorize(code, 1)
		q := authorize(t, config(s, oauth2.AuthStyleInParams).AuthCodeURL("st"))
		if q.Get("error") != code || q.Get("state") != "st" {
			t.Fatalf("authorize %s: %v", code, q)
		}
	}
	// Injections are used up: the next requests succeed.
	cc := &clientcredentials.Config{ClientID: "app", ClientSecret: "s3cret/+?", TokenURL: s.URL() + TokenPath}
	if _, err := cc.Token(ctx); err != nil {
		t.Fatal(err)
	}
	if len(ErrorCodes()) < 10 {
		t.Fatalf("error codes: %v", ErrorCodes())
	}
}

func TestUnregisteredRedirectNotFollowed(t *testing.T) {
	t.Parallel()
	s := start(t, Options{})
	conf := config(s, oauth2.AuthStyleInParams)
	conf.RedirectURL = "http://evil.example/cb"
	resp, err := noRedirect.Get(conf.AuthCodeURL("x"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest || resp.Header.Get("Location") != "" {
		t.Fatalf("status %d location %q", resp.StatusCode, resp.Header.Get("Location"))
	}
}

func TestRevokeAccessToken(t *testing.T) {
	t.Parallel()
	s := start(t, Options{})
	cc := &clientcredentials.Config{ClientID: "app", ClientSecret: "s3cret/+?", TokenURL: s.URL() + TokenPath}
	tok, err := cc.Token(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if err := s.RevokeAccessToken(tok.AccessToken); err != nil {
		t.Fatal(err)
	}
	if st, _ := me(t, s, tok.AccessToken); st != 401 {
		t.Fatalf("revoked token: %d", st)
	}
	if s.ResourceCalls() != 1 {
		t.Fatalf("resource calls %d", s.ResourceCalls())
	}
}
