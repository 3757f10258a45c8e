package store

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"time"

	_ "modernc.org/sqlite" // database/sql driver "sqlite"
)

// DBFileName is the host database in the data directory.
const DBFileName = "host.db"

// SQLite is the embedded Store: one database file (WAL, synchronous=FULL).
type SQLite struct {
	db     *sql.DB
	cipher *Cipher
}

var _ Store = (*SQLite)(nil)

// Open opens the host's default store: the SQLite database in dataDir,
// with the key from configuredKeyHex or the generated key file.
func Open(dataDir, configuredKeyHex string) (*SQLite, error) {
	key, err := LoadKey(configuredKeyHex, dataDir)
	if err != nil {
		return nil, err
	}
	c, err := NewCipher(key)
	if err != nil {
		return nil, err
	}
	return OpenSQLite(filepath.Join(dataDir, DBFileName), c)
}

// migrations are applied in order; user_version counts the applied ones.
var migrations = []string{
	`CREATE TABLE credentials (
		app_id        TEXT    NOT NULL,
		id            TEXT    NOT NULL,
		flow          TEXT    NOT NULL,
		client_id     TEXT    NOT NULL,
		scopes        TEXT    NOT NULL,
		url_params    TEXT    NOT NULL,
		token_type    TEXT    NOT NULL,
		expires_at    INTEGER NOT NULL,
		status        TEXT    NOT NULL,
		status_reason TEXT    NOT NULL,
		secrets       BLOB    NOT NULL,
		version       INTEGER NOT NULL,
		created_at    INTEGER NOT NULL,
		updated_at    INTEGER NOT NULL,
		PRIMARY KEY (app_id, id)
	) WITHOUT ROWID;
	CREATE TABLE oauth_states (
		state_hash    BLOB    PRIMARY KEY,
		app_id        TEXT    NOT NULL,
		credential_id TEXT    NOT NULL,
		client_id     TEXT    NOT NULL,
		redirect_uri  TEXT    NOT NULL,
		scopes        TEXT    NOT NULL,
		url_params    TEXT    NOT NULL,
		secrets       BLOB    NOT NULL,
		created_at    INTEGER NOT NULL,
		expires_at    INTEGER NOT NULL
	) WITHOUT ROWID;
	CREATE INDEX oauth_states_expiry ON oauth_states (expires_at);`,
}

// OpenSQLite opens (creating if needed, mode 0600) the database at path.
func OpenSQLite(path string, c *Cipher) (*SQLite, error) {
	if c == nil {
		return nil, errors.New("store: a cipher is required")
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	_ = f.Close() // opened only to create the file with mode 0600; nothing was written
	q := url.Values{}
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "synchronous(FULL)")
	q.Add("_pragma", "busy_timeout(10000)")
	q.Add("_pragma", "foreign_keys(ON)")
	db, err := sql.Open("sqlite", "file:"+(&url.URL{Path: path}).EscapedPath()+"?"+q.Encode())
	if err != nil {
		return nil, fmt.Errorf("store %s: %w", path, err)
	}
	s := &SQLite{db: db, cipher: c}
	if err := s.migrate(context.Background()); err != nil {
		_ = db.Close() // the migration error is the one to report
		return nil, fmt.Errorf("store %s: %w", path, err)
	}
	return s, nil
}

func (s *SQLite) migrate(ctx context.Context) error {
	conn, err := s.db.Conn(ctx)
	if err != nil {
		return err
	}
	defer func() { _ = conn.Close() }() // returns it to the pool; the transaction is settled below
	// BEGIN IMMEDIATE serialises concurrent first opens (a CLI and a
	// server starting together).
	if _, err := conn.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		return err
	}
	var v int
	if err := conn.QueryRowContext(ctx, "PRAGMA user_version").Scan(&v); err != nil {
		_, _ = conn.ExecContext(ctx, "ROLLBACK")
		return err
	}
	if v > len(migrations) {
		_, _ = conn.ExecContext(ctx, "ROLLBACK")
		return fmt.Errorf("database schema version %d is newer than this host understands (%d)", v, len(migrations))
	}
	for i := v; i < len(migrations); i++ {
		if _, err := conn.ExecContext(ctx, migrations[i]); err != nil {
			_, _ = conn.ExecContext(ctx, "ROLLBACK")
			return fmt.Errorf("migration %d: %w", i+1, err)
		}
	}
	if _, err := conn.ExecContext(ctx, fmt.Sprintf("PRAGMA user_version = %d", len(migrations))); err != nil {
		_, _ = conn.ExecContext(ctx, "ROLLBACK")
		return err
	}
	_, err = conn.ExecContext(ctx, "COMMIT")
	return err
}

// Close closes the database.
func (s *SQLite) Close() error { return s.db.Close() }

func credentialAAD(appID, id string) []byte {
	return []byte("credential\x00" + appID + "\x00" + id)
}

func stateAAD(hash []byte) []byte {
	return append([]byte("oauth_state\x00"), hash...)
}

func hashState(state string) []byte {
	h := sha256.Sum256([]byte(state))
	return h[:]
}

func millis(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

func fromMillis(ms int64) time.Time {
	if ms == 0 {
		return time.Time{}
	}
	return time.UnixMilli(ms).UTC()
}

func marshalText(v any) (string, error) {
	b, err := json.Marshal(v)
	return string(b), err
}

func (s *SQLite) sealJSON(v any, aad []byte) ([]byte, error) {
	plain, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	return s.cipher.Seal(plain, aad)
}

func (s *SQLite) openJSON(sealed, aad []byte, v any) error {
	plain, err := s.cipher.Open(sealed, aad)
	if err != nil {
		return err
	}
	return json.Unmarshal(plain, v)
}

const credentialColumns = `app_id, id, flow, client_id, scopes, url_params, token_type, expires_at, status, status_reason, secrets, version, created_at, updated_at` //nolint:gosec // column names, not credentials

type rowScanner interface{ Scan(dest ...any) error }

func (s *SQLite) scanCredential(r rowScanner, withSecrets bool) (*Credential, error) {
	var (
		c                     Credential
		scopes, params        string
		sealed                []byte
		exp, created, updated int64
	)
	if err := r.Scan(&c.AppID, &c.ID, &c.Flow, &c.ClientID, &scopes, &params, &c.TokenType, &exp, &c.Status, &c.StatusReason, &sealed, &c.Version, &created, &updated); err != nil {
		return nil, err
	}
	if err := json.Unmarshal([]byte(scopes), &c.Scopes); err != nil {
		return nil, fmt.Errorf("credential %s/%s: scopes: %w", c.AppID, c.ID, err)
	}
	if err := json.Unmarshal([]byte(params), &c.URLParams); err != nil {
		return nil, fmt.Errorf("credential %s/%s: url_params: %w", c.AppID, c.ID, err)
	}
	c.Expiry, c.CreatedAt, c.UpdatedAt = fromMillis(exp), fromMillis(created), fromMillis(updated)
	if withSecrets {
		if err := s.openJSON(sealed, credentialAAD(c.AppID, c.ID), &c.Secrets); err != nil {
			return nil, fmt.Errorf("credential %s/%s: secrets: %w", c.AppID, c.ID, err)
		}
	}
	return &c, nil
}

// Credential implements Store.
func (s *SQLite) Credential(ctx context.Context, appID, id string) (*Credential, error) {
	row := s.db.QueryRowContext(ctx, `SELECT `+credentialColumns+` FROM credentials WHERE app_id = ? AND id = ?`, appID, id)
	c, err := s.scanCredential(row, true)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("credential %s/%s: %w", appID, id, ErrNotFound)
	}
	return c, err
}

// Credentials implements Store.
func (s *SQLite) Credentials(ctx context.Context, appID string) ([]*Credential, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+credentialColumns+` FROM credentials WHERE ? = '' OR app_id = ? ORDER BY app_id, id`, appID, appID)
	if err != nil {
		return nil, err
	}
	defer func() { _ = rows.Close() }() // read only; rows.Err reports a failed read
	var out []*Credential
	for rows.Next() {
		c, err := s.scanCredential(rows, false)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, rows.Err()
}

// credentialValues encodes c's columns (after app_id, id) for a write.
func (s *SQLite) credentialValues(c *Credential) (scopes, params string, sealed []byte, err error) {
	if c.Scopes == nil {
		c.Scopes = []string{}
	}
	if c.URLParams == nil {
		c.URLParams = map[string]string{}
	}
	if scopes, err = marshalText(c.Scopes); err != nil {
		return
	}
	if params, err = marshalText(c.URLParams); err != nil {
		return
	}
	sealed, err = s.sealJSON(c.Secrets, credentialAAD(c.AppID, c.ID))
	return
}

func checkCredential(c *Credential) error {
	switch {
	case c.AppID == "":
		return errors.New("credential: app_id is empty")
	case c.ID == "":
		return errors.New("credential: id is empty")
	case c.Status != StatusActive && c.Status != StatusRevoked:
		return fmt.Errorf("credential %s/%s: unknown status %q", c.AppID, c.ID, c.Status)
	}
	return nil
}

// PutCredential implements Store.
func (s *SQLite) PutCredential(ctx context.Context, c *Credential) error {
	if c.Status == "" {
		c.Status = StatusActive
	}
	if err := checkCredential(c); err != nil {
		return err
	}
	scopes, params, sealed, err := s.credentialValues(c)
	if err != nil {
		return err
	}
	now := time.Now().UTC()
	var version, created int64
	err = s.db.QueryRowContext(ctx, `INSERT INTO credentials (`+credentialColumns+`)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1, ?, ?)
		ON CONFLICT (app_id, id) DO UPDATE SET
			flow = excluded.flow, client_id = excluded.client_id, scopes = excluded.scopes,
			url_params = excluded.url_params, token_type = excluded.token_type,
			expires_at = excluded.expires_at, status = excluded.status,
			status_reason = excluded.status_reason, secrets = excluded.secrets,
			version = credentials.version + 1, updated_at = excluded.updated_at
		RETURNING version, created_at`,
		c.AppID, c.ID, c.Flow, c.ClientID, scopes, params, c.TokenType, millis(c.Expiry), c.Status, c.StatusReason, sealed,
		now.UnixMilli(), now.UnixMilli()).Scan(&version, &created)
	if err != nil {
		return fmt.Errorf("credential %s/%s: %w", c.AppID, c.ID, err)
	}
	c.Version, c.CreatedAt, c.UpdatedAt = version, fromMillis(created), fromMillis(now.UnixMilli())
	return nil
}

// UpdateCredential implements Store.
func (s *SQLite) UpdateCredential(ctx context.Context, c *Credential) error {
	if err := checkCredential(c); err != nil {
		return err
	}
	scopes, params, sealed, err := s.credentialValues(c)
	if err != nil {
		return err
	}
	now := time.Now().UTC()
	res, err := s.db.ExecContext(ctx, `UPDATE credentials SET
			flow = ?, client_id = ?, scopes = ?, url_params = ?, token_type = ?, expires_at = ?,
			status = ?, status_reason = ?, secrets = ?, version = version + 1, updated_at = ?
		WHERE app_id = ? AND id = ? AND version = ?`,
		c.Flow, c.ClientID, scopes, params, c.TokenType, millis(c.Expiry), c.Status, c.StatusReason, sealed, now.UnixMilli(),
		c.AppID, c.ID, c.Version)
	if err != nil {
		return fmt.Errorf("credential %s/%s: %w", c.AppID, c.ID, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return fmt.Errorf("credential %s/%s: %w", c.AppID, c.ID, err)
	}
	if n == 0 {
		var one int
		err := s.db.QueryRowContext(ctx, `SELECT 1 FROM credentials WHERE app_id = ? AND id = ?`, c.AppID, c.ID).Scan(&one)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("credential %s/%s: %w", c.AppID, c.ID, ErrNotFound)
		}
		return fmt.Errorf("credential %s/%s: %w", c.AppID, c.ID, ErrConflict)
	}
	c.Version++
	c.UpdatedAt = fromMillis(now.UnixMilli())
	return nil
}

// DeleteCredential implements Store.
func (s *SQLite) DeleteCredential(ctx context.Context, appID, id string) error {
	res, err := s.db.ExecContext(ctx, `DELETE FROM credentials WHERE app_id = ? AND id = ?`, appID, id)
	if err != nil {
		return fmt.Errorf("credential %s/%s: %w", appID, id, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("credential %s/%s: %w", appID, id, ErrNotFound)
	}
	return nil
}

type stateSecrets struct {
	ClientSecret string `json:"client_secret,omitempty"`
	CodeVerifier string `json:"code_verifier,omitempty"`
}

// PutAuthState implements Store.
func (s *SQLite) PutAuthState(ctx context.Context, st *AuthState) error {
	if st.State == "" || st.AppID == "" || st.CredentialID == "" {
		return errors.New("auth state: state, app_id and credential_id are required")
	}
	if st.ExpiresAt.IsZero() {
		return errors.New("auth state: expires_at is required")
	}
	hash := hashState(st.State)
	scopes, err := marshalText(orEmpty(st.Scopes))
	if err != nil {
		return err
	}
	params, err := marshalText(orEmptyMap(st.URLParams))
	if err != nil {
		return err
	}
	sealed, err := s.sealJSON(stateSecrets{ClientSecret: st.ClientSecret, CodeVerifier: st.CodeVerifier}, stateAAD(hash))
	if err != nil {
		return err
	}
	if st.CreatedAt.IsZero() {
		st.CreatedAt = time.Now().UTC()
	}
	_, err = s.db.ExecContext(ctx, `INSERT INTO oauth_states
		(state_hash, app_id, credential_id, client_id, redirect_uri, scopes, url_params, secrets, created_at, expires_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		hash, st.AppID, st.CredentialID, st.ClientID, st.RedirectURI, scopes, params, sealed, millis(st.CreatedAt), millis(st.ExpiresAt))
	if err != nil {
		return fmt.Errorf("auth state: %w", err)
	}
	return nil
}

// TakeAuthState implements Store.
func (s *SQLite) TakeAuthState(ctx context.Context, state string, now time.Time) (*AuthState, error) {
	hash := hashState(state)
	var (
		st               AuthState
		scopes, params   string
		sealed           []byte
		created, expires int64
	)
	err := s.db.QueryRowContext(ctx, `DELETE FROM oauth_states WHERE state_hash = ?
		RETURNING app_id, credential_id, client_id, redirect_uri, scopes, url_params, secrets, created_at, expires_at`, hash).
		Scan(&st.AppID, &st.CredentialID, &st.ClientID, &st.RedirectURI, &scopes, &params, &sealed, &created, &expires)
	// Purge other expired flows while we are here.
	if _, perr := s.db.ExecContext(ctx, `DELETE FROM oauth_states WHERE expires_at <= ?`, now.UnixMilli()); perr != nil && err == nil {
		err = perr
	}
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("auth state: %w", ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("auth state: %w", err)
	}
	st.State = state
	st.CreatedAt, st.ExpiresAt = fromMillis(created), fromMillis(expires)
	if !now.Before(st.ExpiresAt) {
		return nil, fmt.Errorf("auth state: %w", ErrExpired)
	}
	if err := json.Unmarshal([]byte(scopes), &st.Scopes); err != nil {
		return nil, fmt.Errorf("auth state: scopes: %w", err)
	}
	if err := json.Unmarshal([]byte(params), &st.URLParams); err != nil {
		return nil, fmt.Errorf("auth state: url_params: %w", err)
	}
	var sec stateSecrets
	if err := s.openJSON(sealed, stateAAD(hash), &sec); err != nil {
		return nil, fmt.Errorf("auth state: %w", err)
	}
	st.ClientSecret, st.CodeVerifier = sec.ClientSecret, sec.CodeVerifier
	return &st, nil
}

func orEmpty(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func orEmptyMap(m map[string]string) map[string]string {
	if m == nil {
		return map[string]string{}
	}
	return m
}
