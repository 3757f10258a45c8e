package astarteemu

import (
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"strings"
	"syscall"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"
)

// Message is one PUBLISH the broker received from a device, in arrival
// order.
type Message struct {
	// Seq numbers messages from 1 in arrival order, across restarts.
	Seq      int
	ClientID string
	Topic    string
	QoS      byte
	Retain   bool
	Payload  []byte
	Time     time.Time
}

// Denial is a publish or subscribe the ACL refused.
type Denial struct {
	ClientID string
	Topic    string
	Write    bool
}

// Connection is a client that the broker accepted.
type Connection struct {
	ClientID     string
	CleanSession bool
	Time         time.Time
}

// StartBroker starts the MQTT broker (TLS with client certificates from the
// emulator CA) on the broker address. After StopBroker it starts again on the
// same port; sessions do not survive a restart.
func (e *Emulator) StartBroker() error {
	e.brokerMu.Lock()
	defer e.brokerMu.Unlock()
	if e.broker != nil {
		return errors.New("astarteemu: broker already running")
	}
	srv := mqtt.New(&mqtt.Options{InlineClient: true, Logger: e.logger})
	if err := srv.AddHook(&aclHook{e: e}, nil); err != nil {
		return err
	}
	tlsCfg := &tls.Config{
		Certificates: []tls.Certificate{e.pki.server},
		ClientCAs:    e.pki.pool,
		ClientAuth:   tls.RequireAndVerifyClientCert,
		MinVersion:   tls.VersionTLS12,
	}
	addr := e.brokerAddr
	if addr == "" {
		addr = e.opts.BrokerAddr
	}
	l, err := listenBroker(srv, addr, tlsCfg)
	if err != nil {
		return fmt.Errorf("astarteemu: broker listen on %s: %w", addr, err)
	}
	if err := srv.Serve(); err != nil {
		_ = srv.Close()
		return err
	}
	e.brokerAddr = l.Address()
	e.broker = srv
	return nil
}

// listenRetryFor bounds how long listenBroker retries a port in use.
const listenRetryFor = 3 * time.Second

// listenBroker adds the TLS listener on addr to srv. The port of a
// restarted broker is held by the emulator's reservation on Linux (see
// reservePort), so no other socket can take it while the broker is
// stopped; a port still in use (elsewhere, or a fixed BrokerAddr) is
// retried with a short backoff for up to listenRetryFor.
func listenBroker(srv *mqtt.Server, addr string, tlsCfg *tls.Config) (*listeners.TCP, error) {
	deadline := time.Now().Add(listenRetryFor)
	for wait := 10 * time.Millisecond; ; wait = min(2*wait, 250*time.Millisecond) {
		l := listeners.NewTCP(listeners.Config{Type: listeners.TypeTCP, ID: "tls", Address: addr, TLSConfig: tlsCfg})
		err := srv.AddListener(l)
		if err == nil {
			return l, nil
		}
		if !errors.Is(err, syscall.EADDRINUSE) || time.Now().Add(wait).After(deadline) {
			return nil, err
		}
		time.Sleep(wait)
	}
}

// StopBroker stops the broker and disconnects every client. The port stays
// reserved for StartBroker.
func (e *Emulator) StopBroker() error {
	e.brokerMu.Lock()
	defer e.brokerMu.Unlock()
	if e.broker == nil {
		return nil
	}
	err := e.broker.Close()
	e.broker = nil
	return err
}

// StopBrokerAfter makes the broker crash right after n more PUBLISHes from
// clients: it records and acknowledges those n, then refuses every later
// one (unrecorded, unacknowledged) and stops in the background, as
// StopBroker would. Wait with Wait(ctx, func() bool { return
// !e.BrokerRunning() }); StartBroker starts it again.
func (e *Emulator) StopBrokerAfter(n int) {
	e.mu.Lock()
	e.stopAfter = max(n, 0)
	e.mu.Unlock()
}

// admitPublish counts a client PUBLISH against StopBrokerAfter and reports
// whether the broker takes it.
func (e *Emulator) admitPublish() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	switch {
	case e.stopping:
		return false
	case e.stopAfter < 0:
		return true
	case e.stopAfter > 0:
		e.stopAfter--
		return true
	}
	e.stopAfter, e.stopping = -1, true
	go func() {
		_ = e.StopBroker()
		e.mu.Lock()
		e.stopping = false
		e.mu.Unlock()
		e.notify()
	}()
	return false
}

// BrokerRunning reports whether the broker is up.
func (e *Emulator) BrokerRunning() bool {
	e.brokerMu.Lock()
	defer e.brokerMu.Unlock()
	return e.broker != nil
}

// KickClient drops the connection of a client (its session is kept), as a
// network failure would.
func (e *Emulator) KickClient(clientID string) error {
	e.brokerMu.Lock()
	defer e.brokerMu.Unlock()
	if e.broker == nil {
		return errors.New("astarteemu: broker not running")
	}
	cl, ok := e.broker.Clients.Get(clientID)
	if !ok || cl.Closed() {
		return fmt.Errorf("astarteemu: client %q not connected", clientID)
	}
	cl.Stop(errors.New("kicked by test"))
	return nil
}

// Publish sends a message from the server side to whoever subscribed.
func (e *Emulator) Publish(topic string, payload []byte, qos byte) error {
	e.brokerMu.Lock()
	defer e.brokerMu.Unlock()
	if e.broker == nil {
		return errors.New("astarteemu: broker not running")
	}
	return e.broker.Publish(topic, payload, false, qos)
}

// PublishData sends server-owned data (a BSON payload, or empty to unset a
// property) to a device on <realm>/<device_id>/<interface><path>.
func (e *Emulator) PublishData(deviceID, iface, path string, payload []byte, qos byte) error {
	return e.Publish(e.realm+"/"+deviceID+"/"+iface+path, payload, qos)
}

// PublishConsumerProperties sends control/consumer/properties with the given
// "interface/path" entries (size-prefixed zlib), QoS 2.
func (e *Emulator) PublishConsumerProperties(deviceID string, entries []string) error {
	data, err := EncodePropertyList(entries)
	if err != nil {
		return err
	}
	return e.Publish(e.realm+"/"+deviceID+"/control/consumer/properties", data, 2)
}

// aclHook authenticates clients by their certificate and confines each to
// its own topic tree; it records what clients publish.
type aclHook struct {
	mqtt.HookBase
	e *Emulator
}

func (h *aclHook) ID() string { return "astarte-acl" }

func (h *aclHook) Provides(b byte) bool {
	return bytes.Contains([]byte{mqtt.OnConnectAuthenticate, mqtt.OnACLCheck, mqtt.OnPublish, mqtt.OnSessionEstablished,
		mqtt.OnSubscribed, mqtt.OnDisconnect}, []byte{b})
}

// OnConnectAuthenticate accepts a client whose certificate CN equals its
// client id (realm/device_id), as Astarte's broker does.
func (h *aclHook) OnConnectAuthenticate(cl *mqtt.Client, pk packets.Packet) bool {
	tc, ok := cl.Net.Conn.(*tls.Conn)
	if !ok {
		return false
	}
	st := tc.ConnectionState()
	if len(st.PeerCertificates) == 0 {
		return false
	}
	cn := st.PeerCertificates[0].Subject.CommonName
	if cn == "" || cn != cl.ID || !strings.HasPrefix(cn, h.e.realm+"/") {
		h.e.recordAuthFailure(cl.ID, cn)
		return false
	}
	return true
}

// OnACLCheck allows a client only its own tree: <CN> and <CN>/...
func (h *aclHook) OnACLCheck(cl *mqtt.Client, topic string, write bool) bool {
	// Client ids are certificate CNs (realm/device_id): they hold no
	// wildcard, so a filter under the prefix cannot reach another tree.
	ok := cl.ID != "" && (topic == cl.ID || strings.HasPrefix(topic, cl.ID+"/"))
	if !ok {
		h.e.recordDenial(Denial{ClientID: cl.ID, Topic: topic, Write: write})
	}
	return ok
}

func (h *aclHook) OnPublish(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	if !cl.Net.Inline && !h.e.admitPublish() {
		// Neither recorded nor acknowledged: lost with the broker.
		return pk, packets.ErrRejectPacket
	}
	h.e.record(Message{ClientID: cl.ID, Topic: pk.TopicName, QoS: pk.FixedHeader.Qos, Retain: pk.FixedHeader.Retain,
		Payload: append([]byte(nil), pk.Payload...)})
	return pk, nil
}

func (h *aclHook) OnSessionEstablished(cl *mqtt.Client, pk packets.Packet) {
	h.e.recordConnection(Connection{ClientID: cl.ID, CleanSession: cl.Properties.Clean})
}

func (h *aclHook) OnSubscribed(cl *mqtt.Client, pk packets.Packet, reasonCodes []byte) {
	for k, f := range pk.Filters {
		if k < len(reasonCodes) && reasonCodes[k] <= 2 {
			h.e.recordSubscription(cl.ID, f.Filter, reasonCodes[k])
		}
	}
}

func (h *aclHook) OnDisconnect(cl *mqtt.Client, err error, expire bool) {
	h.e.notify()
}
