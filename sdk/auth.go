package sdk

import (
	"encoding/json"

	"github.com/invopop/jsonschema"
)

// Secret is a string that must never be shown: its JSON Schema carries
// "x-secret": true, and it prints as [REDACTED] with fmt and in logs. Use
// Reveal to get the value.
type Secret string

// String implements fmt.Stringer.
func (Secret) String() string { return "[REDACTED]" }

// GoString implements fmt.GoStringer.
func (Secret) GoString() string { return `"[REDACTED]"` }

// Reveal returns the secret value.
func (s Secret) Reveal() string { return string(s) }

// JSONSchema implements the schema generator's hook.
func (Secret) JSONSchema() *jsonschema.Schema {
	s := &jsonschema.Schema{Type: "string"}
	s.Extras = map[string]any{"x-secret": true}
	return s
}

// AuthKind names one kind of credential in the request envelope's "auth"
// object.
type AuthKind string

// The credential kinds of the contract.
const (
	AuthBasic                  AuthKind = "basic"
	AuthToken                  AuthKind = "token"
	AuthOAuth                  AuthKind = "oauth"
	AuthOAuthClientCredentials AuthKind = "oauth_client_credentials" //nolint:gosec // a kind name, not a credential
	AuthJWT                    AuthKind = "jwt"
)

// Auth is the request envelope's "auth" object. At most one member is set.
type Auth struct {
	Basic                  *BasicCredential             `json:"basic,omitempty"`
	Token                  *TokenCredential             `json:"token,omitempty"`
	OAuth                  *OAuthCredential             `json:"oauth,omitempty"`
	OAuthClientCredentials *OAuthClientCredentialsGrant `json:"oauth_client_credentials,omitempty"`
	JWT                    *JWTCredential               `json:"jwt,omitempty"`
}

// BasicCredential is a username and password.
type BasicCredential struct {
	Username string `json:"username" jsonschema:"minLength=1"`
	Password Secret `json:"password"`
}

// TokenCredential is an API key or static token.
type TokenCredential struct {
	Token Secret `json:"token" jsonschema:"minLength=1"`
}

// OAuthCredential is an OAuth access token (and optionally its refresh
// token). With a credential_id, the host fills it in.
type OAuthCredential struct {
	AccessToken  Secret `json:"access_token" jsonschema:"minLength=1"`
	RefreshToken Secret `json:"refresh_token,omitempty"`
	TokenType    string `json:"token_type,omitempty"`
}

// OAuthClientCredentialsGrant is a client id and secret for the client
// credentials flow, plus the access token once the host obtained one.
type OAuthClientCredentialsGrant struct {
	ClientID     string `json:"client_id" jsonschema:"minLength=1"`
	ClientSecret Secret `json:"client_secret"`
	AccessToken  Secret `json:"access_token,omitempty"`
	Scopes       string `json:"scopes,omitempty"`
}

// JWTCredential is a signed JSON Web Token.
type JWTCredential struct {
	Token Secret `json:"token" jsonschema:"minLength=1"`
}

// authSchemaTypes maps each kind to a value of its credential type, for
// schema generation.
var authSchemaTypes = map[AuthKind]any{
	AuthBasic:                  BasicCredential{},
	AuthToken:                  TokenCredential{},
	AuthOAuth:                  OAuthCredential{},
	AuthOAuthClientCredentials: OAuthClientCredentialsGrant{},
	AuthJWT:                    JWTCredential{},
}

// Kinds lists the kinds of credential present in a.
func (a *Auth) Kinds() []AuthKind {
	var out []AuthKind
	if a.Basic != nil {
		out = append(out, AuthBasic)
	}
	if a.Token != nil {
		out = append(out, AuthToken)
	}
	if a.OAuth != nil {
		out = append(out, AuthOAuth)
	}
	if a.OAuthClientCredentials != nil {
		out = append(out, AuthOAuthClientCredentials)
	}
	if a.JWT != nil {
		out = append(out, AuthJWT)
	}
	return out
}

// RawObject is a JSON object kept exactly as received (no float64
// rounding of large integers, key order kept). Use it instead of
// map[string]any for pass-through data; its schema is {"type":"object"}.
type RawObject json.RawMessage

// MarshalJSON writes the object ({} when empty).
func (o RawObject) MarshalJSON() ([]byte, error) {
	if len(o) == 0 {
		return []byte("{}"), nil
	}
	return o, nil
}

// UnmarshalJSON keeps a copy of the raw JSON.
func (o *RawObject) UnmarshalJSON(b []byte) error {
	*o = append((*o)[:0], b...)
	return nil
}

// JSONSchema implements the schema generator's hook.
func (RawObject) JSONSchema() *jsonschema.Schema { return &jsonschema.Schema{Type: "object"} }
