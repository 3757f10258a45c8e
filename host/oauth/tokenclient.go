package oauth

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/connector-host/connector-host/internal/wire"
)

// Token requests go through golang.org/x/oauth2 (code exchange with PKCE,
// refresh, client credentials, both client authentication styles, token
// response parsing). x/oauth2 always POSTs a form; tokenRequestTransport
// re-encodes that request when a connector declares a JSON or query body,
// or the GET method — the only part written here.

// tokens is a token endpoint's answer.
type tokens struct {
	AccessToken  string
	RefreshToken string
	TokenType    string
	Expiry       time.Time
	Scope        string
}

// endpoint is one connector's token endpoint, resolved for a request.
type endpoint struct {
	oauth    *wire.OAuthSettings
	authURL  string // empty for client credentials
	tokenURL string
}

func (e endpoint) authStyle() oauth2.AuthStyle {
	if e.oauth.ClientAuth == wire.ClientSecretBasic {
		return oauth2.AuthStyleInHeader
	}
	return oauth2.AuthStyleInParams
}

// tokenContext returns ctx carrying the HTTP client x/oauth2 must use for
// e: the host's client, re-encoding requests as e declares.
func (m *Manager) tokenContext(ctx context.Context, e endpoint) context.Context {
	c := &http.Client{
		Transport: &tokenRequestTransport{
			method: strings.ToUpper(e.oauth.TokenRequestMethod),
			body:   e.oauth.TokenRequestBody,
			base:   m.transport,
		},
		Timeout: m.opts.TokenTimeout,
		// A token endpoint that redirects is refused rather than followed:
		// the redirect target was not checked against the template.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return context.WithValue(ctx, oauth2.HTTPClient, c)
}

func (m *Manager) config(e endpoint, clientID, clientSecret, redirectURI string, scopes []string) *oauth2.Config {
	return &oauth2.Config{
		ClientID:     clientID,
		ClientSecret: clientSecret,
		Endpoint:     oauth2.Endpoint{AuthURL: e.authURL, TokenURL: e.tokenURL, AuthStyle: e.authStyle()},
		RedirectURL:  redirectURI,
		Scopes:       scopes,
	}
}

// toTokens converts x/oauth2's token, computing the expiry on the host's
// clock.
func (m *Manager) toTokens(t *oauth2.Token) *tokens {
	out := &tokens{AccessToken: t.AccessToken, RefreshToken: t.RefreshToken, TokenType: t.TokenType, Expiry: t.Expiry}
	switch {
	case t.ExpiresIn > 0:
		out.Expiry = m.now().Add(time.Duration(t.ExpiresIn) * time.Second)
	case !t.Expiry.IsZero():
		// x/oauth2 computed it on the wall clock (client credentials).
		out.Expiry = m.now().Add(time.Until(t.Expiry))
	}
	if s, ok := t.Extra("scope").(string); ok {
		out.Scope = s
	}
	return out
}

// exchange trades an authorization code for tokens.
func (m *Manager) exchange(ctx context.Context, e endpoint, clientID, clientSecret, redirectURI, code, verifier string) (*tokens, *wire.Error) {
	var opts []oauth2.AuthCodeOption
	if verifier != "" {
		opts = append(opts, oauth2.VerifierOption(verifier))
	}
	t, err := m.config(e, clientID, clientSecret, redirectURI, nil).Exchange(m.tokenContext(ctx, e), code, opts...)
	if err != nil {
		return nil, classifyTokenError(grantExchange, "oauth.exchange", err)
	}
	return m.toTokens(t), nil
}

// refresh uses a refresh token.
func (m *Manager) refresh(ctx context.Context, e endpoint, clientID, clientSecret, refreshToken string) (*tokens, *wire.Error) {
	src := m.config(e, clientID, clientSecret, "", nil).TokenSource(m.tokenContext(ctx, e), &oauth2.Token{RefreshToken: refreshToken})
	t, err := src.Token()
	if err != nil {
		return nil, classifyTokenError(grantRefresh, "oauth.refresh", err)
	}
	return m.toTokens(t), nil
}

// clientCredentials requests a token with the client credentials grant.
func (m *Manager) clientCredentials(ctx context.Context, e endpoint, clientID, clientSecret string, scopes []string) (*tokens, *wire.Error) {
	cc := &clientcredentials.Config{
		ClientID:     clientID,
		ClientSecret: clientSecret,
		TokenURL:     e.tokenURL,
		Scopes:       scopes,
		AuthStyle:    e.authStyle(),
	}
	t, err := cc.Token(m.tokenContext(ctx, e))
	if err != nil {
		return nil, classifyTokenError(grantClientCredentials, "oauth.client_credentials", err)
	}
	return m.toTokens(t), nil
}

// tokenRequestTransport re-encodes x/oauth2's form POST as declared:
// method GET or body QUERY put the parameters in the URL query; body JSON
// sends them as a JSON object of strings. Headers (Basic client
// authentication) are kept.
type tokenRequestTransport struct {
	method string
	body   string
	base   http.RoundTripper
}

// RoundTrip implements http.RoundTripper.
func (t *tokenRequestTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if (t.method == "" || t.method == http.MethodPost) && (t.body == "" || t.body == wire.BodyForm) {
		return t.base.RoundTrip(req)
	}
	var form url.Values
	if req.Body != nil {
		b, err := io.ReadAll(io.LimitReader(req.Body, 1<<20))
		_ = req.Body.Close() // a RoundTripper must close it; the read error is the one that matters
		if err != nil {
			return nil, fmt.Errorf("reading the token request: %w", err)
		}
		if form, err = url.ParseQuery(string(b)); err != nil {
			return nil, fmt.Errorf("token request: %w", err)
		}
	}
	out := req.Clone(req.Context())
	out.Header.Del("Content-Type")
	if t.method == http.MethodGet || t.body == wire.BodyQuery {
		q := out.URL.Query()
		for k, vs := range form {
			for _, v := range vs {
				q.Add(k, v)
			}
		}
		out.URL.RawQuery = q.Encode()
		out.Body, out.GetBody, out.ContentLength = http.NoBody, nil, 0
		if t.method == http.MethodGet {
			out.Method = http.MethodGet
		}
		return t.base.RoundTrip(out)
	}
	obj := make(map[string]string, len(form))
	for k := range form {
		obj[k] = form.Get(k)
	}
	b, err := json.Marshal(obj)
	if err != nil {
		return nil, err
	}
	out.Body = io.NopCloser(bytes.NewReader(b))
	out.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }
	out.ContentLength = int64(len(b))
	out.Header.Set("Content-Type", "application/json")
	return t.base.RoundTrip(out)
}
