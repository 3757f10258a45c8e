package oauth

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"reflect"
	"sort"
	"strings"
	"time"

	"github.com/invopop/jsonschema"
	"golang.org/x/oauth2"

	"github.com/connector-host/connector-host/host/store"
	"github.com/connector-host/connector-host/internal/wire"
	"github.com/connector-host/connector-host/sdk"
)

// The OAuth capabilities' requests and responses have Lumos connector-py's
// shapes. Fields marked "host" are additions: they matter only with a
// credential_id, when the host keeps the tokens.

// GetAuthorizationURLRequest is get_authorization_url's request.
type GetAuthorizationURLRequest struct {
	ClientID string `json:"client_id" jsonschema:"minLength=1"`
	// Scopes are requested as given, plus the declared scopes of
	// Capabilities; with neither, every declared scope.
	Scopes       []string `json:"scopes,omitempty"`
	Capabilities []string `json:"capabilities,omitempty" jsonschema:"description=host: also request the declared scopes of these capabilities"`
	// RedirectURI and State are required without a credential_id; with
	// one, the host uses its callback URL and generates the state.
	RedirectURI string `json:"redirect_uri,omitempty"`
	State       string `json:"state,omitempty"`
	// ClientSecret is required with a credential_id (the host exchanges
	// the code itself).
	ClientSecret sdk.Secret `json:"client_secret,omitempty" jsonschema:"description=host: required with credential_id"`
}

// AuthorizationURL is get_authorization_url's response.
type AuthorizationURL struct {
	AuthorizationURL string `json:"authorization_url"`
	// CodeVerifier is the PKCE verifier to pass to
	// handle_authorization_callback (without a credential_id only).
	CodeVerifier sdk.Secret `json:"code_verifier,omitempty"`
}

// HandleAuthorizationCallbackRequest is handle_authorization_callback's
// request.
type HandleAuthorizationCallbackRequest struct {
	ClientID            string     `json:"client_id,omitempty"`
	ClientSecret        sdk.Secret `json:"client_secret,omitempty"`
	RedirectURIWithCode string     `json:"redirect_uri_with_code" jsonschema:"minLength=1"`
	State               string     `json:"state,omitempty"`
	CodeVerifier        sdk.Secret `json:"code_verifier,omitempty"`
}

// RefreshAccessTokenRequest is refresh_access_token's request. With a
// credential_id every field is optional (the stored credential is
// refreshed).
type RefreshAccessTokenRequest struct {
	ClientID     string     `json:"client_id,omitempty"`
	ClientSecret sdk.Secret `json:"client_secret,omitempty"`
	RefreshToken sdk.Secret `json:"refresh_token,omitempty"`
}

// ClientCredentialsRequest is handle_client_credentials_request's request.
type ClientCredentialsRequest struct {
	ClientID     string     `json:"client_id" jsonschema:"minLength=1"`
	ClientSecret sdk.Secret `json:"client_secret"`
	Scopes       []string   `json:"scopes,omitempty"`
	Capabilities []string   `json:"capabilities,omitempty" jsonschema:"description=host: also request the declared scopes of these capabilities"`
}

// Credentials (the contract's OAuthCredentials) is the tokens answer of
// every OAuth capability but get_authorization_url. With a credential_id the
// refresh token stays in the host and is not returned.
type Credentials struct {
	AccessToken  sdk.Secret `json:"access_token"`
	RefreshToken sdk.Secret `json:"refresh_token,omitempty"`
	// TokenType is always "bearer", as in Lumos.
	TokenType string `json:"token_type" jsonschema:"enum=bearer"`
	// ExpiresAt is RFC 3339 (UTC), when the server gave a lifetime.
	ExpiresAt string `json:"expires_at,omitempty" jsonschema:"format=date-time"`
	State     string `json:"state,omitempty"`
}

type builtinSpec struct {
	description string
	req, resp   reflect.Type
}

var builtinSpecs = map[string]builtinSpec{
	sdk.GetAuthorizationURL: {"Builds the provider's authorization URL (host-provided OAuth; PKCE when declared).",
		reflect.TypeOf(GetAuthorizationURLRequest{}), reflect.TypeOf(AuthorizationURL{})},
	sdk.HandleAuthorizationCallback: {"Exchanges the authorization code of a redirect URI for tokens (host-provided OAuth).",
		reflect.TypeOf(HandleAuthorizationCallbackRequest{}), reflect.TypeOf(Credentials{})},
	sdk.RefreshAccessToken: {"Refreshes an access token (host-provided OAuth).",
		reflect.TypeOf(RefreshAccessTokenRequest{}), reflect.TypeOf(Credentials{})},
	sdk.HandleClientCredentialsRequest: {"Gets an access token with the client credentials grant (host-provided OAuth).",
		reflect.TypeOf(ClientCredentialsRequest{}), reflect.TypeOf(Credentials{})},
}

// builtinCaps are the capabilities with their generated schemas.
var builtinCaps = func() map[string]wire.Capability {
	out := map[string]wire.Capability{}
	for name, s := range builtinSpecs {
		out[name] = wire.Capability{Name: name, Description: s.description, RequestSchema: reflectSchema(s.req), ResponseSchema: reflectSchema(s.resp)}
	}
	return out
}()

func reflectSchema(t reflect.Type) json.RawMessage {
	r := &jsonschema.Reflector{DoNotReference: true, Anonymous: true, ExpandedStruct: true}
	s := r.ReflectFromType(t)
	s.Version = "https://json-schema.org/draft/2020-12/schema"
	b, err := json.Marshal(s)
	if err != nil {
		panic(fmt.Sprintf("schema of %s: %v", t, err)) // static types: a bug
	}
	return b
}

// builtinNames returns the OAuth capabilities the host provides for desc:
// the flow's, less the disabled ones and those the plugin implements.
func builtinNames(desc *wire.Description) []string {
	if desc == nil || desc.OAuth == nil {
		return nil
	}
	disabled := map[string]bool{}
	for _, c := range desc.OAuth.DisabledCapabilities {
		disabled[c] = true
	}
	var out []string
	for _, name := range sdk.OAuthCapabilities(sdk.OAuthFlow(desc.OAuth.Flow)) {
		if _, own := desc.Capability(name); own || disabled[name] {
			continue
		}
		out = append(out, name)
	}
	return out
}

// Capabilities implements router.Builtins.
func (m *Manager) Capabilities(desc *wire.Description) []wire.Capability {
	var out []wire.Capability
	for _, name := range builtinNames(desc) {
		out = append(out, builtinCaps[name])
	}
	return out
}

// Invoke implements router.Builtins.
func (m *Manager) Invoke(ctx context.Context, appID string, desc *wire.Description, name string, call *wire.Call, credentialID string) (*wire.Result, bool) {
	provided := false
	for _, n := range builtinNames(desc) {
		provided = provided || n == name
	}
	if !provided {
		return nil, false
	}
	if credentialID != "" {
		if werr := checkCredentialID(credentialID); werr != nil {
			return &wire.Result{Err: werr}, true
		}
	}
	var (
		resp any
		werr *wire.Error
	)
	switch name {
	case sdk.GetAuthorizationURL:
		resp, werr = m.getAuthorizationURL(ctx, appID, desc.OAuth, call, credentialID)
	case sdk.HandleAuthorizationCallback:
		resp, werr = m.handleAuthorizationCallback(ctx, appID, desc, call, credentialID)
	case sdk.RefreshAccessToken:
		resp, werr = m.refreshAccessToken(ctx, appID, desc, call, credentialID)
	case sdk.HandleClientCredentialsRequest:
		resp, werr = m.handleClientCredentials(ctx, appID, desc.OAuth, call, credentialID)
	}
	if werr != nil {
		return &wire.Result{Err: m.maskError(werr)}, true
	}
	b, err := json.Marshal(resp)
	if err != nil {
		return &wire.Result{Err: oauthError(sdk.InternalError, "", "oauth.Invoke", "encoding the response: %v", err)}, true
	}
	return &wire.Result{Response: b}, true
}

// maskError masks live secrets in an error message (defence in depth).
func (m *Manager) maskError(e *wire.Error) *wire.Error {
	e.Message = m.secrets.String(e.Message)
	return e
}

// decodeRequest strictly decodes a capability request, naming the field
// at fault.
func decodeRequest(raw json.RawMessage, v any) *wire.Error {
	if len(raw) == 0 || string(raw) == "null" {
		raw = json.RawMessage("{}")
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil {
		if _, terr := dec.Token(); !errors.Is(terr, io.EOF) {
			err = errors.New("unexpected data after the object")
		}
	}
	if err == nil {
		return nil
	}
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &typ) && typ.Field != "":
		return oauthError(sdk.BadRequest, "", "oauth.decode", "request.%s: must be %s, not %s", typ.Field, jsonType(typ.Type), typ.Value)
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		name := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
		return oauthError(sdk.BadRequest, "", "oauth.decode", "request.%s: is not a field of this capability's request", name)
	}
	return oauthError(sdk.BadRequest, "", "oauth.decode", "request: %v", err)
}

func jsonType(t reflect.Type) string {
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Slice:
		return "an array"
	case reflect.Struct, reflect.Map:
		return "an object"
	case reflect.Bool:
		return "a boolean"
	}
	return "a number"
}

func required(field, value string) *wire.Error {
	if strings.TrimSpace(value) == "" {
		return oauthError(sdk.BadRequest, "", "oauth.decode", "request.%s: is required", field)
	}
	return nil
}

func firstErr(errs ...*wire.Error) *wire.Error {
	for _, e := range errs {
		if e != nil {
			return e
		}
	}
	return nil
}

// mergeScopes returns the scopes of a request: explicit ones, then the
// declared scopes of caps (all declared scopes when both are empty),
// de-duplicated in order.
func mergeScopes(o *wire.OAuthSettings, explicit, caps []string) ([]string, *wire.Error) {
	var out []string
	seen := map[string]bool{}
	add := func(s string) {
		for _, sc := range strings.Fields(s) {
			if !seen[sc] {
				seen[sc] = true
				out = append(out, sc)
			}
		}
	}
	for _, s := range explicit {
		add(s)
	}
	if len(caps) == 0 && len(explicit) == 0 {
		for name := range o.Scopes {
			caps = append(caps, name)
		}
		sort.Strings(caps)
	}
	for i, c := range caps {
		s, ok := o.Scopes[c]
		if !ok {
			return nil, oauthError(sdk.BadRequest, "", "oauth.scopes", "request.capabilities[%d]: %q declares no OAuth scopes", i, c)
		}
		add(s)
	}
	return out, nil
}

func expiresAt(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}

// lumosTokens is the response of a token-returning capability.
func lumosTokens(t *tokens, withRefresh bool, state string) Credentials {
	out := Credentials{AccessToken: sdk.Secret(t.AccessToken), TokenType: "bearer", ExpiresAt: expiresAt(t.Expiry), State: state}
	if withRefresh {
		out.RefreshToken = sdk.Secret(t.RefreshToken)
	}
	return out
}

func (m *Manager) getAuthorizationURL(ctx context.Context, appID string, o *wire.OAuthSettings, call *wire.Call, credentialID string) (any, *wire.Error) {
	var req GetAuthorizationURLRequest
	if werr := decodeRequest(call.Request, &req); werr != nil {
		return nil, werr
	}
	defer m.mask(req.ClientSecret.Reveal())()
	if werr := required("client_id", req.ClientID); werr != nil {
		return nil, werr
	}
	scopes, werr := mergeScopes(o, req.Scopes, req.Capabilities)
	if werr != nil {
		return nil, werr
	}
	params, werr := m.urlParams(o, call.Settings, true)
	if werr != nil {
		return nil, werr
	}
	e, werr := m.resolveEndpoint(o, params, true)
	if werr != nil {
		return nil, werr
	}
	var verifier string
	var opts []oauth2.AuthCodeOption
	if o.PKCE {
		verifier = oauth2.GenerateVerifier()
		opts = append(opts, oauth2.S256ChallengeOption(verifier))
	}
	if credentialID == "" {
		if werr := firstErr(required("redirect_uri", req.RedirectURI), required("state", req.State)); werr != nil {
			return nil, werr
		}
		if _, err := url.Parse(req.RedirectURI); err != nil {
			return nil, oauthError(sdk.BadRequest, "", "oauth.get_authorization_url", "request.redirect_uri: is not a URL")
		}
		u := m.config(e, req.ClientID, "", req.RedirectURI, scopes).AuthCodeURL(req.State, opts...)
		return AuthorizationURL{AuthorizationURL: u, CodeVerifier: sdk.Secret(verifier)}, nil
	}
	// Stored flow: the host keeps the secret and verifier until the
	// callback and generates the state.
	if werr := required("client_secret", req.ClientSecret.Reveal()); werr != nil {
		return nil, oauthError(sdk.BadRequest, "", "oauth.get_authorization_url", "request.client_secret: is required with credential_id (the host exchanges the code)")
	}
	if req.State != "" {
		return nil, oauthError(sdk.BadRequest, "", "oauth.get_authorization_url", "request.state: must be empty with credential_id (the host generates the state)")
	}
	redirect := m.RedirectURI()
	if req.RedirectURI != "" && req.RedirectURI != redirect {
		return nil, oauthError(sdk.BadRequest, "", "oauth.get_authorization_url", "request.redirect_uri: must be the host's callback %s (or empty) with credential_id", redirect)
	}
	state, err := randomToken(32)
	if err != nil {
		return nil, oauthError(sdk.InternalError, "", "oauth.get_authorization_url", "generating the state: %v", err)
	}
	now := m.now()
	if err := m.store.PutAuthState(ctx, &store.AuthState{
		State: state, AppID: appID, CredentialID: credentialID, ClientID: req.ClientID, RedirectURI: redirect,
		Scopes: scopes, URLParams: params, CreatedAt: now, ExpiresAt: now.Add(m.opts.StateTTL),
		ClientSecret: req.ClientSecret.Reveal(), CodeVerifier: verifier,
	}); err != nil {
		return nil, oauthError(sdk.InternalError, "", "oauth.get_authorization_url", "recording the flow: %v", err)
	}
	m.logger.Info("oauth authorization started", "app_id", appID, "credential_id", credentialID, "expires_in", m.opts.StateTTL.String())
	return AuthorizationURL{AuthorizationURL: m.config(e, req.ClientID, "", redirect, scopes).AuthCodeURL(state, opts...)}, nil
}

// parseRedirect splits a redirect URI with code into the redirect URI (no
// query or fragment) and its query.
func parseRedirect(raw string) (string, url.Values, *wire.Error) {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme == "" || u.Host == "" {
		return "", nil, oauthError(sdk.BadRequest, "", "oauth.handle_authorization_callback", "request.redirect_uri_with_code: is not an absolute URL")
	}
	q := u.Query()
	base := *u
	base.RawQuery, base.Fragment, base.RawFragment = "", "", ""
	return base.String(), q, nil
}

// providerError turns error=... in a redirect into the envelope's error.
func providerError(q url.Values, raisedIn string) *wire.Error {
	e := q.Get("error")
	if e == "" {
		return nil
	}
	msg := "the provider refused the authorization: " + describe(e)
	if d := describe(q.Get("error_description")); d != "" {
		msg += " (" + d + ")"
	}
	return oauthError(authorizationErrorCode(e), "oauth."+describe(e), raisedIn, "%s", msg)
}

func (m *Manager) handleAuthorizationCallback(ctx context.Context, appID string, desc *wire.Description, call *wire.Call, credentialID string) (any, *wire.Error) {
	o := desc.OAuth
	var req HandleAuthorizationCallbackRequest
	if werr := decodeRequest(call.Request, &req); werr != nil {
		return nil, werr
	}
	defer m.mask(req.ClientSecret.Reveal(), req.CodeVerifier.Reveal())()
	if werr := required("redirect_uri_with_code", req.RedirectURIWithCode); werr != nil {
		return nil, werr
	}
	redirect, q, werr := parseRedirect(req.RedirectURIWithCode)
	if werr != nil {
		return nil, werr
	}
	if credentialID != "" {
		if q.Get("state") == "" {
			q.Set("state", req.State)
		}
		res := m.completeFlow(ctx, appID, credentialID, desc, q)
		if res.Err != nil {
			return nil, res.Err
		}
		c := res.Credential
		return Credentials{AccessToken: sdk.Secret(c.Secrets.AccessToken), TokenType: "bearer", ExpiresAt: expiresAt(c.Expiry), State: q.Get("state")}, nil
	}
	if werr := providerError(q, "oauth.handle_authorization_callback"); werr != nil {
		return nil, werr
	}
	if werr := firstErr(required("client_id", req.ClientID), required("client_secret", req.ClientSecret.Reveal())); werr != nil {
		return nil, werr
	}
	code := q.Get("code")
	if code == "" {
		return nil, oauthError(sdk.BadRequest, "", "oauth.handle_authorization_callback", "request.redirect_uri_with_code: has no code parameter")
	}
	defer m.mask(code)()
	if got := q.Get("state"); req.State != "" && got != "" && got != req.State {
		return nil, oauthError(sdk.BadRequest, "", "oauth.handle_authorization_callback", "request.state: does not match the state in redirect_uri_with_code")
	}
	if o.PKCE && req.CodeVerifier == "" {
		return nil, oauthError(sdk.BadRequest, "", "oauth.handle_authorization_callback", "request.code_verifier: is required (this connector uses PKCE; pass the code_verifier get_authorization_url returned)")
	}
	params, werr := m.urlParams(o, call.Settings, false)
	if werr != nil {
		return nil, werr
	}
	e, werr := m.resolveEndpoint(o, params, false)
	if werr != nil {
		return nil, werr
	}
	t, werr := m.exchange(ctx, e, req.ClientID, req.ClientSecret.Reveal(), redirect, code, req.CodeVerifier.Reveal())
	if werr != nil {
		return nil, werr
	}
	defer m.mask(t.AccessToken, t.RefreshToken)()
	state := req.State
	if state == "" {
		state = q.Get("state")
	}
	return lumosTokens(t, true, state), nil
}

func (m *Manager) refreshAccessToken(ctx context.Context, appID string, desc *wire.Description, call *wire.Call, credentialID string) (any, *wire.Error) {
	o := desc.OAuth
	var req RefreshAccessTokenRequest
	if werr := decodeRequest(call.Request, &req); werr != nil {
		return nil, werr
	}
	defer m.mask(req.ClientSecret.Reveal(), req.RefreshToken.Reveal())()
	if credentialID != "" {
		c, werr := m.forceRefresh(ctx, appID, desc, credentialID)
		if werr != nil {
			return nil, werr
		}
		return Credentials{AccessToken: sdk.Secret(c.Secrets.AccessToken), TokenType: "bearer", ExpiresAt: expiresAt(c.Expiry)}, nil
	}
	if werr := firstErr(required("client_id", req.ClientID), required("client_secret", req.ClientSecret.Reveal())); werr != nil {
		return nil, werr
	}
	if o.Flow != wire.FlowClientCredentials {
		if werr := required("refresh_token", req.RefreshToken.Reveal()); werr != nil {
			return nil, werr
		}
	}
	params, werr := m.urlParams(o, call.Settings, false)
	if werr != nil {
		return nil, werr
	}
	e, werr := m.resolveEndpoint(o, params, false)
	if werr != nil {
		return nil, werr
	}
	var t *tokens
	if req.RefreshToken != "" {
		t, werr = m.refresh(ctx, e, req.ClientID, req.ClientSecret.Reveal(), req.RefreshToken.Reveal())
	} else {
		scopes, serr := mergeScopes(o, nil, nil)
		if serr != nil {
			return nil, serr
		}
		t, werr = m.clientCredentials(ctx, e, req.ClientID, req.ClientSecret.Reveal(), scopes)
	}
	if werr != nil {
		return nil, werr
	}
	defer m.mask(t.AccessToken, t.RefreshToken)()
	return lumosTokens(t, true, ""), nil
}

func (m *Manager) handleClientCredentials(ctx context.Context, appID string, o *wire.OAuthSettings, call *wire.Call, credentialID string) (any, *wire.Error) {
	var req ClientCredentialsRequest
	if werr := decodeRequest(call.Request, &req); werr != nil {
		return nil, werr
	}
	defer m.mask(req.ClientSecret.Reveal())()
	if werr := firstErr(required("client_id", req.ClientID), required("client_secret", req.ClientSecret.Reveal())); werr != nil {
		return nil, werr
	}
	scopes, werr := mergeScopes(o, req.Scopes, req.Capabilities)
	if werr != nil {
		return nil, werr
	}
	params, werr := m.urlParams(o, call.Settings, false)
	if werr != nil {
		return nil, werr
	}
	e, werr := m.resolveEndpoint(o, params, false)
	if werr != nil {
		return nil, werr
	}
	t, werr := m.clientCredentials(ctx, e, req.ClientID, req.ClientSecret.Reveal(), scopes)
	if werr != nil {
		return nil, werr
	}
	defer m.mask(t.AccessToken, t.RefreshToken)()
	if credentialID == "" {
		return lumosTokens(t, true, ""), nil
	}
	c := &store.Credential{
		AppID: appID, ID: credentialID, Flow: wire.FlowClientCredentials, ClientID: req.ClientID,
		Scopes: scopes, URLParams: params, TokenType: "bearer", Expiry: t.Expiry, Status: store.StatusActive,
		Secrets: store.Secrets{ClientSecret: req.ClientSecret.Reveal(), AccessToken: t.AccessToken, RefreshToken: t.RefreshToken},
	}
	if err := m.store.PutCredential(ctx, c); err != nil {
		return nil, oauthError(sdk.InternalError, "", "oauth.handle_client_credentials_request", "storing the credential: %v", err)
	}
	m.logger.Info("oauth credential stored", "app_id", appID, "credential_id", credentialID, "flow", c.Flow, "expires_at", expiresAt(c.Expiry))
	return lumosTokens(t, false, ""), nil
}
