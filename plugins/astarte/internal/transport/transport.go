// Package transport is the boundary between the transport-agnostic device
// logic (validation, properties, queues, events, reconnection) and a wire
// protocol: Astarte MQTT v1 (package mqtt) or the Message Hub gRPC protocol
// (package msghub). A
// transport makes one connection attempt at a time; the device decides when
// to retry.
package transport

import (
	"context"
	"errors"
	"time"

	"github.com/connector-host/connector-host/plugins/astarte/internal/interfaces"
	"github.com/connector-host/connector-host/plugins/astarte/internal/payload"
)

// ErrDisconnected is matched (errors.Is) by errors caused by the connection
// being down or lost: the message was not confirmed and may be retried.
var ErrDisconnected = errors.New("transport disconnected")

// ErrRejected is matched (errors.Is) by errors of a message the remote end
// refused (the Message Hub answering a Send with INTERNAL or
// INVALID_ARGUMENT): sending it again will not help, so a queued message that
// gets it is dropped rather than retried.
var ErrRejected = errors.New("message rejected")

// Transport connects a device to Astarte.
type Transport interface {
	// Name identifies the transport ("mqtt", "grpc").
	Name() string
	// Connect makes one connection attempt and performs the session
	// handshake with s (MQTT: subscriptions, introspection, emptyCache,
	// device properties). It returns when the connection is ready for
	// Send, or with an error.
	Connect(ctx context.Context, s Session) (Conn, error)
}

// Session is what the device hands the transport for one connection.
type Session struct {
	// Introspection is the device's interfaces at connect time.
	Introspection *interfaces.Introspection
	// DeviceProperties are the set device-owned properties (for a full
	// resynchronisation), each with its encoded value.
	DeviceProperties []Property
	// Handler receives what Astarte sends.
	Handler Handler
}

// Property is a device-owned property value for resynchronisation.
type Property struct {
	Interface *interfaces.Interface
	Path      string
	// Payload is the BSON data payload ({"v": value}).
	Payload []byte
}

// Conn is an established connection.
type Conn interface {
	// Resynced reports whether the handshake republished the full device
	// state (introspection, every device property and the purge list). When
	// false (MQTT session resumed) only changes since need sending.
	Resynced() bool
	// Send delivers messages in order and waits until each is confirmed
	// for its QoS. It returns how many leading messages were confirmed; on
	// a connection problem the error matches ErrDisconnected.
	Send(ctx context.Context, msgs []*Message) (int, error)
	// UpdateIntrospection announces a changed interface set while
	// connected; added and removed are the interfaces that changed.
	UpdateIntrospection(ctx context.Context, in *interfaces.Introspection, added, removed []*interfaces.Interface) error
	// Done is closed when the connection ends (lost or closed).
	Done() <-chan struct{}
	// Err is why the connection ended (nil after Close or while up).
	Err() error
	// Close ends the connection gracefully.
	Close(ctx context.Context) error
}

// Message is an outgoing data message, already validated.
type Message struct {
	Interface *interfaces.Interface
	// Mapping is the mapping of Path; for an object-aggregated message one
	// of the object's mappings (they share reliability and retention).
	Mapping *interfaces.Mapping
	// Path is the concrete path; for an object the base path.
	Path string
	// Object is set for an object-aggregated message.
	Object bool
	// Unset is set for a property unset (Payload is empty).
	Unset bool
	// Payload is the BSON data payload ({"v": value} plus "t"). A transport
	// that needs Go values takes Value when set, else decodes Payload with
	// payload.Decode or payload.DecodeObject.
	Payload []byte
	// Value, when not nil, is what Payload encodes, already in Go form: the
	// canonical value (see package payload) of an individual message, or
	// map[string]any of canonical values keyed by the last endpoint segment
	// for an object; Timestamp is then its "t" (nil when absent). The
	// device sets them on the messages it has just validated; a message
	// read back from the durable queue has only Payload.
	Value     any
	Timestamp *time.Time
}

// QoS is the delivery level of the message: 2 for properties, else from the
// mapping's reliability.
func (m *Message) QoS() byte { return m.Interface.QoS(m.Mapping) }

// Inbound is data Astarte sent to the device.
type Inbound struct {
	Interface *interfaces.Interface
	// Path is the concrete path; for an object the base path.
	Path string
	// Value is the canonical value, or for an object map[string]any keyed by
	// the last endpoint segment; nil when Unset.
	Value any
	// Timestamp is the explicit timestamp, when sent.
	Timestamp *time.Time
	// Unset is set when a server-owned property was unset.
	Unset bool
}

// RemoteError is an error the remote end reported in-band (a Message Hub
// `error` event: something went wrong receiving from Astarte).
type RemoteError struct {
	// Description says what went wrong.
	Description string
	// Source is the chain of causes.
	Source []string
}

// RemoteErrorHandler is implemented by a Handler that takes in-band errors;
// a transport hands a RemoteError to Dropped otherwise.
type RemoteErrorHandler interface {
	RemoteError(ctx context.Context, e RemoteError)
}

// Handler receives what Astarte sends. Calls for one connection are
// sequential, in arrival order; a transport waits for each call to return
// before acknowledging the message.
type Handler interface {
	// Data delivers a decoded server-owned datastream message, property
	// value or property unset.
	Data(ctx context.Context, in Inbound)
	// PurgeProperties delivers the list of server-owned properties Astarte
	// holds; the device deletes every other stored server-owned property.
	PurgeProperties(ctx context.Context, keep []payload.PropertyPath)
	// Dropped reports an inbound message that could not be used (unknown
	// interface, wrong ownership, undecodable payload).
	Dropped(reason error)
}
