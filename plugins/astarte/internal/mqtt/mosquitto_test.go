//nolint:misspell // mosquitto is the Eclipse MQTT broker's name, not a misspelling of mosquito
package mqtt

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/connector-host/connector-host/plugins/astarte/internal/pairing"
	"github.com/connector-host/connector-host/plugins/astarte/internal/payload"
	"github.com/connector-host/connector-host/plugins/astarte/internal/transport"
	astarteemu "github.com/connector-host/connector-host/testkit/emulators/astarte"
)

// mosquittoBinary finds mosquitto: on PATH, or Debian's /usr/sbin when
// PATH lacks sbin. Without it the interop tests are skipped, unless
// CI_REQUIRE_MOSQUITTO=1 makes that a failure.
func mosquittoBinary(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("mosquitto"); err == nil {
		return p
	}
	if _, err := os.Stat("/usr/sbin/mosquitto"); err == nil {
		return "/usr/sbin/mosquitto"
	}
	if os.Getenv("CI_REQUIRE_MOSQUITTO") == "1" {
		t.Fatal("mosquitto not found but CI_REQUIRE_MOSQUITTO=1 (apt-get install -y mosquitto)")
	}
	t.Skip("mosquitto not installed (apt-get install -y mosquitto); set CI_REQUIRE_MOSQUITTO=1 to require it")
	return ""
}

// startMosquitto runs mosquitto on 127.0.0.1 with TLS client certificates
// from the emulator CA, the certificate CN as username and the ACL
// "pattern readwrite %u/#". It returns host:port.
func startMosquitto(t *testing.T, emu *astarteemu.Emulator) string {
	t.Helper()
	bin := mosquittoBinary(t)
	dir := t.TempDir()
	certPEM, keyPEM, err := emu.ServerCertPEM()
	if err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{"ca.pem": emu.CACertPEM(), "server.pem": certPEM, "server.key": keyPEM,
		"acl": []byte("pattern readwrite %u/#\n")}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	// Run as the current user so mosquitto (which drops root privileges
	// to "mosquitto" by default) can read the private test files.
	me, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	conf := fmt.Sprintf(`user %[3]s
per_listener_settings false
allow_anonymous false
persistence false
log_dest stderr
log_type error
log_type warning
log_type notice
log_type information
acl_file %[1]s/acl
listener %[2]d 127.0.0.1
cafile %[1]s/ca.pem
certfile %[1]s/server.pem
keyfile %[1]s/server.key
require_certificate true
use_identity_as_username true
`, dir, port, me.Username)
	confPath := filepath.Join(dir, "mosquitto.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-c", confPath)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	ready := make(chan error, 1)
	var logBuf bytes.Buffer
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			line := sc.Text()
			logBuf.WriteString(line + "\n")
			if strings.Contains(line, "running") {
				ready <- nil
			}
		}
		ready <- fmt.Errorf("mosquitto exited: %s", logBuf.String())
	}()
	select {
	case err := <-ready:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("mosquitto did not start")
	}
	return fmt.Sprintf("127.0.0.1:%d", port)
}

// observer is a raw client with a certificate of identity cn (so the ACL
// gives it cn/#) that records what it receives.
func observer(t *testing.T, emu *astarteemu.Emulator, addr, cn, clientID string, filters ...string) (paho.Client, chan paho.Message) {
	t.Helper()
	cert, err := emu.IssueClientCertificate(cn, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan paho.Message, 1000)
	o := paho.NewClientOptions().AddBroker("tls://" + addr).SetClientID(clientID).SetProtocolVersion(4).
		SetTLSConfig(emu.ClientTLSConfig(cert)).SetAutoReconnect(false).SetCleanSession(true).
		SetDefaultPublishHandler(func(_ paho.Client, m paho.Message) { got <- m })
	c := paho.NewClient(o)
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("observer connect: %v", tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(0) })
	if len(filters) > 0 {
		m := map[string]byte{}
		for _, f := range filters {
			m[f] = 2
		}
		tok := c.SubscribeMultiple(m, nil)
		if !tok.WaitTimeout(10 * time.Second) {
			t.Fatal("observer subscribe timeout")
		}
		for f, code := range tok.(*paho.SubscribeToken).Result() {
			if code > 2 {
				t.Fatalf("observer subscribe %s refused: %#x", f, code)
			}
		}
	}
	return c, got
}

func receive(t *testing.T, ch chan paho.Message) paho.Message {
	t.Helper()
	select {
	case m := <-ch:
		return m
	case <-time.After(10 * time.Second):
		t.Fatal("nothing received")
		return nil
	}
}

func TestMosquittoInterop(t *testing.T) {
	t.Parallel()
	emu, err := astarteemu.Start(astarteemu.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = emu.Close() })
	addr := startMosquitto(t, emu)
	id, _ := pairing.NewDeviceID()
	base := "test/" + id
	cert, _ := emu.IssueClientCertificate(base, time.Hour)
	_, seen := observer(t, emu, addr, base, "observer-"+id, base, base+"/#")

	tr, _ := New(Config{Realm: "test", DeviceID: id, Endpoint: func(context.Context) (Endpoint, error) {
		return Endpoint{BrokerURL: "mqtts://" + addr, TLS: emu.ClientTLSConfig(cert)}, nil
	}})
	in := introspection(t, dsIface, propIface, srvProps)
	prop, _ := payload.Encode("p", nil)
	rec := newRecorder()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := tr.Connect(ctx, transport.Session{Introspection: in, Handler: rec,
		DeviceProperties: []transport.Property{{Interface: in.Get("com.example.Props"), Path: "/a/name", Payload: prop}}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	if !c.Resynced() {
		t.Fatal("fresh session on mosquitto not resynced")
	}
	for k, want := range []string{base, base + "/control/emptyCache", base + "/com.example.Props/a/name", base + "/control/producer/properties"} {
		m := receive(t, seen)
		if m.Topic() != want {
			t.Fatalf("handshake message %d on %s, want %s", k, m.Topic(), want)
		}
		if k == 0 && string(m.Payload()) != in.String() {
			t.Fatalf("introspection %q", m.Payload())
		}
	}
	ds := in.Get("com.example.Data")
	mg, _ := ds.Lookup("/g")
	data, _ := payload.Encode(int32(7), nil)
	if n, err := c.Send(ctx, []*transport.Message{{Interface: ds, Mapping: mg, Path: "/g", Payload: data}}); n != 1 || err != nil {
		t.Fatalf("Send = %d %v", n, err)
	}
	if m := receive(t, seen); m.Topic() != base+"/com.example.Data/g" || !bytes.Equal(m.Payload(), data) {
		t.Fatalf("data %s %x", m.Topic(), m.Payload())
	}
	// Server → device through mosquitto.
	rate, _ := payload.Encode(int32(3), nil)
	obs, _ := observer(t, emu, addr, base, "server-"+id)
	if tok := obs.Publish(base+"/com.example.ServerProps/x/rate", 2, false, rate); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatal("server publish failed")
	}
	rec.wait(t, 1)
	if len(rec.data) != 1 || rec.data[0].Value != int32(3) {
		t.Fatalf("inbound %+v dropped %v", rec.data, rec.dropped)
	}
	// A resumed session on mosquitto skips the handshake.
	c.Close(context.Background())
	c2, err := tr.Connect(ctx, transport.Session{Introspection: in, Handler: rec})
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close(context.Background())
	if c2.Resynced() {
		t.Fatal("mosquitto session not resumed")
	}
}

// On mosquitto too, a device cannot publish or read outside its tree.
func TestMosquittoConfinesDevices(t *testing.T) {
	t.Parallel()
	emu, err := astarteemu.Start(astarteemu.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = emu.Close() })
	addr := startMosquitto(t, emu)
	me, _ := pairing.NewDeviceID()
	other, _ := pairing.NewDeviceID()
	victim, victimSeen := observer(t, emu, addr, "test/"+other, "victim", "test/"+other+"/#")
	// mosquitto grants a subscription outside the tree (SUBACK 0x02) but
	// the ACL stops every delivery on it; the check is on delivery.
	attacker, attackerSeen := observer(t, emu, addr, "test/"+me, "test/"+me, "test/"+other+"/#", "test/"+me+"/#")

	if tok := attacker.Publish("test/"+other+"/com.example.Data/g", 1, false, []byte("evil")); !tok.WaitTimeout(10 * time.Second) {
		t.Fatal("attacker publish timeout")
	}
	// The victim publishes a marker in its own tree: mosquitto routes
	// messages one at a time, so anything the attacker got through would
	// reach the victim first, and the victim's marker would reach the
	// attacker before the attacker's own marker.
	if tok := victim.Publish("test/"+other+"/marker", 1, false, []byte("ok")); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatal("victim marker publish failed")
	}
	if m := receive(t, victimSeen); m.Topic() != "test/"+other+"/marker" {
		t.Fatalf("victim received %s %q from another device", m.Topic(), m.Payload())
	}
	if tok := attacker.Publish("test/"+me+"/marker", 1, false, []byte("ok")); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatal("attacker marker publish failed")
	}
	if m := receive(t, attackerSeen); m.Topic() != "test/"+me+"/marker" {
		t.Fatalf("attacker read %s %q from another device's tree", m.Topic(), m.Payload())
	}
}
