// Package astarteemu is a local Astarte for tests: a Pairing API (device
// registration with a realm-key JWT, certificate signing by a local CA,
// device info with the broker URL, certificate verification) and an MQTT
// broker (mochi-mqtt) that authenticates devices by client certificate,
// confines each to its realm/device_id topic tree, records what devices
// publish and can publish server-owned data to them. Everything listens on
// 127.0.0.1 only.
package astarteemu

import (
	"bytes"
	"compress/zlib"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"
	mqtt "github.com/mochi-mqtt/server/v2"
)

// Options configure an Emulator. The zero value works.
type Options struct {
	// Realm is the realm name (default "test").
	Realm string
	// RealmPublicKeyPEM is the realm public key that registration JWTs are
	// checked against. When empty the emulator generates a P-256 key pair
	// and exposes the private half with RealmPrivateKeyPEM.
	RealmPublicKeyPEM []byte
	// CertValidity is the lifetime of issued device certificates (default
	// 24 h).
	CertValidity time.Duration
	// PlainHTTP serves the Pairing API over HTTP instead of HTTPS.
	PlainHTTP bool
	// PairingAddr and BrokerAddr are the listen addresses (default
	// 127.0.0.1:0, a free port).
	PairingAddr string
	BrokerAddr  string
	// Logger receives the broker's log (discarded when nil).
	Logger *slog.Logger
}

// Emulator is a running local Astarte.
type Emulator struct {
	opts      Options
	realm     string
	realmPub  crypto.PublicKey
	realmPriv []byte
	pki       *pki
	logger    *slog.Logger

	httpSrv    *http.Server
	pairingURL string

	brokerMu   sync.Mutex
	broker     *mqtt.Server
	brokerAddr string
	// brokerPort holds the broker's port between StopBroker and
	// StartBroker (see reservePort); nil where ports are not reserved.
	brokerPort io.Closer

	mu            sync.Mutex
	certValidity  time.Duration
	devices       map[string]*deviceRecord
	messages      []Message
	denials       []Denial
	connections   []Connection
	authFailures  []string
	subscriptions map[string]map[string]byte
	changed       chan struct{}
	// stopAfter counts the client PUBLISHes the broker still takes before
	// it stops (StopBrokerAfter); -1 when not armed. stopping is set from
	// the refused PUBLISH until the broker is down.
	stopAfter int
	stopping  bool
}

// Start starts the Pairing API and the broker.
func Start(opts Options) (*Emulator, error) {
	e := &Emulator{
		opts:          opts,
		realm:         opts.Realm,
		devices:       map[string]*deviceRecord{},
		subscriptions: map[string]map[string]byte{},
		changed:       make(chan struct{}),
		certValidity:  opts.CertValidity,
		logger:        opts.Logger,
		stopAfter:     -1,
	}
	if e.realm == "" {
		e.realm = "test"
	}
	if e.certValidity <= 0 {
		e.certValidity = 24 * time.Hour
	}
	if e.logger == nil {
		e.logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if e.opts.BrokerAddr == "" {
		e.opts.BrokerAddr = "127.0.0.1:0"
	}
	if e.opts.PairingAddr == "" {
		e.opts.PairingAddr = "127.0.0.1:0"
	}
	if err := checkLoopback(e.opts.BrokerAddr); err != nil {
		return nil, err
	}
	if err := checkLoopback(e.opts.PairingAddr); err != nil {
		return nil, err
	}
	var err error
	if e.pki, err = newPKI(); err != nil {
		return nil, fmt.Errorf("astarteemu: %w", err)
	}
	if len(opts.RealmPublicKeyPEM) > 0 {
		block, _ := pem.Decode(opts.RealmPublicKeyPEM)
		if block == nil {
			return nil, errors.New("astarteemu: RealmPublicKeyPEM is not PEM")
		}
		if e.realmPub, err = x509.ParsePKIXPublicKey(block.Bytes); err != nil {
			return nil, fmt.Errorf("astarteemu: realm public key: %w", err)
		}
	} else {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, err
		}
		der, err := x509.MarshalECPrivateKey(key)
		if err != nil {
			return nil, err
		}
		e.realmPub = &key.PublicKey
		e.realmPriv = pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der})
	}

	ln, err := net.Listen("tcp", e.opts.PairingAddr)
	if err != nil {
		return nil, fmt.Errorf("astarteemu: pairing listen: %w", err)
	}
	e.httpSrv = &http.Server{Handler: e.pairingHandler(), ReadHeaderTimeout: 10 * time.Second}
	scheme := "https"
	if opts.PlainHTTP {
		scheme = "http"
		go func() { _ = e.httpSrv.Serve(ln) }()
	} else {
		e.httpSrv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{e.pki.server}, MinVersion: tls.VersionTLS12}
		go func() { _ = e.httpSrv.ServeTLS(ln, "", "") }()
	}
	e.pairingURL = scheme + "://" + ln.Addr().String() + "/pairing"
	// Tests stop the broker and start it again on the same port: reserve
	// the port for the emulator's lifetime, so that no other socket of the
	// host (a listener on port 0 of a parallel test, say) takes it while
	// the broker is stopped.
	if e.brokerPort, e.brokerAddr, err = reservePort(e.opts.BrokerAddr); err != nil {
		_ = e.httpSrv.Close()
		return nil, fmt.Errorf("astarteemu: reserve the broker port %s: %w", e.opts.BrokerAddr, err)
	}
	if err := e.StartBroker(); err != nil {
		_ = e.httpSrv.Close()
		e.releaseBrokerPort()
		return nil, err
	}
	return e, nil
}

func (e *Emulator) releaseBrokerPort() {
	e.brokerMu.Lock()
	defer e.brokerMu.Unlock()
	if e.brokerPort != nil {
		_ = e.brokerPort.Close()
		e.brokerPort = nil
	}
}

func checkLoopback(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("astarteemu: address %q: %w", addr, err)
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return fmt.Errorf("astarteemu: address %q is not loopback", addr)
	}
	return nil
}

// Close stops the broker and the Pairing API.
func (e *Emulator) Close() error {
	err := e.StopBroker()
	e.releaseBrokerPort()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if herr := e.httpSrv.Shutdown(ctx); herr != nil {
		_ = e.httpSrv.Close()
	}
	return err
}

// Realm is the realm name.
func (e *Emulator) Realm() string { return e.realm }

// PairingURL is the Pairing API base URL, e.g. https://127.0.0.1:1234/pairing.
func (e *Emulator) PairingURL() string { return e.pairingURL }

// BrokerAddr is host:port of the broker.
func (e *Emulator) BrokerAddr() string {
	e.brokerMu.Lock()
	defer e.brokerMu.Unlock()
	return e.brokerAddr
}

// BrokerURL is the broker URL the info call returns: mqtts://127.0.0.1:port.
func (e *Emulator) BrokerURL() string { return "mqtts://" + e.BrokerAddr() }

// CACertPEM is the emulator CA certificate (trust it for the broker and the
// HTTPS Pairing API).
func (e *Emulator) CACertPEM() []byte { return append([]byte(nil), e.pki.caPEM...) }

// ServerCertPEM returns the broker/Pairing API server certificate (for
// 127.0.0.1, ::1 and localhost, signed by the emulator CA) and its key, so a
// second broker (the Eclipse MQTT broker the interop tests run) can serve
// the same devices.
func (e *Emulator) ServerCertPEM() (certPEM, keyPEM []byte, err error) {
	der, err := x509.MarshalPKCS8PrivateKey(e.pki.server.PrivateKey)
	if err != nil {
		return nil, nil, err
	}
	certPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: e.pki.server.Certificate[0]})
	return certPEM, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// CAPool is a pool holding the emulator CA.
func (e *Emulator) CAPool() *x509.CertPool { return e.pki.pool.Clone() }

// RealmPrivateKeyPEM is the generated realm private key (nil when
// Options.RealmPublicKeyPEM was given).
func (e *Emulator) RealmPrivateKeyPEM() []byte { return append([]byte(nil), e.realmPriv...) }

// SetCertValidity changes the lifetime of certificates issued from now on.
func (e *Emulator) SetCertValidity(d time.Duration) {
	e.mu.Lock()
	e.certValidity = d
	e.mu.Unlock()
}

// SignJWT signs a Pairing API token with the generated realm key, with the
// given a_pa authorizations and lifetime (negative for an expired token).
func (e *Emulator) SignJWT(aPa []string, ttl time.Duration) (string, error) {
	block, _ := pem.Decode(e.realmPriv)
	if block == nil {
		return "", errors.New("astarteemu: no generated realm key")
	}
	key, err := x509.ParseECPrivateKey(block.Bytes)
	if err != nil {
		return "", err
	}
	now := time.Now()
	claims := jwt.MapClaims{"a_pa": aPa, "iat": now.Add(-time.Minute).Unix(), "exp": now.Add(ttl).Unix()}
	return jwt.NewWithClaims(jwt.SigningMethodES256, claims).SignedString(key)
}

// RegisterDevice registers a device directly (as astartectl would) and
// returns its credentials secret.
func (e *Emulator) RegisterDevice(deviceID string) string {
	secret := newSecret()
	e.mu.Lock()
	e.devices[deviceID] = &deviceRecord{secret: secret}
	e.mu.Unlock()
	return secret
}

// Registered reports whether the device is registered and how many
// certificates were issued to it.
func (e *Emulator) Registered(deviceID string) (registered bool, certificates int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	d := e.devices[deviceID]
	if d == nil {
		return false, 0
	}
	return true, d.certificates
}

// IssueClientCertificate returns a client certificate from the emulator CA
// with the given CN (e.g. "test/<device_id>"), for raw MQTT clients in tests.
func (e *Emulator) IssueClientCertificate(cn string, validity time.Duration) (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	now := time.Now()
	der, err := e.pki.clientCert(cn, &key.PublicKey, now.Add(-time.Minute), now.Add(validity))
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}

// ClientTLSConfig returns a TLS config that trusts the emulator CA and
// presents cert.
func (e *Emulator) ClientTLSConfig(cert tls.Certificate) *tls.Config {
	return &tls.Config{RootCAs: e.CAPool(), Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
}

func (e *Emulator) record(m Message) {
	e.mu.Lock()
	m.Seq = len(e.messages) + 1
	m.Time = time.Now()
	e.messages = append(e.messages, m)
	e.mu.Unlock()
	e.notify()
}

func (e *Emulator) recordDenial(d Denial) {
	e.mu.Lock()
	e.denials = append(e.denials, d)
	e.mu.Unlock()
	e.notify()
}

func (e *Emulator) recordAuthFailure(clientID, cn string) {
	e.mu.Lock()
	e.authFailures = append(e.authFailures, clientID+" (certificate CN "+cn+")")
	e.mu.Unlock()
	e.notify()
}

func (e *Emulator) recordConnection(c Connection) {
	c.Time = time.Now()
	e.mu.Lock()
	e.connections = append(e.connections, c)
	e.mu.Unlock()
	e.notify()
}

func (e *Emulator) recordSubscription(clientID, filter string, qos byte) {
	e.mu.Lock()
	if e.subscriptions[clientID] == nil {
		e.subscriptions[clientID] = map[string]byte{}
	}
	e.subscriptions[clientID][filter] = qos
	e.mu.Unlock()
	e.notify()
}

// notify wakes every Wait.
func (e *Emulator) notify() {
	e.mu.Lock()
	close(e.changed)
	e.changed = make(chan struct{})
	e.mu.Unlock()
}

// Messages returns every message received so far, in order.
func (e *Emulator) Messages() []Message {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]Message(nil), e.messages...)
}

// MessagesFrom returns the messages of one client id (realm/device_id).
func (e *Emulator) MessagesFrom(clientID string) []Message {
	var out []Message
	for _, m := range e.Messages() {
		if m.ClientID == clientID {
			out = append(out, m)
		}
	}
	return out
}

// ResetMessages forgets the recorded messages.
func (e *Emulator) ResetMessages() {
	e.mu.Lock()
	e.messages = nil
	e.mu.Unlock()
}

// Denials returns the ACL refusals so far.
func (e *Emulator) Denials() []Denial {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]Denial(nil), e.denials...)
}

// AuthFailures returns the refused connections (client id and certificate CN).
func (e *Emulator) AuthFailures() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]string(nil), e.authFailures...)
}

// Connections returns the accepted connections so far.
func (e *Emulator) Connections() []Connection {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]Connection(nil), e.connections...)
}

// Subscriptions returns the topic filters a client subscribed to, with the
// granted QoS.
func (e *Emulator) Subscriptions(clientID string) map[string]byte {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := map[string]byte{}
	for k, v := range e.subscriptions[clientID] {
		out[k] = v
	}
	return out
}

// Wait blocks until cond (called after every recorded event, under no lock)
// returns true, or ctx ends.
func (e *Emulator) Wait(ctx context.Context, cond func() bool) error {
	for {
		e.mu.Lock()
		ch := e.changed
		e.mu.Unlock()
		if cond() {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("astarteemu: condition not met: %w", ctx.Err())
		}
	}
}

// WaitMessages waits until at least n messages from clientID were received
// and returns them.
func (e *Emulator) WaitMessages(ctx context.Context, clientID string, n int) ([]Message, error) {
	var got []Message
	err := e.Wait(ctx, func() bool {
		got = e.MessagesFrom(clientID)
		return len(got) >= n
	})
	if err != nil {
		return got, fmt.Errorf("%w (have %d of %d messages from %s)", err, len(got), n, clientID)
	}
	return got, nil
}

// EncodePropertyList builds a control/*/properties payload: 4-byte
// big-endian uncompressed size, then zlib of the entries joined by ";".
func EncodePropertyList(entries []string) ([]byte, error) {
	plain := []byte(strings.Join(entries, ";"))
	n := len(plain)
	if n > math.MaxUint32 {
		return nil, fmt.Errorf("property list of %d bytes does not fit its 4-byte size header", n)
	}
	var buf bytes.Buffer
	buf.Write(binary.BigEndian.AppendUint32(nil, uint32(n)))
	zw := zlib.NewWriter(&buf)
	if _, err := zw.Write(plain); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// DecodePropertyList reads a control/*/properties payload back into entries.
func DecodePropertyList(data []byte) ([]string, error) {
	if len(data) < 4 {
		return nil, errors.New("property list shorter than 4 bytes")
	}
	size := binary.BigEndian.Uint32(data[:4])
	zr, err := zlib.NewReader(bytes.NewReader(data[4:]))
	if err != nil {
		return nil, err
	}
	plain, err := io.ReadAll(io.LimitReader(zr, 64<<20))
	if err == nil {
		err = zr.Close()
	}
	if err != nil {
		return nil, err
	}
	if int64(len(plain)) != int64(size) {
		return nil, fmt.Errorf("property list size %d, header says %d", len(plain), size)
	}
	if len(plain) == 0 {
		return nil, nil
	}
	return strings.Split(string(plain), ";"), nil
}

// Files are the files WriteFiles wrote.
type Files struct {
	// CAFile is the emulator CA certificate (PEM).
	CAFile string
	// RealmKeyFile is the generated realm private key (PEM, 0600); empty
	// when the realm public key was given.
	RealmKeyFile string
}

// WriteFiles writes the CA certificate and the realm private key into dir
// (created 0700), for tools and `make run`.
func (e *Emulator) WriteFiles(dir string) (Files, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return Files{}, err
	}
	f := Files{CAFile: filepath.Join(dir, "ca.pem")}
	if err := os.WriteFile(f.CAFile, e.CACertPEM(), 0o644); err != nil { //nolint:gosec // a CA certificate is public; tools read it
		return Files{}, err
	}
	if len(e.realmPriv) > 0 {
		f.RealmKeyFile = filepath.Join(dir, "realm.key")
		if err := os.WriteFile(f.RealmKeyFile, e.realmPriv, 0o600); err != nil {
			return Files{}, err
		}
	}
	return f, nil
}

// Settings returns the astarte connector settings that point at the
// emulator (pairing_base_url, realm, ca_file).
func (e *Emulator) Settings(f Files) map[string]any {
	return map[string]any{"pairing_base_url": e.PairingURL(), "realm": e.realm, "ca_file": f.CAFile}
}
