// Package connector is the astarte integration: Astarte devices (pairing,
// certificates, interfaces, MQTT v1 or the Message Hub gRPC transport,
// durable properties and queue) served by one plugin process, keyed by
// device id.
package connector

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/invopop/jsonschema"

	"github.com/connector-host/connector-host/plugins/astarte/internal/device"
	"github.com/connector-host/connector-host/plugins/astarte/internal/interfaces"
	"github.com/connector-host/connector-host/plugins/astarte/internal/mqtt"
	"github.com/connector-host/connector-host/plugins/astarte/internal/msghub"
	"github.com/connector-host/connector-host/plugins/astarte/internal/pairing"
	"github.com/connector-host/connector-host/plugins/astarte/internal/store"
	"github.com/connector-host/connector-host/sdk"
)

// AppID is the connector's app_id.
const AppID = "astarte"

// Version is the connector's version.
const Version = "0.1.0"

// Settings are the astarte connector's settings.
type Settings struct {
	PairingBaseURL string `json:"pairing_base_url,omitempty" jsonschema:"description=Astarte Pairing API base URL such as https://api.astarte.example.com/pairing"`
	Realm          string `json:"realm,omitempty" jsonschema:"pattern=^[a-z][a-z0-9]{0\\,47}$,description=Astarte realm"`
	InterfacesDir  string `json:"interfaces_dir,omitempty" jsonschema:"description=Directory of interface JSON files added to every device when it is first used"`
	CAFile         string `json:"ca_file,omitempty" jsonschema:"description=PEM file of extra CA certificates trusted for the Pairing API and the broker"`
	// InsecureSkipVerify disables TLS verification; it is refused unless
	// the Pairing API and the broker are on a loopback address.
	InsecureSkipVerify bool `json:"insecure_skip_verify,omitempty" jsonschema:"description=INSECURE - TESTING ONLY: skip TLS certificate verification. Refused unless the Pairing API and the broker are on a loopback address."`
	// MsghubProtocol is the Message Hub wire version of the grpc transport.
	MsghubProtocol string `json:"msghub_protocol,omitempty" jsonschema:"enum=0.7,enum=0.8,description=Astarte Message Hub protocol of the grpc transport: 0.7 (default\\, hubs 0.7.x) or 0.8 (hubs 0.8 and later)"`
}

// plugin is the state of one plugin process.
type plugin struct {
	integ *sdk.Integration

	mu        sync.Mutex
	dataDir   string
	store     *store.Store
	keys      *pairing.KeyStore
	mgr       *device.Manager
	log       *slog.Logger
	dirsAdded map[string]bool // device id + "\x00" + interfaces dir
	clients   map[string]*http.Client
	resumed   bool
	hubPool   *msghub.Pool // gRPC channels to Message Hubs, shared by devices
}

// New returns the astarte integration.
func New() *sdk.Integration { return newPlugin().integ }

func newPlugin() *plugin {
	p := &plugin{dirsAdded: map[string]bool{}, clients: map[string]*http.Client{}, hubPool: msghub.NewPool()}
	integ := &sdk.Integration{
		AppID:   AppID,
		Version: Version,
		Description: sdk.DescriptionData{
			UserFriendlyName: "Astarte device",
			Description:      "Astarte devices: pairing and certificates, interfaces, MQTT v1 over TLS or a local Astarte Message Hub over gRPC, durable properties and offline queue, server data as a stream of events.",
			Categories:       []string{"iot"},
		},
		Auth:          []sdk.AuthKind{sdk.AuthJWT},
		Settings:      Settings{},
		ErrorHandlers: errorHandlers(),
		Setup: func(ctx context.Context, rt sdk.Runtime) error {
			p.mu.Lock()
			p.dataDir = rt.DataDir
			p.mu.Unlock()
			if _, err := p.state(); err != nil {
				return err
			}
			p.resume(ctx)
			return nil
		},
		Shutdown: p.shutdown,
	}
	p.integ = integ
	register(integ, p)
	return p
}

// state opens the store, key store and device manager on first use, in the
// plugin's data dir.
func (p *plugin) state() (*device.Manager, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.mgr != nil {
		return p.mgr, nil
	}
	dir := p.dataDir
	if dir == "" {
		dir = p.integ.DataDir()
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, sdk.Errorf(sdk.InternalError, "data dir: %v", err)
	}
	st, err := store.Open(filepath.Join(dir, "astarte.db"))
	if err != nil {
		return nil, sdk.Errorf(sdk.InternalError, "%v", err)
	}
	keys, err := pairing.OpenKeyStore(filepath.Join(dir, "keys"))
	if err != nil {
		return nil, sdk.Errorf(sdk.InternalError, "%w", errors.Join(err, st.Close()))
	}
	p.log = p.integ.Slog()
	p.store, p.keys, p.dataDir = st, keys, dir
	p.mgr = device.NewManager(device.Config{Store: st, Logger: p.log})
	return p.mgr, nil
}

func (p *plugin) shutdown(ctx context.Context) error {
	p.mu.Lock()
	mgr, st := p.mgr, p.store
	p.mu.Unlock()
	if mgr == nil {
		return nil
	}
	// Devices disconnect gracefully; their autoconnect marks stay so a
	// restarted plugin reconnects them.
	err := mgr.Close(ctx)
	return errors.Join(err, st.Close())
}

// cfg is the resolved settings of a call.
type cfg struct {
	Settings
	roots *x509.CertPool
}

func decodeSettings(env *sdk.Envelope) (*cfg, error) {
	var s Settings
	if err := env.DecodeSettings(&s); err != nil {
		return nil, err
	}
	return resolveSettings(s)
}

func resolveSettings(s Settings) (*cfg, error) {
	c := &cfg{Settings: s}
	if s.CAFile != "" {
		pool, err := loadCAPool(s.CAFile)
		if err != nil {
			return nil, err
		}
		c.roots = pool
	}
	if s.InsecureSkipVerify && s.PairingBaseURL != "" {
		if err := requireLoopback(s.PairingBaseURL); err != nil {
			return nil, sdk.Errorf(sdk.BadRequest, "settings.insecure_skip_verify: %v", err)
		}
	}
	return c, nil
}

// requireLoopback refuses insecure TLS to anything but a loopback host.
func requireLoopback(rawURL string) error {
	u, err := url.Parse(rawURL)
	if err != nil {
		return err
	}
	host := u.Hostname()
	if ip := net.ParseIP(host); host == "localhost" || (ip != nil && ip.IsLoopback()) {
		return nil
	}
	return fmt.Errorf("refused for %s: TLS verification can only be skipped for a loopback address (testing); use ca_file", host)
}

func (c *cfg) realm() (string, error) {
	if c.Realm == "" {
		return "", sdk.NewError(sdk.IntegrationMissingParameter, "settings.realm is required")
	}
	if err := pairing.ValidateRealm(c.Realm); err != nil {
		return "", sdk.Errorf(sdk.BadRequest, "settings.realm: %v", err)
	}
	return c.Realm, nil
}

func (c *cfg) tlsConfig() *tls.Config {
	return &tls.Config{RootCAs: c.roots, InsecureSkipVerify: c.InsecureSkipVerify, MinVersion: tls.VersionTLS12} //nolint:gosec // refused unless loopback
}

// provisioner returns the pairing client for the call's settings.
func (p *plugin) provisioner(c *cfg) (*pairing.Provisioner, error) {
	realm, err := c.realm()
	if err != nil {
		return nil, err
	}
	if c.PairingBaseURL == "" {
		return nil, sdk.NewError(sdk.IntegrationMissingParameter, "settings.pairing_base_url is required")
	}
	if _, err := p.state(); err != nil {
		return nil, err
	}
	key := fmt.Sprintf("%s|%v", c.CAFile, c.InsecureSkipVerify)
	p.mu.Lock()
	hc := p.clients[key]
	if hc == nil {
		if c.InsecureSkipVerify {
			p.log.Warn("TLS VERIFICATION DISABLED (insecure_skip_verify): for loopback testing only")
		}
		hc = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
			TLSClientConfig: c.tlsConfig(), Proxy: http.ProxyFromEnvironment, MaxIdleConnsPerHost: 16, IdleConnTimeout: 90 * time.Second}}
		p.clients[key] = hc
	}
	keys := p.keys
	p.mu.Unlock()
	client, err := pairing.NewClient(c.PairingBaseURL, hc)
	if err != nil {
		return nil, sdk.Errorf(sdk.BadRequest, "settings.%v", err)
	}
	return &pairing.Provisioner{Client: client, Store: keys, Realm: realm}, nil
}

// device opens the device for a call: realm from the settings, interfaces
// from interfaces_dir the first time.
func (p *plugin) device(ctx context.Context, c *cfg, id string) (*device.Device, error) {
	if err := pairing.ValidateDeviceID(id); err != nil {
		return nil, sdk.Errorf(sdk.BadRequest, "request.device_id: %v", err)
	}
	realm, err := c.realm()
	if err != nil {
		return nil, err
	}
	mgr, err := p.state()
	if err != nil {
		return nil, err
	}
	d, err := mgr.DeviceInRealm(ctx, realm, id)
	if errors.Is(err, device.ErrRealmConflict) {
		return nil, sdk.Errorf(sdk.Conflict, "%v", err)
	}
	if err != nil {
		return nil, err
	}
	if c.InterfacesDir != "" {
		key := id + "\x00" + c.InterfacesDir
		p.mu.Lock()
		done := p.dirsAdded[key]
		p.mu.Unlock()
		if !done {
			if err := addInterfacesDir(ctx, d, c.InterfacesDir); err != nil {
				return nil, err
			}
			p.mu.Lock()
			p.dirsAdded[key] = true
			p.mu.Unlock()
		}
	}
	return d, nil
}

// addInterfacesDir adds every *.json file of dir to the device.
func addInterfacesDir(ctx context.Context, d *device.Device, dir string) error {
	files, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil {
		return sdk.Errorf(sdk.BadRequest, "settings.interfaces_dir: %v", err)
	}
	if _, err := os.Stat(dir); err != nil {
		return sdk.Errorf(sdk.BadRequest, "settings.interfaces_dir: %v", err)
	}
	sort.Strings(files)
	for _, f := range files {
		iface, err := interfaces.ParseFile(f)
		if err != nil {
			return sdk.Errorf(sdk.BadRequest, "settings.interfaces_dir: %s: %v", filepath.Base(f), err)
		}
		if err := d.AddInterface(ctx, iface); err != nil {
			return err
		}
	}
	return nil
}

// autoconnect is what a device needs to reconnect after a plugin restart
// (no secrets: those stay in the key store).
type autoconnect struct {
	Transport string   `json:"transport"`
	Settings  Settings `json:"settings"`
	// Msghub is where a grpc device attaches.
	Msghub *hubTarget `json:"msghub,omitempty"`
}

const metaAutoconnect = "autoconnect"

// resume reconnects the devices that were connected when the plugin
// stopped, so their queued messages are delivered without a new connect.
func (p *plugin) resume(ctx context.Context) {
	p.mu.Lock()
	if p.resumed {
		p.mu.Unlock()
		return
	}
	p.resumed = true
	st := p.store
	p.mu.Unlock()
	ids, err := st.DevicesWithMeta(ctx, metaAutoconnect)
	if err != nil {
		p.log.Warn("cannot list devices to reconnect", "error", err)
		return
	}
	for id, raw := range ids {
		var ac autoconnect
		if err := json.Unmarshal([]byte(raw), &ac); err != nil {
			continue
		}
		c, err := resolveSettings(ac.Settings)
		if err == nil {
			_, err = p.connect(ctx, c, id, ac.Transport, ac.Msghub)
		}
		if err != nil {
			p.log.Warn("cannot reconnect device", "device_id", id, "error", err)
			continue
		}
		p.log.Info("reconnecting device after restart", "device_id", id)
	}
}

// connect starts the device's connection over the named transport (hub
// is the Message Hub of the grpc transport).
func (p *plugin) connect(ctx context.Context, c *cfg, id, transportName string, hub *hubTarget) (*device.Device, error) {
	if transportName == "" {
		transportName = "mqtt"
	}
	if transportName == "grpc" {
		return p.connectHub(ctx, c, id, hub)
	}
	if transportName != "mqtt" {
		return nil, sdk.Errorf(sdk.BadRequest, "request.transport: %q is not supported (mqtt or grpc)", transportName)
	}
	prov, err := p.provisioner(c)
	if err != nil {
		return nil, err
	}
	d, err := p.device(ctx, c, id)
	if err != nil {
		return nil, err
	}
	// Without a credentials secret no attempt can succeed (the Pairing API
	// needs it for the certificate and the broker URL): say so now rather
	// than retry forever.
	if _, err := prov.Store.Secret(d.Realm(), id); errors.Is(err, pairing.ErrNoCredentials) {
		return nil, sdk.Errorf(sdk.NotFound, "device %s has no credentials secret stored for realm %s: call register_device (or import_credentials_secret for a device registered elsewhere) before connect over mqtt", id, d.Realm())
	} else if err != nil {
		return nil, err
	}
	base := c.tlsConfig()
	insecure := c.InsecureSkipVerify
	tr, err := mqtt.New(mqtt.Config{Realm: d.Realm(), DeviceID: id, Logger: p.log,
		Endpoint: func(ctx context.Context) (mqtt.Endpoint, error) {
			brokerURL, cert, err := prov.Endpoint(ctx, id)
			if err != nil {
				return mqtt.Endpoint{}, err
			}
			if insecure {
				if err := requireLoopback(brokerURL); err != nil {
					return mqtt.Endpoint{}, fmt.Errorf("insecure_skip_verify: %w", err)
				}
			}
			t := base.Clone()
			t.Certificates = []tls.Certificate{cert}
			return mqtt.Endpoint{BrokerURL: brokerURL, TLS: t}, nil
		}})
	if err != nil {
		return nil, err
	}
	if err := d.Connect(tr); err != nil {
		return nil, sdk.Errorf(sdk.Conflict, "%v", err)
	}
	raw, _ := json.Marshal(autoconnect{Transport: transportName, Settings: c.Settings})
	if err := p.store.SetMeta(ctx, id, metaAutoconnect, string(raw)); err != nil {
		return nil, err
	}
	return d, nil
}

// errorHandlers map the packages' errors to contract codes.
func errorHandlers() []sdk.ErrorHandler {
	return []sdk.ErrorHandler{
		sdk.MapErrorFunc(func(e *interfaces.Error) *sdk.Error {
			if e.NotFound {
				return &sdk.Error{Code: sdk.NotFound, Message: e.Error()}
			}
			return &sdk.Error{Code: sdk.BadRequest, Message: e.Error()}
		}),
		sdk.MapErrorFunc(hubError),
		sdk.MapErrorFunc(func(e *device.InvalidBatchError) *sdk.Error {
			return &sdk.Error{Code: sdk.BadRequest, Message: e.Format("request.")}
		}),
		sdk.MapErrorFunc(func(e *device.OfflineError) *sdk.Error {
			return &sdk.Error{Code: sdk.ServiceError, Message: e.Error(), Retryable: true}
		}),
		sdk.MapErrorFunc(func(e *pairing.APIError) *sdk.Error {
			code := sdk.CodeForHTTPStatus(e.Status)
			return &sdk.Error{Code: code, Message: e.Error(), Retryable: code == sdk.ServiceError || code == sdk.BadGateway}
		}),
		func(err error) *sdk.Error {
			switch {
			case errors.Is(err, pairing.ErrNoCredentials):
				return &sdk.Error{Code: sdk.NotFound, Message: err.Error() + " (register the device and obtain its certificate first)", Err: err}
			case errors.Is(err, device.ErrClosed):
				return &sdk.Error{Code: sdk.ServiceError, Message: err.Error(), Err: err, Retryable: true}
			case errors.Is(err, pairing.ErrCertificateExpired), errors.Is(err, pairing.ErrCertificateKeyMismatch),
				errors.Is(err, pairing.ErrCertificateNotYetValid), errors.Is(err, pairing.ErrCertificateSubject):
				return &sdk.Error{Code: sdk.BadRequest, Message: err.Error(), Err: err}
			}
			return nil
		},
	}
}

// jsonValue is a request value of any JSON type, decoded with numbers kept
// exact (json.Number) so 64-bit integers survive.
type jsonValue struct{ v any }

func (j *jsonValue) UnmarshalJSON(b []byte) error {
	// Fast paths for the common scalars (b is one valid JSON value: the
	// decoder that calls this has checked it).
	switch {
	case len(b) > 0 && (b[0] == '-' || (b[0] >= '0' && b[0] <= '9')):
		j.v = json.Number(b)
		return nil
	case len(b) > 1 && b[0] == '"' && bytes.IndexByte(b, '\\') < 0 && utf8.Valid(b):
		j.v = string(b[1 : len(b)-1])
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	return dec.Decode(&j.v)
}

// MarshalJSON writes the value back.
func (j jsonValue) MarshalJSON() ([]byte, error) { return json.Marshal(j.v) }

// JSONSchema accepts any JSON value.
func (jsonValue) JSONSchema() *jsonschema.Schema { return &jsonschema.Schema{} }

// readFileLimited reads a small file, refusing one larger than limit.
func readFileLimited(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer func() { _ = f.Close() }() // read only: nothing to lose
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%s is larger than %d bytes", path, limit)
	}
	return b, nil
}
