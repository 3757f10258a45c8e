// Package store keeps the records the DSYNC platform writes to the
// connector (the inbound API) in one SQLite file, dsync.db, in the plugin's
// data directory. Records are validated against their entity's fields in the
// data layout and keyed by entity token and primary key value.
//
// Pagination is keyset-based: List returns records in creation order, at
// most limit of them (1..MaxLimit, default DefaultLimit), and an opaque
// NextCursor to pass back for the next page ("" on the last page). Cursors
// stay valid while records are added or deleted: a page never repeats or
// skips a record that existed for the whole listing.
//
// Errors are *sdk.Error: bad_request (invalid record or id; the cause is a
// *layout.ValidationError naming each field), not_found, conflict (create of
// an existing primary key), invalid_page_token.
package store

import (
	"context"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	_ "modernc.org/sqlite" // database/sql driver "sqlite"

	"github.com/connector-host/connector-host/plugins/dsync/internal/layout"
	"github.com/connector-host/connector-host/sdk"
)

// FileName is the database file inside the data directory.
const FileName = "dsync.db"

// Page sizes of List.
const (
	DefaultLimit = 100
	MaxLimit     = 1000
)

const schemaSQL = `
CREATE TABLE IF NOT EXISTS records (
	seq        INTEGER PRIMARY KEY AUTOINCREMENT,
	entity     TEXT NOT NULL,
	id         TEXT NOT NULL,
	data       TEXT NOT NULL,
	created_at TEXT NOT NULL,
	updated_at TEXT NOT NULL,
	UNIQUE (entity, id)
);`

// Store is the inbound records store. It is safe for concurrent use.
type Store struct {
	db      *sql.DB
	schemas map[string]*layout.RecordSchema
	path    string
}

// Page is one page of a listing.
type Page struct {
	// Records are the records' JSON, in creation order.
	Records []json.RawMessage `json:"records"`
	// NextCursor fetches the next page; "" on the last one.
	NextCursor string `json:"next_cursor"`
}

// Open opens (creating if needed) dataDir/dsync.db for the entities of l.
// Every entity must be servable (see layout.Entity.RecordSchema).
func Open(dataDir string, l *layout.Layout) (*Store, error) {
	if l == nil {
		return nil, errors.New("store: data layout is required")
	}
	schemas, err := l.Schemas()
	if err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	if dataDir == "" {
		return nil, errors.New("store: data directory is required")
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	path := filepath.Join(dataDir, FileName)
	dsn := "file:" + path + "?_pragma=busy_timeout(5000)&_pragma=journal_mode(WAL)&_pragma=synchronous(NORMAL)"
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	// One connection serialises writers; SQLite is fast enough for the
	// platform's call rate and this rules out SQLITE_BUSY.
	db.SetMaxOpenConns(1)
	if _, err := db.Exec(schemaSQL); err != nil {
		return nil, fmt.Errorf("store: init %s: %w", path, errors.Join(err, db.Close()))
	}
	return &Store{db: db, schemas: schemas, path: path}, nil
}

// Close closes the database.
func (s *Store) Close() error { return s.db.Close() }

// Path is the database file.
func (s *Store) Path() string { return s.path }

// Schema returns the record schema of an entity.
func (s *Store) Schema(entityToken string) (*layout.RecordSchema, bool) {
	sc, ok := s.schemas[entityToken]
	return sc, ok
}

func (s *Store) schema(entityToken string) (*layout.RecordSchema, error) {
	sc, ok := s.schemas[entityToken]
	if !ok {
		return nil, sdk.Errorf(sdk.NotFound, "entity %q is not in the data layout", entityToken)
	}
	return sc, nil
}

// Create validates and inserts a record; an existing primary key is a
// conflict.
func (s *Store) Create(ctx context.Context, entityToken string, data []byte) (layout.Record, error) {
	sc, err := s.schema(entityToken)
	if err != nil {
		return layout.Record{}, err
	}
	rec, err := sc.Validate(data)
	if err != nil {
		return layout.Record{}, sdk.Errorf(sdk.BadRequest, "%w", err)
	}
	now := time.Now().UTC().Format(time.RFC3339Nano)
	res, err := s.db.ExecContext(ctx,
		`INSERT INTO records (entity, id, data, created_at, updated_at) VALUES (?, ?, ?, ?, ?) ON CONFLICT (entity, id) DO NOTHING`,
		entityToken, rec.ID, string(rec.Data), now, now)
	if err != nil {
		return layout.Record{}, dbError("create", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return layout.Record{}, sdk.Errorf(sdk.Conflict, "%s %q already exists", pkName(sc), rec.ID)
	}
	return rec, nil
}

// Update validates data and replaces the record it identifies. When id is
// not empty (the id named by the caller, e.g. in the URL) the record's
// primary key must equal it.
func (s *Store) Update(ctx context.Context, entityToken, id string, data []byte) (layout.Record, error) {
	sc, err := s.schema(entityToken)
	if err != nil {
		return layout.Record{}, err
	}
	rec, err := sc.Validate(data)
	if err != nil {
		return layout.Record{}, sdk.Errorf(sdk.BadRequest, "%w", err)
	}
	if id != "" && rec.ID != id {
		return layout.Record{}, sdk.Errorf(sdk.BadRequest, "%s: %q does not match the record id %q the request names", pkName(sc), rec.ID, id)
	}
	res, err := s.db.ExecContext(ctx, `UPDATE records SET data = ?, updated_at = ? WHERE entity = ? AND id = ?`,
		string(rec.Data), time.Now().UTC().Format(time.RFC3339Nano), entityToken, rec.ID)
	if err != nil {
		return layout.Record{}, dbError("update", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return layout.Record{}, sdk.Errorf(sdk.NotFound, "%s %q not found", pkName(sc), rec.ID)
	}
	return rec, nil
}

// Get returns a record's JSON.
func (s *Store) Get(ctx context.Context, entityToken, id string) (json.RawMessage, error) {
	sc, id, err := s.schemaAndID(entityToken, id)
	if err != nil {
		return nil, err
	}
	var data string
	err = s.db.QueryRowContext(ctx, `SELECT data FROM records WHERE entity = ? AND id = ?`, entityToken, id).Scan(&data)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, sdk.Errorf(sdk.NotFound, "%s %q not found", pkName(sc), id)
	}
	if err != nil {
		return nil, dbError("get", err)
	}
	return json.RawMessage(data), nil
}

// Delete removes a record and returns its JSON.
func (s *Store) Delete(ctx context.Context, entityToken, id string) (json.RawMessage, error) {
	sc, id, err := s.schemaAndID(entityToken, id)
	if err != nil {
		return nil, err
	}
	var data string
	err = s.db.QueryRowContext(ctx, `DELETE FROM records WHERE entity = ? AND id = ? RETURNING data`, entityToken, id).Scan(&data)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, sdk.Errorf(sdk.NotFound, "%s %q not found", pkName(sc), id)
	}
	if err != nil {
		return nil, dbError("delete", err)
	}
	return json.RawMessage(data), nil
}

// List returns up to limit records after cursor (see the package doc).
func (s *Store) List(ctx context.Context, entityToken string, limit int, cursor string) (Page, error) {
	if _, err := s.schema(entityToken); err != nil {
		return Page{}, err
	}
	if limit == 0 {
		limit = DefaultLimit
	}
	if limit < 1 || limit > MaxLimit {
		return Page{}, sdk.Errorf(sdk.BadRequest, "limit: must be between 1 and %d, got %d", MaxLimit, limit)
	}
	after, err := decodeCursor(cursor)
	if err != nil {
		return Page{}, err
	}
	rows, err := s.db.QueryContext(ctx,
		`SELECT seq, data FROM records WHERE entity = ? AND seq > ? ORDER BY seq LIMIT ?`, entityToken, after, limit+1)
	if err != nil {
		return Page{}, dbError("list", err)
	}
	defer func() { _ = rows.Close() }() // rows.Err() is checked below
	page := Page{Records: []json.RawMessage{}}
	var last int64
	for rows.Next() {
		var seq int64
		var data string
		if err := rows.Scan(&seq, &data); err != nil {
			return Page{}, dbError("list", err)
		}
		if len(page.Records) == limit {
			page.NextCursor = encodeCursor(last)
			break
		}
		page.Records = append(page.Records, json.RawMessage(data))
		last = seq
	}
	if err := rows.Err(); err != nil {
		return Page{}, dbError("list", err)
	}
	return page, nil
}

// Count returns how many records an entity has.
func (s *Store) Count(ctx context.Context, entityToken string) (int, error) {
	var n int
	if err := s.db.QueryRowContext(ctx, `SELECT count(*) FROM records WHERE entity = ?`, entityToken).Scan(&n); err != nil {
		return 0, dbError("count", err)
	}
	return n, nil
}

func (s *Store) schemaAndID(entityToken, id string) (*layout.RecordSchema, string, error) {
	sc, err := s.schema(entityToken)
	if err != nil {
		return nil, "", err
	}
	id, err = sc.ParseRecordID(id)
	if err != nil {
		return nil, "", sdk.Errorf(sdk.BadRequest, "%s: %w", pkName(sc), err)
	}
	return sc, id, nil
}

// pkName is the record path of the entity's primary key, e.g. "sku".
func pkName(sc *layout.RecordSchema) string {
	_, path := sc.PrimaryKey()
	return strings.Join(path, ".")
}

const cursorPrefix = "seq:"

func encodeCursor(seq int64) string {
	return base64.RawURLEncoding.EncodeToString([]byte(cursorPrefix + strconv.FormatInt(seq, 10)))
}

func decodeCursor(c string) (int64, error) {
	if c == "" {
		return 0, nil
	}
	b, err := base64.RawURLEncoding.DecodeString(c)
	if err == nil && strings.HasPrefix(string(b), cursorPrefix) {
		if seq, perr := strconv.ParseInt(string(b[len(cursorPrefix):]), 10, 64); perr == nil && seq >= 0 {
			return seq, nil
		}
	}
	return 0, sdk.Errorf(sdk.InvalidPageToken, "cursor: %q is not a cursor this connector issued", truncate(c, 64))
}

func dbError(op string, err error) error {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return sdk.Errorf(sdk.RequestTimeout, "store %s: %w", op, err)
	}
	return sdk.Errorf(sdk.InternalError, "store %s: %w", op, err)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
