package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
)

// QueuedMessage is a datastream message waiting in the durable queue.
type QueuedMessage struct {
	// ID orders the queue (oldest first); set by Enqueue.
	ID        int64
	Device    string
	Interface string
	Path      string
	Major     int
	QoS       byte
	// Object is set for an object-aggregated message.
	Object bool
	// Payload is the encoded message (BSON {"v", "t"}).
	Payload []byte
	Created time.Time
	// Expires is when the message is dropped unsent; zero means never.
	Expires time.Time
}

// maxBatch bounds how many concurrent enqueues share one transaction.
const maxBatch = 512

type enqueueReq struct {
	msg  QueuedMessage
	done chan enqueueRes
}

type enqueueRes struct {
	id  int64
	err error
}

// Enqueue appends a message to the durable queue. When it returns without
// error the message is on disk (fsync'd) and will survive a crash.
// Concurrent calls are committed together in one transaction (group commit).
func (s *Store) Enqueue(ctx context.Context, m QueuedMessage) (int64, error) {
	if m.Device == "" || m.Interface == "" || len(m.Payload) == 0 {
		return 0, errors.New("store: enqueue: device, interface and payload are required")
	}
	if m.Created.IsZero() {
		m.Created = time.Now()
	}
	req := &enqueueReq{msg: m, done: make(chan enqueueRes, 1)}
	// The read lock keeps Close from finishing while a request is being
	// handed over, so every handed-over request is answered.
	s.closeMu.RLock()
	if s.isClosed {
		s.closeMu.RUnlock()
		return 0, ErrClosed
	}
	select {
	case s.enq <- req:
		s.closeMu.RUnlock()
	case <-ctx.Done():
		s.closeMu.RUnlock()
		return 0, ctx.Err()
	}
	// Once handed to the writer the request is always answered, so the
	// caller learns whether the message was stored even if ctx ends.
	res := <-req.done
	return res.id, res.err
}

// EnqueueAll appends messages to the durable queue in the given order (they
// may share transactions with concurrent enqueues, but keep their relative
// order). It returns one error per message, nil for each one that is on
// disk; a message handed to the writer is always answered, even if ctx
// ends meanwhile. Handing many messages over at once costs one fsync per
// transaction (up to 512 messages) instead of one per message.
func (s *Store) EnqueueAll(ctx context.Context, ms []QueuedMessage) []error {
	errs := make([]error, len(ms))
	reqs := make([]*enqueueReq, len(ms))
	now := time.Now()
	var stop error // once set, the rest is not handed over (order)
	s.closeMu.RLock()
	for k := range ms {
		m := ms[k]
		switch {
		case stop != nil:
			errs[k] = stop
			continue
		case m.Device == "" || m.Interface == "" || len(m.Payload) == 0:
			errs[k] = errors.New("store: enqueue: device, interface and payload are required")
			continue
		case s.isClosed:
			errs[k] = ErrClosed
			continue
		}
		if m.Created.IsZero() {
			m.Created = now
		}
		req := &enqueueReq{msg: m, done: make(chan enqueueRes, 1)}
		select {
		case s.enq <- req:
			reqs[k] = req
		case <-ctx.Done():
			stop = ctx.Err()
			errs[k] = stop
		}
	}
	s.closeMu.RUnlock()
	for k, req := range reqs {
		if req != nil {
			errs[k] = (<-req.done).err
		}
	}
	return errs
}

// writer commits enqueue requests in batches until the store closes.
func (s *Store) writer() {
	defer s.writerWG.Done()
	batch := make([]*enqueueReq, 0, maxBatch)
	for {
		select {
		case req := <-s.enq:
			batch = append(batch[:0], req)
		case <-s.closed:
			// Commit what was handed over before Close, then stop.
			select {
			case req := <-s.enq:
				batch = append(batch[:0], req)
			default:
				return
			}
		}
	more:
		for len(batch) < maxBatch {
			select {
			case req := <-s.enq:
				batch = append(batch, req)
			default:
				break more
			}
		}
		s.commitBatch(batch)
	}
}

func (s *Store) commitBatch(batch []*enqueueReq) {
	fail := func(err error) {
		for _, r := range batch {
			r.done <- enqueueRes{err: wrap("enqueue", err)}
		}
	}
	tx, err := s.db.Begin()
	if err != nil {
		fail(err)
		return
	}
	stmt, err := tx.Prepare(`INSERT INTO queue (device, interface, path, major, qos, object, payload, created_ms, expires_ms)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`)
	if err != nil {
		fail(errors.Join(err, tx.Rollback()))
		return
	}
	ids := make([]int64, len(batch))
	for k, r := range batch {
		m := r.msg
		var exp int64
		if !m.Expires.IsZero() {
			exp = m.Expires.UnixMilli()
		}
		res, err := stmt.Exec(m.Device, m.Interface, m.Path, m.Major, int(m.QoS), boolInt(m.Object), m.Payload, m.Created.UnixMilli(), exp)
		if err != nil {
			fail(errors.Join(err, stmt.Close(), tx.Rollback()))
			return
		}
		ids[k], _ = res.LastInsertId()
	}
	if err := stmt.Close(); err != nil {
		fail(errors.Join(err, tx.Rollback()))
		return
	}
	if err := tx.Commit(); err != nil {
		fail(err)
		return
	}
	for k, r := range batch {
		r.done <- enqueueRes{id: ids[k]}
	}
}

// Peek returns up to limit queued messages of a device, oldest first. It
// first deletes the messages whose expiry is at or before now and reports
// how many it dropped.
func (s *Store) Peek(ctx context.Context, device string, limit int, now time.Time) ([]QueuedMessage, int, error) {
	res, err := s.db.ExecContext(ctx, `DELETE FROM queue WHERE device = ? AND expires_ms != 0 AND expires_ms <= ?`, device, now.UnixMilli())
	if err != nil {
		return nil, 0, wrap("peek", err)
	}
	expired, _ := res.RowsAffected()
	rows, err := s.db.QueryContext(ctx, `SELECT id, interface, path, major, qos, object, payload, created_ms, expires_ms
		FROM queue WHERE device = ? ORDER BY id LIMIT ?`, device, limit)
	if err != nil {
		return nil, int(expired), wrap("peek", err)
	}
	defer func() { _ = rows.Close() }() // rows.Err() is checked below
	var out []QueuedMessage
	for rows.Next() {
		m := QueuedMessage{Device: device}
		var qos, object int
		var created, exp int64
		if err := rows.Scan(&m.ID, &m.Interface, &m.Path, &m.Major, &qos, &object, &m.Payload, &created, &exp); err != nil {
			return nil, int(expired), wrap("peek", err)
		}
		if qos < 0 || qos > 2 {
			return nil, int(expired), wrap("peek", fmt.Errorf("queued message %d has QoS %d", m.ID, qos))
		}
		m.QoS, m.Object, m.Created = byte(qos), object == 1, time.UnixMilli(created)
		if exp != 0 {
			m.Expires = time.UnixMilli(exp)
		}
		out = append(out, m)
	}
	return out, int(expired), wrap("peek", rows.Err())
}

// Ack deletes delivered messages.
func (s *Store) Ack(ctx context.Context, device string, ids ...int64) error {
	if len(ids) == 0 {
		return nil
	}
	args := make([]any, 0, len(ids)+1)
	args = append(args, device)
	for _, id := range ids {
		args = append(args, id)
	}
	q := fmt.Sprintf(`DELETE FROM queue WHERE device = ? AND id IN (%s)`, strings.TrimSuffix(strings.Repeat("?,", len(ids)), ",")) //nolint:gosec // only "?" placeholders are formatted in; the ids are bound
	_, err := s.db.ExecContext(ctx, q, args...)
	return wrap("ack", err)
}

// QueueLen is the number of queued messages of a device (expired ones
// included until the next Peek).
func (s *Store) QueueLen(ctx context.Context, device string) (int, error) {
	var n int
	err := s.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM queue WHERE device = ?`, device).Scan(&n)
	return n, wrap("queue length", err)
}
