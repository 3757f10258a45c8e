package device

import (
	"context"
	"crypto/tls"
	"net/http"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/connector-host/connector-host/plugins/astarte/internal/interfaces"
	"github.com/connector-host/connector-host/plugins/astarte/internal/mqtt"
	"github.com/connector-host/connector-host/plugins/astarte/internal/pairing"
	"github.com/connector-host/connector-host/plugins/astarte/internal/store"
	astarteemu "github.com/connector-host/connector-host/testkit/emulators/astarte"
)

const (
	// allTypes has one explicit-timestamp mapping per Astarte type.
	allTypes = `{"interface_name":"com.example.AllTypes","version_major":1,"version_minor":0,"type":"datastream","ownership":"device",
	  "mappings":[
	   {"endpoint":"/%{s}/double","type":"double","reliability":"guaranteed","explicit_timestamp":true},
	   {"endpoint":"/%{s}/integer","type":"integer","reliability":"guaranteed","explicit_timestamp":true},
	   {"endpoint":"/%{s}/boolean","type":"boolean","reliability":"guaranteed","explicit_timestamp":true},
	   {"endpoint":"/%{s}/longinteger","type":"longinteger","reliability":"guaranteed","explicit_timestamp":true},
	   {"endpoint":"/%{s}/string","type":"string","reliability":"guaranteed","explicit_timestamp":true},
	   {"endpoint":"/%{s}/binaryblob","type":"binaryblob","reliability":"guaranteed","explicit_timestamp":true},
	   {"endpoint":"/%{s}/datetime","type":"datetime","reliability":"guaranteed","explicit_timestamp":true},
	   {"endpoint":"/%{s}/doublearray","type":"doublearray","reliability":"guaranteed","explicit_timestamp":true},
	   {"endpoint":"/%{s}/integerarray","type":"integerarray","reliability":"guaranteed","explicit_timestamp":true},
	   {"endpoint":"/%{s}/booleanarray","type":"booleanarray","reliability":"guaranteed","explicit_timestamp":true},
	   {"endpoint":"/%{s}/longintegerarray","type":"longintegerarray","reliability":"guaranteed","explicit_timestamp":true},
	   {"endpoint":"/%{s}/stringarray","type":"stringarray","reliability":"guaranteed","explicit_timestamp":true},
	   {"endpoint":"/%{s}/binaryblobarray","type":"binaryblobarray","reliability":"guaranteed","explicit_timestamp":true},
	   {"endpoint":"/%{s}/datetimearray","type":"datetimearray","reliability":"guaranteed","explicit_timestamp":true}]}`
	geoObject = `{"interface_name":"com.example.Geo","version_major":1,"version_minor":0,"type":"datastream","ownership":"device","aggregation":"object",
	  "mappings":[{"endpoint":"/%{id}/lat","type":"double","reliability":"unique","explicit_timestamp":true},
	              {"endpoint":"/%{id}/lon","type":"double","reliability":"unique","explicit_timestamp":true},
	              {"endpoint":"/%{id}/tags","type":"stringarray","reliability":"unique","explicit_timestamp":true}]}`
	devProps = `{"interface_name":"com.example.DevProps","version_major":1,"version_minor":0,"type":"properties","ownership":"device",
	  "mappings":[{"endpoint":"/%{n}/name","type":"string","allow_unset":true},{"endpoint":"/fixed","type":"integer"}]}`
	srvProps = `{"interface_name":"com.example.SrvProps","version_major":1,"version_minor":0,"type":"properties","ownership":"server",
	  "mappings":[{"endpoint":"/%{n}/rate","type":"integer","allow_unset":true}]}`
	srvData = `{"interface_name":"com.example.SrvData","version_major":1,"version_minor":0,"type":"datastream","ownership":"server","aggregation":"object",
	  "mappings":[{"endpoint":"/cmd/op","type":"string","explicit_timestamp":true},{"endpoint":"/cmd/arg","type":"longinteger","explicit_timestamp":true}]}`
	// retention has one mapping per retention policy.
	retention = `{"interface_name":"com.example.Retention","version_major":1,"version_minor":0,"type":"datastream","ownership":"device",
	  "mappings":[{"endpoint":"/stored","type":"integer","reliability":"guaranteed","retention":"stored"},
	              {"endpoint":"/expiring","type":"integer","reliability":"guaranteed","retention":"stored","expiry":1},
	              {"endpoint":"/volatile","type":"integer","reliability":"guaranteed","retention":"volatile"},
	              {"endpoint":"/discard","type":"integer","reliability":"unreliable"}]}`
)

func parse(t testing.TB, doc string) *interfaces.Interface {
	t.Helper()
	i, err := interfaces.Parse([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	return i
}

// rig is a local Astarte (emulator), a data dir with the plugin database
// and key store, and a provisioner talking to the emulator's Pairing API.
type rig struct {
	emu   *astarteemu.Emulator
	dir   string
	store *store.Store
	keys  *pairing.KeyStore
	prov  *pairing.Provisioner
	clock *clock
}

// clock is a test clock: real time plus an adjustable offset.
type clock struct{ offset atomic.Int64 }

func (c *clock) Now() time.Time          { return time.Now().Add(time.Duration(c.offset.Load())) }
func (c *clock) Advance(d time.Duration) { c.offset.Add(int64(d)) }

func newRig(t testing.TB) *rig {
	t.Helper()
	emu, err := astarteemu.Start(astarteemu.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = emu.Close() })
	dir := t.TempDir()
	return newRigAt(t, emu, dir)
}

func newRigAt(t testing.TB, emu *astarteemu.Emulator, dir string) *rig {
	t.Helper()
	st, err := store.Open(filepath.Join(dir, "astarte.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	ks, err := pairing.OpenKeyStore(filepath.Join(dir, "keys"))
	if err != nil {
		t.Fatal(err)
	}
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: emu.CAPool()}}}
	pc, err := pairing.NewClient(emu.PairingURL(), hc)
	if err != nil {
		t.Fatal(err)
	}
	return &rig{emu: emu, dir: dir, store: st, keys: ks, prov: &pairing.Provisioner{Client: pc, Store: ks, Realm: emu.Realm()}, clock: &clock{}}
}

// pair registers a new device with a JWT signed by the realm key and
// obtains its certificate.
func (r *rig) pair(t testing.TB) string {
	t.Helper()
	ctx := context.Background()
	id, _ := pairing.NewDeviceID()
	tok, err := pairing.NewRegistrationJWT(r.emu.RealmPrivateKeyPEM(), time.Minute, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := r.prov.Register(ctx, id, tok, nil); err != nil {
		t.Fatal(err)
	}
	if err := r.prov.ObtainCertificate(ctx, id); err != nil {
		t.Fatal(err)
	}
	return id
}

// gate can hold connection attempts (Endpoint blocks while closed).
type gate struct {
	mu     sync.Mutex
	open   chan struct{}
	closed bool
}

func newGate() *gate {
	g := &gate{open: make(chan struct{})}
	close(g.open)
	return g
}

func (g *gate) Close() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.closed {
		g.closed, g.open = true, make(chan struct{})
	}
}

func (g *gate) Open() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		g.closed = false
		close(g.open)
	}
}

func (g *gate) wait(ctx context.Context) error {
	g.mu.Lock()
	ch := g.open
	g.mu.Unlock()
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// transport returns an MQTT transport whose endpoint comes from the
// Pairing API (certificate checked/renewed on every attempt), held by g.
func (r *rig) transport(t testing.TB, id string, g *gate) *mqtt.Transport {
	t.Helper()
	tr, err := mqtt.New(mqtt.Config{Realm: r.emu.Realm(), DeviceID: id, ConnectTimeout: 5 * time.Second,
		Endpoint: func(ctx context.Context) (mqtt.Endpoint, error) {
			if g != nil {
				if err := g.wait(ctx); err != nil {
					return mqtt.Endpoint{}, err
				}
			}
			url, cert, err := r.prov.Endpoint(ctx, id)
			if err != nil {
				return mqtt.Endpoint{}, err
			}
			return mqtt.Endpoint{BrokerURL: url, TLS: &tls.Config{RootCAs: r.emu.CAPool(), Certificates: []tls.Certificate{cert}}}, nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

func (r *rig) config(id string) Config {
	return Config{DeviceID: id, Realm: r.emu.Realm(), Store: r.store, BackoffMin: 20 * time.Millisecond,
		BackoffMax: 200 * time.Millisecond, Now: r.clock.Now, VolatileLimit: 3}
}

// device opens a device with the given interfaces (not connected).
func (r *rig) device(t testing.TB, id string, docs ...string) *Device {
	t.Helper()
	d, err := New(context.Background(), r.config(id))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = d.Close(ctx)
	})
	for _, doc := range docs {
		if err := d.AddInterface(context.Background(), parse(t, doc)); err != nil {
			t.Fatal(err)
		}
	}
	return d
}

func within(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// nextEvent waits for the next event of type typ, skipping others.
func nextEvent(t testing.TB, sub *Subscription, typ EventType) Event {
	t.Helper()
	timeout := time.After(15 * time.Second)
	for {
		select {
		case e, ok := <-sub.Events():
			if !ok {
				t.Fatalf("subscription closed waiting for %s", typ)
			}
			if e.Type == typ {
				return e
			}
		case <-timeout:
			t.Fatalf("no %s event", typ)
		}
	}
}
