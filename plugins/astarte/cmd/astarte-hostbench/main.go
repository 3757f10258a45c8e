// Command astarte-hostbench measures the astarte plugin through the host,
// as a user runs it: a `connector-host serve` process with the real
// connector-astarte plugin process, HTTP calls to
// /v1/connectors/astarte/send and send_batch, and the local Astarte
// emulator (Pairing API and TLS broker) in this process:
//
//	astarte-hostbench [-host bin/connector-host] [-plugin bin/plugins/connector-astarte]
//	                  [-messages 5000] [-workers 16] [-batches 500,1000] [-batch-workers 1,4]
//	                  [-batch-messages 20000] [-drain 10000] [-devices 100] [-rtt 10ms]
//
// It prints:
//   - datastream sends/s at QoS 0 (unreliable) and QoS 1 (guaranteed: each
//     send answered after the broker's PUBACK) through the host, one at a
//     time and with -workers HTTP calls in flight, beside a raw paho client
//     publishing the same BSON to the same broker the same way (one at a
//     time waiting for each token; -workers goroutines), and the ratio;
//   - QoS 1 messages/s with send_batch (each batch answered once every
//     message has its PUBACK), for each batch size and number of batches
//     in flight, against the raw client with -workers in flight;
//   - the same QoS 1 rates over a simulated network with -rtt round-trip
//     time: both the plugin and the raw client reach the broker through a
//     TCP relay that delays each direction by rtt/2 (the plugin learns the
//     relay's address from a Pairing API front that rewrites broker_url);
//     on loopback the broker answers in microseconds, so the host's own
//     per-call cost (HTTP, gRPC, validation) dominates, while against a
//     broker across a network the PUBACK round trip does;
//   - the durable queue drain rate after the broker comes back, measured at
//     the broker (first to last queued message received) and end to end
//     (reconnection seen by status to an empty queue);
//   - the plugin process RSS idle and with -devices connected devices.
package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/google/uuid"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/connector-host/connector-host/plugins/astarte/internal/benchutil"
	"github.com/connector-host/connector-host/testkit/benchkit"
	astarteemu "github.com/connector-host/connector-host/testkit/emulators/astarte"
)

const benchIface = `{"interface_name":"com.example.Bench","version_major":1,"version_minor":0,"type":"datastream","ownership":"device",
  "mappings":[{"endpoint":"/q0","type":"double","reliability":"unreliable"},
              {"endpoint":"/q1","type":"double","reliability":"guaranteed","retention":"stored"}]}`

type options struct {
	host, plugin  string
	messages      int
	workers       int
	batches       string
	batchWorkers  string
	batchMessages int
	drain         int
	devices       int
	rtt           time.Duration
	duration      time.Duration
}

func main() {
	var o options
	flag.StringVar(&o.host, "host", "bin/connector-host", "connector-host binary")
	flag.StringVar(&o.plugin, "plugin", "bin/plugins/connector-astarte", "connector-astarte plugin binary")
	flag.IntVar(&o.messages, "messages", 5000, "messages per rate measurement")
	flag.IntVar(&o.workers, "workers", 16, "calls in flight for the concurrent rates")
	flag.StringVar(&o.batches, "batches", "500,1000", "send_batch sizes (comma-separated; empty: skip the batch rows)")
	flag.StringVar(&o.batchWorkers, "batch-workers", "1,4", "send_batch calls in flight (comma-separated)")
	flag.IntVar(&o.batchMessages, "batch-messages", 20000, "messages per send_batch measurement")
	flag.IntVar(&o.drain, "drain", 10000, "messages queued for the drain measurement")
	flag.IntVar(&o.devices, "devices", 100, "connected devices for the RSS figure")
	flag.DurationVar(&o.rtt, "rtt", 10*time.Millisecond, "round-trip time of the simulated network for the QoS 1 rows with latency (0: skip them)")
	flag.DurationVar(&o.duration, "duration", 3*time.Second, "length of each measurement with latency")
	flag.Parse()
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "astarte-hostbench:", err)
		os.Exit(1)
	}
}

// bench is a running emulator and host.
type bench struct {
	o     options
	emu   *astarteemu.Emulator
	files astarteemu.Files
	serve *benchkit.Serve
	c     *benchutil.Client
	dir   string
}

const benchInterface = "com.example.Bench"

func run(o options) error {
	sizes, err := benchutil.Ints(o.batches)
	if err != nil {
		return fmt.Errorf("-batches: %w", err)
	}
	batchWorkers, err := benchutil.Ints(o.batchWorkers)
	if err != nil {
		return fmt.Errorf("-batch-workers: %w", err)
	}
	b := &bench{o: o}
	if b.dir, err = os.MkdirTemp("", "astarte-hostbench-"); err != nil {
		return err
	}
	defer func() { _ = os.RemoveAll(b.dir) }()
	if b.emu, err = astarteemu.Start(astarteemu.Options{}); err != nil {
		return err
	}
	defer func() { _ = b.emu.Close() }()
	if b.files, err = b.emu.WriteFiles(filepath.Join(b.dir, "emulator")); err != nil {
		return err
	}
	if b.serve, err = benchutil.Serve(o.host, o.plugin, b.emu.Settings(b.files)); err != nil {
		return err
	}
	defer b.serve.Stop()
	b.c = benchutil.NewClient(b.serve.URL, 4*max(o.workers, 16))
	ctx := context.Background()

	// RSS first, on a fresh plugin process.
	pid, err := b.serve.PluginPID("astarte")
	if err != nil {
		return err
	}
	idle := benchkit.RSS(pid)
	ids, err := b.connectMany(ctx, o.devices)
	if err != nil {
		return err
	}
	loaded := benchkit.RSS(pid)
	for _, id := range ids {
		if _, err := b.c.Call(ctx, "disconnect", map[string]any{"device_id": id}, nil); err != nil {
			return err
		}
	}

	fmt.Printf("astarte through the host (connector-host serve + connector-astarte) vs raw paho, same broker, same BSON\n")
	fmt.Printf("%s\n(%d messages per loopback per-call row, %d per batch row, %s per row with latency)\n\n",
		benchkit.Machine(), o.messages, o.batchMessages, o.duration)
	t := benchutil.Table{Width: 60}
	t.Header("measure", "host", "raw paho")
	loop := route{name: "loopback"}
	id, err := b.newDevice(ctx, loop)
	if err != nil {
		return err
	}
	raw, err := b.rawClient(b.emu.BrokerAddr())
	if err != nil {
		return err
	}
	defer raw.client.Disconnect(0)
	if err := b.samePayload(ctx, id, raw); err != nil {
		return err
	}
	count := func(workers int, f func(int) error) (float64, error) {
		return benchutil.Parallel(o.messages, 0, workers, f)
	}
	var rawQoS1 float64 // raw paho QoS 1 with -workers in flight
	for _, q := range []struct {
		name, path string
		qos        byte
	}{{"QoS 0", "/q0", 0}, {"QoS 1 (PUBACK)", "/q1", 1}} {
		for _, w := range []int{1, o.workers} {
			rr, err := b.row(t, fmt.Sprintf("sends/s %s, loopback, %d in flight", q.name, w), id, loop, raw, q.path, q.qos, w, count)
			if err != nil {
				return err
			}
			if q.qos == 1 && w == o.workers {
				rawQoS1 = rr
			}
		}
	}
	for _, size := range sizes {
		for _, w := range batchWorkers {
			send := benchutil.Warm(b.c.BatchSender(ctx, id, benchInterface, size, func(int) string { return "/q1" }, nil), 3)
			rate, err := benchutil.Parallel(max(o.batchMessages/size, 1), 0, w, send)
			if err != nil {
				return err
			}
			t.Row(fmt.Sprintf("msgs/s QoS 1 send_batch of %d, loopback, %d in flight", size, w), rate*float64(size), rawQoS1)
		}
	}
	if o.rtt > 0 {
		lat, stop, err := b.latencyRoute(o.rtt)
		if err != nil {
			return err
		}
		defer stop()
		lid, err := b.newDevice(ctx, lat)
		if err != nil {
			return err
		}
		lraw, err := b.rawClient(lat.brokerAddr)
		if err != nil {
			return err
		}
		defer lraw.client.Disconnect(0)
		timed := func(workers int, f func(int) error) (float64, error) {
			return benchutil.Parallel(0, o.duration, workers, f)
		}
		var rawRTT float64
		for _, w := range []int{1, o.workers} {
			rr, err := b.row(t, fmt.Sprintf("sends/s QoS 1 (PUBACK), RTT %s, %d in flight", o.rtt, w), lid, lat, lraw, "/q1", 1, w, timed)
			if err != nil {
				return err
			}
			rawRTT = rr
		}
		if len(sizes) > 0 {
			size := sizes[len(sizes)-1]
			send := benchutil.Warm(b.c.BatchSender(ctx, lid, benchInterface, size, func(int) string { return "/q1" }, lat.settings), 1)
			rate, err := benchutil.Parallel(0, o.duration, 1, send)
			if err != nil {
				return err
			}
			t.Row(fmt.Sprintf("msgs/s QoS 1 send_batch of %d, RTT %s, 1 in flight", size, o.rtt), rate*float64(size), rawRTT)
		}
	}
	atBroker, endToEnd, err := b.drainRate(ctx, id)
	if err != nil {
		return err
	}
	t.Value(fmt.Sprintf("durable queue drain msgs/s at the broker (%d queued)", o.drain), atBroker)
	t.Value("durable queue drain msgs/s, reconnected to empty", endToEnd)
	t.RSS("plugin RSS idle", idle)
	t.RSS(fmt.Sprintf("plugin RSS with %d connected devices", o.devices), loaded)
	t.RSS("plugin RSS per connected device", (loaded-idle)/int64(max(o.devices, 1)))
	return nil
}

// row measures one line: the host rate, then the raw client's, same path,
// QoS and calls in flight. It returns the raw rate.
func (b *bench) row(t benchutil.Table, name, id string, r route, raw *rawPublisher, path string, qos byte, workers int,
	measure func(int, func(int) error) (float64, error)) (float64, error) {
	host, err := measure(workers, benchutil.Warm(b.c.Sender(context.Background(), id, benchInterface, path, r.settings), 50))
	if err != nil {
		return 0, err
	}
	rr, err := measure(workers, raw.publisher(path, qos))
	if err != nil {
		return 0, err
	}
	t.Row(name, host, rr)
	return rr, nil
}

// route is how a device reaches Astarte: the connector's default settings
// (loopback) or a settings override pointing at the latency fronts.
type route struct {
	name       string
	settings   map[string]any // request settings override (nil: defaults)
	brokerAddr string         // where raw clients connect
}

// newDevice pairs a device through the host, adds the bench interface and
// connects it over the route (waiting until connected).
func (b *bench) newDevice(ctx context.Context, r route) (string, error) {
	id, err := b.pair(ctx, r)
	if err != nil {
		return "", err
	}
	return id, b.connect(ctx, id, r)
}

func (b *bench) pair(ctx context.Context, r route) (string, error) {
	res, err := b.c.Call(ctx, "generate_device_id", map[string]any{}, nil)
	if err != nil {
		return "", err
	}
	id, _ := res["device_id"].(string)
	if _, err := b.c.Call(ctx, "register_device", map[string]any{"device_id": id, "realm_private_key_file": b.files.RealmKeyFile}, r.settings); err != nil {
		return "", err
	}
	if _, err := b.c.Call(ctx, "obtain_device_certificate", map[string]any{"device_id": id}, r.settings); err != nil {
		return "", err
	}
	var iface map[string]any
	if err := json.Unmarshal([]byte(benchIface), &iface); err != nil {
		return "", err
	}
	if _, err := b.c.Call(ctx, "add_interface", map[string]any{"device_id": id, "interface": iface}, r.settings); err != nil {
		return "", err
	}
	return id, nil
}

func (b *bench) connect(ctx context.Context, id string, r route) error {
	st, err := b.c.Call(ctx, "connect", map[string]any{"device_id": id, "wait": true, "timeout_ms": 60000}, r.settings)
	if err != nil {
		return err
	}
	if st["state"] != "connected" {
		return fmt.Errorf("device %s: %v", id, st)
	}
	return nil
}

// connectMany pairs n devices and connects them all (loopback).
func (b *bench) connectMany(ctx context.Context, n int) ([]string, error) {
	ids := make([]string, n)
	for k := range ids {
		id, err := b.pair(ctx, route{})
		if err != nil {
			return nil, err
		}
		ids[k] = id
	}
	errs := make(chan error, n)
	for _, id := range ids {
		go func() { errs <- b.connect(ctx, id, route{}) }()
	}
	var err error
	for range ids {
		err = errors.Join(err, <-errs)
	}
	return ids, err
}

// rawPublisher is a plain paho client with its own device certificate.
type rawPublisher struct {
	client paho.Client
	base   string
}

// rawClient connects a paho client for a new device id to the broker at
// addr (the broker itself or the latency relay).
func (b *bench) rawClient(addr string) (*rawPublisher, error) {
	u := uuid.New()
	cn := b.emu.Realm() + "/" + base64.RawURLEncoding.EncodeToString(u[:])
	cert, err := b.emu.IssueClientCertificate(cn, time.Hour)
	if err != nil {
		return nil, err
	}
	c := paho.NewClient(paho.NewClientOptions().AddBroker("tls://" + addr).SetClientID(cn).
		SetProtocolVersion(4).SetTLSConfig(b.emu.ClientTLSConfig(cert)).SetAutoReconnect(false).SetCleanSession(false))
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		return nil, fmt.Errorf("raw paho connect: %w", tok.Error())
	}
	return &rawPublisher{client: c, base: cn + "/com.example.Bench"}, nil
}

func payloadOf(v float64) ([]byte, error) { return bson.Marshal(bson.D{{Key: "v", Value: v}}) }

// publisher returns a func publishing value v and waiting for its token
// (PUBACK at QoS 1), warmed up first.
func (r *rawPublisher) publisher(path string, qos byte) func(int) error {
	return benchutil.Warm(func(v int) error {
		data, err := payloadOf(float64(v) + 0.5)
		if err != nil {
			return err
		}
		tok := r.client.Publish(r.base+path, qos, false, data)
		if !tok.WaitTimeout(30 * time.Second) {
			return errors.New("raw publish timed out")
		}
		return tok.Error()
	}, 50)
}

// latencyRoute starts a TCP relay in front of the broker that delays each
// direction by rtt/2, and an HTTPS front of the Pairing API (same server
// certificate) that answers info with the relay as broker_url.
func (b *bench) latencyRoute(rtt time.Duration) (route, func(), error) {
	relay, err := startDelayRelay(b.emu.BrokerAddr(), rtt/2)
	if err != nil {
		return route{}, nil, err
	}
	front, err := b.startPairingFront(relay.addr)
	if err != nil {
		relay.close()
		return route{}, nil, err
	}
	stop := func() { front.Close(); relay.close() }
	return route{name: "rtt", settings: map[string]any{"pairing_base_url": front.URL + "/pairing"}, brokerAddr: relay.addr}, stop, nil
}

// startPairingFront proxies the Pairing API, rewriting the broker address
// in its answers to brokerAddr.
func (b *bench) startPairingFront(brokerAddr string) (*httptest.Server, error) {
	target, err := url.Parse(b.emu.PairingURL())
	if err != nil {
		return nil, err
	}
	certPEM, keyPEM, err := b.emu.ServerCertPEM()
	if err != nil {
		return nil, err
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, err
	}
	from, to := []byte(b.emu.BrokerAddr()), []byte(brokerAddr)
	proxy := &httputil.ReverseProxy{
		Rewrite:   func(pr *httputil.ProxyRequest) { pr.SetURL(&url.URL{Scheme: target.Scheme, Host: target.Host}) },
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: b.emu.CAPool(), MinVersion: tls.VersionTLS12}},
		ModifyResponse: func(resp *http.Response) error {
			body, err := io.ReadAll(resp.Body)
			_ = resp.Body.Close()
			if err != nil {
				return err
			}
			body = bytes.ReplaceAll(body, from, to)
			resp.Body = io.NopCloser(bytes.NewReader(body))
			resp.ContentLength = int64(len(body))
			resp.Header.Set("Content-Length", strconv.Itoa(len(body)))
			return nil
		},
	}
	srv := httptest.NewUnstartedServer(proxy)
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	srv.StartTLS()
	return srv, nil
}

// delayRelay forwards TCP connections to a target, delaying every chunk
// by a fixed one-way latency while keeping its order (no bandwidth limit).
type delayRelay struct {
	addr string
	ln   net.Listener
	wg   sync.WaitGroup
	mu   sync.Mutex
	open map[net.Conn]bool
}

func startDelayRelay(target string, oneWay time.Duration) (*delayRelay, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	r := &delayRelay{addr: ln.Addr().String(), ln: ln, open: map[net.Conn]bool{}}
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", target)
			if err != nil {
				_ = c.Close()
				continue
			}
			r.track(c, up)
			r.wg.Add(2)
			go func() { defer r.wg.Done(); pipeDelayed(up, c, oneWay) }()
			go func() { defer r.wg.Done(); pipeDelayed(c, up, oneWay) }()
		}
	}()
	return r, nil
}

func (r *delayRelay) track(conns ...net.Conn) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, c := range conns {
		r.open[c] = true
	}
}

func (r *delayRelay) close() {
	_ = r.ln.Close()
	r.mu.Lock()
	for c := range r.open {
		_ = c.Close()
	}
	r.mu.Unlock()
	r.wg.Wait()
}

// pipeDelayed copies src to dst, each chunk written oneWay after it was
// read; it closes both ends when either side ends.
func pipeDelayed(dst, src net.Conn, oneWay time.Duration) {
	type chunk struct {
		data []byte
		at   time.Time
	}
	q := make(chan chunk, 4096)
	go func() {
		defer close(q)
		for {
			buf := make([]byte, 32<<10)
			n, err := src.Read(buf)
			if n > 0 {
				q <- chunk{buf[:n], time.Now().Add(oneWay)}
			}
			if err != nil {
				return
			}
		}
	}()
	for c := range q {
		if d := time.Until(c.at); d > 0 {
			time.Sleep(d)
		}
		if _, err := dst.Write(c.data); err != nil {
			break
		}
	}
	_ = dst.Close()
	_ = src.Close()
	for range q { // let the reader finish
	}
}

// samePayload checks that the plugin and the raw client put the same bytes
// on the wire for the same value.
func (b *bench) samePayload(ctx context.Context, id string, raw *rawPublisher) error {
	b.emu.ResetMessages()
	if _, err := b.c.Call(ctx, "send", map[string]any{"device_id": id, "interface": "com.example.Bench", "path": "/q1", "value": 1.5}, nil); err != nil {
		return err
	}
	want, err := payloadOf(1.5)
	if err != nil {
		return err
	}
	msgs := b.emu.MessagesFrom(b.emu.Realm() + "/" + id)
	if len(msgs) != 1 || !bytes.Equal(msgs[0].Payload, want) {
		return fmt.Errorf("the plugin's payload differs from the raw client's: %+v vs %x", msgs, want)
	}
	b.emu.ResetMessages()
	return nil
}

// drainRate stops the broker, queues o.drain stored messages through the
// host, starts the broker and measures how fast the queue empties.
func (b *bench) drainRate(ctx context.Context, id string) (atBroker, endToEnd float64, err error) {
	if err := b.emu.StopBroker(); err != nil {
		return 0, 0, err
	}
	if _, err := b.waitStatus(ctx, id, func(st map[string]any) bool { return st["state"] == "connecting" }); err != nil {
		return 0, 0, err
	}
	_, err = benchutil.Parallel(b.o.drain, 0, b.o.workers, func(v int) error {
		body := fmt.Appendf(nil, `{"request":{"device_id":%q,"interface":"com.example.Bench","path":"/q1","value":%d}}`, id, v)
		out, status, err := b.c.Post(ctx, "send", body)
		if err != nil {
			return err
		}
		if status != http.StatusOK || !bytes.Contains(out, []byte(`"queued_stored"`)) {
			return fmt.Errorf("offline send: status %d: %s", status, out)
		}
		return nil
	})
	if err != nil {
		return 0, 0, err
	}
	b.emu.ResetMessages()
	if err := b.emu.StartBroker(); err != nil {
		return 0, 0, err
	}
	connectedAt, err := b.waitStatus(ctx, id, func(st map[string]any) bool { return st["state"] == "connected" })
	if err != nil {
		return 0, 0, err
	}
	emptyAt, err := b.waitStatus(ctx, id, func(st map[string]any) bool { return fmt.Sprint(st["queued_stored"]) == "0" })
	if err != nil {
		return 0, 0, err
	}
	var first, last time.Time
	n := 0
	topic := b.emu.Realm() + "/" + id + "/com.example.Bench/q1"
	for _, m := range b.emu.Messages() {
		if m.Topic != topic {
			continue
		}
		if n == 0 {
			first = m.Time
		}
		last = m.Time
		n++
	}
	if n != b.o.drain {
		return 0, 0, fmt.Errorf("the broker received %d of %d queued messages", n, b.o.drain)
	}
	return float64(n-1) / last.Sub(first).Seconds(), float64(n) / emptyAt.Sub(connectedAt).Seconds(), nil
}

// waitStatus polls status every 2 ms until cond holds (up to 2 minutes)
// and returns when it first did.
func (b *bench) waitStatus(ctx context.Context, id string, cond func(map[string]any) bool) (time.Time, error) {
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		st, err := b.c.Call(ctx, "status", map[string]any{"device_id": id}, nil)
		if err != nil {
			return time.Time{}, err
		}
		if cond(st) {
			return time.Now(), nil
		}
		time.Sleep(2 * time.Millisecond)
	}
	return time.Time{}, errors.New("status condition not met within 2 minutes")
}
