// Package msghubemu is a local Astarte Message Hub for tests: a plaintext
// gRPC server on 127.0.0.1 speaking the MessageHub service of protocol 0.7
// or 0.8 (docs: shared/MSGHUB.md) with the hub's metadata rules and status
// codes. It keeps a single device introspection merged from the attached
// nodes' interfaces, replays stored server-owned properties on Attach,
// records every call and every Send (refusing what the hub refuses), and has
// hooks for tests: push data, unsets and errors to a node, set server
// properties, end a node's stream with a status, fail the next call of an
// RPC, stop and restart the server, read each node's introspection.
package msghubemu

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sort"
	"sync"
	"time"

	"github.com/google/uuid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// Options configure a Hub. The zero value works.
type Options struct {
	// Protocol is the wire version (default 0.7).
	Protocol Protocol
	// Addr is the listen address (default 127.0.0.1:0, a free port); it
	// must be a loopback address.
	Addr string
	// EventBuffer is how many events wait for each node's stream (default
	// 1024); a push to a full node fails.
	EventBuffer int
}

// Call is one RPC as the hub saw it.
type Call struct {
	// Method is the RPC name ("Attach", "Send", ...).
	Method string
	// NodeID is the node id from the metadata ("" when missing or bad).
	NodeID string
	// MetadataKey is the key that carried it: "node-id" or "node-id-bin".
	MetadataKey string
	// Code is the status the hub answered.
	Code codes.Code
}

// Attach is one Attach call.
type Attach struct {
	NodeID string
	// Interfaces are the interface documents of the Node message.
	Interfaces []string
	Code       codes.Code
	// Ended says how the stream ended: "" while open, "detach",
	// "reattach", "client gone" (dropped without Detach), "status <code>"
	// (EndStream) or "hub stopped".
	Ended string
}

// Send is one Send call.
type Send struct {
	NodeID string
	// Data is the decoded message (partial when it could not be decoded).
	Data Data
	// Message is the AstarteMessage as received (a message of the hub's
	// protocol version).
	Message proto.Message
	// Code is OK or the refusal (INTERNAL, as the hub does).
	Code codes.Code
	// Error is the refusal's description.
	Error string
}

// Hub is a running emulated Message Hub.
type Hub struct {
	opts Options
	w    *wire

	srvMu   sync.Mutex // serialises Start/Stop
	srv     *grpc.Server
	addr    string
	running bool
	closed  bool

	mu          sync.Mutex
	nodes       map[uuid.UUID]*node
	introspect  map[string]*iface // the device introspection, merged
	serverProps map[propKey]Data
	deviceProps map[propKey]Data
	calls       []Call
	attaches    []*Attach
	sends       []Send
	failures    map[string][]error
	changed     chan struct{}
	// stopAfter counts, per method, the calls the hub still handles before
	// it stops (StopAfter); stopping is set from the refused call until
	// the server is down.
	stopAfter map[string]int
	stopping  bool
}

type propKey struct{ iface, path string }

// node is an attached node and its stream.
type node struct {
	id     uuid.UUID
	ifaces map[string]*iface
	events chan proto.Message
	done   chan struct{}
	once   sync.Once
	endErr error // status to end the stream with (nil: OK)
	attach *Attach
}

// end closes the node's stream with err (nil: OK) and records why.
func (n *node) end(reason string, err error) {
	n.once.Do(func() {
		n.endErr = err
		n.attach.Ended = reason
		close(n.done)
	})
}

// Start starts a hub.
func Start(opts Options) (*Hub, error) {
	if opts.Protocol == "" {
		opts.Protocol = Protocol07
	}
	if opts.Addr == "" {
		opts.Addr = "127.0.0.1:0"
	}
	if opts.EventBuffer <= 0 {
		opts.EventBuffer = 1024
	}
	if err := checkLoopback(opts.Addr); err != nil {
		return nil, err
	}
	w, err := wireFor(opts.Protocol)
	if err != nil {
		return nil, err
	}
	h := &Hub{opts: opts, w: w, addr: opts.Addr, nodes: map[uuid.UUID]*node{}, introspect: map[string]*iface{},
		serverProps: map[propKey]Data{}, deviceProps: map[propKey]Data{}, failures: map[string][]error{},
		changed: make(chan struct{}), stopAfter: map[string]int{}}
	if err := h.Start(); err != nil {
		return nil, err
	}
	return h, nil
}

func checkLoopback(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("msghubemu: address %q: %w", addr, err)
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return fmt.Errorf("msghubemu: address %q is not a loopback address", addr)
	}
	return nil
}

// Start (re)starts the server on the hub's address (the port chosen at the
// first start). Recorded calls and stored properties are kept.
func (h *Hub) Start() error {
	h.srvMu.Lock()
	defer h.srvMu.Unlock()
	if h.closed {
		return errors.New("msghubemu: hub closed")
	}
	if h.running {
		return nil
	}
	var lis net.Listener
	var err error
	// The port of a just-stopped server can take a moment to be free.
	for attempt := 0; attempt < 50; attempt++ {
		if lis, err = net.Listen("tcp", h.addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		return fmt.Errorf("msghubemu: listen %s: %w", h.addr, err)
	}
	h.addr = lis.Addr().String()
	srv := grpc.NewServer(grpc.ChainUnaryInterceptor(h.unaryInterceptor), grpc.ChainStreamInterceptor(h.streamInterceptor),
		// Nodes ping idle attach streams to notice a vanished hub.
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
		grpc.ForceServerCodecV2(safeCodec{encoding.GetCodecV2("proto")}))
	srv.RegisterService(h.serviceDesc(), h)
	h.srv, h.running = srv, true
	go func() { _ = srv.Serve(lis) }()
	return nil
}

// Stop stops the server as a crashed hub would: connections close, streams
// break (the nodes see UNAVAILABLE), attached nodes and the merged
// introspection are forgotten. Stored properties and records are kept.
func (h *Hub) Stop() {
	h.srvMu.Lock()
	defer h.srvMu.Unlock()
	if !h.running {
		return
	}
	h.mu.Lock()
	for id, n := range h.nodes {
		n.end("hub stopped", status.Error(codes.Unavailable, "hub stopped"))
		delete(h.nodes, id)
	}
	h.introspect = map[string]*iface{}
	h.mu.Unlock()
	h.srv.Stop()
	h.running = false
	h.notify()
}

// Restart stops and starts the server on the same address.
func (h *Hub) Restart() error {
	h.Stop()
	return h.Start()
}

// Close stops the hub for good.
func (h *Hub) Close() error {
	h.Stop()
	h.srvMu.Lock()
	h.closed = true
	h.srvMu.Unlock()
	return nil
}

// Addr is host:port of the hub.
func (h *Hub) Addr() string {
	h.srvMu.Lock()
	defer h.srvMu.Unlock()
	return h.addr
}

// Protocol is the hub's wire version.
func (h *Hub) Protocol() Protocol { return h.opts.Protocol }

// Running reports whether the server is up.
func (h *Hub) Running() bool {
	h.srvMu.Lock()
	defer h.srvMu.Unlock()
	return h.running
}

func (h *Hub) notify() {
	h.mu.Lock()
	close(h.changed)
	h.changed = make(chan struct{})
	h.mu.Unlock()
}

// Wait blocks until cond (called after every recorded change) returns true
// or ctx ends.
func (h *Hub) Wait(ctx context.Context, cond func() bool) error {
	for {
		h.mu.Lock()
		ch := h.changed
		h.mu.Unlock()
		if cond() {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("msghubemu: condition not met: %w", ctx.Err())
		}
	}
}

// Calls returns every RPC so far.
func (h *Hub) Calls() []Call {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]Call(nil), h.calls...)
}

// Attaches returns every Attach so far.
func (h *Hub) Attaches() []Attach {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]Attach, len(h.attaches))
	for k, a := range h.attaches {
		out[k] = *a
		out[k].Interfaces = append([]string(nil), a.Interfaces...)
	}
	return out
}

// Sends returns every Send so far (refused ones too).
func (h *Hub) Sends() []Send {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]Send(nil), h.sends...)
}

// SendsFrom returns the Sends of one node.
func (h *Hub) SendsFrom(nodeID string) []Send {
	var out []Send
	for _, s := range h.Sends() {
		if s.NodeID == nodeID {
			out = append(out, s)
		}
	}
	return out
}

// ResetRecords forgets the recorded calls, attaches and sends.
func (h *Hub) ResetRecords() {
	h.mu.Lock()
	h.calls, h.attaches, h.sends = nil, nil, nil
	h.mu.Unlock()
}

// WaitSends waits until the node made at least n accepted Sends and returns
// its accepted Sends.
func (h *Hub) WaitSends(ctx context.Context, nodeID string, n int) ([]Send, error) {
	var got []Send
	err := h.Wait(ctx, func() bool {
		got = got[:0]
		for _, s := range h.SendsFrom(nodeID) {
			if s.Code == codes.OK {
				got = append(got, s)
			}
		}
		return len(got) >= n
	})
	if err != nil {
		return got, fmt.Errorf("%w (node %s made %d of %d sends)", err, nodeID, len(got), n)
	}
	return got, nil
}

// WaitAttached waits until the node is attached (after its k-th Attach
// when k > 0, counting every Attach of the node since the last
// ResetRecords).
func (h *Hub) WaitAttached(ctx context.Context, nodeID string, k int) error {
	return h.Wait(ctx, func() bool {
		if !h.Attached(nodeID) {
			return false
		}
		n := 0
		for _, a := range h.Attaches() {
			if a.NodeID == nodeID && a.Code == codes.OK {
				n++
			}
		}
		return n >= k
	})
}

// Attached reports whether the node is attached.
func (h *Hub) Attached(nodeID string) bool {
	id, err := uuid.Parse(nodeID)
	if err != nil {
		return false
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	_, ok := h.nodes[id]
	return ok
}

// Nodes lists the attached nodes.
func (h *Hub) Nodes() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]string, 0, len(h.nodes))
	for id := range h.nodes {
		out = append(out, id.String())
	}
	sort.Strings(out)
	return out
}

// Introspection lists an attached node's interfaces as name:major:minor,
// sorted (nil when the node is not attached).
func (h *Hub) Introspection(nodeID string) []string {
	id, err := uuid.Parse(nodeID)
	if err != nil {
		return nil
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	n, ok := h.nodes[id]
	if !ok {
		return nil
	}
	out := []string{}
	for _, i := range n.ifaces {
		out = append(out, i.version())
	}
	sort.Strings(out)
	return out
}

// DeviceIntrospection lists the merged introspection the hub announces to
// Astarte, as name:major:minor, sorted.
func (h *Hub) DeviceIntrospection() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := []string{}
	for _, i := range h.introspect {
		out = append(out, i.version())
	}
	sort.Strings(out)
	return out
}
