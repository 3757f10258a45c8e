package device

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/connector-host/connector-host/plugins/astarte/internal/interfaces"
	"github.com/connector-host/connector-host/plugins/astarte/internal/payload"
	"github.com/connector-host/connector-host/plugins/astarte/internal/store"
	"github.com/connector-host/connector-host/plugins/astarte/internal/transport"
)

// Delivery tells what happened to a message handed to the device.
type Delivery string

// Deliveries.
const (
	// Delivered: Astarte confirmed the message for its QoS.
	Delivered Delivery = "delivered"
	// QueuedStored: the message is in the durable queue and will be sent,
	// in order, after reconnecting (unless it expires first).
	QueuedStored Delivery = "queued_stored"
	// QueuedVolatile: the message is in the memory queue.
	QueuedVolatile Delivery = "queued_volatile"
	// Pending: the property change is saved and will be sent on reconnect.
	Pending Delivery = "pending"
	// Unchanged: the property already had this value (or was already
	// unset); nothing was sent.
	Unchanged Delivery = "unchanged"
)

// interfaceFor returns the interface or a not-found error.
func (d *Device) interfaceFor(name, path string) (*interfaces.Interface, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return nil, ErrClosed
	}
	iface := d.intro.Get(name)
	if iface == nil {
		return nil, &interfaces.Error{Interface: name, Path: path, Reason: "interface is not in the device introspection", NotFound: true}
	}
	return iface, nil
}

// deviceOwned checks that the device may publish on iface with the given
// kind of call.
func deviceOwned(iface *interfaces.Interface, path string, typ interfaces.Type, object bool) error {
	if iface.Ownership != interfaces.DeviceOwned {
		return interfaces.PathError(iface.Name, path, "interface is server-owned: the device cannot publish on it")
	}
	if iface.Type != typ {
		if typ == interfaces.Datastream {
			return interfaces.PathError(iface.Name, path, "interface is a properties interface: use set_property or unset_property")
		}
		return interfaces.PathError(iface.Name, path, "interface is a datastream interface: use send or send_aggregate")
	}
	if typ == interfaces.Datastream && iface.IsObject() != object {
		if object {
			return interfaces.PathError(iface.Name, path, "interface is individual: use send for each value")
		}
		return interfaces.PathError(iface.Name, path, "interface is object-aggregated: use send_aggregate")
	}
	return nil
}

func checkTimestamp(iface *interfaces.Interface, path string, m *interfaces.Mapping, ts *time.Time) (*time.Time, error) {
	if m.ExplicitTimestamp && ts == nil {
		return nil, interfaces.PathError(iface.Name, path, "mapping %s has explicit_timestamp: a timestamp is required", m.Endpoint)
	}
	if !m.ExplicitTimestamp && ts != nil {
		return nil, interfaces.PathError(iface.Name, path, "mapping %s has no explicit_timestamp: a timestamp cannot be set", m.Endpoint)
	}
	if ts == nil {
		return nil, nil
	}
	t := payload.Millis(*ts)
	return &t, nil
}

// Send sends one value on an individual device-owned datastream. value is a
// canonical Go value or JSON-decoded input (see payload.Normalize). ts is
// required when the mapping has explicit_timestamp and refused otherwise.
func (d *Device) Send(ctx context.Context, name, path string, value any, ts *time.Time) (Delivery, error) {
	msg, _, err := d.prepareIndividual(name, path, value, ts)
	if err != nil {
		return "", err
	}
	return d.deliver(ctx, msg)
}

// SendObject sends an object on an object-aggregated device-owned
// datastream: path is the base path and values are keyed by the last
// endpoint segment.
func (d *Device) SendObject(ctx context.Context, name, path string, values map[string]any, ts *time.Time) (Delivery, error) {
	msg, _, err := d.prepareObject(name, path, values, ts)
	if err != nil {
		return "", err
	}
	return d.deliver(ctx, msg)
}

// Fields of a message that a validation error can be about (see
// ItemError.Field).
const (
	fieldInterface = "interface"
	fieldPath      = "path"
	fieldValue     = "value"
	fieldValues    = "values"
	fieldTimestamp = "timestamp"
)

// prepareIndividual validates and encodes one value of an individual
// datastream. On error it also names the message field at fault.
func (d *Device) prepareIndividual(name, path string, value any, ts *time.Time) (*transport.Message, string, error) {
	iface, err := d.interfaceFor(name, path)
	if err != nil {
		return nil, fieldInterface, err
	}
	if err := deviceOwned(iface, path, interfaces.Datastream, false); err != nil {
		return nil, fieldInterface, err
	}
	m, err := iface.Lookup(path)
	if err != nil {
		return nil, fieldPath, err
	}
	v, err := payload.Normalize(m.Type, value)
	if err != nil {
		return nil, fieldValue, interfaces.PathError(name, path, "value: %v", err)
	}
	if ts, err = checkTimestamp(iface, path, m, ts); err != nil {
		return nil, fieldTimestamp, err
	}
	data, err := payload.Encode(v, ts)
	if err != nil {
		return nil, fieldValue, interfaces.PathError(name, path, "value: %v", err)
	}
	return &transport.Message{Interface: iface, Mapping: m, Path: path, Payload: data, Value: v, Timestamp: ts}, "", nil
}

// prepareObject validates and encodes an object of an object-aggregated
// datastream. On error it also names the message field at fault.
func (d *Device) prepareObject(name, path string, values map[string]any, ts *time.Time) (*transport.Message, string, error) {
	iface, err := d.interfaceFor(name, path)
	if err != nil {
		return nil, fieldInterface, err
	}
	if err := deviceOwned(iface, path, interfaces.Datastream, true); err != nil {
		return nil, fieldInterface, err
	}
	byKey, err := iface.LookupObject(path)
	if err != nil {
		return nil, fieldPath, err
	}
	if len(values) == 0 {
		return nil, fieldValues, interfaces.PathError(name, path, "object has no values")
	}
	keys := make([]string, 0, len(values))
	for k := range values {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	fields := make(map[string]any, len(values))
	for _, k := range keys {
		m, ok := byKey[k]
		if !ok {
			return nil, fieldValues + "." + k, interfaces.PathError(name, path+"/"+k, "no mapping of the object has the key %q", k)
		}
		v, err := payload.Normalize(m.Type, values[k])
		if err != nil {
			return nil, fieldValues + "." + k, interfaces.PathError(name, path+"/"+k, "value: %v", err)
		}
		fields[k] = v
	}
	m := byKey[keys[0]]
	if ts, err = checkTimestamp(iface, path, m, ts); err != nil {
		return nil, fieldTimestamp, err
	}
	data, err := payload.EncodeObject(fields, ts)
	if err != nil {
		return nil, fieldValues, interfaces.PathError(name, path, "value: %v", err)
	}
	return &transport.Message{Interface: iface, Mapping: m, Path: path, Object: true, Payload: data, Value: fields, Timestamp: ts}, "", nil
}

// Result is what happened to one message: its delivery, or why it failed.
type Result struct {
	Delivery Delivery
	Err      error
}

// deliver sends one datastream message now or queues it by retention.
func (d *Device) deliver(ctx context.Context, msg *transport.Message) (Delivery, error) {
	var res [1]Result
	d.deliverLane(ctx, []*transport.Message{msg}, res[:])
	return res[0].Delivery, res[0].Err
}

// laneChunk bounds how many messages of a lane go to one Conn.Send (which
// keeps up to its own window of them in flight).
const laneChunk = 256

// deliverLane sends datastream messages that share an interface and a path
// (so one mapping, retention and QoS), in order, or queues them by
// retention, and writes each one's outcome to out:
//   - connected with the queues drained: sent, in chunks, each confirmed
//     at its QoS;
//   - otherwise, or once the connection is lost mid-way: stored ones go to
//     the durable queue, volatile ones to the memory queue (the rest of the
//     lane too, so its order holds), discard ones fail with an
//     *OfflineError;
//   - a message the remote end refuses fails alone; the lane goes on.
//
// If another connection is already live when a send fails, the rest is
// sent on it rather than queued.
func (d *Device) deliverLane(ctx context.Context, msgs []*transport.Message, out []Result) {
	retention := msgs[0].Mapping.Retention
	var failed transport.Conn // the connection a send was lost on
	var cause error           // and how
	pos := 0
	for pos < len(msgs) {
		d.mu.Lock()
		if d.closed {
			d.mu.Unlock()
			for k := pos; k < len(msgs); k++ {
				out[k] = Result{Err: ErrClosed}
			}
			return
		}
		conn, live := d.conn, d.mode == modeLive && d.conn != failed
		switch retention {
		case interfaces.Stored:
			if !live {
				d.enqueuing++
				d.mu.Unlock()
				d.enqueueAll(ctx, msgs[pos:], out[pos:])
				return
			}
		case interfaces.Volatile:
			if !live {
				for k := pos; k < len(msgs); k++ {
					d.pushVolatileLocked(msgs[k])
					out[k] = Result{Delivery: QueuedVolatile}
				}
				d.mu.Unlock()
				return
			}
		default: // discard: sent whenever connected, even while draining
			if conn == nil || conn == failed {
				d.mu.Unlock()
				for k := pos; k < len(msgs); k++ {
					out[k] = Result{Err: offline(msgs[k], cause)}
				}
				return
			}
		}
		d.mu.Unlock()
		end := min(pos+laneChunk, len(msgs))
		n, err := conn.Send(ctx, msgs[pos:end])
		for k := pos; k < pos+n; k++ {
			out[k] = Result{Delivery: Delivered}
		}
		if n > 0 {
			d.count(func(s *statsCounters) { s.sent += int64(n) })
		}
		pos += n
		switch {
		case err == nil:
		case errors.Is(err, transport.ErrDisconnected):
			failed, cause = conn, err
		default:
			// Refused (or the caller gave up): this message fails alone.
			if pos < end {
				out[pos] = Result{Err: err}
				pos++
			}
			if ctx.Err() != nil {
				for k := pos; k < len(msgs); k++ {
					out[k] = Result{Err: ctx.Err()}
				}
				return
			}
		}
	}
}

func (d *Device) sendNow(ctx context.Context, conn transport.Conn, msg *transport.Message) error {
	if _, err := conn.Send(ctx, []*transport.Message{msg}); err != nil {
		return err
	}
	d.count(func(s *statsCounters) { s.sent++ })
	return nil
}

// enqueueAll writes stored-retention messages to the durable queue, in
// order, and their outcomes to out. The caller has incremented
// d.enqueuing.
func (d *Device) enqueueAll(ctx context.Context, msgs []*transport.Message, out []Result) {
	now := d.cfg.Now()
	qms := make([]store.QueuedMessage, len(msgs))
	for k, msg := range msgs {
		qms[k] = store.QueuedMessage{Device: d.id, Interface: msg.Interface.Name, Path: msg.Path, Major: msg.Interface.Major,
			QoS: msg.QoS(), Object: msg.Object, Payload: msg.Payload, Created: now}
		if msg.Mapping.Expiry > 0 {
			qms[k].Expires = now.Add(msg.Mapping.Expiry)
		}
	}
	errs := d.store.EnqueueAll(ctx, qms)
	d.mu.Lock()
	d.enqueuing--
	d.enqSeq++
	d.mu.Unlock()
	d.wake()
	queued := 0
	for k := range out {
		err := errors.New("store: enqueue not answered") // EnqueueAll answers each message
		if k < len(errs) {
			err = errs[k]
		}
		if err != nil {
			out[k] = Result{Err: err}
			continue
		}
		out[k] = Result{Delivery: QueuedStored}
		queued++
	}
	d.count(func(s *statsCounters) { s.queuedStored += int64(queued) })
}

// pushVolatileLocked adds to the memory queue; d.mu must be held.
func (d *Device) pushVolatileLocked(msg *transport.Message) {
	var exp time.Time
	now := d.cfg.Now()
	if msg.Mapping.Expiry > 0 {
		exp = now.Add(msg.Mapping.Expiry)
	}
	if d.volatile.push(volatileItem{msg: msg, expires: exp}) {
		d.count(func(s *statsCounters) { s.volatileDropped++ })
	}
	d.count(func(s *statsCounters) { s.queuedVolatile++ })
	d.wake()
}

// wake nudges the drain loop.
func (d *Device) wake() {
	select {
	case d.poke <- struct{}{}:
	default:
	}
}

// propertyTarget resolves a device-owned property path.
func (d *Device) propertyTarget(name, path string) (*interfaces.Interface, *interfaces.Mapping, error) {
	iface, err := d.interfaceFor(name, path)
	if err != nil {
		return nil, nil, err
	}
	if err := deviceOwned(iface, path, interfaces.Properties, false); err != nil {
		return nil, nil, err
	}
	m, err := iface.Lookup(path)
	if err != nil {
		return nil, nil, err
	}
	return iface, m, nil
}

// SetProperty sets a device-owned property. The value is saved first, so it
// survives restarts; it is published now when connected, otherwise on
// reconnect.
func (d *Device) SetProperty(ctx context.Context, name, path string, value any) (Delivery, error) {
	iface, m, err := d.propertyTarget(name, path)
	if err != nil {
		return "", err
	}
	v, err := payload.Normalize(m.Type, value)
	if err != nil {
		return "", interfaces.PathError(name, path, "value: %v", err)
	}
	data, err := payload.Encode(v, nil)
	if err != nil {
		return "", interfaces.PathError(name, path, "value: %v", err)
	}
	cur, ok, err := d.store.Property(ctx, d.id, name, path, iface.Major)
	if err != nil {
		return "", err
	}
	if ok && !cur.Pending && bytes.Equal(cur.Value, data) {
		return Unchanged, nil
	}
	if err := d.store.SetProperty(ctx, store.Property{Device: d.id, Interface: name, Path: path, Major: iface.Major,
		Ownership: string(interfaces.DeviceOwned), Value: data, Pending: true}); err != nil {
		return "", err
	}
	return d.publishProperty(ctx, &transport.Message{Interface: iface, Mapping: m, Path: path, Payload: data, Value: v})
}

// UnsetProperty unsets a device-owned property (the mapping must have
// allow_unset).
func (d *Device) UnsetProperty(ctx context.Context, name, path string) (Delivery, error) {
	iface, m, err := d.propertyTarget(name, path)
	if err != nil {
		return "", err
	}
	if !m.AllowUnset {
		return "", interfaces.PathError(name, path, "mapping %s does not have allow_unset: the property cannot be unset", m.Endpoint)
	}
	rows, err := d.store.Properties(ctx, d.id)
	if err != nil {
		return "", err
	}
	known := false
	for _, r := range rows {
		if r.Interface == name && r.Path == path {
			known = r.Value != nil || r.Pending
			break
		}
	}
	if !known {
		return Unchanged, nil
	}
	if err := d.store.MarkUnsetPending(ctx, d.id, name, path, iface.Major); err != nil {
		return "", err
	}
	return d.publishProperty(ctx, &transport.Message{Interface: iface, Mapping: m, Path: path, Unset: true})
}

// publishProperty sends a saved property change if connected and marks it
// sent.
func (d *Device) publishProperty(ctx context.Context, msg *transport.Message) (Delivery, error) {
	d.mu.Lock()
	conn := d.conn
	d.mu.Unlock()
	if conn == nil {
		return Pending, nil
	}
	if err := d.sendNow(ctx, conn, msg); err != nil {
		if errors.Is(err, transport.ErrDisconnected) {
			return Pending, nil
		}
		return "", err
	}
	var val []byte
	if !msg.Unset {
		val = msg.Payload
	}
	if err := d.store.MarkSent(ctx, d.id, msg.Interface.Name, msg.Path, val); err != nil {
		return "", err
	}
	return Delivered, nil
}

// PropertyValue is a stored property.
type PropertyValue struct {
	Interface string               `json:"interface"`
	Path      string               `json:"path"`
	Ownership interfaces.Ownership `json:"ownership"`
	Value     any                  `json:"value"`
}

// Property returns the value of a property (device- or server-owned) and
// whether it is set.
func (d *Device) Property(ctx context.Context, name, path string) (any, bool, error) {
	iface, err := d.interfaceFor(name, path)
	if err != nil {
		return nil, false, err
	}
	if !iface.IsProperties() {
		return nil, false, interfaces.PathError(name, path, "interface is a datastream interface: it has no stored values")
	}
	m, err := iface.Lookup(path)
	if err != nil {
		return nil, false, err
	}
	p, ok, err := d.store.Property(ctx, d.id, name, path, iface.Major)
	if err != nil || !ok {
		return nil, false, err
	}
	msg, err := payload.Decode(m.Type, p.Value)
	if err != nil {
		return nil, false, interfaces.PathError(name, path, "stored value is unreadable: %v", err)
	}
	return msg.Value, true, nil
}

// Properties lists the set properties of one interface, or of all
// interfaces when name is empty, sorted by interface and path.
func (d *Device) Properties(ctx context.Context, name string) ([]PropertyValue, error) {
	if name != "" {
		iface, err := d.interfaceFor(name, "")
		if err != nil {
			return nil, err
		}
		if !iface.IsProperties() {
			return nil, interfaces.PathError(name, "", "interface is a datastream interface: it has no stored values")
		}
	}
	rows, err := d.store.Properties(ctx, d.id)
	if err != nil {
		return nil, err
	}
	out := []PropertyValue{}
	for _, r := range rows {
		if r.Value == nil || (name != "" && r.Interface != name) {
			continue
		}
		iface := d.Interface(r.Interface)
		if iface == nil || iface.Major != r.Major {
			continue
		}
		m, err := iface.MappingFor(r.Path)
		if err != nil {
			continue
		}
		msg, err := payload.Decode(m.Type, r.Value)
		if err != nil {
			continue
		}
		out = append(out, PropertyValue{Interface: r.Interface, Path: r.Path, Ownership: interfaces.Ownership(r.Ownership), Value: msg.Value})
	}
	return out, nil
}

// OfflineError is returned for a discard-retention message while the device
// is not connected. It matches ErrOffline.
type OfflineError struct {
	Interface string
	Path      string
	cause     error
}

func offline(msg *transport.Message, cause error) *OfflineError {
	return &OfflineError{Interface: msg.Interface.Name, Path: msg.Path, cause: cause}
}

// Error implements error.
func (e *OfflineError) Error() string {
	s := fmt.Sprintf("interface %q: path %q: %v: the mapping has retention discard, so nothing is kept while offline", e.Interface, e.Path, ErrOffline)
	if e.cause != nil {
		s += " (" + e.cause.Error() + ")"
	}
	return s
}

// Unwrap makes errors.Is(err, ErrOffline) work.
func (e *OfflineError) Unwrap() []error {
	if e.cause != nil {
		return []error{ErrOffline, e.cause}
	}
	return []error{ErrOffline}
}
