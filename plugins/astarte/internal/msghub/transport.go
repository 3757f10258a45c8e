// Package msghub is the Astarte Message Hub transport (the seed's
// DeviceGrpc): the device is a node of a local Astarte Message Hub, which
// holds the one connection to Astarte. It speaks the MessageHub gRPC service
// in plaintext HTTP/2, protocol 0.7 (default) or 0.8 (docs:
// shared/MSGHUB.md): the node id as `node-id` metadata on every call, Attach
// with the full introspection and a stream of what Astarte sends (data,
// unsets, hub errors), Send for data and properties, Add/RemoveInterfaces
// while attached, Detach when closing. One Connect is one Attach; the device
// re-attaches with backoff when the stream breaks.
package msghub

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/connector-host/connector-host/plugins/astarte/internal/interfaces"
	"github.com/connector-host/connector-host/plugins/astarte/internal/payload"
	"github.com/connector-host/connector-host/plugins/astarte/internal/transport"
	msghubv08 "github.com/connector-host/connector-host/proto/gen/astarteplatform/msghub/v08"
)

// DefaultAddress is the hub's usual address.
const DefaultAddress = "127.0.0.1:50051"

// MetadataNodeID is the metadata key of the node id (UUID text) sent on
// every call.
const MetadataNodeID = "node-id"

// Config configures the transport of one device.
type Config struct {
	// Address is the hub's host:port (default DefaultAddress).
	Address string
	// NodeID identifies the node to the hub.
	NodeID uuid.UUID
	// Protocol is the wire version (default 0.7).
	Protocol Protocol
	// Pool shares gRPC channels between transports (one per address);
	// nil gives the transport a pool of its own.
	Pool *Pool
	// AttachTimeout bounds the Attach exchange (default 10 s).
	AttachTimeout time.Duration
	// CallTimeout bounds a unary call whose context has no deadline
	// (default 30 s).
	CallTimeout time.Duration
	// Logger receives diagnostics (never payloads).
	Logger *slog.Logger
}

// Transport connects one device to a Message Hub.
type Transport struct {
	cfg  Config
	l    *layout
	id   string
	pool *Pool
	log  *slog.Logger
}

// CheckAddress checks a hub address (host:port).
func CheckAddress(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("address %q: want host:port: %w", addr, err)
	}
	if host == "" {
		return fmt.Errorf("address %q has no host", addr)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return fmt.Errorf("address %q: port %q is not a number from 1 to 65535", addr, port)
	}
	return nil
}

// New returns the transport of one device.
func New(cfg Config) (*Transport, error) {
	if cfg.Address == "" {
		cfg.Address = DefaultAddress
	}
	if err := CheckAddress(cfg.Address); err != nil {
		return nil, fmt.Errorf("msghub: %w", err)
	}
	if cfg.NodeID == uuid.Nil {
		return nil, errors.New("msghub: a node id (not the nil UUID) is required")
	}
	if cfg.Protocol == "" {
		cfg.Protocol = DefaultProtocol
	}
	l := layouts[cfg.Protocol]
	if l == nil {
		return nil, fmt.Errorf("msghub: protocol %q is not supported (0.7 or 0.8)", cfg.Protocol)
	}
	if cfg.AttachTimeout <= 0 {
		cfg.AttachTimeout = 10 * time.Second
	}
	if cfg.CallTimeout <= 0 {
		cfg.CallTimeout = 30 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	pool := cfg.Pool
	if pool == nil {
		pool = NewPool()
	}
	return &Transport{cfg: cfg, l: l, id: cfg.NodeID.String(), pool: pool,
		log: cfg.Logger.With("node_id", cfg.NodeID.String(), "msghub", cfg.Address)}, nil
}

// Name is "grpc".
func (t *Transport) Name() string { return "grpc" }

// NodeID is the node id.
func (t *Transport) NodeID() string { return t.id }

// Protocol is the wire version.
func (t *Transport) Protocol() Protocol { return t.cfg.Protocol }

// outgoing adds the node id to a call's metadata.
func (t *Transport) outgoing(ctx context.Context) context.Context {
	return metadata.AppendToOutgoingContext(ctx, MetadataNodeID, t.id)
}

var attachDesc = &grpc.StreamDesc{StreamName: "Attach", ServerStreams: true}

// Connect attaches the node with the full introspection and returns once
// the hub accepted it (answered the Attach with its headers), then
// republishes the device's properties.
func (t *Transport) Connect(ctx context.Context, s transport.Session) (transport.Conn, error) {
	cc, err := t.pool.acquire(t.cfg.Address)
	if err != nil {
		return nil, err
	}
	c := &conn{t: t, cc: cc, handler: s.Handler, intro: s.Introspection.Clone(), done: make(chan struct{}),
		recvDone: make(chan struct{})}
	node := t.l.node.New()
	list := node.Mutable(node.Descriptor().Fields().ByName("interfaces_json")).List()
	for _, i := range s.Introspection.All() {
		list.Append(protoreflect.ValueOfString(string(i.Source())))
	}
	sctx, cancel := context.WithCancel(t.outgoing(context.Background()))
	c.cancel = cancel
	// The exchange is bounded by ctx and AttachTimeout; the stream then
	// lives until the conn ends.
	answered := make(chan struct{})
	timedOut := atomic.Bool{}
	go func() {
		timer := time.NewTimer(t.cfg.AttachTimeout)
		defer timer.Stop()
		select {
		case <-answered:
		case <-ctx.Done():
			cancel()
		case <-timer.C:
			timedOut.Store(true)
			cancel()
		}
	}()
	st, err := t.attach(sctx, cc, node.Interface())
	close(answered)
	if err != nil {
		cancel()
		c.releaseConn()
		switch {
		case ctx.Err() != nil:
			return nil, ctx.Err()
		case timedOut.Load():
			return nil, fmt.Errorf("msghub: attach to %s: no answer within %s: %w", t.cfg.Address, t.cfg.AttachTimeout, transport.ErrDisconnected)
		}
		return nil, c.callError("attach", err)
	}
	c.stream = st
	t.log.Debug("attached", "interfaces", s.Introspection.Len())
	go c.read() //nolint:gosec // the stream outlives the Connect call: it ends with the conn
	if err := c.resync(ctx, s.DeviceProperties); err != nil {
		_ = c.Close(context.WithoutCancel(ctx))
		return nil, err
	}
	return c, nil
}

// attach opens the Attach stream and waits for the hub's answer: headers
// mean accepted, a status without headers is the refusal.
func (t *Transport) attach(ctx context.Context, cc *grpc.ClientConn, node proto.Message) (grpc.ClientStream, error) {
	st, err := cc.NewStream(ctx, attachDesc, methodAttach)
	if err != nil {
		return nil, err
	}
	if err := st.SendMsg(node); err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	if err := st.CloseSend(); err != nil {
		return nil, err
	}
	md, err := st.Header()
	if err != nil {
		return nil, err
	}
	if md == nil {
		// Ended without headers: the status says why.
		err := st.RecvMsg(t.l.event.New().Interface())
		if err == nil || errors.Is(err, io.EOF) {
			err = status.Error(codes.Unavailable, "the hub ended the attach stream without answering")
		}
		return nil, err
	}
	return st, nil
}

// conn is one attachment.
type conn struct {
	t       *Transport
	cc      *grpc.ClientConn
	stream  grpc.ClientStream
	cancel  context.CancelFunc
	handler transport.Handler

	imu   sync.Mutex
	intro *interfaces.Introspection

	closing     atomic.Bool
	closeOnce   sync.Once
	lostOnce    sync.Once
	releaseOnce sync.Once
	done        chan struct{}
	recvDone    chan struct{}
	errMu       sync.Mutex
	err         error
}

// Resynced is true: every Attach republishes the device properties.
func (c *conn) Resynced() bool { return true }

func (c *conn) Done() <-chan struct{} { return c.done }

func (c *conn) Err() error {
	c.errMu.Lock()
	defer c.errMu.Unlock()
	return c.err
}

func (c *conn) releaseConn() {
	c.releaseOnce.Do(func() { c.t.pool.release(c.t.cfg.Address, c.cc) })
}

// lost ends the attachment because of err (the device re-attaches).
func (c *conn) lost(err error) {
	c.lostOnce.Do(func() {
		c.errMu.Lock()
		if c.err == nil && !c.closing.Load() {
			c.err = err
		}
		c.errMu.Unlock()
		c.cancel()
		close(c.done)
		// The device does not Close a lost connection: give the channel
		// back now (calls still in flight fail as disconnected).
		c.releaseConn()
		if err != nil {
			c.t.log.Info("attachment lost", "error", err)
		}
	})
}

// Close detaches the node (the hub misbehaves when a node drops its stream
// without Detach), ends the stream and releases the channel.
func (c *conn) Close(ctx context.Context) error {
	var err error
	c.closeOnce.Do(func() {
		c.closing.Store(true)
		select {
		case <-c.done:
		default:
			dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			err = c.invoke(dctx, methodDetach, &emptypb.Empty{}, &emptypb.Empty{})
			cancel()
			if err != nil {
				err = c.callError("detach", err)
				c.t.log.Warn("detach failed", "error", err)
			}
		}
		c.lost(nil)
		select {
		case <-c.recvDone:
		case <-ctx.Done():
		}
		c.releaseConn()
	})
	return err
}

// invoke makes a unary call with the node id, bounded by CallTimeout when
// ctx has no deadline.
func (c *conn) invoke(ctx context.Context, method string, in, out proto.Message) error {
	return c.invokeOutgoing(c.t.outgoing(ctx), method, in, out)
}

// invokeOutgoing is invoke for a ctx that already carries the node id.
func (c *conn) invokeOutgoing(ctx context.Context, method string, in, out proto.Message) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.t.cfg.CallTimeout)
		defer cancel()
	}
	return c.cc.Invoke(ctx, method, in, out)
}

// withoutDeadline returns a context with ctx's values and no deadline that
// is cancelled when ctx is done (its deadline included): gRPC calls made
// with it send no grpc-timeout. stop releases it.
func withoutDeadline(ctx context.Context) (context.Context, func()) {
	nctx, cancel := context.WithCancelCause(context.WithoutCancel(ctx))
	stopAfter := context.AfterFunc(ctx, func() { cancel(context.Cause(ctx)) })
	return nctx, func() {
		stopAfter()
		cancel(context.Canceled)
	}
}

// callError maps a failed call. UNAVAILABLE (and a call timing out) means
// the hub is gone: the attachment is dropped and the error matches
// transport.ErrDisconnected. UNAUTHENTICATED means the hub does not know
// the node: the attachment is dropped too. INTERNAL and INVALID_ARGUMENT
// refuse the request: the error matches transport.ErrRejected.
func (c *conn) callError(op string, err error) error {
	if errors.Is(err, context.Canceled) && c.closing.Load() {
		return fmt.Errorf("msghub: %s: %w", op, transport.ErrDisconnected)
	}
	st, ok := status.FromError(err)
	if !ok {
		return fmt.Errorf("msghub: %s: %w", op, err)
	}
	se := &StatusError{Op: op, Code: st.Code(), Description: st.Message()}
	switch st.Code() {
	case codes.Unavailable, codes.DeadlineExceeded, codes.Canceled:
		se.disconnected = true
		if c.stream != nil {
			c.lost(se)
		}
	case codes.Unauthenticated:
		if c.stream != nil {
			c.lost(se)
		}
	case codes.Internal, codes.InvalidArgument:
		se.rejected = true
	}
	return se
}

// StatusError is a call the hub answered with an error status.
type StatusError struct {
	// Op is the operation: attach, send, detach, add_interfaces,
	// remove_interfaces.
	Op string
	// Code is the gRPC status code.
	Code codes.Code
	// Description is the hub's message.
	Description string

	disconnected, rejected bool
}

// Error implements error.
func (e *StatusError) Error() string {
	return fmt.Sprintf("message hub %s: %s: %s", e.Op, e.Code, e.Description)
}

// Unwrap makes errors.Is match transport.ErrDisconnected (UNAVAILABLE, a
// timeout) or transport.ErrRejected (INTERNAL, INVALID_ARGUMENT).
func (e *StatusError) Unwrap() error {
	switch {
	case e.disconnected:
		return transport.ErrDisconnected
	case e.rejected:
		return transport.ErrRejected
	}
	return nil
}

// resync republishes the device's properties after an Attach: the hub may
// be new or may have lost them. A property the hub refuses is skipped.
func (c *conn) resync(ctx context.Context, props []transport.Property) error {
	for _, p := range props {
		m, err := p.Interface.Lookup(p.Path)
		if err != nil {
			continue
		}
		_, err = c.Send(ctx, []*transport.Message{{Interface: p.Interface, Mapping: m, Path: p.Path, Payload: p.Payload}})
		if errors.Is(err, transport.ErrRejected) {
			c.t.log.Warn("the hub refused a device property", "interface", p.Interface.Name, "path", p.Path, "error", err)
			continue
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// Send sends messages in order, each confirmed by the hub before the next.
func (c *conn) Send(ctx context.Context, msgs []*transport.Message) (int, error) {
	// The node id, once for all the messages; and when ctx has a deadline,
	// none on the wire: it still ends the sends (by cancelling them),
	// without a grpc-timeout header and a timer on both ends per message.
	octx := c.t.outgoing(ctx)
	invoke := c.invokeOutgoing // CallTimeout for each message
	if _, ok := ctx.Deadline(); ok {
		var stop func()
		octx, stop = withoutDeadline(octx)
		defer stop()
		invoke = func(ctx context.Context, method string, in, out proto.Message) error {
			return c.cc.Invoke(ctx, method, in, out)
		}
	}
	var o outgoing
	var empty emptypb.Empty
	var scratch *scratch07
	if c.t.l.protocol == Protocol07 {
		scratch = &scratch07{}
	}
	for k, m := range msgs {
		select {
		case <-c.done:
			return k, fmt.Errorf("msghub: send: %w (%w)", transport.ErrDisconnected, c.Err())
		default:
		}
		err := outgoingOf(m, &o)
		if err == nil {
			var pm proto.Message
			if scratch != nil {
				pm, err = scratch.encode(&o)
			} else {
				pm, err = c.t.l.encodeMessage(&o)
			}
			if err == nil {
				if err = invoke(octx, methodSend, pm, &empty); err != nil {
					if ctx.Err() != nil {
						return k, ctx.Err()
					}
					return k, c.callError("send", err)
				}
				continue
			}
		}
		return k, fmt.Errorf("msghub: interface %q path %q: %w: %w", m.Interface.Name, m.Path, err, transport.ErrRejected)
	}
	return len(msgs), nil
}

// UpdateIntrospection tells the hub about changed interfaces:
// RemoveInterfaces for the ones gone, AddInterfaces for the new or updated
// ones (an update replaces the old version on the hub).
func (c *conn) UpdateIntrospection(ctx context.Context, in *interfaces.Introspection, added, removed []*interfaces.Interface) error {
	c.imu.Lock()
	c.intro = in.Clone()
	c.imu.Unlock()
	var gone []string
	for _, r := range removed {
		if in.Get(r.Name) == nil {
			gone = append(gone, r.Name)
		}
	}
	if len(gone) > 0 {
		req := c.t.l.ifNames.New()
		l := req.Mutable(req.Descriptor().Fields().ByName("names")).List()
		for _, n := range gone {
			l.Append(protoreflect.ValueOfString(n))
		}
		if err := c.invoke(ctx, methodRemoveInterfaces, req.Interface(), &emptypb.Empty{}); err != nil {
			return c.callError("remove_interfaces", err)
		}
	}
	if len(added) > 0 {
		req := c.t.l.ifJSON.New()
		l := req.Mutable(req.Descriptor().Fields().ByName("interfaces_json")).List()
		for _, i := range added {
			l.Append(protoreflect.ValueOfString(string(i.Source())))
		}
		if err := c.invoke(ctx, methodAddInterfaces, req.Interface(), &emptypb.Empty{}); err != nil {
			return c.callError("add_interfaces", err)
		}
	}
	return nil
}

// read takes the Attach stream's events until it ends. Handler calls are
// sequential, in arrival order.
func (c *conn) read() {
	defer close(c.recvDone)
	ctx := context.Background()
	if c.t.l.protocol == Protocol08 {
		c.purge(ctx)
	}
	oneof := c.t.l.event.Descriptor().Oneofs().ByName("event")
	for {
		ev := c.t.l.event.New()
		err := c.stream.RecvMsg(ev.Interface())
		if err != nil {
			if c.closing.Load() {
				return
			}
			if errors.Is(err, io.EOF) {
				c.lost(fmt.Errorf("msghub: the hub ended the attach stream: %w", transport.ErrDisconnected))
			} else {
				c.lost(fmt.Errorf("msghub: attach stream: %s: %w", status.Convert(err).Message(), transport.ErrDisconnected))
			}
			return
		}
		fd := ev.WhichOneof(oneof)
		switch {
		case fd == nil:
			c.handler.Dropped(errors.New("msghub: an event with neither message nor error"))
		case fd.Name() == "error":
			e := ev.Get(fd).Message()
			f := e.Descriptor().Fields()
			re := transport.RemoteError{Description: e.Get(f.ByName("description")).String()}
			src := e.Get(f.ByName("source")).List()
			for k := 0; k < src.Len(); k++ {
				re.Source = append(re.Source, src.Get(k).String())
			}
			if h, ok := c.handler.(transport.RemoteErrorHandler); ok {
				h.RemoteError(ctx, re)
			} else {
				c.handler.Dropped(fmt.Errorf("msghub: hub error: %s", re.Description))
			}
		default:
			in, err := c.t.l.decode(ev.Get(fd).Message())
			if err != nil {
				c.handler.Dropped(fmt.Errorf("msghub: interface %q path %q: %w", in.iface, in.path, err))
				continue
			}
			c.inbound(ctx, in)
		}
	}
}

// inbound checks a message against the introspection and hands it on.
func (c *conn) inbound(ctx context.Context, in incoming) {
	drop := func(format string, args ...any) {
		c.handler.Dropped(fmt.Errorf("msghub: interface %q path %q: %s", in.iface, in.path, fmt.Sprintf(format, args...)))
	}
	c.imu.Lock()
	iface := c.intro.Get(in.iface)
	c.imu.Unlock()
	if iface == nil {
		drop("interface is not in the introspection")
		return
	}
	out := transport.Inbound{Interface: iface, Path: in.path, Timestamp: in.timestamp, Unset: in.unset}
	switch {
	case in.unset:
	case in.object != nil:
		if !iface.IsObject() {
			drop("an object on an individual interface")
			return
		}
		byKey, err := iface.LookupObject(in.path)
		if err != nil {
			drop("%v", err)
			return
		}
		fields := make(map[string]any, len(in.object))
		for k, v := range in.object {
			m, ok := byKey[k]
			if !ok {
				drop("no mapping of the object has the key %q", k)
				return
			}
			if in.objTypes[k] != m.Type {
				drop("key %q: a %s value for a %s mapping", k, in.objTypes[k], m.Type)
				return
			}
			nv, err := payload.Normalize(m.Type, v)
			if err != nil {
				drop("key %q: %v", k, err)
				return
			}
			fields[k] = nv
		}
		out.Value = fields
	default:
		if iface.IsObject() {
			drop("an individual value on an object-aggregated interface")
			return
		}
		m, err := iface.Lookup(in.path)
		if err != nil {
			drop("%v", err)
			return
		}
		if in.typ != m.Type {
			drop("a %s value for a %s mapping", in.typ, m.Type)
			return
		}
		if out.Value, err = payload.Normalize(m.Type, in.value); err != nil {
			drop("%v", err)
			return
		}
	}
	c.handler.Data(ctx, out)
}

// purge (0.8) asks the hub for the server-owned properties it holds and
// lets the device delete the others, as MQTT's consumer/properties does.
func (c *conn) purge(ctx context.Context) {
	req := msghubv08.New("PropertyFilter")
	req.Set(req.Descriptor().Fields().ByName("ownership"), protoreflect.ValueOfEnum(1)) // SERVER
	resp := msghubv08.New("StoredProperties")
	if err := c.invoke(ctx, methodGetAllProperties, req, resp); err != nil {
		c.t.log.Debug("no server property list from the hub", "error", err)
		return
	}
	props := resp.Get(resp.Descriptor().Fields().ByName("properties")).List()
	keep := make([]payload.PropertyPath, 0, props.Len())
	for k := 0; k < props.Len(); k++ {
		p := props.Get(k).Message()
		f := p.Descriptor().Fields()
		keep = append(keep, payload.PropertyPath{Interface: p.Get(f.ByName("interface_name")).String(), Path: p.Get(f.ByName("path")).String()})
	}
	c.handler.PurgeProperties(ctx, keep)
}

// Pool shares gRPC channels (one per hub address) between the devices of a
// process; a channel closes when its last attachment ends.
type Pool struct {
	mu    sync.Mutex
	conns map[string]*pooled
}

type pooled struct {
	cc   *grpc.ClientConn
	refs int
}

// NewPool returns an empty pool.
func NewPool() *Pool { return &Pool{conns: map[string]*pooled{}} }

func (p *Pool) acquire(addr string) (*grpc.ClientConn, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if pc := p.conns[addr]; pc != nil {
		pc.refs++
		return pc.cc, nil
	}
	cc, err := grpc.NewClient(addr,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		// Reconnect quickly: the device's own backoff paces re-attaching.
		grpc.WithConnectParams(grpc.ConnectParams{MinConnectTimeout: 5 * time.Second,
			Backoff: backoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 2 * time.Second}}),
		// Notice a hub that vanished without closing the connection.
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: 30 * time.Second, Timeout: 10 * time.Second}),
		grpc.WithDefaultCallOptions(grpc.ForceCodecV2(newSafeCodec())),
	)
	if err != nil {
		return nil, fmt.Errorf("msghub: %s: %w", addr, err)
	}
	p.conns[addr] = &pooled{cc: cc, refs: 1}
	return cc, nil
}

func (p *Pool) release(addr string, cc *grpc.ClientConn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	pc := p.conns[addr]
	if pc == nil || pc.cc != cc {
		_ = cc.Close()
		return
	}
	if pc.refs--; pc.refs <= 0 {
		delete(p.conns, addr)
		_ = cc.Close()
	}
}
