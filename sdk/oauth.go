package sdk

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"

	"github.com/connector-host/connector-host/internal/wire"
)

// OAuthFlow is the OAuth 2.0 grant a connector uses.
type OAuthFlow string

// OAuth flows.
const (
	// CodeFlow is the authorization code flow (the default).
	CodeFlow OAuthFlow = wire.FlowCode
	// ClientCredentialsFlow is the client credentials flow.
	ClientCredentialsFlow OAuthFlow = wire.FlowClientCredentials
)

// ClientAuthMethod is how the client authenticates at the token endpoint.
type ClientAuthMethod string

// Client authentication methods.
const (
	// ClientSecretPost sends client_id and client_secret in the request
	// body (the default).
	ClientSecretPost ClientAuthMethod = wire.ClientSecretPost
	// ClientSecretBasic sends them as HTTP Basic authentication.
	ClientSecretBasic ClientAuthMethod = wire.ClientSecretBasic
)

// RequestBody is how the token request's parameters are encoded.
type RequestBody string

// Token request encodings.
const (
	// FormBody is application/x-www-form-urlencoded (the default).
	FormBody RequestBody = wire.BodyForm
	// JSONBody is a JSON object.
	JSONBody RequestBody = wire.BodyJSON
	// QueryBody puts the parameters in the URL query.
	QueryBody RequestBody = wire.BodyQuery
)

// OAuthSettings declares a connector's OAuth. The host provides the OAuth
// capabilities (get_authorization_url, handle_authorization_callback,
// refresh_access_token for the code flow; handle_client_credentials_request
// and refresh_access_token for client credentials) unless the connector
// registers one itself or lists it in DisabledCapabilities.
type OAuthSettings struct {
	// AuthorizationURL and TokenURL may contain {name} placeholders filled
	// from the request's settings, e.g. https://{subdomain}.example.com/oauth.
	// The host refuses a filled-in URL whose host does not match the
	// template's.
	AuthorizationURL string
	TokenURL         string
	// Scopes maps capability names to space-separated scopes; a request's
	// scopes are the union for the capabilities it is for.
	Scopes map[string]string
	// Flow defaults to CodeFlow.
	Flow OAuthFlow
	// ClientAuth defaults to ClientSecretPost.
	ClientAuth ClientAuthMethod
	// TokenRequestMethod is POST (default) or GET.
	TokenRequestMethod string
	// TokenRequestBody defaults to FormBody.
	TokenRequestBody RequestBody
	// PKCE turns on S256 PKCE for the code flow.
	PKCE bool
	// DisabledCapabilities are OAuth capabilities the host must not provide.
	DisabledCapabilities []string
}

// OAuthCapabilities returns the OAuth capability names of flow.
func OAuthCapabilities(flow OAuthFlow) []string {
	if flow == ClientCredentialsFlow {
		return []string{HandleClientCredentialsRequest, RefreshAccessToken}
	}
	return []string{GetAuthorizationURL, HandleAuthorizationCallback, RefreshAccessToken}
}

func (o *OAuthSettings) flow() OAuthFlow {
	if o.Flow == "" {
		return CodeFlow
	}
	return o.Flow
}

func (o *OAuthSettings) validate(caps map[string]*capability) error {
	var errs []error
	switch o.flow() {
	case CodeFlow, ClientCredentialsFlow:
	default:
		errs = append(errs, fmt.Errorf("oauth.flow: unknown flow %q (CODE_FLOW or CLIENT_CREDENTIALS)", o.Flow))
	}
	switch o.ClientAuth {
	case "", ClientSecretPost, ClientSecretBasic:
	default:
		errs = append(errs, fmt.Errorf("oauth.client_auth: unknown method %q", o.ClientAuth))
	}
	switch strings.ToUpper(o.TokenRequestMethod) {
	case "", "POST", "GET":
	default:
		errs = append(errs, fmt.Errorf("oauth.token_request_method: %q is not POST or GET", o.TokenRequestMethod))
	}
	switch o.TokenRequestBody {
	case "", FormBody, JSONBody, QueryBody:
	default:
		errs = append(errs, fmt.Errorf("oauth.token_request_body: unknown encoding %q", o.TokenRequestBody))
	}
	if err := checkURLTemplate("oauth.token_url", o.TokenURL); err != nil {
		errs = append(errs, err)
	}
	if o.flow() == CodeFlow {
		if err := checkURLTemplate("oauth.authorization_url", o.AuthorizationURL); err != nil {
			errs = append(errs, err)
		}
	}
	valid := map[string]bool{}
	for _, c := range OAuthCapabilities(o.flow()) {
		valid[c] = true
	}
	for _, c := range o.DisabledCapabilities {
		if !valid[c] {
			errs = append(errs, fmt.Errorf("oauth.disabled_capabilities: %q is not an OAuth capability of the %s flow", c, o.flow()))
		}
	}
	for name := range o.Scopes {
		if caps[name] == nil && !valid[name] {
			errs = append(errs, fmt.Errorf("oauth.scopes: %q is not a registered capability", name))
		}
	}
	return errors.Join(errs...)
}

// checkURLTemplate checks that a URL template parses once its placeholders
// are filled with a sample value ("1": valid as a DNS label and as a
// port), has no userinfo, and uses https (http only for a loopback host).
// The host checks every filled-in URL again before using it.
func checkURLTemplate(field, tmpl string) error {
	if tmpl == "" {
		return fmt.Errorf("%s: is required", field)
	}
	filled := placeholder.ReplaceAllString(tmpl, "1")
	u, err := url.Parse(filled)
	if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
		return fmt.Errorf("%s: %q is not an absolute http(s) URL", field, tmpl)
	}
	if u.User != nil {
		return fmt.Errorf("%s: %q must not contain userinfo", field, tmpl)
	}
	if u.Scheme == "http" && !isLoopback(u.Hostname()) {
		return fmt.Errorf("%s: %q must use https (http is allowed only for loopback hosts)", field, tmpl)
	}
	return nil
}

// isLoopback reports whether host is localhost or a loopback address.
func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func (o *OAuthSettings) toWire() *wire.OAuthSettings {
	out := &wire.OAuthSettings{
		AuthorizationURL:     o.AuthorizationURL,
		TokenURL:             o.TokenURL,
		Scopes:               o.Scopes,
		Flow:                 string(o.flow()),
		ClientAuth:           string(o.ClientAuth),
		TokenRequestMethod:   strings.ToUpper(o.TokenRequestMethod),
		TokenRequestBody:     string(o.TokenRequestBody),
		PKCE:                 o.PKCE,
		DisabledCapabilities: o.DisabledCapabilities,
	}
	if out.ClientAuth == "" {
		out.ClientAuth = wire.ClientSecretPost
	}
	if out.TokenRequestMethod == "" {
		out.TokenRequestMethod = "POST"
	}
	if out.TokenRequestBody == "" {
		out.TokenRequestBody = wire.BodyForm
	}
	return out
}
