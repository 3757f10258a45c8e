package store

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"time"
)

// Property is a stored property value.
type Property struct {
	Device    string
	Interface string
	Path      string
	// Major is the interface major version the value was written under.
	Major int
	// Ownership is "device" or "server".
	Ownership string
	// Value is the encoded value (the BSON data payload); nil for a pending
	// unset of a device-owned property.
	Value []byte
	// Pending is set for a device-owned change not yet acknowledged by
	// Astarte.
	Pending bool
}

// SetProperty stores a property value, replacing the previous one. pending
// marks a device-owned change that still has to be sent.
func (s *Store) SetProperty(ctx context.Context, p Property) error {
	if len(p.Value) == 0 {
		return errors.New("store: set property: empty value (use MarkUnsetPending or DeleteProperty)")
	}
	_, err := s.db.ExecContext(ctx, `INSERT INTO properties (device, interface, path, major, ownership, value, pending, updated_ms)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (device, interface, path) DO UPDATE SET major = excluded.major, ownership = excluded.ownership,
			value = excluded.value, pending = excluded.pending, updated_ms = excluded.updated_ms`,
		p.Device, p.Interface, p.Path, p.Major, p.Ownership, p.Value, boolInt(p.Pending), time.Now().UnixMilli())
	return wrap("set property", err)
}

// MarkUnsetPending records that a device-owned property was unset while the
// change could not be sent yet: the value is cleared and the row stays as a
// pending tombstone until MarkSent.
func (s *Store) MarkUnsetPending(ctx context.Context, device, iface, path string, major int) error {
	_, err := s.db.ExecContext(ctx, `INSERT INTO properties (device, interface, path, major, ownership, value, pending, updated_ms)
		VALUES (?, ?, ?, ?, 'device', NULL, 1, ?)
		ON CONFLICT (device, interface, path) DO UPDATE SET value = NULL, pending = 1, updated_ms = excluded.updated_ms`,
		device, iface, path, major, time.Now().UnixMilli())
	return wrap("unset property", err)
}

// MarkSent clears the pending flag of a property if its value is still
// value (nil for an unset, which deletes the tombstone). A value changed in
// the meantime stays pending.
func (s *Store) MarkSent(ctx context.Context, device, iface, path string, value []byte) error {
	var err error
	if value == nil {
		_, err = s.db.ExecContext(ctx, `DELETE FROM properties WHERE device = ? AND interface = ? AND path = ? AND value IS NULL`,
			device, iface, path)
	} else {
		_, err = s.db.ExecContext(ctx, `UPDATE properties SET pending = 0 WHERE device = ? AND interface = ? AND path = ? AND value = ?`,
			device, iface, path, value)
	}
	return wrap("mark property sent", err)
}

// MarkAllSent clears every pending flag of a device and deletes its unset
// tombstones (after a full resynchronisation with Astarte).
func (s *Store) MarkAllSent(ctx context.Context, device string) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return wrap("mark properties sent", err)
	}
	defer func() { _ = tx.Rollback() }() // a no-op after Commit
	if _, err := tx.ExecContext(ctx, `DELETE FROM properties WHERE device = ? AND value IS NULL`, device); err != nil {
		return wrap("mark properties sent", err)
	}
	if _, err := tx.ExecContext(ctx, `UPDATE properties SET pending = 0 WHERE device = ? AND pending = 1`, device); err != nil {
		return wrap("mark properties sent", err)
	}
	return wrap("mark properties sent", tx.Commit())
}

// DeleteProperty removes a property (server unset, purge).
func (s *Store) DeleteProperty(ctx context.Context, device, iface, path string) error {
	_, err := s.db.ExecContext(ctx, `DELETE FROM properties WHERE device = ? AND interface = ? AND path = ?`, device, iface, path)
	return wrap("delete property", err)
}

// DeleteInterfaceProperties removes every property of an interface.
func (s *Store) DeleteInterfaceProperties(ctx context.Context, device, iface string) error {
	_, err := s.db.ExecContext(ctx, `DELETE FROM properties WHERE device = ? AND interface = ?`, device, iface)
	return wrap("delete interface properties", err)
}

// DropOtherMajors deletes the properties of an interface stored under a
// major version other than major, and reports how many were dropped.
func (s *Store) DropOtherMajors(ctx context.Context, device, iface string, major int) (int, error) {
	res, err := s.db.ExecContext(ctx, `DELETE FROM properties WHERE device = ? AND interface = ? AND major != ?`, device, iface, major)
	if err != nil {
		return 0, wrap("drop other majors", err)
	}
	n, _ := res.RowsAffected()
	return int(n), nil
}

// Property loads one property value. A value stored under another major
// version is deleted and reported as absent, as are pending unsets.
func (s *Store) Property(ctx context.Context, device, iface, path string, major int) (Property, bool, error) {
	p := Property{Device: device, Interface: iface, Path: path}
	var pending int
	err := s.db.QueryRowContext(ctx, `SELECT major, ownership, value, pending FROM properties
		WHERE device = ? AND interface = ? AND path = ?`, device, iface, path).Scan(&p.Major, &p.Ownership, &p.Value, &pending)
	if errors.Is(err, sql.ErrNoRows) {
		return Property{}, false, nil
	}
	if err != nil {
		return Property{}, false, wrap("load property", err)
	}
	if p.Major != major {
		if err := s.DeleteProperty(ctx, device, iface, path); err != nil {
			return Property{}, false, err
		}
		return Property{}, false, nil
	}
	p.Pending = pending == 1
	if p.Value == nil {
		return Property{}, false, nil
	}
	return p, true, nil
}

// Properties returns every stored row of a device (including pending unset
// tombstones, whose Value is nil), ordered by interface and path.
func (s *Store) Properties(ctx context.Context, device string) ([]Property, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT interface, path, major, ownership, value, pending FROM properties
		WHERE device = ? ORDER BY interface, path`, device)
	if err != nil {
		return nil, wrap("load properties", err)
	}
	defer func() { _ = rows.Close() }() // rows.Err() is checked below
	var out []Property
	for rows.Next() {
		p := Property{Device: device}
		var pending int
		if err := rows.Scan(&p.Interface, &p.Path, &p.Major, &p.Ownership, &p.Value, &pending); err != nil {
			return nil, wrap("load properties", err)
		}
		p.Pending = pending == 1
		out = append(out, p)
	}
	return out, wrap("load properties", rows.Err())
}

// SameValue reports whether two encoded values are equal.
func SameValue(a, b []byte) bool { return bytes.Equal(a, b) && (a == nil) == (b == nil) }

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}
