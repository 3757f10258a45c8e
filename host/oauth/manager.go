// Package oauth runs OAuth 2.0 centrally for every connector that declares
// it (sdk.OAuthSettings): it provides the OAuth capabilities
// (get_authorization_url, handle_authorization_callback,
// refresh_access_token, handle_client_credentials_request) without the
// plugin writing them, completes authorization-code flows at
// GET /v1/oauth/callback, and keeps credentials: a request naming a
// credential_id gets a valid access token injected into its auth,
// refreshed ahead of expiry once per credential however many calls wait
// for it.
//
// Manager implements router.Builtins and router.Credentials. Tokens live in
// a store.Store (sealed with AES-GCM). Token requests use golang.org/x/oauth2.
// docs/oauth.md is the user documentation.
package oauth

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sync/singleflight"

	"github.com/connector-host/connector-host/host/router"
	"github.com/connector-host/connector-host/host/store"
	"github.com/connector-host/connector-host/internal/redact"
	"github.com/connector-host/connector-host/internal/wire"
	"github.com/connector-host/connector-host/sdk"
)

// CallbackPath is where providers redirect after authorization.
const CallbackPath = "/v1/oauth/callback"

// Defaults.
const (
	DefaultStateTTL     = 10 * time.Minute
	DefaultRefreshAhead = time.Minute
	DefaultTokenTimeout = 30 * time.Second
	// refreshBudget bounds one refresh, independent of the callers that
	// wait for it (one caller giving up must not fail the others).
	refreshBudget = 60 * time.Second
)

// Describer returns a connector's description (the router).
type Describer interface {
	Describe(ctx context.Context, appID string) (*wire.Description, *router.Failure)
}

// Options configure a Manager.
type Options struct {
	// Store keeps credentials and pending flows (required).
	Store store.Store
	// Describer finds connectors for the callback route (required for it).
	Describer Describer
	// PublicURL is the host's externally reachable base URL; the redirect
	// URI is PublicURL + CallbackPath.
	PublicURL string
	// Secrets masks the values handled in flight in every log line.
	Secrets *redact.Set
	// Logger logs flows and refreshes (never their secrets).
	Logger hclog.Logger
	// Transport sends token requests (default: a clone of
	// http.DefaultTransport).
	Transport http.RoundTripper
	// TokenTimeout bounds one token request (default 30 s).
	TokenTimeout time.Duration
	// RefreshAhead: a stored token this close to its expiry is refreshed
	// before use (default 1 minute).
	RefreshAhead time.Duration
	// StateTTL is how long an authorization flow may take (default 10 min).
	StateTTL time.Duration
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Manager is the host's OAuth: builtin capabilities, stored credentials
// and the callback route.
type Manager struct {
	opts      Options
	store     store.Store
	secrets   *redact.Set
	logger    hclog.Logger
	transport http.RoundTripper
	flights   singleflight.Group

	templates sync.Map // template text → *Template or error

	waitMu  sync.Mutex
	waiters map[string][]chan LoginResult
}

var (
	_ router.Builtins    = (*Manager)(nil)
	_ router.Credentials = (*Manager)(nil)
)

// New returns a Manager.
func New(opts Options) (*Manager, error) {
	if opts.Store == nil {
		return nil, fmt.Errorf("oauth: a store is required")
	}
	if opts.StateTTL <= 0 {
		opts.StateTTL = DefaultStateTTL
	}
	if opts.RefreshAhead <= 0 {
		opts.RefreshAhead = DefaultRefreshAhead
	}
	if opts.TokenTimeout <= 0 {
		opts.TokenTimeout = DefaultTokenTimeout
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	m := &Manager{opts: opts, store: opts.Store, secrets: opts.Secrets, logger: opts.Logger, transport: opts.Transport, waiters: map[string][]chan LoginResult{}}
	if m.secrets == nil {
		m.secrets = redact.NewSet()
	}
	if m.logger == nil {
		m.logger = hclog.NewNullLogger()
	}
	if m.transport == nil {
		m.transport = http.DefaultTransport.(*http.Transport).Clone()
	}
	return m, nil
}

// Store returns the credential store.
func (m *Manager) Store() store.Store { return m.store }

// RedirectURI is the callback URL providers must redirect to.
func (m *Manager) RedirectURI() string {
	return strings.TrimRight(m.opts.PublicURL, "/") + CallbackPath
}

func (m *Manager) now() time.Time { return m.opts.Now() }

// mask registers secret values for masking while an operation runs.
func (m *Manager) mask(values ...string) func() { return m.secrets.Add(values...) }

// credentialIDPattern bounds credential ids (they appear in URLs and logs).
var credentialIDPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$`)

func checkCredentialID(id string) *wire.Error {
	if !credentialIDPattern.MatchString(id) {
		return oauthError(sdk.BadRequest, "", "oauth.credential", "credential_id: %q must be 1-128 letters, digits or . _ : @ - (starting with a letter or digit)", id)
	}
	return nil
}

// randomToken returns n random bytes, base64url without padding.
func randomToken(n int) (string, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// template parses (once) a URL template of a connector's declaration.
func (m *Manager) template(field, raw string) (*Template, error) {
	if v, ok := m.templates.Load(field + "\x00" + raw); ok {
		if t, ok := v.(*Template); ok {
			return t, nil
		}
		return nil, v.(error)
	}
	t, err := ParseTemplate(field, raw)
	if err != nil {
		m.templates.Store(field+"\x00"+raw, err)
		return nil, err
	}
	m.templates.Store(field+"\x00"+raw, t)
	return t, nil
}

// resolveEndpoint fills the connector's URL templates from settings values
// (params) and checks them. withAuth also resolves the authorization URL.
func (m *Manager) resolveEndpoint(o *wire.OAuthSettings, params map[string]string, withAuth bool) (endpoint, *wire.Error) {
	e := endpoint{oauth: o}
	tt, err := m.template("oauth.token_url", o.TokenURL)
	if err != nil {
		return e, oauthError(sdk.InternalError, "", "oauth.resolve", "the connector declares an unusable token URL: %v", err)
	}
	if e.tokenURL, err = tt.Resolve(params); err != nil {
		return e, oauthError(sdk.BadRequest, "", "oauth.resolve", "%v", err)
	}
	if withAuth {
		at, err := m.template("oauth.authorization_url", o.AuthorizationURL)
		if err != nil {
			return e, oauthError(sdk.InternalError, "", "oauth.resolve", "the connector declares an unusable authorization URL: %v", err)
		}
		if e.authURL, err = at.Resolve(params); err != nil {
			return e, oauthError(sdk.BadRequest, "", "oauth.resolve", "%v", err)
		}
	}
	return e, nil
}

// urlParams extracts the values of the connector's URL placeholders from a
// request's settings.
func (m *Manager) urlParams(o *wire.OAuthSettings, settings []byte, withAuth bool) (map[string]string, *wire.Error) {
	var names []string
	add := func(field, raw string) *wire.Error {
		t, err := m.template(field, raw)
		if err != nil {
			return oauthError(sdk.InternalError, "", "oauth.resolve", "the connector declares an unusable URL: %v", err)
		}
		names = append(names, t.Names()...)
		return nil
	}
	if werr := add("oauth.token_url", o.TokenURL); werr != nil {
		return nil, werr
	}
	if withAuth {
		if werr := add("oauth.authorization_url", o.AuthorizationURL); werr != nil {
			return nil, werr
		}
	}
	params, err := settingValues(settings, names)
	if err != nil {
		return nil, oauthError(sdk.BadRequest, "", "oauth.resolve", "%v", err)
	}
	return params, nil
}

// DescriberFunc adapts a function to Describer.
type DescriberFunc func(ctx context.Context, appID string) (*wire.Description, *router.Failure)

// Describe implements Describer.
func (f DescriberFunc) Describe(ctx context.Context, appID string) (*wire.Description, *router.Failure) {
	return f(ctx, appID)
}
