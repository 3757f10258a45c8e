package main_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"
)

const offlineIface = `{"interface_name":"com.example.e2e.Offline","version_major":1,"version_minor":0,"type":"datastream","ownership":"device",
  "mappings":[{"endpoint":"/stored","type":"integer","reliability":"guaranteed","retention":"stored"},
              {"endpoint":"/expiring","type":"integer","reliability":"guaranteed","retention":"stored","expiry":1}]}`

const (
	// offlineMessages is the figure: 10,000 guaranteed stored
	// messages queued while the broker is down.
	offlineMessages = 10000
	// offlineExpiring messages (one every offlineMessages/offlineExpiring)
	// have a 1 s expiry and must be dropped, not delivered.
	offlineExpiring = 100
	// offlineWorkers send concurrently through the host. Order is what the
	// caller can observe: a message whose send was answered before another
	// send was issued must reach the broker first.
	offlineWorkers = 8
)

// intField reads a JSON number field of a response.
func intField(t *testing.T, m map[string]any, key string) int {
	t.Helper()
	n, err := strconv.Atoi(fmt.Sprint(m[key]))
	if err != nil {
		t.Fatalf("%s = %v in %v", key, m[key], m)
	}
	return n
}

// waitStatus polls status through the host until cond holds (bounded).
func (s *stack) waitStatus(id string, timeout time.Duration, what string, cond func(map[string]any) bool) map[string]any {
	s.t.Helper()
	deadline := time.Now().Add(timeout)
	var last map[string]any
	for time.Now().Before(deadline) {
		status, m := s.call("status", map[string]any{"device_id": id})
		if status == http.StatusOK {
			last, _ = m["response"].(map[string]any)
			if cond(last) {
				return last
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	s.t.Fatalf("status never showed %s within %s; last %v", what, timeout, last)
	return nil
}

// Offline through the host: stop the broker, send 10,000 guaranteed
// stored messages (answered queued_stored), kill -9 the plugin process
// (the host's supervisor starts it again and it resumes the device),
// restart the broker: the broker receives all 10,000 exactly once, in the
// order the sends were answered; the expired ones are dropped and counted.
func TestHostOfflineQueueSurvivesKill9(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	id := s.pair()
	base := s.base(id)
	s.addInterfaces(id, offlineIface)
	s.connect(id)
	if err := s.emu.StopBroker(); err != nil {
		t.Fatal(err)
	}
	s.waitStatus(id, 15*time.Second, "the device offline", func(m map[string]any) bool { return m["state"] == "connecting" })

	var (
		mu          sync.Mutex
		acked       []int // message ids in the order their sends were answered
		issuedAfter = make([]int, offlineMessages)
		lastExpiry  time.Time
		next        = make(chan int)
		failed      = make(chan string, offlineWorkers)
		wg          sync.WaitGroup
	)
	send := func(path string, v int) (string, error) {
		body, _ := json.Marshal(map[string]any{"request": map[string]any{"device_id": id, "interface": "com.example.e2e.Offline", "path": path, "value": v}})
		r := s.host.Do(t, http.MethodPost, "/v1/connectors/astarte/send", string(body), nil)
		var m struct {
			Response struct {
				Delivery string `json:"delivery"`
			} `json:"response"`
		}
		if err := json.Unmarshal(r.Body, &m); err != nil || r.Status != http.StatusOK {
			return "", fmt.Errorf("send %s %d: status %d: %s", path, v, r.Status, r.Body)
		}
		return m.Response.Delivery, nil
	}
	start := time.Now()
	for w := 0; w < offlineWorkers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for v := range next {
				if v%(offlineMessages/offlineExpiring) == 0 {
					if d, err := send("/expiring", v); err != nil || d != "queued_stored" {
						failed <- fmt.Sprintf("expiring %d: %q %v", v, d, err)
						return
					}
					mu.Lock()
					lastExpiry = time.Now()
					mu.Unlock()
				}
				mu.Lock()
				issuedAfter[v] = len(acked)
				mu.Unlock()
				if d, err := send("/stored", v); err != nil || d != "queued_stored" {
					failed <- fmt.Sprintf("stored %d: %q %v", v, d, err)
					return
				}
				mu.Lock()
				acked = append(acked, v)
				mu.Unlock()
			}
		}()
	}
feed:
	for v := 0; v < offlineMessages; v++ {
		select {
		case next <- v:
		case msg := <-failed:
			t.Error(msg)
			break feed
		}
	}
	close(next)
	wg.Wait()
	select {
	case msg := <-failed:
		t.Fatal(msg)
	default:
	}
	if t.Failed() {
		t.FailNow()
	}
	t.Logf("queued %d+%d messages through the host in %s (%d workers)", offlineMessages, offlineExpiring, time.Since(start).Round(time.Millisecond), offlineWorkers)
	st := s.ok("status", map[string]any{"device_id": id})
	if n := intField(t, st, "queued_stored"); n != offlineMessages+offlineExpiring {
		t.Fatalf("queued_stored %d before the kill, want %d", n, offlineMessages+offlineExpiring)
	}

	// kill -9 the plugin; the supervisor starts a new process, which
	// reconnects the device by itself (autoconnect) and keeps retrying.
	pid, err := s.pluginPID()
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		npid, err := s.pluginPID()
		if err == nil && npid != pid {
			t.Logf("plugin pid %d killed, restarted as %d", pid, npid)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("plugin not restarted after kill -9 of %d: %v", pid, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	st = s.waitStatus(id, 30*time.Second, "the restarted plugin answering", func(map[string]any) bool { return true })
	if n := intField(t, st, "queued_stored"); n != offlineMessages+offlineExpiring || st["state"] != "connecting" {
		t.Fatalf("after kill -9: state %v, queued_stored %d, want connecting with %d", st["state"], n, offlineMessages+offlineExpiring)
	}

	// The expiring messages must be past their 1 s expiry when the queue
	// drains: a wall-clock condition, so wait for the clock.
	mu.Lock()
	wait := time.Until(lastExpiry.Add(1500 * time.Millisecond))
	mu.Unlock()
	if wait > 0 {
		time.Sleep(wait)
	}
	s.emu.ResetMessages()
	if err := s.emu.StartBroker(); err != nil {
		t.Fatal(err)
	}
	drainStart := time.Now()
	st = s.waitStatus(id, 120*time.Second, "the queue drained", func(m map[string]any) bool {
		return m["state"] == "connected" && fmt.Sprint(m["queued_stored"]) == "0"
	})
	t.Logf("queue drained after the broker restart in %s", time.Since(drainStart).Round(time.Millisecond))
	if n := intField(t, st, "expired_dropped"); n != offlineExpiring {
		t.Errorf("expired_dropped %d, want %d", n, offlineExpiring)
	}

	// The broker has every message exactly once, at QoS 1, none expired,
	// in an order consistent with the answers.
	pos := make([]int, offlineMessages)
	for k := range pos {
		pos[k] = -1
	}
	n := 0
	for _, m := range s.emu.MessagesFrom(base) {
		switch m.Topic {
		case base + "/com.example.e2e.Offline/stored":
		case base + "/com.example.e2e.Offline/expiring":
			t.Fatalf("an expired message was delivered: %+v", m)
		default:
			continue
		}
		v, ts := decodeVT(t, m.Payload)
		k, err := strconv.Atoi(v[len("int32:"):])
		if ts != "" || err != nil || v[:len("int32:")] != "int32:" || k < 0 || k >= offlineMessages {
			t.Fatalf("payload %s %q", v, ts)
		}
		if m.QoS != 1 {
			t.Fatalf("message %d at QoS %d, want 1", k, m.QoS)
		}
		if pos[k] >= 0 {
			t.Fatalf("message %d delivered twice (positions %d and %d)", k, pos[k], n)
		}
		pos[k] = n
		n++
	}
	if n != offlineMessages {
		t.Fatalf("the broker received %d of %d stored messages", n, offlineMessages)
	}
	// prefix[i] is the latest broker position among the first i answered.
	prefix := make([]int, len(acked)+1)
	prefix[0] = -1
	for i, v := range acked {
		prefix[i+1] = max(prefix[i], pos[v])
	}
	for v := range offlineMessages {
		if pos[v] <= prefix[issuedAfter[v]] {
			t.Fatalf("message %d reached the broker at %d, before a message answered before it was sent (at %d)", v, pos[v], prefix[issuedAfter[v]])
		}
	}
}
