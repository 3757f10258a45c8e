// Package mqtt is the Astarte MQTT v1 transport (eclipse/paho.mqtt.golang,
// MQTT 3.1.1 over TLS with the device certificate): a persistent session
// keyed by realm/device_id, the connect handshake (subscriptions,
// introspection, emptyCache, device properties, producer purge list), BSON
// data publishing with QoS by reliability, and decoding of what Astarte
// publishes (server-owned data, unsets, consumer/properties).
package mqtt

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/connector-host/connector-host/plugins/astarte/internal/interfaces"
	"github.com/connector-host/connector-host/plugins/astarte/internal/payload"
	"github.com/connector-host/connector-host/plugins/astarte/internal/transport"
)

// Endpoint is where and how to connect: the broker URL from the Pairing API
// (mqtts://host:port) and a TLS config holding the device certificate.
type Endpoint struct {
	BrokerURL string
	TLS       *tls.Config
}

// Config configures the transport of one device.
type Config struct {
	Realm    string
	DeviceID string
	// Endpoint is called before every connection attempt, so a renewed
	// certificate or a moved broker is picked up.
	Endpoint func(ctx context.Context) (Endpoint, error)
	// KeepAlive is the MQTT keep-alive (default 30 s).
	KeepAlive time.Duration
	// ConnectTimeout bounds the CONNECT exchange (default 20 s).
	ConnectTimeout time.Duration
	// Window bounds how many QoS 1/2 publishes are in flight during the
	// handshake and batch sends (default 100).
	Window int
	// Logger receives diagnostics (never payloads or keys).
	Logger *slog.Logger
}

// Transport is the MQTT transport of one device. It remembers the last
// introspection it announced so a resumed session re-announces only when the
// interfaces changed.
type Transport struct {
	cfg  Config
	base string
	log  *slog.Logger

	mu        sync.Mutex
	announced string // introspection last published on a live session
}

// New returns the transport for one device.
func New(cfg Config) (*Transport, error) {
	if cfg.Realm == "" || cfg.DeviceID == "" || cfg.Endpoint == nil {
		return nil, errors.New("mqtt: Realm, DeviceID and Endpoint are required")
	}
	if cfg.KeepAlive <= 0 {
		cfg.KeepAlive = 30 * time.Second
	}
	if cfg.ConnectTimeout <= 0 {
		cfg.ConnectTimeout = 20 * time.Second
	}
	if cfg.Window <= 0 {
		cfg.Window = 100
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return &Transport{cfg: cfg, base: cfg.Realm + "/" + cfg.DeviceID, log: cfg.Logger}, nil
}

// Name is "mqtt".
func (t *Transport) Name() string { return "mqtt" }

// BaseTopic is realm/device_id (also the MQTT client id).
func (t *Transport) BaseTopic() string { return t.base }

// brokerAddress checks the broker URL and returns host:port.
func brokerAddress(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", fmt.Errorf("mqtt: broker url %q: %w", raw, err)
	}
	switch u.Scheme {
	case "mqtts", "ssl", "tls", "tcps", "mqtt+ssl":
	default:
		return "", fmt.Errorf("mqtt: broker url %q: want mqtts://host:port (Astarte MQTT v1 runs over TLS)", raw)
	}
	if u.Hostname() == "" {
		return "", fmt.Errorf("mqtt: broker url %q has no host", raw)
	}
	port := u.Port()
	if port == "" {
		port = "8883"
	}
	return net.JoinHostPort(u.Hostname(), port), nil
}

// Connect makes one connection attempt and runs the handshake.
func (t *Transport) Connect(ctx context.Context, s transport.Session) (transport.Conn, error) {
	ep, err := t.cfg.Endpoint(ctx)
	if err != nil {
		return nil, err
	}
	addr, err := brokerAddress(ep.BrokerURL)
	if err != nil {
		return nil, err
	}
	if ep.TLS == nil || len(ep.TLS.Certificates) == 0 && ep.TLS.GetClientCertificate == nil {
		return nil, errors.New("mqtt: a TLS config with the device certificate is required")
	}
	tlsCfg := ep.TLS.Clone()
	if tlsCfg.ServerName == "" {
		host, _, _ := net.SplitHostPort(addr)
		tlsCfg.ServerName = host
	}
	c := &conn{t: t, handler: s.Handler, intro: s.Introspection.Clone(), done: make(chan struct{})}
	opts := paho.NewClientOptions().
		AddBroker("tls://" + addr).
		SetClientID(t.base).
		SetProtocolVersion(4).
		SetCleanSession(false).
		SetAutoReconnect(false).
		SetConnectRetry(false).
		SetResumeSubs(false).
		SetOrderMatters(true).
		SetKeepAlive(t.cfg.KeepAlive).
		SetPingTimeout(10 * time.Second).
		SetConnectTimeout(t.cfg.ConnectTimeout).
		SetWriteTimeout(t.cfg.ConnectTimeout).
		SetStore(paho.NewMemoryStore()).
		SetTLSConfig(tlsCfg).
		SetDefaultPublishHandler(c.onMessage).
		SetConnectionLostHandler(func(_ paho.Client, err error) { c.lost(err) })
	opts.SetCustomOpenConnectionFn(func(u *url.URL, o paho.ClientOptions) (net.Conn, error) {
		d := &tls.Dialer{NetDialer: &net.Dialer{Timeout: t.cfg.ConnectTimeout}, Config: tlsCfg}
		nc, err := d.DialContext(ctx, "tcp", u.Host)
		if err != nil {
			return nil, err
		}
		cc := newCoalescingConn(nc, t.cfg.ConnectTimeout)
		c.sock.Store(cc)
		return cc, nil
	})
	c.client = paho.NewClient(opts)
	tok := c.client.Connect()
	select {
	case <-tok.Done():
	case <-ctx.Done():
		// The dial honours ctx; the CONNECT exchange is bounded by
		// ConnectTimeout.
		<-tok.Done()
		c.client.Disconnect(0)
		return nil, ctx.Err()
	}
	if err := tok.Error(); err != nil {
		return nil, fmt.Errorf("mqtt: connect to %s: %w", addr, err)
	}
	ct := tok.(*paho.ConnectToken)
	current := s.Introspection.String()
	t.mu.Lock()
	full := !ct.SessionPresent() || t.announced != current
	t.mu.Unlock()
	c.resynced = full
	if full {
		if err := c.handshake(ctx, s); err != nil {
			c.client.Disconnect(0)
			return nil, err
		}
	}
	t.mu.Lock()
	t.announced = current
	t.mu.Unlock()
	return c, nil
}

// conn is one MQTT connection.
type conn struct {
	t        *Transport
	client   paho.Client
	sock     atomic.Pointer[coalescingConn] // the socket under client, once dialled
	handler  transport.Handler
	resynced bool

	imu   sync.Mutex
	intro *interfaces.Introspection

	closeOnce sync.Once
	done      chan struct{}
	errMu     sync.Mutex
	err       error
}

func (c *conn) Resynced() bool        { return c.resynced }
func (c *conn) Done() <-chan struct{} { return c.done }

func (c *conn) Err() error {
	c.errMu.Lock()
	defer c.errMu.Unlock()
	return c.err
}

func (c *conn) lost(err error) {
	c.errMu.Lock()
	if c.err == nil {
		if err == nil {
			err = errors.New("connection lost")
		}
		c.err = fmt.Errorf("mqtt: %w", err)
	}
	c.errMu.Unlock()
	c.closeOnce.Do(func() { close(c.done) })
}

// Close disconnects gracefully (waiting briefly for in-flight work).
func (c *conn) Close(ctx context.Context) error {
	c.closeOnce.Do(func() {
		c.client.Disconnect(250)
		close(c.done)
	})
	return nil
}

// pub is one publish of a batch.
type pub struct {
	topic   string
	qos     byte
	payload []byte
}

// publishAll publishes in order with at most Window QoS>0 messages in
// flight and returns how many leading publishes completed. Publishes go out
// in bursts of half a window (one socket write each, see publishWindow):
// the next burst leaves as soon as the one before the previous is
// confirmed, so the broker always has work while acknowledgements return.
func (c *conn) publishAll(ctx context.Context, pubs []pub) (int, error) {
	window := c.t.cfg.Window
	burst := max(1, window/2)
	toks := make([]paho.Token, 0, len(pubs))
	done := 0
	for start := 0; start < len(pubs); start += burst {
		end := min(start+burst, len(pubs))
		for ; end-done > window; done++ {
			if err := c.wait(ctx, toks[done]); err != nil {
				return done, err
			}
		}
		toks = append(toks, c.publishWindow(pubs[start:end])...)
	}
	for ; done < len(toks); done++ {
		if err := c.wait(ctx, toks[done]); err != nil {
			return done, err
		}
	}
	return done, nil
}

// publishWindow hands pubs to paho, the socket corked meanwhile so that
// they leave together rather than one write each.
func (c *conn) publishWindow(pubs []pub) []paho.Token {
	if sock := c.sock.Load(); sock != nil && len(pubs) > 1 {
		sock.Cork()
		defer sock.Uncork()
	}
	toks := make([]paho.Token, 0, len(pubs))
	for _, p := range pubs {
		toks = append(toks, c.client.Publish(p.topic, p.qos, false, p.payload))
	}
	return toks
}

// wait waits for a token, the connection loss or ctx. A token that has
// completed wins over a connection lost meanwhile: its message was
// confirmed before the loss.
func (c *conn) wait(ctx context.Context, tok paho.Token) error {
	select {
	case <-tok.Done():
		return c.tokenError(tok)
	default:
	}
	select {
	case <-tok.Done():
		return c.tokenError(tok)
	case <-c.done:
		// With a persistent session paho keeps unacknowledged publishes of
		// a lost connection pending forever: the loss is the answer.
		return fmt.Errorf("%w: %w", transport.ErrDisconnected, c.Err())
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (c *conn) tokenError(tok paho.Token) error {
	if err := tok.Error(); err != nil {
		if errors.Is(err, paho.ErrNotConnected) || !c.client.IsConnectionOpen() {
			return fmt.Errorf("%w: %w", transport.ErrDisconnected, err)
		}
		return fmt.Errorf("mqtt: %w", err)
	}
	return nil
}

func (c *conn) topic(iface, path string) string {
	return c.t.base + "/" + iface + path
}

// handshake subscribes and publishes the full device state.
func (c *conn) handshake(ctx context.Context, s transport.Session) error {
	filters := map[string]byte{c.t.base + "/control/consumer/properties": 2}
	for _, i := range s.Introspection.ServerOwned() {
		filters[c.t.base+"/"+i.Name+"/#"] = 2
	}
	if err := c.subscribe(ctx, filters); err != nil {
		return err
	}
	pubs := []pub{
		{topic: c.t.base, qos: 2, payload: []byte(s.Introspection.String())},
		{topic: c.t.base + "/control/emptyCache", qos: 2, payload: []byte("1")},
	}
	list := make([]payload.PropertyPath, 0, len(s.DeviceProperties))
	for _, p := range s.DeviceProperties {
		pubs = append(pubs, pub{topic: c.topic(p.Interface.Name, p.Path), qos: 2, payload: p.Payload})
		list = append(list, payload.PropertyPath{Interface: p.Interface.Name, Path: p.Path})
	}
	purge, err := payload.EncodePropertyList(list)
	if err != nil {
		return err
	}
	pubs = append(pubs, pub{topic: c.t.base + "/control/producer/properties", qos: 2, payload: purge})
	if _, err := c.publishAll(ctx, pubs); err != nil {
		return fmt.Errorf("mqtt: handshake: %w", err)
	}
	return nil
}

func (c *conn) subscribe(ctx context.Context, filters map[string]byte) error {
	if len(filters) == 0 {
		return nil
	}
	tok := c.client.SubscribeMultiple(filters, nil)
	if err := c.wait(ctx, tok); err != nil {
		return fmt.Errorf("mqtt: subscribe: %w", err)
	}
	for f, code := range tok.(*paho.SubscribeToken).Result() {
		if code > 2 {
			return fmt.Errorf("mqtt: subscribe to %s refused by the broker (code %#x)", f, code)
		}
	}
	return nil
}

// Send publishes data messages in order and waits for their QoS.
func (c *conn) Send(ctx context.Context, msgs []*transport.Message) (int, error) {
	pubs := make([]pub, len(msgs))
	for k, m := range msgs {
		data := m.Payload
		if m.Unset {
			data = []byte{}
		}
		pubs[k] = pub{topic: c.topic(m.Interface.Name, m.Path), qos: m.QoS(), payload: data}
	}
	return c.publishAll(ctx, pubs)
}

// UpdateIntrospection subscribes to added server-owned interfaces,
// unsubscribes removed ones and publishes the new introspection.
func (c *conn) UpdateIntrospection(ctx context.Context, in *interfaces.Introspection, added, removed []*interfaces.Interface) error {
	c.imu.Lock()
	c.intro = in.Clone()
	c.imu.Unlock()
	var unsub []string
	for _, i := range removed {
		if i.IsServerOwned() && (in.Get(i.Name) == nil || !in.Get(i.Name).IsServerOwned()) {
			unsub = append(unsub, c.t.base+"/"+i.Name+"/#")
		}
	}
	if len(unsub) > 0 {
		if err := c.wait(ctx, c.client.Unsubscribe(unsub...)); err != nil {
			return fmt.Errorf("mqtt: unsubscribe: %w", err)
		}
	}
	filters := map[string]byte{}
	for _, i := range added {
		if i.IsServerOwned() {
			filters[c.t.base+"/"+i.Name+"/#"] = 2
		}
	}
	if err := c.subscribe(ctx, filters); err != nil {
		return err
	}
	if _, err := c.publishAll(ctx, []pub{{topic: c.t.base, qos: 2, payload: []byte(in.String())}}); err != nil {
		return err
	}
	c.t.mu.Lock()
	c.t.announced = in.String()
	c.t.mu.Unlock()
	return nil
}

// onMessage decodes what Astarte publishes to the device. paho calls it in
// arrival order and acknowledges the message when it returns.
func (c *conn) onMessage(_ paho.Client, m paho.Message) {
	ctx := context.Background()
	rest, ok := strings.CutPrefix(m.Topic(), c.t.base+"/")
	if !ok {
		c.handler.Dropped(fmt.Errorf("topic %q is outside the device tree", m.Topic()))
		return
	}
	if rest == "control/consumer/properties" {
		list, err := payload.DecodePropertyList(m.Payload())
		if err != nil {
			c.handler.Dropped(fmt.Errorf("topic %q: %w", m.Topic(), err))
			return
		}
		c.handler.PurgeProperties(ctx, list)
		return
	}
	if strings.HasPrefix(rest, "control/") {
		c.handler.Dropped(fmt.Errorf("topic %q: unknown control message", m.Topic()))
		return
	}
	name, path, ok := strings.Cut(rest, "/")
	if !ok {
		c.handler.Dropped(fmt.Errorf("topic %q has no path", m.Topic()))
		return
	}
	path = "/" + path
	c.imu.Lock()
	iface := c.intro.Get(name)
	c.imu.Unlock()
	if iface == nil {
		c.handler.Dropped(fmt.Errorf("topic %q: interface %q is not in the introspection", m.Topic(), name))
		return
	}
	in, err := decodeInbound(iface, path, m.Payload())
	if err != nil {
		c.handler.Dropped(fmt.Errorf("topic %q: %w", m.Topic(), err))
		return
	}
	c.handler.Data(ctx, in)
}

func decodeInbound(iface *interfaces.Interface, path string, data []byte) (transport.Inbound, error) {
	in := transport.Inbound{Interface: iface, Path: path}
	if iface.IsObject() {
		byKey, err := iface.LookupObject(path)
		if err != nil {
			return in, err
		}
		fields, ts, err := payload.DecodeObject(byKey, data)
		if err != nil {
			return in, err
		}
		in.Value, in.Timestamp = fields, ts
		return in, nil
	}
	mp, err := iface.Lookup(path)
	if err != nil {
		return in, err
	}
	msg, err := payload.Decode(mp.Type, data)
	if err != nil {
		return in, err
	}
	if msg.Unset && !iface.IsProperties() {
		return in, errors.New("empty payload on a datastream")
	}
	in.Value, in.Timestamp, in.Unset = msg.Value, msg.Timestamp, msg.Unset
	return in, nil
}
