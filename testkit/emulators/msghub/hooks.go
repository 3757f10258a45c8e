package msghubemu

import (
	"fmt"
	"strings"

	"github.com/google/uuid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

func (h *Hub) node(nodeID string) (*node, error) {
	id, err := uuid.Parse(nodeID)
	if err != nil {
		return nil, fmt.Errorf("msghubemu: node id %q: %w", nodeID, err)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	n, ok := h.nodes[id]
	if !ok {
		return nil, fmt.Errorf("msghubemu: node %s is not attached", nodeID)
	}
	return n, nil
}

func (h *Hub) push(n *node, ev proto.Message) error {
	select {
	case n.events <- ev:
		return nil
	default:
		return fmt.Errorf("msghubemu: the event queue of node %s is full", n.id)
	}
}

// Push sends a message event with d to an attached node, whatever its
// interfaces (the hub itself routes only declared server-owned interfaces:
// pushing anything else tests how a node copes). The kind defaults from the
// hub's knowledge of the interface: a property for a properties interface,
// else an individual value (an object when d.Object is set).
func (h *Hub) Push(nodeID string, d Data) error {
	n, err := h.node(nodeID)
	if err != nil {
		return err
	}
	if d.Kind == "" {
		h.mu.Lock()
		i := n.ifaces[d.Interface]
		h.mu.Unlock()
		switch {
		case d.Object != nil:
			d.Kind = KindObject
		case i != nil && i.properties() && h.w.protocol == Protocol08:
			d.Kind = KindProperty
		default:
			d.Kind = KindIndividual
		}
	}
	m, err := h.w.encode(d)
	if err != nil {
		return fmt.Errorf("msghubemu: %w", err)
	}
	return h.push(n, h.w.messageEvent(m))
}

// PushUnset sends a property unset for iface/path to an attached node.
func (h *Hub) PushUnset(nodeID, iface, path string) error {
	return h.Push(nodeID, Data{Interface: iface, Path: path, Kind: KindUnset})
}

// PushError sends an error event to an attached node.
func (h *Hub) PushError(nodeID, description string, source ...string) error {
	n, err := h.node(nodeID)
	if err != nil {
		return err
	}
	return h.push(n, h.w.errorEvent(description, source))
}

// PushRaw sends an event (a MessageHubEvent of the hub's protocol) as is.
func (h *Hub) PushRaw(nodeID string, ev proto.Message) error {
	n, err := h.node(nodeID)
	if err != nil {
		return err
	}
	if got, want := ev.ProtoReflect().Descriptor(), h.w.new("MessageHubEvent").Descriptor(); got != want {
		return fmt.Errorf("msghubemu: %s is not a MessageHubEvent of protocol %s", got.FullName(), h.w.protocol)
	}
	return h.push(n, ev)
}

// NewMessage returns an empty message of the hub's protocol by short name
// ("MessageHubEvent", "AstarteMessage", ...), for PushRaw and for tests that
// build expected messages.
func (h *Hub) NewMessage(name string) proto.Message {
	return h.w.new(protoName(name)).Interface()
}

// Encode builds the AstarteMessage of the hub's protocol for d.
func (h *Hub) Encode(d Data) (proto.Message, error) {
	m, err := h.w.encode(d)
	if err != nil {
		return nil, err
	}
	return m.Interface(), nil
}

// SetServerProperty stores a server-owned property, as Astarte setting it
// would, and sends it to every attached node declaring the interface. It is
// replayed to nodes attaching later.
func (h *Hub) SetServerProperty(iface, path string, value any) error {
	if _, err := TypeOf(value); err != nil {
		return fmt.Errorf("msghubemu: %w", err)
	}
	kind := KindIndividual
	if h.w.protocol == Protocol08 {
		kind = KindProperty
	}
	d := Data{Interface: iface, Path: path, Kind: kind, Value: value}
	d.Type, _ = TypeOf(value)
	h.mu.Lock()
	h.serverProps[propKey{iface, path}] = d
	h.mu.Unlock()
	return h.broadcast(d)
}

// UnsetServerProperty deletes a stored server-owned property and sends the
// unset to every attached node declaring the interface.
func (h *Hub) UnsetServerProperty(iface, path string) error {
	h.mu.Lock()
	delete(h.serverProps, propKey{iface, path})
	h.mu.Unlock()
	return h.broadcast(Data{Interface: iface, Path: path, Kind: KindUnset})
}

func (h *Hub) broadcast(d Data) error {
	m, err := h.w.encode(d)
	if err != nil {
		return fmt.Errorf("msghubemu: %w", err)
	}
	h.mu.Lock()
	var targets []*node
	for _, n := range h.nodes {
		if _, ok := n.ifaces[d.Interface]; ok {
			targets = append(targets, n)
		}
	}
	h.mu.Unlock()
	for _, n := range targets {
		if err := h.push(n, h.w.messageEvent(m)); err != nil {
			return err
		}
	}
	return nil
}

// ServerProperties returns the stored server-owned properties keyed by
// interface+path.
func (h *Hub) ServerProperties() map[string]any {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := map[string]any{}
	for k, d := range h.serverProps {
		out[k.iface+k.path] = d.Value
	}
	return out
}

// DeviceProperties returns the device-owned properties the nodes set,
// keyed by interface+path.
func (h *Hub) DeviceProperties() map[string]any {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := map[string]any{}
	for k, d := range h.deviceProps {
		out[k.iface+k.path] = d.Value
	}
	return out
}

// EndStream ends an attached node's stream with the status code and
// message (codes.OK ends it cleanly) and forgets the node, as a hub that
// lost it would.
func (h *Hub) EndStream(nodeID string, code codes.Code, msg string) error {
	n, err := h.node(nodeID)
	if err != nil {
		return err
	}
	var st error
	if code != codes.OK {
		st = status.Error(code, msg)
	}
	h.mu.Lock()
	if h.nodes[n.id] == n {
		delete(h.nodes, n.id)
		h.mergeLocked()
	}
	n.end("status "+code.String(), st)
	h.mu.Unlock()
	h.notify()
	return nil
}

// Fail makes the next call of the RPC method ("Send", "Attach", ...), from
// any node, fail with the status code and message before the hub handles
// it. Calls queue in order.
func (h *Hub) Fail(method string, code codes.Code, msg string) {
	h.mu.Lock()
	h.failures[method] = append(h.failures[method], status.Error(code, msg))
	h.mu.Unlock()
}

func protoName(s string) protoreflect.Name {
	return protoreflect.Name(strings.TrimPrefix(s, string(protoPackage)+"."))
}

// ResetFailures drops the failures queued with Fail that no call used.
func (h *Hub) ResetFailures() {
	h.mu.Lock()
	h.failures = map[string][]error{}
	h.mu.Unlock()
}

// StopAfter makes the hub crash right after it has handled n more calls of
// the RPC method ("Send", ...) from any node: the next call of the method,
// and every call after it until the hub is down, fail with UNAVAILABLE
// before the hub handles them, and the hub stops in the background as
// Stop would (Start starts it again). Wait with Wait(ctx, func() bool { return !h.Running() }).
func (h *Hub) StopAfter(method string, n int) {
	h.mu.Lock()
	h.stopAfter[method] = max(n, 0)
	h.mu.Unlock()
}

// countStopLocked counts a call against StopAfter; h.mu is held. It
// returns the call's failure once the count is spent.
func (h *Hub) countStopLocked(method string) error {
	left, armed := h.stopAfter[method]
	switch {
	case h.stopping:
		return status.Error(codes.Unavailable, "hub stopped")
	case !armed:
		return nil
	case left > 0:
		h.stopAfter[method] = left - 1
		return nil
	}
	delete(h.stopAfter, method)
	h.stopping = true
	go func() {
		h.Stop()
		h.mu.Lock()
		h.stopping = false
		h.mu.Unlock()
		h.notify()
	}()
	return status.Error(codes.Unavailable, "hub stopped")
}
