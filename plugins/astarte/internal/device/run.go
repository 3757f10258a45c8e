package device

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/connector-host/connector-host/plugins/astarte/internal/interfaces"
	"github.com/connector-host/connector-host/plugins/astarte/internal/payload"
	"github.com/connector-host/connector-host/plugins/astarte/internal/store"
	"github.com/connector-host/connector-host/plugins/astarte/internal/transport"
)

// Connect starts connecting over tr in the background and keeps the device
// connected (reconnecting forever with backoff) until Disconnect. Use
// WaitState to wait for the connection. Calling Connect on a device that is
// already running returns an error naming its transport.
func (d *Device) Connect(tr transport.Transport) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return ErrClosed
	}
	if d.cancelRun != nil {
		return fmt.Errorf("device %s is already connecting or connected over %s: disconnect first", d.id, d.trName)
	}
	ctx, cancel := context.WithCancel(context.Background())
	d.cancelRun, d.runDone, d.trName, d.lastErr, d.lastErrV = cancel, make(chan struct{}), tr.Name(), "", nil
	d.setStateLocked(Connecting, modeOffline)
	go d.run(ctx, tr, d.runDone)
	return nil
}

// Disconnect closes the connection gracefully and stops reconnecting. It
// waits until the device is disconnected or ctx ends. Disconnecting a
// disconnected device does nothing.
func (d *Device) Disconnect(ctx context.Context) error {
	d.mu.Lock()
	cancel, done := d.cancelRun, d.runDone
	d.mu.Unlock()
	if cancel == nil {
		return nil
	}
	cancel()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("device %s: disconnect: %w", d.id, ctx.Err())
	}
}

// Close disconnects and makes every later call fail with ErrClosed.
// Subscriptions are closed.
func (d *Device) Close(ctx context.Context) error {
	err := d.Disconnect(ctx)
	d.mu.Lock()
	d.closed = true
	d.mu.Unlock()
	d.closeSubscriptions()
	return err
}

// run is the connection loop of one Connect.
func (d *Device) run(ctx context.Context, tr transport.Transport, done chan struct{}) {
	defer close(done)
	step := d.cfg.BackoffMin
	for attempt := 0; ; attempt++ {
		if ctx.Err() != nil {
			d.finishRun("disconnect requested")
			return
		}
		conn, snap, err := d.connectOnce(ctx, tr)
		if err != nil {
			if ctx.Err() != nil {
				d.finishRun("disconnect requested")
				return
			}
			d.mu.Lock()
			d.lastErr, d.lastErrV = err.Error(), err
			d.mu.Unlock()
			delay := step/2 + rand.N(step/2+1) //nolint:gosec // reconnect jitter, not a secret
			d.log.Info("connection attempt failed", "attempt", attempt+1, "retry_in", delay, "error", err)
			step = min(step*2, d.cfg.BackoffMax)
			t := time.NewTimer(delay)
			select {
			case <-ctx.Done():
				t.Stop()
				d.finishRun("disconnect requested")
				return
			case <-t.C:
			}
			continue
		}
		connectedAt := time.Now()
		d.mu.Lock()
		d.conn, d.lastErr, d.lastErrV = conn, "", nil
		d.setStateLocked(Connected, modeDraining)
		d.mu.Unlock()
		d.emit(Event{Type: EventConnected})
		d.log.Info("connected", "transport", tr.Name(), "resynced", conn.Resynced())

		reason := "connection lost"
		err = d.afterConnect(ctx, conn, snap)
		if err != nil && ctx.Err() == nil && !errors.Is(err, transport.ErrDisconnected) {
			// The queues cannot drain on this connection (a store or
			// transport failure): drop it and retry with backoff rather
			// than stay connected with messages stuck.
			d.log.Warn("post-connect synchronisation failed; reconnecting", "error", err)
			reason = "synchronisation failed: " + err.Error()
			cctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_ = conn.Close(cctx)
			cancel()
		}
		select {
		case <-ctx.Done():
			cctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_ = conn.Close(cctx)
			cancel()
			d.finishRun("disconnect requested")
			return
		case <-conn.Done():
		}
		lostErr := conn.Err()
		if lostErr != nil {
			reason = lostErr.Error()
		} else {
			lostErr = errors.New(reason)
		}
		d.mu.Lock()
		d.conn, d.lastErr, d.lastErrV = nil, reason, lostErr
		d.setStateLocked(Connecting, modeOffline)
		d.mu.Unlock()
		d.emit(Event{Type: EventDisconnected, Reason: reason})
		d.log.Info("disconnected, reconnecting", "reason", reason)
		// A connection that held for a while reconnects at once with the
		// backoff reset; one that dropped quickly waits and backs off, so
		// a broker that keeps closing the connection is not hammered.
		if time.Since(connectedAt) >= stableConnection {
			step = d.cfg.BackoffMin
			continue
		}
		delay := step/2 + rand.N(step/2+1) //nolint:gosec // reconnect jitter, not a secret
		step = min(step*2, d.cfg.BackoffMax)
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			d.finishRun("disconnect requested")
			return
		case <-t.C:
		}
	}
}

// stableConnection is how long a connection must last for the backoff to
// reset.
const stableConnection = 10 * time.Second

// finishRun marks the device disconnected at the end of run.
func (d *Device) finishRun(reason string) {
	d.mu.Lock()
	wasConnected := d.state == Connected
	d.conn, d.cancelRun, d.runDone = nil, nil, nil
	d.setStateLocked(Disconnected, modeOffline)
	d.mu.Unlock()
	if wasConnected {
		d.emit(Event{Type: EventDisconnected, Reason: reason, Requested: true})
	}
}

// connectOnce builds the session and makes one attempt.
func (d *Device) connectOnce(ctx context.Context, tr transport.Transport) (transport.Conn, []store.Property, error) {
	d.mu.Lock()
	intro := d.intro.Clone()
	d.mu.Unlock()
	rows, err := d.store.Properties(ctx, d.id)
	if err != nil {
		return nil, nil, err
	}
	var props []transport.Property
	var snap []store.Property
	for _, r := range rows {
		if r.Ownership != string(interfaces.DeviceOwned) {
			continue
		}
		iface := intro.Get(r.Interface)
		if iface == nil || iface.Major != r.Major || iface.Ownership != interfaces.DeviceOwned {
			continue
		}
		snap = append(snap, r)
		if r.Value != nil {
			props = append(props, transport.Property{Interface: iface, Path: r.Path, Payload: r.Value})
		}
	}
	conn, err := tr.Connect(ctx, transport.Session{Introspection: intro, DeviceProperties: props, Handler: handler{d}})
	if err != nil {
		return nil, nil, err
	}
	// An interface added or removed during the handshake is announced now.
	d.mu.Lock()
	now := d.intro.Clone()
	d.mu.Unlock()
	if now.String() != intro.String() {
		added, removed := diffIntrospection(intro, now)
		if err := conn.UpdateIntrospection(ctx, now, added, removed); err != nil {
			_ = conn.Close(ctx)
			return nil, nil, err
		}
	}
	if !conn.Resynced() {
		snap = nil
	}
	return conn, snap, nil
}

func diffIntrospection(from, to *interfaces.Introspection) (added, removed []*interfaces.Interface) {
	for _, i := range to.All() {
		if o := from.Get(i.Name); o == nil || o.Major != i.Major || o.Minor != i.Minor {
			added = append(added, i)
			if o != nil {
				removed = append(removed, o)
			}
		}
	}
	for _, o := range from.All() {
		if to.Get(o.Name) == nil {
			removed = append(removed, o)
		}
	}
	return added, removed
}

// afterConnect brings Astarte up to date: pending property changes first,
// then the durable queue, then the volatile queue; then the device goes
// live.
func (d *Device) afterConnect(ctx context.Context, conn transport.Conn, resynced []store.Property) error {
	// The handshake published the snapshot: those rows are now sent.
	for _, r := range resynced {
		if err := d.store.MarkSent(ctx, d.id, r.Interface, r.Path, r.Value); err != nil {
			return err
		}
	}
	if err := d.sendPendingProperties(ctx, conn); err != nil {
		return err
	}
	return d.drain(ctx, conn)
}

func (d *Device) sendPendingProperties(ctx context.Context, conn transport.Conn) error {
	rows, err := d.store.Properties(ctx, d.id)
	if err != nil {
		return err
	}
	for _, r := range rows {
		if !r.Pending || r.Ownership != string(interfaces.DeviceOwned) {
			continue
		}
		iface := d.Interface(r.Interface)
		if iface == nil || iface.Major != r.Major {
			continue
		}
		m, err := iface.Lookup(r.Path)
		if err != nil {
			continue
		}
		msg := &transport.Message{Interface: iface, Mapping: m, Path: r.Path, Payload: r.Value, Unset: r.Value == nil}
		if _, err := conn.Send(ctx, []*transport.Message{msg}); err != nil {
			if !errors.Is(err, transport.ErrRejected) {
				return err
			}
			// Refused for good: keep the local value, do not retry.
			d.count(func(s *statsCounters) { s.rejectedDropped++ })
			d.log.Warn("a pending property change was refused", "interface", r.Interface, "path", r.Path, "error", err)
		} else {
			d.count(func(s *statsCounters) { s.sent++ })
		}
		if err := d.store.MarkSent(ctx, d.id, r.Interface, r.Path, r.Value); err != nil {
			return err
		}
	}
	return nil
}

// drain sends the durable queue oldest first, then the volatile queue, in
// windows of DrainWindow messages, and switches the device to live mode
// once both are empty with no queue write in progress.
func (d *Device) drain(ctx context.Context, conn transport.Conn) error {
	for {
		d.mu.Lock()
		seq := d.enqSeq
		d.mu.Unlock()
		msgs, expired, err := d.store.Peek(ctx, d.id, d.cfg.DrainWindow, d.cfg.Now())
		if expired > 0 {
			d.count(func(s *statsCounters) { s.expiredDropped += int64(expired) })
			d.log.Info("dropped expired queued messages", "count", expired)
		}
		if err != nil {
			return err
		}
		if len(msgs) > 0 {
			if err := d.sendQueued(ctx, conn, msgs); err != nil {
				return err
			}
			continue
		}
		d.mu.Lock()
		items, vexpired := d.volatile.pop(d.cfg.DrainWindow, d.cfg.Now())
		d.mu.Unlock()
		if vexpired > 0 {
			d.count(func(s *statsCounters) { s.expiredDropped += int64(vexpired) })
		}
		if len(items) > 0 {
			out := make([]*transport.Message, len(items))
			for k, it := range items {
				out[k] = it.msg
			}
			n, err := conn.Send(ctx, out)
			d.count(func(s *statsCounters) { s.sent += int64(n) })
			if err != nil {
				rest := items[n:]
				if errors.Is(err, transport.ErrRejected) {
					d.count(func(s *statsCounters) { s.rejectedDropped++ })
					d.log.Warn("dropped a queued volatile message the remote end refused", "error", err)
					rest = rest[1:]
				}
				d.mu.Lock()
				dropped := d.volatile.unshift(rest)
				d.mu.Unlock()
				d.count(func(s *statsCounters) { s.volatileDropped += int64(dropped) })
				if errors.Is(err, transport.ErrRejected) {
					continue
				}
				return err
			}
			continue
		}
		d.mu.Lock()
		if d.enqueuing == 0 && d.enqSeq == seq && d.volatile.len() == 0 {
			if d.conn == conn {
				d.setStateLocked(Connected, modeLive)
			}
			d.mu.Unlock()
			return nil
		}
		d.mu.Unlock()
		select {
		case <-d.poke:
		case <-conn.Done():
			return transport.ErrDisconnected
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// sendQueued sends one window of durable messages and acknowledges the
// delivered ones (and the ones that can no longer be sent).
func (d *Device) sendQueued(ctx context.Context, conn transport.Conn, msgs []store.QueuedMessage) error {
	out := make([]*transport.Message, 0, len(msgs))
	ids := make([]int64, 0, len(msgs))
	var invalid []int64
	for _, qm := range msgs {
		iface := d.Interface(qm.Interface)
		var m *interfaces.Mapping
		var err error
		if iface == nil || iface.Major != qm.Major || iface.Ownership != interfaces.DeviceOwned || iface.Type != interfaces.Datastream {
			err = errors.New("interface removed or changed")
		} else if qm.Object {
			var byKey map[string]*interfaces.Mapping
			if byKey, err = iface.LookupObject(qm.Path); err == nil {
				m = anyMapping(byKey)
			}
		} else {
			m, err = iface.Lookup(qm.Path)
		}
		if err != nil {
			invalid = append(invalid, qm.ID)
			continue
		}
		out = append(out, &transport.Message{Interface: iface, Mapping: m, Path: qm.Path, Object: qm.Object, Payload: qm.Payload})
		ids = append(ids, qm.ID)
	}
	if len(invalid) > 0 {
		d.count(func(s *statsCounters) { s.invalidQueued += int64(len(invalid)) })
		d.log.Warn("dropped queued messages whose interface was removed or changed major", "count", len(invalid))
		if err := d.store.Ack(context.WithoutCancel(ctx), d.id, invalid...); err != nil {
			return err
		}
	}
	if len(out) == 0 {
		return nil
	}
	n, sendErr := conn.Send(ctx, out)
	d.count(func(s *statsCounters) { s.sent += int64(n) })
	done := n
	if errors.Is(sendErr, transport.ErrRejected) && n < len(ids) {
		// Refused for good: drop it rather than block the queue.
		done, sendErr = n+1, nil
		d.count(func(s *statsCounters) { s.rejectedDropped++ })
		d.log.Warn("dropped a queued message the remote end refused", "interface", out[n].Interface.Name, "path", out[n].Path)
	}
	if done > 0 {
		// Acknowledge even if ctx ended: those messages were delivered.
		if err := d.store.Ack(context.WithoutCancel(ctx), d.id, ids[:done]...); err != nil {
			return err
		}
	}
	return sendErr
}

func anyMapping(byKey map[string]*interfaces.Mapping) *interfaces.Mapping {
	var best string
	for k := range byKey {
		if best == "" || k < best {
			best = k
		}
	}
	return byKey[best]
}

// handler adapts the device to transport.Handler.
type handler struct{ d *Device }

func (h handler) Data(ctx context.Context, in transport.Inbound) { h.d.inbound(ctx, in) }

func (h handler) PurgeProperties(ctx context.Context, keep []payload.PropertyPath) {
	h.d.purge(ctx, keep)
}

// RemoteError reports an error of the Message Hub as a hub_error event.
func (h handler) RemoteError(_ context.Context, e transport.RemoteError) {
	h.d.count(func(s *statsCounters) { s.hubErrors++ })
	h.d.log.Warn("the message hub reported an error", "description", e.Description, "source", e.Source)
	h.d.emit(Event{Type: EventHubError, Description: e.Description, Source: e.Source})
}

func (h handler) Dropped(reason error) {
	h.d.count(func(s *statsCounters) { s.inboundDropped++ })
	h.d.log.Warn("dropped a message from Astarte", "reason", reason)
}
