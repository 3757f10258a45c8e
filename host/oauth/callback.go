package oauth

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"

	"github.com/connector-host/connector-host/host/httpapi"
	"github.com/connector-host/connector-host/host/router"
	"github.com/connector-host/connector-host/host/store"
	"github.com/connector-host/connector-host/internal/envelope"
	"github.com/connector-host/connector-host/internal/wire"
	"github.com/connector-host/connector-host/sdk"
)

// LoginResult is the outcome of an authorization-code flow started with a
// credential_id: the stored credential (without its secrets), or the
// error.
type LoginResult struct {
	AppID      string
	Credential *store.Credential
	Err        *wire.Error
}

// CallbackResponse is the response of GET /v1/oauth/callback.
type CallbackResponse struct {
	AppID        string   `json:"app_id"`
	CredentialID string   `json:"credential_id"`
	Status       string   `json:"status"`
	Scopes       []string `json:"scopes"`
	ExpiresAt    string   `json:"expires_at,omitempty"`
}

// CallbackHandler serves GET /v1/oauth/callback?code=..&state=.. (or
// ?error=..&state=..): it completes the flow the state names and answers
// with a response envelope. It needs no API token: the single-use state
// protects it.
func (m *Manager) CallbackHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		if r.Method != http.MethodGet {
			w.Header().Set("Allow", http.MethodGet)
			httpapi.WriteFailure(w, &router.Failure{AppID: router.HostAppID, Err: oauthError(sdk.UnsupportedOperation, "", "oauth.callback", "%s is not allowed: providers redirect here with GET", r.Method)})
			return
		}
		res := m.completeFlow(r.Context(), "", "", nil, r.URL.Query())
		if res.Err != nil {
			app := res.AppID
			if app == "" {
				app = router.HostAppID
			}
			httpapi.WriteFailure(w, &router.Failure{AppID: app, Err: m.maskError(res.Err)})
			return
		}
		c := res.Credential
		body, _ := json.Marshal(CallbackResponse{AppID: c.AppID, CredentialID: c.ID, Status: c.Status, Scopes: c.Scopes, ExpiresAt: expiresAt(c.Expiry)})
		out := envelope.AppendSuccess(nil, &wire.Result{Response: body})
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(append(out, '\n'))
	})
}

// OpenAPIPath documents the callback route.
func OpenAPIPath() map[string]any {
	param := func(name, desc string) map[string]any {
		return map[string]any{"name": name, "in": "query", "required": false, "description": desc, "schema": map[string]any{"type": "string"}}
	}
	return map[string]any{"get": map[string]any{
		"summary":     "OAuth authorization callback",
		"description": "Where providers redirect after the user authorized a flow started by get_authorization_url with a credential_id. Completes the code exchange and stores the credential. The state is single-use, bound to the connector and credential, and expires after 10 minutes. Not behind the API token.",
		"parameters": []any{
			param("code", "the authorization code"),
			param("state", "the state the host generated"),
			param("error", "the provider's error (e.g. access_denied)"),
			param("error_description", "the provider's explanation"),
		},
		"responses": map[string]any{
			"200":     map[string]any{"description": "response envelope: {app_id, credential_id, status, scopes, expires_at}"},
			"default": map[string]any{"description": "error envelope (see docs/oauth.md for the codes)"},
		},
	}}
}

// completeFlow finishes a stored authorization-code flow from the
// redirect's query. wantApp/wantCredential, when set, must match what the
// state was issued for. desc may be nil (looked up).
func (m *Manager) completeFlow(ctx context.Context, wantApp, wantCredential string, desc *wire.Description, q url.Values) (res LoginResult) {
	state := q.Get("state")
	if state == "" {
		return LoginResult{AppID: wantApp, Err: oauthError(sdk.BadRequest, "", "oauth.callback", "state: missing; the provider must redirect with the state get_authorization_url put in the URL")}
	}
	st, err := m.store.TakeAuthState(ctx, state, m.now())
	switch {
	case errors.Is(err, store.ErrNotFound):
		return LoginResult{AppID: wantApp, Err: oauthError(sdk.BadRequest, "", "oauth.callback", "state: unknown or already used; start again with get_authorization_url")}
	case errors.Is(err, store.ErrExpired):
		return LoginResult{AppID: wantApp, Err: oauthError(sdk.BadRequest, "", "oauth.callback", "state: expired (a flow must complete within %s); start again with get_authorization_url", m.opts.StateTTL)}
	case err != nil:
		return LoginResult{AppID: wantApp, Err: oauthError(sdk.InternalError, "", "oauth.callback", "reading the flow: %v", err)}
	}
	res.AppID = st.AppID
	if wantApp != "" && (st.AppID != wantApp || st.CredentialID != wantCredential) {
		// The state was consumed: a flow is single-use even when misdirected.
		res.Err = oauthError(sdk.BadRequest, "", "oauth.callback", "state: was issued for another connector or credential_id")
		m.notify(st.AppID, st.CredentialID, res)
		return res
	}
	defer func() { m.notify(st.AppID, st.CredentialID, res) }()
	defer m.mask(st.ClientSecret, st.CodeVerifier)()
	if werr := providerError(q, "oauth.callback"); werr != nil {
		m.logger.Warn("oauth authorization refused by the provider", "app_id", st.AppID, "credential_id", st.CredentialID, "error", describe(q.Get("error")))
		res.Err = werr
		return res
	}
	code := q.Get("code")
	if code == "" {
		res.Err = oauthError(sdk.BadRequest, "", "oauth.callback", "code: missing from the redirect")
		return res
	}
	defer m.mask(code)()
	if desc == nil {
		if m.opts.Describer == nil {
			res.Err = oauthError(sdk.InternalError, "", "oauth.callback", "no connector lookup configured")
			return res
		}
		d, f := m.opts.Describer.Describe(ctx, st.AppID)
		if f != nil {
			res.Err = f.Err
			return res
		}
		desc = d
	}
	if desc.OAuth == nil {
		res.Err = oauthError(sdk.BadRequest, "", "oauth.callback", "connector %s no longer declares OAuth", st.AppID)
		return res
	}
	e, werr := m.resolveEndpoint(desc.OAuth, st.URLParams, false)
	if werr != nil {
		res.Err = werr
		return res
	}
	t, werr := m.exchange(ctx, e, st.ClientID, st.ClientSecret, st.RedirectURI, code, st.CodeVerifier)
	if werr != nil {
		m.logger.Warn("oauth code exchange failed", "app_id", st.AppID, "credential_id", st.CredentialID, "code", werr.Code)
		res.Err = werr
		return res
	}
	defer m.mask(t.AccessToken, t.RefreshToken)()
	c := &store.Credential{
		AppID: st.AppID, ID: st.CredentialID, Flow: wire.FlowCode, ClientID: st.ClientID,
		Scopes: st.Scopes, URLParams: st.URLParams, TokenType: "bearer", Expiry: t.Expiry, Status: store.StatusActive,
		Secrets: store.Secrets{ClientSecret: st.ClientSecret, AccessToken: t.AccessToken, RefreshToken: t.RefreshToken},
	}
	if err := m.store.PutCredential(ctx, c); err != nil {
		res.Err = oauthError(sdk.InternalError, "", "oauth.callback", "storing the credential: %v", err)
		return res
	}
	m.logger.Info("oauth credential stored", "app_id", c.AppID, "credential_id", c.ID, "flow", c.Flow, "expires_at", expiresAt(c.Expiry), "has_refresh_token", t.RefreshToken != "")
	res.Credential = c
	return res
}

// AwaitLogin waits until a stored authorization-code flow for appID and
// credentialID completes (at the callback route or through
// handle_authorization_callback), successfully or not, or ctx ends.
// Register before handing out the authorization URL.
func (m *Manager) AwaitLogin(appID, credentialID string) (wait func(ctx context.Context) (LoginResult, error)) {
	ch := make(chan LoginResult, 1)
	key := appID + "\x00" + credentialID
	m.waitMu.Lock()
	m.waiters[key] = append(m.waiters[key], ch)
	m.waitMu.Unlock()
	return func(ctx context.Context) (LoginResult, error) {
		defer m.dropWaiter(key, ch)
		select {
		case r := <-ch:
			return r, nil
		case <-ctx.Done():
			return LoginResult{}, ctx.Err()
		}
	}
}

func (m *Manager) dropWaiter(key string, ch chan LoginResult) {
	m.waitMu.Lock()
	defer m.waitMu.Unlock()
	list := m.waiters[key]
	for i, c := range list {
		if c == ch {
			m.waiters[key] = append(list[:i:i], list[i+1:]...)
			break
		}
	}
	if len(m.waiters[key]) == 0 {
		delete(m.waiters, key)
	}
}

// notify hands a flow's result (without secrets) to its waiters.
func (m *Manager) notify(appID, credentialID string, res LoginResult) {
	if res.Credential != nil {
		cp := *res.Credential
		cp.Secrets = store.Secrets{}
		res.Credential = &cp
	}
	m.waitMu.Lock()
	defer m.waitMu.Unlock()
	for _, ch := range m.waiters[appID+"\x00"+credentialID] {
		select {
		case ch <- res:
		default:
		}
	}
}
