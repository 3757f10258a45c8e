// Package device is the transport-agnostic Astarte device: it owns the
// introspection, validates what is sent, keeps properties in the store,
// queues datastream messages by retention while disconnected (durable queue
// for stored, bounded memory queue for volatile, an error for discard),
// drains them in order after reconnecting, reconnects forever with capped
// backoff and jitter, and publishes events to subscribers. A Manager serves
// many devices from one process.
package device

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/connector-host/connector-host/plugins/astarte/internal/interfaces"
	"github.com/connector-host/connector-host/plugins/astarte/internal/store"
	"github.com/connector-host/connector-host/plugins/astarte/internal/transport"
)

// Errors of the device (match with errors.Is).
var (
	// ErrOffline: a discard-retention message cannot be sent while the
	// device is not connected.
	ErrOffline = errors.New("device is not connected")
	// ErrClosed: the device was closed.
	ErrClosed = errors.New("device closed")
)

// Config describes one device.
type Config struct {
	// DeviceID is the Astarte device id (also the store key).
	DeviceID string
	// Realm is the Astarte realm.
	Realm string
	// Store is the shared database.
	Store *store.Store
	// VolatileLimit bounds the memory queue of volatile-retention messages
	// (default 1000); when full the oldest message is dropped and counted.
	VolatileLimit int
	// BackoffMin and BackoffMax bound the reconnection delay (defaults 1 s
	// and 60 s); each delay is drawn with jitter between half and all of
	// the current step, which doubles up to BackoffMax.
	BackoffMin, BackoffMax time.Duration
	// DrainWindow is how many queued messages are in flight at once while
	// draining (default 128).
	DrainWindow int
	// BatchLanes is how many interface+path lanes of a SendBatch are sent
	// at once (default 16).
	BatchLanes int
	// Now is the clock (time.Now when nil).
	Now func() time.Time
	// Logger receives operational logs; nothing secret is logged.
	Logger *slog.Logger
}

// State is the connection state of a device.
type State string

// Device states.
const (
	Disconnected State = "disconnected"
	Connecting   State = "connecting"
	Connected    State = "connected"
)

// mode is the internal send mode while connected.
type mode int

const (
	modeOffline  mode = iota // no connection
	modeDraining             // connected, queues being drained
	modeLive                 // connected, queues empty: send directly
)

// Device is one Astarte device. Its methods are safe for concurrent use.
type Device struct {
	id, realm string
	store     *store.Store
	cfg       Config
	log       *slog.Logger

	mu        sync.Mutex
	intro     *interfaces.Introspection
	state     State
	mode      mode
	conn      transport.Conn
	trName    string
	lastErr   string
	lastErrV  error // the error behind lastErr
	cancelRun context.CancelFunc
	runDone   chan struct{}
	closed    bool
	volatile  volatileQueue
	// enqueuing counts stored sends between "decided to queue" and "queue
	// write finished"; enqSeq counts finished queue writes. The drain loop
	// goes live only when both show nothing new.
	enqueuing int
	enqSeq    uint64
	poke      chan struct{}
	connWait  chan struct{} // closed and replaced on every state change

	subsMu      sync.Mutex
	subs        map[*Subscription]struct{}
	subsChanged chan struct{} // closed and replaced when a subscription is added

	stats statsCounters
}

type statsCounters struct {
	sync.Mutex
	sent, queuedStored, queuedVolatile           int64
	expiredDropped, volatileDropped              int64
	invalidQueued, inboundDropped, eventsDropped int64
	received, hubErrors, rejectedDropped         int64
}

const metaInterfacePrefix = "interface:"

// New opens a device: it loads the interfaces saved for it in the store
// (see AddInterface). It does not connect.
func New(ctx context.Context, cfg Config) (*Device, error) {
	if cfg.DeviceID == "" || cfg.Realm == "" || cfg.Store == nil {
		return nil, errors.New("device: DeviceID, Realm and Store are required")
	}
	if cfg.VolatileLimit <= 0 {
		cfg.VolatileLimit = 1000
	}
	if cfg.BackoffMin <= 0 {
		cfg.BackoffMin = time.Second
	}
	if cfg.BackoffMax < cfg.BackoffMin {
		cfg.BackoffMax = 60 * time.Second
		if cfg.BackoffMax < cfg.BackoffMin {
			cfg.BackoffMax = cfg.BackoffMin
		}
	}
	if cfg.DrainWindow <= 0 {
		cfg.DrainWindow = 128
	}
	if cfg.BatchLanes <= 0 {
		cfg.BatchLanes = 16
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	d := &Device{
		id: cfg.DeviceID, realm: cfg.Realm, store: cfg.Store, cfg: cfg,
		log:      cfg.Logger.With("device_id", cfg.DeviceID),
		intro:    &interfaces.Introspection{},
		state:    Disconnected,
		poke:     make(chan struct{}, 1),
		connWait: make(chan struct{}),
		subs:     map[*Subscription]struct{}{},
		volatile: volatileQueue{limit: cfg.VolatileLimit},
	}
	saved, err := cfg.Store.MetaPrefix(ctx, d.id, metaInterfacePrefix)
	if err != nil {
		return nil, err
	}
	for key, src := range saved {
		iface, err := interfaces.Parse([]byte(src))
		if err != nil {
			d.log.Warn("dropping a saved interface that no longer parses", "interface", strings.TrimPrefix(key, metaInterfacePrefix), "error", err)
			_ = cfg.Store.DeleteMeta(ctx, d.id, key)
			continue
		}
		d.intro.Add(iface)
	}
	return d, nil
}

// ID is the device id.
func (d *Device) ID() string { return d.id }

// Realm is the device realm.
func (d *Device) Realm() string { return d.realm }

// AddInterface adds (or replaces) an interface. It is saved in the store so
// the device keeps it across restarts; stored property values of another
// major version are dropped. While connected the new introspection is sent
// right away.
func (d *Device) AddInterface(ctx context.Context, iface *interfaces.Interface) error {
	if _, err := d.store.DropOtherMajors(ctx, d.id, iface.Name, iface.Major); err != nil {
		return err
	}
	if err := d.store.SetMeta(ctx, d.id, metaInterfacePrefix+iface.Name, string(iface.Source())); err != nil {
		return err
	}
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return ErrClosed
	}
	old := d.intro.Add(iface)
	snap, conn := d.intro.Clone(), d.conn
	d.mu.Unlock()
	if conn != nil {
		var removed []*interfaces.Interface
		if old != nil {
			removed = append(removed, old)
		}
		if err := conn.UpdateIntrospection(ctx, snap, []*interfaces.Interface{iface}, removed); err != nil {
			if errors.Is(err, transport.ErrRejected) {
				// The remote end refused the interface (Message Hub): undo,
				// or every later attach would carry it and fail.
				d.mu.Lock()
				d.intro.Remove(iface.Name)
				if old != nil {
					d.intro.Add(old)
				}
				d.mu.Unlock()
				if old != nil {
					_ = d.store.SetMeta(ctx, d.id, metaInterfacePrefix+iface.Name, string(old.Source()))
				} else {
					_ = d.store.DeleteMeta(ctx, d.id, metaInterfacePrefix+iface.Name)
				}
				return err
			}
			d.log.Warn("introspection update not sent; it will be on reconnect", "error", err)
		}
	}
	return nil
}

// RemoveInterface removes an interface and its stored properties.
func (d *Device) RemoveInterface(ctx context.Context, name string) error {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return ErrClosed
	}
	old := d.intro.Remove(name)
	snap, conn := d.intro.Clone(), d.conn
	d.mu.Unlock()
	if old == nil {
		return &interfaces.Error{Interface: name, Reason: "interface is not in the device introspection", NotFound: true}
	}
	if err := d.store.DeleteMeta(ctx, d.id, metaInterfacePrefix+name); err != nil {
		return err
	}
	if err := d.store.DeleteInterfaceProperties(ctx, d.id, name); err != nil {
		return err
	}
	if conn != nil {
		if err := conn.UpdateIntrospection(ctx, snap, nil, []*interfaces.Interface{old}); err != nil {
			d.log.Warn("introspection update not sent; it will be on reconnect", "error", err)
		}
	}
	return nil
}

// Interfaces returns the device's interfaces sorted by name.
func (d *Device) Interfaces() []*interfaces.Interface {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.intro.All()
}

// Interface returns one interface or nil.
func (d *Device) Interface(name string) *interfaces.Interface {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.intro.Get(name)
}

// Status is a snapshot of a device.
type Status struct {
	DeviceID string `json:"device_id"`
	Realm    string `json:"realm"`
	State    State  `json:"state"`
	// Draining is true while connected and still delivering what was
	// queued offline: until it ends, stored and volatile sends are queued
	// behind the queues (connected, not draining: they go straight out).
	// Empty queues alone do not say it has ended (the last messages may
	// be in flight).
	Draining      bool   `json:"draining"`
	Transport     string `json:"transport,omitempty"`
	LastError     string `json:"last_error,omitempty"`
	Introspection string `json:"introspection"`
	// QueuedStored is the length of the durable queue.
	QueuedStored int `json:"queued_stored"`
	// QueuedVolatile is the length of the memory queue.
	QueuedVolatile int   `json:"queued_volatile"`
	Sent           int64 `json:"sent"`
	Received       int64 `json:"received"`
	// ExpiredDropped counts queued messages dropped because they expired.
	ExpiredDropped int64 `json:"expired_dropped"`
	// VolatileDropped counts volatile messages dropped from a full queue.
	VolatileDropped int64 `json:"volatile_dropped"`
	// InvalidQueuedDropped counts queued messages dropped because their
	// interface was removed or changed major version.
	InvalidQueuedDropped int64 `json:"invalid_queued_dropped"`
	// InboundDropped counts messages from Astarte that could not be used.
	InboundDropped int64 `json:"inbound_dropped"`
	// EventsDropped counts events not delivered to slow subscribers.
	EventsDropped int64 `json:"events_dropped"`
	// RejectedDropped counts queued messages dropped because the remote
	// end refused them (transport.ErrRejected).
	RejectedDropped int64 `json:"rejected_dropped"`
	// HubErrors counts errors the Message Hub reported (hub_error events).
	HubErrors int64 `json:"hub_errors"`
}

// Status returns the device's state and counters.
func (d *Device) Status(ctx context.Context) (Status, error) {
	d.mu.Lock()
	st := Status{DeviceID: d.id, Realm: d.realm, State: d.state, Draining: d.mode == modeDraining, Transport: d.trName,
		LastError: d.lastErr, Introspection: d.intro.String(), QueuedVolatile: d.volatile.len()}
	d.mu.Unlock()
	n, err := d.store.QueueLen(ctx, d.id)
	if err != nil {
		return st, err
	}
	st.QueuedStored = n
	d.stats.Lock()
	st.Sent, st.Received = d.stats.sent, d.stats.received
	st.ExpiredDropped, st.VolatileDropped = d.stats.expiredDropped, d.stats.volatileDropped
	st.InvalidQueuedDropped, st.InboundDropped, st.EventsDropped = d.stats.invalidQueued, d.stats.inboundDropped, d.stats.eventsDropped
	st.RejectedDropped, st.HubErrors = d.stats.rejectedDropped, d.stats.hubErrors
	d.stats.Unlock()
	return st, nil
}

// LastError is why the last connection attempt failed or the last
// connection ended (nil while connected or never tried).
func (d *Device) LastError() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.lastErrV
}

// State returns the connection state.
func (d *Device) State() State {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.state
}

// WaitState blocks until the device reaches state s or ctx ends.
func (d *Device) WaitState(ctx context.Context, s State) error {
	for {
		d.mu.Lock()
		cur, ch := d.state, d.connWait
		d.mu.Unlock()
		if cur == s {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("device %s: still %s, waiting for %s: %w", d.id, cur, s, ctx.Err())
		}
	}
}

// WaitDrained blocks until the device is connected with empty queues
// (everything queued so far was delivered) or ctx ends.
func (d *Device) WaitDrained(ctx context.Context) error {
	for {
		d.mu.Lock()
		live, ch := d.mode == modeLive, d.connWait
		d.mu.Unlock()
		if live {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("device %s: queues not drained: %w", d.id, ctx.Err())
		}
	}
}

// setStateLocked changes state/mode and wakes waiters. d.mu must be held.
func (d *Device) setStateLocked(s State, m mode) {
	d.state, d.mode = s, m
	close(d.connWait)
	d.connWait = make(chan struct{})
}

func (d *Device) count(f func(*statsCounters)) {
	d.stats.Lock()
	f(&d.stats)
	d.stats.Unlock()
}
