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
	iface, err := d.interfaceFor(name, path)
	if err != nil {
		return "", err
	}
	if err := deviceOwned(iface, path, interfaces.Datastream, false); err != nil {
		return "", err
	}
	m, err := iface.Lookup(path)
	if err != nil {
		return "", err
	}
	v, err := payload.Normalize(m.Type, value)
	if err != nil {
		return "", interfaces.PathError(name, path, "value: %v", err)
	}
	if ts, err = checkTimestamp(iface, path, m, ts); err != nil {
		return "", err
	}
	data, err := payload.Encode(v, ts)
	if err != nil {
		return "", interfaces.PathError(name, path, "value: %v", err)
	}
	return d.deliver(ctx, &transport.Message{Interface: iface, Mapping: m, Path: path, Payload: data})
}

// SendObject sends an object on an object-aggregated device-owned
// datastream: path is the base path and values are keyed by the last
// endpoint segment.
func (d *Device) SendObject(ctx context.Context, name, path string, values map[string]any, ts *time.Time) (Delivery, error) {
	iface, err := d.interfaceFor(name, path)
	if err != nil {
		return "", err
	}
	if err := deviceOwned(iface, path, interfaces.Datastream, true); err != nil {
		return "", err
	}
	byKey, err := iface.LookupObject(path)
	if err != nil {
		return "", err
	}
	if len(values) == 0 {
		return "", interfaces.PathError(name, path, "object has no values")
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
			return "", interfaces.PathError(name, path+"/"+k, "no mapping of the object has the key %q", k)
		}
		v, err := payload.Normalize(m.Type, values[k])
		if err != nil {
			return "", interfaces.PathError(name, path+"/"+k, "value: %v", err)
		}
		fields[k] = v
	}
	m := byKey[keys[0]]
	if ts, err = checkTimestamp(iface, path, m, ts); err != nil {
		return "", err
	}
	data, err := payload.EncodeObject(fields, ts)
	if err != nil {
		return "", interfaces.PathError(name, path, "value: %v", err)
	}
	return d.deliver(ctx, &transport.Message{Interface: iface, Mapping: m, Path: path, Object: true, Payload: data})
}

// deliver sends a datastream message now or queues it by retention.
func (d *Device) deliver(ctx context.Context, msg *transport.Message) (Delivery, error) {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return "", ErrClosed
	}
	conn, live := d.conn, d.mode == modeLive
	switch msg.Mapping.Retention {
	case interfaces.Stored:
		if !live {
			d.enqueuing++
			d.mu.Unlock()
			return d.enqueue(ctx, msg)
		}
		d.mu.Unlock()
		err := d.sendNow(ctx, conn, msg)
		if err == nil {
			return Delivered, nil
		}
		if !errors.Is(err, transport.ErrDisconnected) {
			return "", err
		}
		d.mu.Lock()
		d.enqueuing++
		d.mu.Unlock()
		return d.enqueue(ctx, msg)
	case interfaces.Volatile:
		if !live {
			d.pushVolatileLocked(msg)
			d.mu.Unlock()
			return QueuedVolatile, nil
		}
		d.mu.Unlock()
		err := d.sendNow(ctx, conn, msg)
		if err == nil {
			return Delivered, nil
		}
		if !errors.Is(err, transport.ErrDisconnected) {
			return "", err
		}
		d.mu.Lock()
		d.pushVolatileLocked(msg)
		d.mu.Unlock()
		return QueuedVolatile, nil
	default: // discard
		d.mu.Unlock()
		if conn == nil {
			return "", offline(msg, nil)
		}
		if err := d.sendNow(ctx, conn, msg); err != nil {
			if errors.Is(err, transport.ErrDisconnected) {
				return "", offline(msg, err)
			}
			return "", err
		}
		return Delivered, nil
	}
}

func (d *Device) sendNow(ctx context.Context, conn transport.Conn, msg *transport.Message) error {
	if _, err := conn.Send(ctx, []*transport.Message{msg}); err != nil {
		return err
	}
	d.count(func(s *statsCounters) { s.sent++ })
	return nil
}

// enqueue writes a stored-retention message to the durable queue. The
// caller has incremented d.enqueuing.
func (d *Device) enqueue(ctx context.Context, msg *transport.Message) (Delivery, error) {
	now := d.cfg.Now()
	qm := store.QueuedMessage{Device: d.id, Interface: msg.Interface.Name, Path: msg.Path, Major: msg.Interface.Major,
		QoS: msg.QoS(), Object: msg.Object, Payload: msg.Payload, Created: now}
	if msg.Mapping.Expiry > 0 {
		qm.Expires = now.Add(msg.Mapping.Expiry)
	}
	_, err := d.store.Enqueue(ctx, qm)
	d.mu.Lock()
	d.enqueuing--
	if err == nil {
		d.enqSeq++
	}
	d.mu.Unlock()
	d.wake()
	if err != nil {
		return "", err
	}
	d.count(func(s *statsCounters) { s.queuedStored++ })
	return QueuedStored, nil
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
	return d.publishProperty(ctx, &transport.Message{Interface: iface, Mapping: m, Path: path, Payload: data})
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
