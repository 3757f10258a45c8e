// Command astarte-bench measures the astarte device library against the
// local emulator and prints a table:
//
//		astarte-bench [-devices 100] [-messages 5000]
//
//	  - sends/s at QoS 0 and QoS 1 through the device (validation, BSON,
//	    MQTT) beside a raw paho client publishing the same BSON to the same
//	    broker, with the ratio;
//	  - durable queue drain rate after reconnecting;
//	  - process RSS with N connected devices in one manager.
//
// The emulator runs in the same process: the RSS figures include the
// broker's sessions, so the per-device delta is an upper bound.
package main

import (
	"context"
	"crypto/tls"
	"flag"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/connector-host/connector-host/plugins/astarte/internal/device"
	"github.com/connector-host/connector-host/plugins/astarte/internal/interfaces"
	"github.com/connector-host/connector-host/plugins/astarte/internal/mqtt"
	"github.com/connector-host/connector-host/plugins/astarte/internal/pairing"
	"github.com/connector-host/connector-host/plugins/astarte/internal/payload"
	"github.com/connector-host/connector-host/plugins/astarte/internal/store"
	astarteemu "github.com/connector-host/connector-host/testkit/emulators/astarte"
)

const benchIface = `{"interface_name":"com.example.Bench","version_major":1,"version_minor":0,"type":"datastream","ownership":"device",
  "mappings":[{"endpoint":"/q0","type":"double","reliability":"unreliable"},
              {"endpoint":"/q1","type":"double","reliability":"guaranteed","retention":"stored"}]}`

type env struct {
	emu  *astarteemu.Emulator
	st   *store.Store
	prov *pairing.Provisioner
	mgr  *device.Manager
	ifc  *interfaces.Interface
}

func main() {
	devices := flag.Int("devices", 100, "connected devices for the RSS figure")
	messages := flag.Int("messages", 5000, "messages per rate measurement")
	flag.Parse()
	if err := run(*devices, *messages); err != nil {
		fmt.Fprintln(os.Stderr, "astarte-bench:", err)
		os.Exit(1)
	}
}

func run(devices, messages int) error {
	ctx := context.Background()
	emu, err := astarteemu.Start(astarteemu.Options{})
	if err != nil {
		return err
	}
	defer func() { _ = emu.Close() }()
	dir, err := os.MkdirTemp("", "astarte-bench")
	if err != nil {
		return err
	}
	defer func() { _ = os.RemoveAll(dir) }()
	st, err := store.Open(filepath.Join(dir, "astarte.db"))
	if err != nil {
		return err
	}
	defer func() { _ = st.Close() }()
	keys, err := pairing.OpenKeyStore(filepath.Join(dir, "keys"))
	if err != nil {
		return err
	}
	hc := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: emu.CAPool()}}}
	pc, err := pairing.NewClient(emu.PairingURL(), hc)
	if err != nil {
		return err
	}
	ifc, err := interfaces.Parse([]byte(benchIface))
	if err != nil {
		return err
	}
	e := &env{emu: emu, st: st, prov: &pairing.Provisioner{Client: pc, Store: keys, Realm: "test"}, ifc: ifc,
		mgr: device.NewManager(device.Config{Realm: "test", Store: st, BackoffMin: 50 * time.Millisecond, BackoffMax: time.Second})}
	defer func() { _ = e.mgr.Close(ctx) }()

	fmt.Printf("%-44s %14s %14s %8s\n", "measure", "device", "raw paho", "ratio")
	for _, q := range []struct {
		name, path string
		qos        byte
	}{{"sends/s QoS 0 (unreliable)", "/q0", 0}, {"sends/s QoS 1 (guaranteed, wait PUBACK)", "/q1", 1}} {
		dev, raw, err := e.sendRates(ctx, q.path, q.qos, messages)
		if err != nil {
			return err
		}
		fmt.Printf("%-44s %14.0f %14.0f %8.2f\n", q.name, dev, raw, dev/raw)
	}
	drain, err := e.drainRate(ctx, messages)
	if err != nil {
		return err
	}
	fmt.Printf("%-44s %14.0f\n", "durable queue drain msgs/s (QoS 1)", drain)

	before := rssKiB()
	if err := e.connectMany(ctx, devices); err != nil {
		return err
	}
	runtime.GC()
	after := rssKiB()
	fmt.Printf("%-44s %11d KiB\n", "RSS before devices (emulator up)", before)
	fmt.Printf("%-44s %11d KiB\n", fmt.Sprintf("RSS with %d connected devices", devices), after)
	fmt.Printf("%-44s %11d KiB\n", "RSS per device (incl. broker session)", (after-before)/int64(max(devices, 1)))
	return nil
}

// newDevice pairs a device and connects it.
func (e *env) newDevice(ctx context.Context) (*device.Device, string, error) {
	id, err := pairing.NewDeviceID()
	if err != nil {
		return nil, "", err
	}
	tok, err := pairing.NewRegistrationJWT(e.emu.RealmPrivateKeyPEM(), time.Minute, time.Now())
	if err != nil {
		return nil, "", err
	}
	if err := e.prov.Register(ctx, id, tok, nil); err != nil {
		return nil, "", err
	}
	if err := e.prov.ObtainCertificate(ctx, id); err != nil {
		return nil, "", err
	}
	d, err := e.mgr.Device(ctx, id)
	if err != nil {
		return nil, "", err
	}
	if err := d.AddInterface(ctx, e.ifc); err != nil {
		return nil, "", err
	}
	tr, err := mqtt.New(mqtt.Config{Realm: "test", DeviceID: id, Endpoint: func(ctx context.Context) (mqtt.Endpoint, error) {
		url, cert, err := e.prov.Endpoint(ctx, id)
		return mqtt.Endpoint{BrokerURL: url, TLS: &tls.Config{RootCAs: e.emu.CAPool(), Certificates: []tls.Certificate{cert}}}, err
	}})
	if err != nil {
		return nil, "", err
	}
	return d, id, d.Connect(tr)
}

func (e *env) sendRates(ctx context.Context, path string, qos byte, n int) (float64, float64, error) {
	d, id, err := e.newDevice(ctx)
	if err != nil {
		return 0, 0, err
	}
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := d.WaitDrained(wctx); err != nil {
		return 0, 0, err
	}
	start := time.Now()
	for i := 0; i < n; i++ {
		if _, err := d.Send(ctx, "com.example.Bench", path, float64(i), nil); err != nil {
			return 0, 0, err
		}
	}
	devRate := float64(n) / time.Since(start).Seconds()
	if err := d.Disconnect(wctx); err != nil {
		return 0, 0, err
	}
	cert, err := e.prov.Store.TLSCertificate("test", id)
	if err != nil {
		return 0, 0, err
	}
	c := paho.NewClient(paho.NewClientOptions().AddBroker("tls://" + e.emu.BrokerAddr()).SetClientID("test/" + id).
		SetProtocolVersion(4).SetTLSConfig(e.emu.ClientTLSConfig(cert)).SetAutoReconnect(false))
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		return 0, 0, fmt.Errorf("raw connect: %w", tok.Error())
	}
	defer c.Disconnect(0)
	topic := "test/" + id + "/com.example.Bench" + path
	start = time.Now()
	for i := 0; i < n; i++ {
		data, err := payload.Encode(float64(i), nil)
		if err != nil {
			return 0, 0, err
		}
		tok := c.Publish(topic, qos, false, data)
		tok.Wait()
		if tok.Error() != nil {
			return 0, 0, tok.Error()
		}
	}
	return devRate, float64(n) / time.Since(start).Seconds(), nil
}

func (e *env) drainRate(ctx context.Context, n int) (float64, error) {
	d, _, err := e.newDevice(ctx)
	if err != nil {
		return 0, err
	}
	wctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	if err := d.WaitDrained(wctx); err != nil {
		return 0, err
	}
	if err := e.emu.StopBroker(); err != nil {
		return 0, err
	}
	if err := d.WaitState(wctx, device.Connecting); err != nil {
		return 0, err
	}
	for i := 0; i < n; i++ {
		if _, err := d.Send(ctx, "com.example.Bench", "/q1", float64(i), nil); err != nil {
			return 0, err
		}
	}
	// Time from the reconnection (not the backoff before it) to an empty
	// queue.
	sub := d.Subscribe(16)
	defer sub.Close()
	if err := e.emu.StartBroker(); err != nil {
		return 0, err
	}
	for ev := range sub.Events() {
		if ev.Type == device.EventConnected {
			break
		}
	}
	start := time.Now()
	if err := d.WaitDrained(wctx); err != nil {
		return 0, err
	}
	rate := float64(n) / time.Since(start).Seconds()
	return rate, d.Disconnect(wctx)
}

func (e *env) connectMany(ctx context.Context, n int) error {
	var devs []*device.Device
	for i := 0; i < n; i++ {
		d, _, err := e.newDevice(ctx)
		if err != nil {
			return err
		}
		devs = append(devs, d)
	}
	wctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	for _, d := range devs {
		if err := d.WaitDrained(wctx); err != nil {
			return err
		}
	}
	return nil
}

// rssKiB reads VmRSS from /proc/self/status (0 where unavailable).
func rssKiB() int64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(line, "VmRSS:") {
			f := strings.Fields(line)
			if len(f) >= 2 {
				n, _ := strconv.ParseInt(f[1], 10, 64)
				return n
			}
		}
	}
	return 0
}
