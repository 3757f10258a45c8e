// Package store is the plugin's SQLite database (modernc.org/sqlite, one file
// in the data dir): device properties keyed by (device, interface, path) with
// the interface major version, the durable queue of stored-retention
// datastream messages, and small per-device metadata.
//
// The database runs in WAL mode with synchronous=FULL: once Enqueue or
// SetProperty returns, the row survives a kill -9 of the process and a power
// loss.
package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"sync"

	_ "modernc.org/sqlite" // database/sql driver "sqlite"
)

const schemaVersion = 1

const schema = `
CREATE TABLE IF NOT EXISTS properties (
	device     TEXT    NOT NULL,
	interface  TEXT    NOT NULL,
	path       TEXT    NOT NULL,
	major      INTEGER NOT NULL,
	ownership  TEXT    NOT NULL,
	value      BLOB,
	pending    INTEGER NOT NULL DEFAULT 0,
	updated_ms INTEGER NOT NULL,
	PRIMARY KEY (device, interface, path)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS queue (
	id         INTEGER PRIMARY KEY AUTOINCREMENT,
	device     TEXT    NOT NULL,
	interface  TEXT    NOT NULL,
	path       TEXT    NOT NULL,
	major      INTEGER NOT NULL,
	qos        INTEGER NOT NULL,
	object     INTEGER NOT NULL,
	payload    BLOB    NOT NULL,
	created_ms INTEGER NOT NULL,
	expires_ms INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS queue_device ON queue (device, id);
CREATE TABLE IF NOT EXISTS meta (
	device TEXT NOT NULL,
	key    TEXT NOT NULL,
	value  TEXT NOT NULL,
	PRIMARY KEY (device, key)
) WITHOUT ROWID;
`

// Store is an open database. Its methods are safe for concurrent use.
type Store struct {
	db *sql.DB

	enq      chan *enqueueReq
	closeMu  sync.RWMutex
	isClosed bool
	closed   chan struct{}
	writerWG sync.WaitGroup
}

// ErrClosed is returned by calls on a closed store.
var ErrClosed = errors.New("store: closed")

// Open opens (creating if needed) the database file at path.
func Open(path string) (*Store, error) {
	if path == "" {
		return nil, errors.New("store: empty database path")
	}
	// Create the file private (SQLite gives the -wal and -shm files the
	// database file's mode).
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600) //nolint:gosec // the caller's database path (the plugin's data dir) is the point
	if err != nil {
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	q := url.Values{}
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "synchronous(FULL)")
	q.Add("_pragma", "busy_timeout(10000)")
	q.Set("_txlock", "immediate")
	db, err := sql.Open("sqlite", "file:"+(&url.URL{Path: path}).EscapedPath()+"?"+q.Encode())
	if err != nil {
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	// One connection: SQLite serialises writers anyway, and a single
	// connection keeps every statement ordered and free of SQLITE_BUSY.
	db.SetMaxOpenConns(1)
	if err := migrate(db); err != nil {
		return nil, fmt.Errorf("store: %s: %w", path, errors.Join(err, db.Close()))
	}
	s := &Store{db: db, enq: make(chan *enqueueReq, 1024), closed: make(chan struct{})}
	s.writerWG.Add(1)
	go s.writer()
	return s, nil
}

func migrate(db *sql.DB) error {
	var mode string
	if err := db.QueryRow("PRAGMA journal_mode").Scan(&mode); err != nil {
		return err
	}
	if mode != "wal" {
		return fmt.Errorf("journal_mode is %q, want wal", mode)
	}
	var v int
	if err := db.QueryRow("PRAGMA user_version").Scan(&v); err != nil {
		return err
	}
	if v > schemaVersion {
		return fmt.Errorf("database schema version %d is newer than this plugin (%d)", v, schemaVersion)
	}
	if _, err := db.Exec(schema); err != nil {
		return err
	}
	_, err := db.Exec(fmt.Sprintf("PRAGMA user_version = %d", schemaVersion))
	return err
}

// Close waits for pending enqueues and closes the database.
func (s *Store) Close() error {
	s.closeMu.Lock()
	if s.isClosed {
		s.closeMu.Unlock()
		return nil
	}
	s.isClosed = true
	close(s.closed)
	s.closeMu.Unlock()
	s.writerWG.Wait()
	return s.db.Close()
}

// SetMeta stores a per-device key/value.
func (s *Store) SetMeta(ctx context.Context, device, key, value string) error {
	_, err := s.db.ExecContext(ctx, `INSERT INTO meta (device, key, value) VALUES (?, ?, ?)
		ON CONFLICT (device, key) DO UPDATE SET value = excluded.value`, device, key, value)
	return wrap("set meta", err)
}

// Meta returns a per-device value ("" and false when absent).
func (s *Store) Meta(ctx context.Context, device, key string) (string, bool, error) {
	var v string
	err := s.db.QueryRowContext(ctx, `SELECT value FROM meta WHERE device = ? AND key = ?`, device, key).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return "", false, nil
	}
	if err != nil {
		return "", false, wrap("meta", err)
	}
	return v, true, nil
}

// ForgetDevice deletes every property, queued message and metadata of a
// device.
func (s *Store) ForgetDevice(ctx context.Context, device string) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return wrap("forget device", err)
	}
	defer func() { _ = tx.Rollback() }() // a no-op after Commit
	for _, q := range []string{`DELETE FROM properties WHERE device = ?`, `DELETE FROM queue WHERE device = ?`, `DELETE FROM meta WHERE device = ?`} {
		if _, err := tx.ExecContext(ctx, q, device); err != nil {
			return wrap("forget device", err)
		}
	}
	return wrap("forget device", tx.Commit())
}

func wrap(op string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("store: %s: %w", op, err)
}

// MetaPrefix returns the per-device values whose key starts with prefix,
// keyed by the full key.
func (s *Store) MetaPrefix(ctx context.Context, device, prefix string) (map[string]string, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT key, value FROM meta WHERE device = ? AND substr(key, 1, ?) = ?`,
		device, len(prefix), prefix)
	if err != nil {
		return nil, wrap("meta", err)
	}
	defer func() { _ = rows.Close() }() // rows.Err() is checked below
	out := map[string]string{}
	for rows.Next() {
		var k, v string
		if err := rows.Scan(&k, &v); err != nil {
			return nil, wrap("meta", err)
		}
		out[k] = v
	}
	return out, wrap("meta", rows.Err())
}

// DeleteMeta removes a per-device value.
func (s *Store) DeleteMeta(ctx context.Context, device, key string) error {
	_, err := s.db.ExecContext(ctx, `DELETE FROM meta WHERE device = ? AND key = ?`, device, key)
	return wrap("delete meta", err)
}

// DevicesWithMeta returns, for every device that has a value for key, that
// value keyed by device.
func (s *Store) DevicesWithMeta(ctx context.Context, key string) (map[string]string, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT device, value FROM meta WHERE key = ?`, key)
	if err != nil {
		return nil, wrap("meta", err)
	}
	defer func() { _ = rows.Close() }() // rows.Err() is checked below
	out := map[string]string{}
	for rows.Next() {
		var d, v string
		if err := rows.Scan(&d, &v); err != nil {
			return nil, wrap("meta", err)
		}
		out[d] = v
	}
	return out, wrap("meta", rows.Err())
}
