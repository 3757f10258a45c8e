package host

import (
	"context"
	"fmt"

	"github.com/connector-host/connector-host/host/oauth"
	"github.com/connector-host/connector-host/host/router"
	"github.com/connector-host/connector-host/host/store"
	"github.com/connector-host/connector-host/internal/wire"
)

// setupOAuth opens the host's state store (SQLite under the data
// directory, secrets sealed with the configured or generated key) and
// builds the OAuth manager, returned as the router's builtins and
// credential resolver.
func (h *Host) setupOAuth() ([]router.Option, error) {
	st, err := store.Open(h.cfg.DataDir, h.cfg.EncryptionKey)
	if err != nil {
		return nil, fmt.Errorf("state store: %w", err)
	}
	public := h.cfg.PublicURL
	if public == "" {
		public = "http://" + h.cfg.Listen
	}
	m, err := oauth.New(oauth.Options{
		Store: st,
		Describer: oauth.DescriberFunc(func(ctx context.Context, appID string) (*wire.Description, *router.Failure) {
			return h.router.Describe(ctx, appID)
		}),
		PublicURL: public,
		Secrets:   h.secrets,
		Logger:    h.logger.Named("oauth"),
	})
	if err != nil {
		_ = st.Close() // the manager's error is the one to report
		return nil, err
	}
	h.state, h.oauth = st, m
	return []router.Option{router.WithBuiltins(m), router.WithCredentials(m)}, nil
}

// mountOAuth adds GET /v1/oauth/callback (public: the state protects it).
func (h *Host) mountOAuth() {
	h.api.Handle(oauth.CallbackPath, h.oauth.CallbackHandler(), true)
	h.api.AddOpenAPIPath(oauth.CallbackPath, oauth.OpenAPIPath())
}

// OAuth is the host's OAuth manager (stored credentials, flows).
func (h *Host) OAuth() *oauth.Manager { return h.oauth }
