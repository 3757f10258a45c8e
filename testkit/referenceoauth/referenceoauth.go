// Package referenceoauth is the OAuth test plugin of connector-host
// (connector-reference-oauth): it declares OAuth and has one capability,
// whoami, that calls the protected resource of testkit/oauthserver with the
// bearer token it receives. The host provides its OAuth capabilities, so
// host tests drive every flow end to end through a real plugin process.
//
// Environment variables (set per connector in the host configuration)
// select the declaration, so that one binary covers every variant.
package referenceoauth

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/connector-host/connector-host/sdk"
)

// AppID is the plugin's default app_id.
const AppID = "reference-oauth"

// Environment variables read at start-up.
const (
	// EnvAppID overrides the app_id (to load variants side by side).
	EnvAppID = "REFERENCE_OAUTH_APP_ID"
	// EnvFlow is CODE_FLOW (default) or CLIENT_CREDENTIALS.
	EnvFlow = "REFERENCE_OAUTH_FLOW"
	// EnvClientAuth is CLIENT_SECRET_POST (default) or CLIENT_SECRET_BASIC.
	EnvClientAuth = "REFERENCE_OAUTH_CLIENT_AUTH"
	// EnvTokenMethod is POST (default) or GET.
	EnvTokenMethod = "REFERENCE_OAUTH_TOKEN_METHOD" //nolint:gosec // the name of a variable, not a credential
	// EnvTokenBody is FORMDATA (default), JSON or QUERY.
	EnvTokenBody = "REFERENCE_OAUTH_TOKEN_BODY" //nolint:gosec // the name of a variable, not a credential
	// EnvPKCE set to "0" turns PKCE off (on by default).
	EnvPKCE = "REFERENCE_OAUTH_PKCE"
	// EnvOverrideRefresh set to "1" makes the plugin register its own
	// refresh_access_token (the host must then not provide it).
	EnvOverrideRefresh = "REFERENCE_OAUTH_OVERRIDE_REFRESH"
)

// Settings locate the OAuth server on 127.0.0.1.
type Settings struct {
	Port int `json:"port" jsonschema:"minimum=1,maximum=65535,description=Port of the OAuth server (testkit/oauthserver) on 127.0.0.1"`
}

// Empty is an empty request.
type Empty struct{}

// WhoAmI is the protected resource's answer.
type WhoAmI struct {
	ClientID string `json:"client_id"`
	UserID   string `json:"user_id"`
	Scope    string `json:"scope"`
}

// OverriddenRefresh is the answer of the plugin's own refresh_access_token.
type OverriddenRefresh struct {
	ImplementedBy string `json:"implemented_by"`
}

// New returns the integration, configured from the environment.
func New() *sdk.Integration {
	appID := AppID
	if v := os.Getenv(EnvAppID); v != "" {
		appID = v
	}
	o := &sdk.OAuthSettings{ //nolint:gosec // URLs of the local test server, no credential
		AuthorizationURL:   "http://127.0.0.1:{port}/oauth/authorize",
		TokenURL:           "http://127.0.0.1:{port}/oauth/token",
		Scopes:             map[string]string{"whoami": "profile:read", "list_things": "things:read profile:read"},
		Flow:               sdk.OAuthFlow(os.Getenv(EnvFlow)),
		ClientAuth:         sdk.ClientAuthMethod(os.Getenv(EnvClientAuth)),
		TokenRequestMethod: os.Getenv(EnvTokenMethod),
		TokenRequestBody:   sdk.RequestBody(os.Getenv(EnvTokenBody)),
		PKCE:               os.Getenv(EnvPKCE) != "0",
	}
	integ := &sdk.Integration{
		AppID:   appID,
		Version: "1.0.0",
		Description: sdk.DescriptionData{
			UserFriendlyName: "Reference OAuth",
			Description:      "OAuth test plugin: the host runs its OAuth flows; whoami calls the test OAuth server's protected resource.",
			Categories:       []string{"testing"},
		},
		Auth:     []sdk.AuthKind{sdk.AuthOAuth},
		Settings: Settings{},
		OAuth:    o,
	}
	sdk.Register(integ, "whoami", whoami, sdk.WithDescription("Calls GET /api/me of the OAuth server with the bearer token."))
	sdk.Register(integ, "list_things", whoami, sdk.WithDescription("Same as whoami, with other declared scopes."))
	registerStream(integ)
	if os.Getenv(EnvOverrideRefresh) == "1" {
		sdk.Register(integ, sdk.RefreshAccessToken, func(context.Context, sdk.Request[Empty]) (OverriddenRefresh, error) {
			return OverriddenRefresh{ImplementedBy: "plugin"}, nil
		}, sdk.WithDescription("The plugin's own refresh (overrides the host's)."))
	}
	return integ
}

var client = &http.Client{Timeout: 10 * time.Second}

func whoami(ctx context.Context, req sdk.Request[Empty]) (WhoAmI, error) {
	var s Settings
	if err := req.DecodeSettings(&s); err != nil {
		return WhoAmI{}, err
	}
	if req.Auth.OAuth == nil {
		return WhoAmI{}, sdk.Errorf(sdk.Unauthenticated, "no oauth credential")
	}
	token := req.Auth.OAuth.AccessToken.Reveal()
	// Logs the token on purpose: the SDK must mask it (canary tests).
	req.Logger().Debug("whoami calling the resource", "token", token)
	hr, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("http://127.0.0.1:%d/api/me", s.Port), nil)
	if err != nil {
		return WhoAmI{}, err
	}
	hr.Header.Set("Authorization", "Bearer "+token)
	resp, err := client.Do(hr)
	if err != nil {
		return WhoAmI{}, err
	}
	if err := sdk.CheckResponse(resp); err != nil {
		return WhoAmI{}, err
	}
	defer func() { _ = resp.Body.Close() }()
	var out WhoAmI
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return WhoAmI{}, sdk.Errorf(sdk.InvalidResponse, "resource answer: %v", err)
	}
	if strings.TrimSpace(out.ClientID) == "" {
		return WhoAmI{}, sdk.Errorf(sdk.InvalidResponse, "resource answer has no client_id")
	}
	return out, nil
}
