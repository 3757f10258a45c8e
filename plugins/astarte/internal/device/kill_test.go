package device

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/connector-host/connector-host/plugins/astarte/internal/interfaces"
	"github.com/connector-host/connector-host/plugins/astarte/internal/mqtt"
	"github.com/connector-host/connector-host/plugins/astarte/internal/pairing"
	"github.com/connector-host/connector-host/plugins/astarte/internal/payload"
	"github.com/connector-host/connector-host/plugins/astarte/internal/store"
)

const (
	killHelperEnv = "ASTARTE_DEVICE_KILL_HELPER"
	killMessages  = 10000
	killExpiring  = 100
)

func TestMain(m *testing.M) {
	if dir := os.Getenv(killHelperEnv); dir != "" {
		os.Exit(killHelper(dir))
	}
	os.Exit(m.Run())
}

// killHelper is the plugin process of TestKill9WhileOfflineLosesNothing:
// it connects, waits for the broker to go away, queues the messages, says
// so, and waits to be killed.
func killHelper(dir string) int {
	fail := func(err error) int {
		fmt.Println("error", err)
		return 2
	}
	id, broker := os.Getenv("DEVICE_ID"), os.Getenv("BROKER_URL")
	caPEM, err := os.ReadFile(filepath.Join(dir, "ca.pem"))
	if err != nil {
		return fail(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	st, err := store.Open(filepath.Join(dir, "astarte.db"))
	if err != nil {
		return fail(err)
	}
	keys, err := pairing.OpenKeyStore(filepath.Join(dir, "keys"))
	if err != nil {
		return fail(err)
	}
	cert, err := keys.TLSCertificate("test", id)
	if err != nil {
		return fail(err)
	}
	ctx := context.Background()
	d, err := New(ctx, Config{DeviceID: id, Realm: "test", Store: st, BackoffMin: 20 * time.Millisecond, BackoffMax: 100 * time.Millisecond})
	if err != nil {
		return fail(err)
	}
	iface, err := interfaces.Parse([]byte(retention))
	if err != nil {
		return fail(err)
	}
	if err := d.AddInterface(ctx, iface); err != nil {
		return fail(err)
	}
	tr, _ := mqtt.New(mqtt.Config{Realm: "test", DeviceID: id, Endpoint: func(context.Context) (mqtt.Endpoint, error) {
		return mqtt.Endpoint{BrokerURL: broker, TLS: &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}}}, nil
	}})
	sub := d.Subscribe(16)
	if err := d.Connect(tr); err != nil {
		return fail(err)
	}
	wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if err := d.WaitDrained(wctx); err != nil {
		return fail(err)
	}
	fmt.Println("connected")
	// Wait for the parent to stop the broker.
	for e := range sub.Events() {
		if e.Type == EventDisconnected {
			break
		}
	}
	queued := 0
	for k := 0; k < killMessages; k++ {
		got, err := d.Send(ctx, "com.example.Retention", "/stored", k, nil)
		if err != nil {
			return fail(fmt.Errorf("send %d: %w", k, err))
		}
		if got != QueuedStored {
			return fail(fmt.Errorf("send %d: delivery %v, want %v", k, got, QueuedStored))
		}
		queued++
		if k%(killMessages/killExpiring) == 0 {
			if _, err := d.Send(ctx, "com.example.Retention", "/expiring", k, nil); err != nil {
				return fail(err)
			}
		}
	}
	fmt.Println("queued", queued)
	select {} // killed here
}

// TestKill9WhileOfflineLosesNothing: stop the broker, queue 10,000
// guaranteed stored messages, kill -9 the process, restart both: the broker
// receives all 10,000 in order; the expiring ones are dropped and counted.
func TestKill9WhileOfflineLosesNothing(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	id := r.pair(t)
	base := "test/" + id
	if err := os.WriteFile(filepath.Join(r.dir, "ca.pem"), r.emu.CACertPEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	// The helper owns the database while it runs.
	r.store.Close()

	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), killHelperEnv+"="+r.dir, "DEVICE_ID="+id, "BROKER_URL="+r.emu.BrokerURL())
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	killed := false
	t.Cleanup(func() {
		if !killed {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	})
	lines := bufio.NewScanner(out)
	expect := func(prefix string) string {
		t.Helper()
		if !lines.Scan() {
			t.Fatalf("helper exited before %q", prefix)
		}
		if !strings.HasPrefix(lines.Text(), prefix) {
			t.Fatalf("helper said %q, want %q", lines.Text(), prefix)
		}
		return lines.Text()
	}
	expect("connected")
	if err := r.emu.StopBroker(); err != nil {
		t.Fatal(err)
	}
	if got := expect("queued"); got != fmt.Sprintf("queued %d", killMessages) {
		t.Fatalf("helper: %s", got)
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	killed = true

	// Restart both. The restarted plugin's clock is an hour later: the
	// expiring messages (expiry 1 s) are past their expiry.
	r.emu.ResetMessages()
	if err := r.emu.StartBroker(); err != nil {
		t.Fatal(err)
	}
	r2 := newRigAt(t, r.emu, r.dir)
	r2.clock.Advance(time.Hour)
	d := r2.device(t, id) // interfaces come back from the store
	if len(d.Interfaces()) != 1 {
		t.Fatalf("interfaces after restart: %v", d.Interfaces())
	}
	ctx := within(t, 120*time.Second)
	if st, _ := d.Status(ctx); st.QueuedStored != killMessages+killExpiring {
		t.Fatalf("queue after kill -9 holds %d, want %d", st.QueuedStored, killMessages+killExpiring)
	}
	if err := d.Connect(r2.transport(t, id, nil)); err != nil {
		t.Fatal(err)
	}
	if err := d.WaitDrained(ctx); err != nil {
		t.Fatal(err)
	}
	next := 0
	for _, m := range r.emu.MessagesFrom(base) {
		switch m.Topic {
		case base + "/com.example.Retention/stored":
			v, err := payload.Decode(interfaces.Integer, m.Payload)
			if err != nil || v.Value != int32(next) || m.QoS != 1 {
				t.Fatalf("message %d: %v %v (QoS %d): order or content lost", next, v.Value, err, m.QoS)
			}
			next++
		case base + "/com.example.Retention/expiring":
			t.Fatalf("expired message delivered: %+v", m)
		}
	}
	if next != killMessages {
		t.Fatalf("broker received %d of %d stored messages", next, killMessages)
	}
	st, err := d.Status(ctx)
	if err != nil || st.ExpiredDropped != killExpiring || st.QueuedStored != 0 {
		t.Fatalf("status %+v %v", st, err)
	}
}
