// Package store is the host's state: stored OAuth credentials and pending
// authorization flows. Store is a small interface so that another backend
// (PostgreSQL) can replace the embedded SQLite one (OpenSQLite); callers
// only see the plain Go types of this file.
//
// Secrets (client secrets, tokens, refresh tokens, PKCE verifiers) are
// sealed with AES-256-GCM (Cipher) before they reach the backend, bound to
// their row; the backend never sees them in clear. OAuth state values are
// stored only as SHA-256 hashes.
package store

import (
	"context"
	"errors"
	"time"
)

// Errors of the store. Backends wrap them, so test with errors.Is.
var (
	// ErrNotFound: no such credential or pending flow.
	ErrNotFound = errors.New("not found")
	// ErrConflict: the credential changed since it was read (its Version
	// moved on); re-read it and decide again.
	ErrConflict = errors.New("changed concurrently")
	// ErrExpired: the pending flow exists but has expired (it is deleted).
	ErrExpired = errors.New("expired")
)

// Credential statuses.
const (
	StatusActive  = "active"
	StatusRevoked = "revoked"
)

// Credential is an OAuth grant stored for a connector under an id chosen by
// the caller (the request envelope's credential_id).
type Credential struct {
	AppID string
	ID    string
	// Flow is the connector's OAuth flow (CODE_FLOW, CLIENT_CREDENTIALS).
	Flow     string
	ClientID string
	Scopes   []string
	// URLParams are the values filled into the connector's templated
	// token URL when the credential was created (e.g. a subdomain).
	URLParams map[string]string
	TokenType string
	// Expiry of the access token; zero when the server did not say.
	Expiry time.Time
	// Status is StatusActive or StatusRevoked; StatusReason says why.
	Status       string
	StatusReason string
	// Version increases with every write (optimistic concurrency).
	Version   int64
	CreatedAt time.Time
	UpdatedAt time.Time
	// Secrets are sealed at rest. Credentials returns them empty.
	Secrets Secrets
}

// Secrets are a credential's sealed values.
type Secrets struct {
	ClientSecret string `json:"client_secret,omitempty"`
	AccessToken  string `json:"access_token,omitempty"`
	RefreshToken string `json:"refresh_token,omitempty"`
}

// AuthState is a pending authorization-code flow, found again by the state
// value the provider echoes to the callback.
type AuthState struct {
	// State is the random value sent to the provider. Only its SHA-256
	// hash is stored.
	State        string
	AppID        string
	CredentialID string
	ClientID     string
	RedirectURI  string
	Scopes       []string
	URLParams    map[string]string
	CreatedAt    time.Time
	ExpiresAt    time.Time
	// Sealed at rest.
	ClientSecret string
	CodeVerifier string
}

// Store keeps credentials and pending flows. Implementations are safe for
// concurrent use.
type Store interface {
	// Credential returns a credential with its secrets, or ErrNotFound.
	Credential(ctx context.Context, appID, id string) (*Credential, error)
	// Credentials lists the credentials of appID (all apps when appID is
	// empty), ordered by app and id, without their secrets.
	Credentials(ctx context.Context, appID string) ([]*Credential, error)
	// PutCredential creates or replaces a credential (a new login). It sets
	// c.Version, c.CreatedAt (kept when replacing) and c.UpdatedAt.
	PutCredential(ctx context.Context, c *Credential) error
	// UpdateCredential writes c only if the stored version is still
	// c.Version (else ErrConflict, or ErrNotFound), then advances
	// c.Version and c.UpdatedAt.
	UpdateCredential(ctx context.Context, c *Credential) error
	// DeleteCredential removes a credential (ErrNotFound if absent).
	DeleteCredential(ctx context.Context, appID, id string) error
	// PutAuthState records a pending flow.
	PutAuthState(ctx context.Context, s *AuthState) error
	// TakeAuthState removes and returns the pending flow of state, so each
	// state is used at most once. A flow past its ExpiresAt at now is
	// removed and reported as ErrExpired; an unknown (or used) state is
	// ErrNotFound. Expired flows of other states are purged too.
	TakeAuthState(ctx context.Context, state string, now time.Time) (*AuthState, error)
	// Close releases the backend.
	Close() error
}
