package oauth

import (
	"context"
	"encoding/json"
	"errors"
	"strings"

	"github.com/connector-host/connector-host/host/store"
	"github.com/connector-host/connector-host/internal/wire"
	"github.com/connector-host/connector-host/sdk"
)

// Stored credentials: Auth gives the plugin a valid access token for a
// credential_id, refreshing it first when it is within RefreshAhead of
// its expiry; Refresh is the router's second chance when the plugin says
// the token was rejected. Either way, one refresh per credential runs at a
// time (singleflight); everyone waiting shares its result, and callers
// arriving later find the fresh token in the store. A rotated refresh
// token is written to the store before the new access token is handed
// out; invalid_grant marks the credential revoked.

// Auth implements router.Credentials.
func (m *Manager) Auth(ctx context.Context, appID string, desc *wire.Description, credentialID string) (json.RawMessage, *wire.Error) {
	if werr := checkCredentialID(credentialID); werr != nil {
		return nil, werr
	}
	c, werr := m.ensure(ctx, appID, desc, credentialID, "")
	if werr != nil {
		return nil, m.maskError(werr)
	}
	return authJSON(appID, desc, c)
}

// Refresh implements router.Credentials.
func (m *Manager) Refresh(ctx context.Context, appID string, desc *wire.Description, credentialID string, rejected json.RawMessage) (json.RawMessage, *wire.Error) {
	c, werr := m.ensure(ctx, appID, desc, credentialID, rejectedToken(rejected))
	if werr != nil {
		return nil, m.maskError(werr)
	}
	m.logger.Info("oauth token rejected by the connector; retrying with a fresh one", "app_id", appID, "credential_id", credentialID)
	return authJSON(appID, desc, c)
}

// forceRefresh refreshes a stored credential now (refresh_access_token
// with a credential_id).
func (m *Manager) forceRefresh(ctx context.Context, appID string, desc *wire.Description, credentialID string) (*store.Credential, *wire.Error) {
	c, werr := m.load(ctx, appID, credentialID)
	if werr != nil {
		return nil, werr
	}
	return m.ensure(ctx, appID, desc, credentialID, c.Secrets.AccessToken)
}

// rejectedToken extracts the access token from auth JSON the host built.
func rejectedToken(auth json.RawMessage) string {
	var a struct {
		OAuth *struct {
			AccessToken string `json:"access_token"`
		} `json:"oauth"`
		CC *struct {
			AccessToken string `json:"access_token"`
		} `json:"oauth_client_credentials"`
	}
	if json.Unmarshal(auth, &a) != nil {
		return ""
	}
	switch {
	case a.OAuth != nil:
		return a.OAuth.AccessToken
	case a.CC != nil:
		return a.CC.AccessToken
	}
	return ""
}

// authJSON is the auth object the plugin receives, in the kind it
// declares: {"oauth":{...}} preferred, else {"oauth_client_credentials":{...}}.
func authJSON(appID string, desc *wire.Description, c *store.Credential) (json.RawMessage, *wire.Error) {
	kinds := map[string]bool{}
	var names []string
	for _, am := range desc.AuthModels {
		kinds[am.Kind] = true
		names = append(names, am.Kind)
	}
	var v any
	switch {
	case kinds[string(sdk.AuthOAuth)]:
		v = map[string]any{"oauth": map[string]any{"access_token": c.Secrets.AccessToken, "token_type": "bearer"}}
	case kinds[string(sdk.AuthOAuthClientCredentials)]:
		v = map[string]any{"oauth_client_credentials": map[string]any{
			"client_id": c.ClientID, "client_secret": c.Secrets.ClientSecret,
			"access_token": c.Secrets.AccessToken, "scopes": strings.Join(c.Scopes, " "),
		}}
	default:
		return nil, oauthError(sdk.BadRequest, "", "oauth.Auth", "credential_id: connector %s accepts no OAuth credentials (it accepts: %s)", appID, strings.Join(names, ", "))
	}
	b, err := json.Marshal(v)
	if err != nil {
		return nil, oauthError(sdk.InternalError, "", "oauth.Auth", "encoding auth: %v", err)
	}
	return b, nil
}

// load reads a stored credential, mapping store errors.
func (m *Manager) load(ctx context.Context, appID, id string) (*store.Credential, *wire.Error) {
	c, err := m.store.Credential(ctx, appID, id)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return nil, oauthError(sdk.NotFound, "", "oauth.credential", "credential_id: no credential %q is stored for %s; create it with get_authorization_url (code flow) or handle_client_credentials_request, passing credential_id", id, appID)
	case errors.Is(err, store.ErrTampered):
		return nil, oauthError(sdk.InternalError, "", "oauth.credential", "credential_id: the stored credential %q does not decrypt (other encryption key, or the database was altered)", id)
	case err != nil:
		return nil, oauthError(sdk.InternalError, "", "oauth.credential", "reading credential %q: %v", id, err)
	}
	if c.Status == store.StatusRevoked {
		return nil, oauthError(sdk.CredsRevoked, "", "oauth.credential", "credential_id: credential %q was revoked (%s); log in again", id, c.StatusReason)
	}
	return c, nil
}

// fresh reports whether c's access token can be used: set, not the one
// the plugin rejected, and not within RefreshAhead of its expiry (at most
// half its lifetime, so short-lived tokens are not refreshed on every use).
func (m *Manager) fresh(c *store.Credential, rejected string) bool {
	if c.Secrets.AccessToken == "" || c.Secrets.AccessToken == rejected {
		return false
	}
	if c.Expiry.IsZero() {
		return true
	}
	ahead := m.opts.RefreshAhead
	if life := c.Expiry.Sub(c.UpdatedAt); life > 0 && life/2 < ahead {
		ahead = life / 2
	}
	return m.now().Add(ahead).Before(c.Expiry)
}

// ensure returns a usable credential, joining or starting the
// credential's single refresh when needed.
func (m *Manager) ensure(ctx context.Context, appID string, desc *wire.Description, id, rejected string) (*store.Credential, *wire.Error) {
	key := appID + "\x00" + id
	// A caller may join a refresh that decided nothing was needed for it
	// (started for another rejected token): then it tries once more.
	for attempt := 0; attempt < 3; attempt++ {
		c, werr := m.load(ctx, appID, id)
		if werr != nil {
			return nil, werr
		}
		if m.fresh(c, rejected) {
			return c, nil
		}
		ch := m.flights.DoChan(key, func() (any, error) {
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), refreshBudget)
			defer cancel()
			c, werr := m.refreshStored(fctx, appID, desc, id, rejected)
			if werr != nil {
				return nil, werr
			}
			return c, nil
		})
		select {
		case r := <-ch:
			if r.Err != nil {
				var werr *wire.Error
				if errors.As(r.Err, &werr) {
					// Copy: the error is shared by every waiter.
					cp := *werr
					return nil, &cp
				}
				return nil, oauthError(sdk.InternalError, "", "oauth.refresh", "%v", r.Err)
			}
			if c := r.Val.(*store.Credential); m.fresh(c, rejected) {
				return c, nil
			}
		case <-ctx.Done():
			return nil, oauthError(sdk.RequestTimeout, "", "oauth.refresh", "gave up waiting for the token refresh of credential %q", id)
		}
	}
	return nil, oauthError(sdk.Unauthorized, "", "oauth.refresh", "credential %q: the token endpoint keeps issuing tokens the connector rejects", id)
}

// refreshStored is the single refresh of a credential: re-read it, and if
// it still needs it, get new tokens and persist them before returning.
func (m *Manager) refreshStored(ctx context.Context, appID string, desc *wire.Description, id, rejected string) (*store.Credential, *wire.Error) {
	c, werr := m.load(ctx, appID, id)
	if werr != nil {
		return nil, werr
	}
	if m.fresh(c, rejected) {
		return c, nil // refreshed by someone else meanwhile
	}
	if desc == nil || desc.OAuth == nil {
		return nil, oauthError(sdk.BadRequest, "", "oauth.refresh", "credential_id: connector %s declares no OAuth, so the host cannot refresh credential %q", appID, id)
	}
	if c.Flow != wire.FlowClientCredentials && c.Secrets.RefreshToken == "" {
		return nil, oauthError(sdk.AuthenticationExpired, "", "oauth.refresh", "credential %q: the access token expired and the provider gave no refresh token; log in again", id)
	}
	defer m.mask(c.Secrets.ClientSecret, c.Secrets.AccessToken, c.Secrets.RefreshToken)()
	e, werr := m.resolveEndpoint(desc.OAuth, c.URLParams, false)
	if werr != nil {
		return nil, werr
	}
	var t *tokens
	switch c.Flow {
	case wire.FlowClientCredentials:
		t, werr = m.clientCredentials(ctx, e, c.ClientID, c.Secrets.ClientSecret, c.Scopes)
	default:
		t, werr = m.refresh(ctx, e, c.ClientID, c.Secrets.ClientSecret, c.Secrets.RefreshToken)
	}
	if werr != nil {
		if werr.Code == string(sdk.CredsRevoked) {
			return m.revoked(ctx, c, rejected, werr)
		}
		m.logger.Warn("oauth token refresh failed", "app_id", appID, "credential_id", id, "code", werr.Code, "error", werr.Message)
		return nil, werr
	}
	defer m.mask(t.AccessToken, t.RefreshToken)()
	rotated := t.RefreshToken != "" && t.RefreshToken != c.Secrets.RefreshToken
	c.Secrets.AccessToken = t.AccessToken
	if t.RefreshToken != "" {
		c.Secrets.RefreshToken = t.RefreshToken
	}
	c.Expiry = t.Expiry
	c.TokenType = "bearer"
	// Persist before use: a rotated refresh token that was not saved
	// would be lost, and the old one is already spent.
	if err := m.store.UpdateCredential(ctx, c); err != nil {
		if errors.Is(err, store.ErrConflict) {
			if cur, werr := m.load(ctx, appID, id); werr == nil && m.fresh(cur, rejected) {
				return cur, nil
			}
		}
		m.logger.Error("oauth refreshed tokens could not be stored; not using them", "app_id", appID, "credential_id", id, "error", err.Error())
		return nil, oauthError(sdk.InternalError, "", "oauth.refresh", "credential %q: storing the refreshed tokens failed: %v", id, err)
	}
	m.logger.Info("oauth token refreshed", "app_id", appID, "credential_id", id, "expires_at", expiresAt(c.Expiry), "refresh_token_rotated", rotated)
	return c, nil
}

// revoked handles invalid_grant on refresh: unless another process
// refreshed the credential meanwhile (its spent refresh token explains the
// refusal), mark it revoked.
func (m *Manager) revoked(ctx context.Context, c *store.Credential, rejected string, werr *wire.Error) (*store.Credential, *wire.Error) {
	cur, lerr := m.load(ctx, c.AppID, c.ID)
	if lerr == nil && cur.Version != c.Version && m.fresh(cur, rejected) {
		return cur, nil
	}
	c.Status, c.StatusReason = store.StatusRevoked, "the token endpoint answered invalid_grant"
	if err := m.store.UpdateCredential(ctx, c); err != nil && !errors.Is(err, store.ErrConflict) {
		m.logger.Error("oauth could not mark the credential revoked", "app_id", c.AppID, "credential_id", c.ID, "error", err.Error())
	}
	m.logger.Warn("oauth credential revoked by the provider", "app_id", c.AppID, "credential_id", c.ID)
	return nil, werr
}

// List returns the stored credentials of appID (all when empty), without
// secrets.
func (m *Manager) List(ctx context.Context, appID string) ([]*store.Credential, error) {
	return m.store.Credentials(ctx, appID)
}

// Revoke marks a stored credential revoked and erases its secrets; calls
// naming it then fail with creds_revoked until it is created again.
func (m *Manager) Revoke(ctx context.Context, appID, id string) error {
	for attempt := 0; attempt < 5; attempt++ {
		c, err := m.store.Credential(ctx, appID, id)
		if err != nil {
			return err
		}
		c.Status, c.StatusReason = store.StatusRevoked, "revoked by an operator"
		c.Secrets = store.Secrets{}
		err = m.store.UpdateCredential(ctx, c)
		if !errors.Is(err, store.ErrConflict) {
			if err == nil {
				m.logger.Info("oauth credential revoked", "app_id", appID, "credential_id", id)
			}
			return err
		}
	}
	return store.ErrConflict
}
