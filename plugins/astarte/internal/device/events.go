package device

import (
	"context"
	"sync"
	"time"
)

// EventType names a device event.
type EventType string

// Event types.
const (
	EventConnected     EventType = "connected"
	EventDisconnected  EventType = "disconnected"
	EventDataReceived  EventType = "data_received"
	EventPropertyUnset EventType = "property_unset"
	// EventHubError is an error the Message Hub reported on its stream
	// (grpc transport): Description and Source say what.
	EventHubError EventType = "hub_error"
)

// Event is something that happened to a device.
type Event struct {
	Type     EventType `json:"type"`
	DeviceID string    `json:"device_id"`
	Time     time.Time `json:"time"`
	// Interface and Path are set for data_received and property_unset.
	Interface string `json:"interface,omitempty"`
	Path      string `json:"path,omitempty"`
	// Value is the received value (map[string]any for objects).
	Value any `json:"value,omitempty"`
	// Timestamp is the explicit timestamp Astarte sent, if any.
	Timestamp *time.Time `json:"timestamp,omitempty"`
	// Reason says why the device disconnected.
	Reason string `json:"reason,omitempty"`
	// Requested is set when the disconnection was asked for.
	Requested bool `json:"requested,omitempty"`
	// Description and Source are a hub_error's description and cause
	// chain.
	Description string   `json:"description,omitempty"`
	Source      []string `json:"source,omitempty"`
}

// Subscription receives a device's events in order. Events that do not fit
// its buffer are dropped and counted rather than slowing the device down.
type Subscription struct {
	d       *Device
	ch      chan Event
	once    sync.Once
	mu      sync.Mutex
	closed  bool
	dropped int64
}

// Subscribe returns a subscription with room for buffer events (default
// 1024 when buffer <= 0).
func (d *Device) Subscribe(buffer int) *Subscription {
	if buffer <= 0 {
		buffer = 1024
	}
	s := &Subscription{d: d, ch: make(chan Event, buffer)}
	d.mu.Lock()
	closed := d.closed
	d.mu.Unlock()
	if closed {
		s.closeChan()
		return s
	}
	d.subsMu.Lock()
	d.subs[s] = struct{}{}
	if d.subsChanged != nil {
		close(d.subsChanged)
	}
	d.subsChanged = make(chan struct{})
	d.subsMu.Unlock()
	return s
}

// WaitSubscribers blocks until the device has at least n subscriptions or
// ctx ends.
func (d *Device) WaitSubscribers(ctx context.Context, n int) error {
	for {
		d.subsMu.Lock()
		have := len(d.subs)
		if d.subsChanged == nil {
			d.subsChanged = make(chan struct{})
		}
		ch := d.subsChanged
		d.subsMu.Unlock()
		if have >= n {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Events is the channel of events; it is closed by Close or when the device
// closes.
func (s *Subscription) Events() <-chan Event { return s.ch }

// Dropped is how many events did not fit the buffer.
func (s *Subscription) Dropped() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.dropped
}

// Close ends the subscription.
func (s *Subscription) Close() {
	s.d.subsMu.Lock()
	delete(s.d.subs, s)
	s.d.subsMu.Unlock()
	s.closeChan()
}

func (s *Subscription) closeChan() {
	s.once.Do(func() {
		s.mu.Lock()
		s.closed = true
		close(s.ch)
		s.mu.Unlock()
	})
}

func (s *Subscription) send(e Event) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return true
	}
	select {
	case s.ch <- e:
		return true
	default:
		s.dropped++
		return false
	}
}

// emit delivers an event to every subscriber without blocking.
func (d *Device) emit(e Event) {
	e.DeviceID = d.id
	if e.Time.IsZero() {
		e.Time = d.cfg.Now().UTC()
	}
	d.subsMu.Lock()
	defer d.subsMu.Unlock()
	for s := range d.subs {
		if !s.send(e) {
			d.count(func(c *statsCounters) { c.eventsDropped++ })
		}
	}
}

func (d *Device) closeSubscriptions() {
	d.subsMu.Lock()
	subs := d.subs
	d.subs = map[*Subscription]struct{}{}
	d.subsMu.Unlock()
	for s := range subs {
		s.closeChan()
	}
}
