package store

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

func open(t *testing.T, path string) *Store {
	t.Helper()
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestProperties(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "dir with space", "astarte.db")
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	s := open(t, path)
	for _, f := range []string{path, path + "-wal"} {
		if st, err := os.Stat(f); err != nil || st.Mode().Perm() != 0o600 {
			t.Fatalf("%s: mode %v %v, want 0600", f, st.Mode(), err)
		}
	}
	p := Property{Device: "d1", Interface: "com.ex.P", Path: "/a", Major: 1, Ownership: "device", Value: []byte{1}, Pending: true}
	if err := s.SetProperty(ctx, p); err != nil {
		t.Fatal(err)
	}
	if err := s.SetProperty(ctx, Property{Device: "d1", Interface: "com.ex.S", Path: "/b", Major: 2, Ownership: "server", Value: []byte{2}}); err != nil {
		t.Fatal(err)
	}
	if err := s.SetProperty(ctx, Property{Device: "d2", Interface: "com.ex.P", Path: "/a", Major: 1, Ownership: "device", Value: []byte{3}}); err != nil {
		t.Fatal(err)
	}
	if err := s.SetProperty(ctx, Property{Device: "d1", Interface: "x", Path: "/y"}); err == nil {
		t.Fatal("empty value accepted")
	}
	got, ok, err := s.Property(ctx, "d1", "com.ex.P", "/a", 1)
	if err != nil || !ok || string(got.Value) != "\x01" || !got.Pending || got.Ownership != "device" {
		t.Fatalf("Property = %+v %v %v", got, ok, err)
	}
	// A stored value with another major is dropped on load.
	if _, ok, _ := s.Property(ctx, "d1", "com.ex.S", "/b", 3); ok {
		t.Fatal("value of another major returned")
	}
	if _, ok, _ := s.Property(ctx, "d1", "com.ex.S", "/b", 2); ok {
		t.Fatal("value of another major not deleted")
	}
	// MarkSent clears pending only when the value is unchanged.
	if err := s.MarkSent(ctx, "d1", "com.ex.P", "/a", []byte{9}); err != nil {
		t.Fatal(err)
	}
	if got, _, _ := s.Property(ctx, "d1", "com.ex.P", "/a", 1); !got.Pending {
		t.Fatal("pending cleared for a different value")
	}
	if err := s.MarkSent(ctx, "d1", "com.ex.P", "/a", []byte{1}); err != nil {
		t.Fatal(err)
	}
	if got, _, _ := s.Property(ctx, "d1", "com.ex.P", "/a", 1); got.Pending {
		t.Fatal("pending not cleared")
	}
	// Unset while offline leaves a pending tombstone.
	if err := s.MarkUnsetPending(ctx, "d1", "com.ex.P", "/a", 1); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := s.Property(ctx, "d1", "com.ex.P", "/a", 1); ok {
		t.Fatal("unset property still readable")
	}
	all, _ := s.Properties(ctx, "d1")
	if len(all) != 1 || all[0].Value != nil || !all[0].Pending {
		t.Fatalf("tombstone %+v", all)
	}
	if err := s.MarkSent(ctx, "d1", "com.ex.P", "/a", nil); err != nil {
		t.Fatal(err)
	}
	if all, _ := s.Properties(ctx, "d1"); len(all) != 0 {
		t.Fatalf("tombstone not removed: %+v", all)
	}

	// MarkAllSent, DropOtherMajors, DeleteInterfaceProperties, reopen.
	for k, path := range []string{"/x", "/y", "/z"} {
		if err := s.SetProperty(ctx, Property{Device: "d1", Interface: "com.ex.P", Path: path, Major: 1 + k%2, Ownership: "device", Value: []byte{byte(k + 1)}, Pending: true}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.MarkUnsetPending(ctx, "d1", "com.ex.P", "/w", 1); err != nil {
		t.Fatal(err)
	}
	if err := s.MarkAllSent(ctx, "d1"); err != nil {
		t.Fatal(err)
	}
	all, _ = s.Properties(ctx, "d1")
	if len(all) != 3 || all[0].Path != "/x" || all[0].Pending || all[2].Path != "/z" {
		t.Fatalf("after MarkAllSent %+v", all)
	}
	if n, err := s.DropOtherMajors(ctx, "d1", "com.ex.P", 1); err != nil || n != 1 {
		t.Fatalf("DropOtherMajors = %d %v", n, err)
	}
	s.Close()
	s = open(t, path)
	all, _ = s.Properties(ctx, "d1")
	if len(all) != 2 || all[0].Path != "/x" || all[1].Path != "/z" {
		t.Fatalf("after reopen %+v", all)
	}
	if err := s.DeleteInterfaceProperties(ctx, "d1", "com.ex.P"); err != nil {
		t.Fatal(err)
	}
	if all, _ := s.Properties(ctx, "d1"); len(all) != 0 {
		t.Fatal("interface properties not deleted")
	}
	if all, _ := s.Properties(ctx, "d2"); len(all) != 1 {
		t.Fatal("other device touched")
	}
	if err := s.DeleteProperty(ctx, "d2", "com.ex.P", "/a"); err != nil {
		t.Fatal(err)
	}
	if all, _ := s.Properties(ctx, "d2"); len(all) != 0 {
		t.Fatal("DeleteProperty failed")
	}
}

func TestQueue(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := open(t, filepath.Join(t.TempDir(), "q.db"))
	now := time.Now()
	var ids []int64
	for k := 0; k < 10; k++ {
		m := QueuedMessage{Device: "d1", Interface: "com.ex.D", Path: fmt.Sprintf("/v%d", k), Major: 1, QoS: 1, Payload: []byte{byte(k)}}
		if k%3 == 0 {
			m.Expires = now.Add(-time.Second) // already expired
		}
		if k == 1 {
			m.Expires = now.Add(time.Hour)
			m.Object = true
		}
		id, err := s.Enqueue(ctx, m)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	if _, err := s.Enqueue(ctx, QueuedMessage{Device: "d2", Interface: "com.ex.D", Path: "/o", Payload: []byte{1}}); err != nil {
		t.Fatal(err)
	}
	if n, _ := s.QueueLen(ctx, "d1"); n != 10 {
		t.Fatalf("QueueLen = %d", n)
	}
	msgs, expired, err := s.Peek(ctx, "d1", 4, now)
	if err != nil || expired != 4 {
		t.Fatalf("Peek expired=%d err=%v", expired, err)
	}
	if len(msgs) != 4 || msgs[0].Path != "/v1" || msgs[1].Path != "/v2" || msgs[2].Path != "/v4" || msgs[3].Path != "/v5" {
		t.Fatalf("Peek order %+v", msgs)
	}
	if msgs[0].ID != ids[1] || msgs[3].ID != ids[5] {
		t.Fatalf("Peek ids %d, %d; Enqueue returned %d, %d", msgs[0].ID, msgs[3].ID, ids[1], ids[5])
	}
	if !msgs[0].Object || msgs[0].Expires.IsZero() || msgs[1].Object || !msgs[1].Expires.IsZero() || msgs[0].QoS != 1 || msgs[0].Major != 1 {
		t.Fatalf("fields %+v", msgs[:2])
	}
	if err := s.Ack(ctx, "d1", msgs[0].ID, msgs[1].ID); err != nil {
		t.Fatal(err)
	}
	msgs, expired, _ = s.Peek(ctx, "d1", 100, now)
	if expired != 0 || len(msgs) != 4 || msgs[0].Path != "/v4" {
		t.Fatalf("after ack %+v", msgs)
	}
	// Acks of another device's ids do nothing.
	if err := s.Ack(ctx, "d2", msgs[0].ID); err != nil {
		t.Fatal(err)
	}
	if n, _ := s.QueueLen(ctx, "d1"); n != 4 {
		t.Fatalf("cross-device ack deleted: %d", n)
	}
	if _, err := s.Enqueue(ctx, QueuedMessage{Device: "d1"}); err == nil {
		t.Fatal("empty message accepted")
	}
	s.Close()
	if _, err := s.Enqueue(ctx, QueuedMessage{Device: "d1", Interface: "i", Payload: []byte{1}}); !errors.Is(err, ErrClosed) {
		t.Fatalf("enqueue after close = %v", err)
	}
}

func TestConcurrentEnqueueGroupCommit(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := open(t, filepath.Join(t.TempDir(), "q.db"))
	const writers, each = 8, 100
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			last := int64(0)
			for k := 0; k < each; k++ {
				id, err := s.Enqueue(ctx, QueuedMessage{Device: "d", Interface: "i", Path: fmt.Sprintf("/%d/%d", w, k), Payload: []byte{1}})
				if err != nil {
					errs <- err
					return
				}
				if id <= last {
					errs <- fmt.Errorf("writer %d: id %d after %d", w, id, last)
					return
				}
				last = id
			}
		}(w)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	msgs, _, _ := s.Peek(ctx, "d", writers*each+1, time.Now())
	if len(msgs) != writers*each {
		t.Fatalf("%d messages", len(msgs))
	}
	// Each writer's messages are in its own order.
	next := make([]int, writers)
	for _, m := range msgs {
		var w, k int
		fmt.Sscanf(m.Path, "/%d/%d", &w, &k)
		if k != next[w] {
			t.Fatalf("writer %d: got %d, want %d", w, k, next[w])
		}
		next[w]++
	}
}

// EnqueueAll from concurrent callers: every message stored, each caller's
// in its own order; invalid ones and those after a cancelled ctx are
// reported, not stored.
func TestEnqueueAllKeepsOrder(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := open(t, filepath.Join(t.TempDir(), "q.db"))
	const callers, each = 4, 1500
	var wg sync.WaitGroup
	errs := make(chan error, callers)
	for c := 0; c < callers; c++ {
		wg.Add(1)
		go func(c int) {
			defer wg.Done()
			ms := make([]QueuedMessage, each)
			for k := range ms {
				ms[k] = QueuedMessage{Device: "d", Interface: "i", Path: fmt.Sprintf("/%d/%d", c, k), Payload: []byte{1}}
			}
			for k, err := range s.EnqueueAll(ctx, ms) {
				if err != nil {
					errs <- fmt.Errorf("caller %d message %d: %w", c, k, err)
					return
				}
			}
		}(c)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	msgs, _, _ := s.Peek(ctx, "d", callers*each+1, time.Now())
	if len(msgs) != callers*each {
		t.Fatalf("%d messages", len(msgs))
	}
	next := make([]int, callers)
	for _, m := range msgs {
		var c, k int
		fmt.Sscanf(m.Path, "/%d/%d", &c, &k)
		if k != next[c] {
			t.Fatalf("caller %d: got %d, want %d", c, k, next[c])
		}
		next[c]++
	}

	got := s.EnqueueAll(ctx, []QueuedMessage{{Device: "e", Interface: "i", Payload: []byte{1}}, {Device: "e", Interface: "i"}})
	if got[0] != nil || got[1] == nil {
		t.Fatalf("valid then payload-less: %v", got)
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	// A cancelled ctx may still hand over the first messages (the writer
	// is ready), but once one is refused every later one is too.
	ms := make([]QueuedMessage, 3000)
	for k := range ms {
		ms[k] = QueuedMessage{Device: "f", Interface: "i", Payload: []byte{1}}
	}
	res := s.EnqueueAll(cancelled, ms)
	stored := 0
	for k, err := range res {
		if err == nil {
			if k != stored {
				t.Fatalf("message %d stored after a refused one", k)
			}
			stored++
		} else if !errors.Is(err, context.Canceled) {
			t.Fatalf("message %d: %v", k, err)
		}
	}
	if n, _ := s.QueueLen(ctx, "f"); n != stored {
		t.Fatalf("queue has %d, %d reported stored", n, stored)
	}
	s.Close()
	if res := s.EnqueueAll(ctx, ms[:1]); !errors.Is(res[0], ErrClosed) {
		t.Fatalf("after close: %v", res)
	}
}

func TestMeta(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := open(t, filepath.Join(t.TempDir(), "m.db"))
	if _, ok, err := s.Meta(ctx, "d", "node_id"); ok || err != nil {
		t.Fatal("meta before set")
	}
	if err := s.SetMeta(ctx, "d", "node_id", "a"); err != nil {
		t.Fatal(err)
	}
	if err := s.SetMeta(ctx, "d", "node_id", "b"); err != nil {
		t.Fatal(err)
	}
	if v, ok, _ := s.Meta(ctx, "d", "node_id"); !ok || v != "b" {
		t.Fatalf("meta = %q", v)
	}
	for _, k := range []string{"interface:a.B", "interface:c.D", "interfacex", "other"} {
		if err := s.SetMeta(ctx, "d", k, k+"!"); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.SetMeta(ctx, "e", "interface:z.Z", "no"); err != nil {
		t.Fatal(err)
	}
	got, err := s.MetaPrefix(ctx, "d", "interface:")
	if err != nil || len(got) != 2 || got["interface:a.B"] != "interface:a.B!" || got["interface:c.D"] != "interface:c.D!" {
		t.Fatalf("MetaPrefix = %v %v", got, err)
	}
	if all, err := s.DevicesWithMeta(ctx, "other"); err != nil || len(all) != 1 || all["d"] != "other!" {
		t.Fatalf("DevicesWithMeta = %v %v", all, err)
	}
	if err := s.DeleteMeta(ctx, "d", "interface:a.B"); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.MetaPrefix(ctx, "d", "interface:"); len(got) != 1 {
		t.Fatalf("after DeleteMeta %v", got)
	}
	if _, err := s.Enqueue(ctx, QueuedMessage{Device: "d", Interface: "i", Path: "/p", Payload: []byte{1}}); err != nil {
		t.Fatal(err)
	}
	if err := s.ForgetDevice(ctx, "d"); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := s.Meta(ctx, "d", "node_id"); ok {
		t.Fatal("meta survived ForgetDevice")
	}
	if n, _ := s.QueueLen(ctx, "d"); n != 0 {
		t.Fatal("queue survived ForgetDevice")
	}
}

func TestOpenErrors(t *testing.T) {
	t.Parallel()
	if _, err := Open(""); err == nil {
		t.Fatal("empty path accepted")
	}
	if _, err := Open(filepath.Join(t.TempDir(), "missing", "dir", "x.db")); err == nil {
		t.Fatal("missing directory accepted")
	}
	// A database from a newer schema is refused.
	path := filepath.Join(t.TempDir(), "new.db")
	s := open(t, path)
	if _, err := s.db.Exec("PRAGMA user_version = 99"); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if _, err := Open(path); err == nil || !strings.Contains(err.Error(), "newer") {
		t.Fatalf("newer schema = %v", err)
	}
}

const crashEnv = "ASTARTE_STORE_CRASH_HELPER"

func TestMain(m *testing.M) {
	if path := os.Getenv(crashEnv); path != "" {
		crashHelper(path)
		return
	}
	os.Exit(m.Run())
}

// crashHelper is the child process of TestKill9KeepsAcknowledged: it
// enqueues until killed, printing each acknowledged id.
func crashHelper(path string) {
	s, err := Open(path)
	if err != nil {
		fmt.Println("error", err)
		os.Exit(2)
	}
	out := bufio.NewWriter(os.Stdout)
	for k := 0; ; k++ {
		id, err := s.Enqueue(context.Background(), QueuedMessage{Device: "d", Interface: "i", Path: "/" + strconv.Itoa(k), Payload: []byte{byte(k)}})
		if err != nil {
			fmt.Fprintln(out, "error", err)
			out.Flush()
			os.Exit(2)
		}
		if k%2 == 0 {
			if err := s.SetProperty(context.Background(), Property{Device: "d", Interface: "p", Path: "/last", Major: 1, Ownership: "device", Value: []byte(strconv.Itoa(k))}); err != nil {
				os.Exit(2)
			}
		}
		fmt.Fprintln(out, "ack", id, k)
		out.Flush()
	}
}

func TestKill9KeepsAcknowledged(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "crash.db")
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), crashEnv+"="+path)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(stdout)
	var acked []int64
	lastK := -1
	for sc.Scan() && len(acked) < 300 {
		var id int64
		var k int
		if _, err := fmt.Sscanf(sc.Text(), "ack %d %d", &id, &k); err != nil {
			cmd.Process.Kill()
			t.Fatalf("helper said %q", sc.Text())
		}
		acked = append(acked, id)
		lastK = k
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	if len(acked) < 300 {
		t.Fatalf("helper acknowledged only %d", len(acked))
	}
	s := open(t, path)
	msgs, _, err := s.Peek(context.Background(), "d", 1<<30, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	have := map[int64]bool{}
	for k, m := range msgs {
		have[m.ID] = true
		if m.Path != "/"+strconv.Itoa(k) {
			t.Fatalf("message %d has path %s: order or content lost", k, m.Path)
		}
	}
	for _, id := range acked {
		if !have[id] {
			t.Fatalf("acknowledged message %d lost after kill -9 (%d acked, %d on disk)", id, len(acked), len(msgs))
		}
	}
	p, ok, err := s.Property(context.Background(), "d", "p", "/last", 1)
	if err != nil || !ok {
		t.Fatalf("property lost: %v", err)
	}
	if v, _ := strconv.Atoi(string(p.Value)); v < lastK-1 {
		t.Fatalf("property value %d older than last acknowledged %d", v, lastK)
	}
}
