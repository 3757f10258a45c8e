package mqtt

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// countingConn counts the writes that reach the socket and can fail them.
type countingConn struct {
	net.Conn
	writes atomic.Int32
	fail   atomic.Pointer[error]
}

func (c *countingConn) Write(p []byte) (int, error) {
	c.writes.Add(1)
	if err := c.fail.Load(); err != nil {
		return 0, *err
	}
	return c.Conn.Write(p)
}

// pipe returns a coalescing connection over one end of a synchronous
// in-memory pipe (a socket write blocks until the peer reads it), the
// counting socket under it, and the peer end.
func pipe(t *testing.T, timeout time.Duration) (*coalescingConn, *countingConn, net.Conn) {
	t.Helper()
	a, b := net.Pipe()
	sock := &countingConn{Conn: a}
	cc := newCoalescingConn(sock, timeout)
	t.Cleanup(func() {
		_ = b.Close()
		_ = cc.Close()
	})
	return cc, sock, b
}

// readN reads exactly n bytes from c, bounded by a deadline.
func readN(t *testing.T, c net.Conn, n int) []byte {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, n)
	if _, err := io.ReadFull(c, buf); err != nil {
		t.Fatalf("read %d bytes: %v", n, err)
	}
	return buf
}

// packets returns n distinct small packets and their concatenation.
func packets(n int) ([][]byte, []byte) {
	var all bytes.Buffer
	ps := make([][]byte, n)
	for i := range ps {
		ps[i] = fmt.Appendf(nil, "packet %05d;", i)
		all.Write(ps[i])
	}
	return ps, all.Bytes()
}

func TestCoalescingConnGathersWritesInOrder(t *testing.T) {
	t.Parallel()
	cc, sock, peer := pipe(t, 5*time.Second)
	ps, want := packets(1000)
	for _, p := range ps {
		if n, err := cc.Write(p); err != nil || n != len(p) {
			t.Fatalf("Write = %d, %v", n, err)
		}
	}
	// Nothing was read yet: the first packet (at most) is blocked in the
	// socket and the rest gathered behind it.
	got := readN(t, peer, len(want))
	if !bytes.Equal(got, want) {
		t.Fatalf("bytes differ: got %q…, want %q…", got[:40], want[:40])
	}
	if w := sock.writes.Load(); w > 2 {
		t.Fatalf("1000 packets took %d socket writes, want at most 2", w)
	}
}

func TestCoalescingConnLonePacketLeavesAtOnce(t *testing.T) {
	t.Parallel()
	cc, _, peer := pipe(t, 5*time.Second)
	for i := range 3 {
		p := fmt.Appendf(nil, "ping %d", i)
		if _, err := cc.Write(p); err != nil {
			t.Fatal(err)
		}
		if got := readN(t, peer, len(p)); !bytes.Equal(got, p) {
			t.Fatalf("got %q, want %q", got, p)
		}
	}
}

func TestCoalescingConnCork(t *testing.T) {
	t.Parallel()
	cc, sock, peer := pipe(t, 5*time.Second)
	ps, want := packets(10)
	cc.Cork()
	for _, p := range ps {
		if _, err := cc.Write(p); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(20 * time.Millisecond) // give a (wrong) writer the chance to write
	if w := sock.writes.Load(); w != 0 {
		t.Fatalf("corked connection wrote %d times", w)
	}
	cc.Uncork()
	if got := readN(t, peer, len(want)); !bytes.Equal(got, want) {
		t.Fatalf("got %q, want %q", got, want)
	}
	if w := sock.writes.Load(); w != 1 {
		t.Fatalf("uncorked burst took %d socket writes, want 1", w)
	}
}

func TestCoalescingConnCorkWritesAtCorkBytes(t *testing.T) {
	t.Parallel()
	cc, _, peer := pipe(t, 5*time.Second)
	cc.Cork()
	defer cc.Uncork()
	big := bytes.Repeat([]byte{'x'}, corkBytes)
	if _, err := cc.Write(big); err != nil {
		t.Fatal(err)
	}
	// Still corked, but corkBytes have gathered: they are written.
	if got := readN(t, peer, len(big)); !bytes.Equal(got, big) {
		t.Fatal("corkBytes not written while corked")
	}
}

func TestCoalescingConnBackpressure(t *testing.T) {
	t.Parallel()
	cc, _, peer := pipe(t, 10*time.Second)
	chunk := bytes.Repeat([]byte{'y'}, 32<<10)
	const chunks = 3 * maxPending / (32 << 10) // three times what may be queued
	var wrote atomic.Int32
	done := make(chan error, 1)
	go func() {
		for range chunks {
			if _, err := cc.Write(chunk); err != nil {
				done <- err
				return
			}
			wrote.Add(1)
		}
		done <- nil
	}()
	// Without a reader, the writer must stop at about maxPending queued
	// (plus the write blocked in the socket).
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) && int(wrote.Load())*len(chunk) < maxPending {
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond)
	if n := int(wrote.Load()) * len(chunk); n > 2*maxPending+len(chunk) {
		t.Fatalf("%d bytes accepted with no reader, want about %d at most", n, 2*maxPending)
	}
	select {
	case err := <-done:
		t.Fatalf("all writes returned without a reader (err %v)", err)
	default:
	}
	got := readN(t, peer, chunks*len(chunk))
	if !bytes.Equal(got, bytes.Repeat(chunk, chunks)) {
		t.Fatal("bytes differ after backpressure")
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestCoalescingConnCloseFlushes(t *testing.T) {
	t.Parallel()
	cc, _, peer := pipe(t, 5*time.Second)
	ps, want := packets(200)
	for _, p := range ps {
		if _, err := cc.Write(p); err != nil {
			t.Fatal(err)
		}
	}
	closed := make(chan error, 1)
	go func() { closed <- cc.Close() }()
	_ = peer.SetReadDeadline(time.Now().Add(10 * time.Second))
	got, err := io.ReadAll(peer) // until the close after the flush
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("Close lost data: got %d bytes, want %d", len(got), len(want))
	}
	if err := <-closed; err != nil {
		t.Fatalf("Close: %v", err)
	}
	if _, err := cc.Write([]byte("late")); !errors.Is(err, errConnClosed) {
		t.Fatalf("Write after Close = %v, want errConnClosed", err)
	}
}

func TestCoalescingConnCloseBoundedWhenPeerStalls(t *testing.T) {
	t.Parallel()
	cc, _, _ := pipe(t, 100*time.Millisecond)
	if _, err := cc.Write([]byte("never read")); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	done := make(chan struct{})
	go func() { _ = cc.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Close hung on a peer that never reads")
	}
	if d := time.Since(start); d < 50*time.Millisecond {
		t.Fatalf("Close returned after %v without waiting for the flush", d)
	}
}

func TestCoalescingConnWriteErrorSurfaces(t *testing.T) {
	t.Parallel()
	cc, sock, peer := pipe(t, 5*time.Second)
	boom := errors.New("boom")
	sock.fail.Store(&boom)
	if _, err := cc.Write([]byte("lost")); err != nil {
		t.Fatalf("first Write = %v (the failure comes later)", err)
	}
	var err error
	for i := 0; i < 200 && err == nil; i++ {
		_, err = cc.Write([]byte("x"))
		time.Sleep(5 * time.Millisecond)
	}
	if !errors.Is(err, boom) {
		t.Fatalf("Write after a socket failure = %v, want %v", err, boom)
	}
	// The socket was closed, so paho's reader sees the loss.
	_ = peer.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := peer.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		t.Fatalf("peer read after failure = %v, want EOF", err)
	}
}

func TestCoalescingConnReadAndDeadlines(t *testing.T) {
	t.Parallel()
	cc, _, peer := pipe(t, 5*time.Second)
	go func() { _, _ = peer.Write([]byte("hello broker")) }()
	buf := make([]byte, 5)
	if _, err := io.ReadFull(cc, buf); err != nil || string(buf) != "hello" {
		t.Fatalf("read %q, %v", buf, err)
	}
	if _, err := io.ReadFull(cc, buf[:4]); err != nil || string(buf[:4]) != " bro" {
		t.Fatalf("read %q, %v", buf[:4], err)
	}
	// SetWriteDeadline does not affect the queued writes; SetDeadline
	// bounds reads.
	if err := cc.SetWriteDeadline(time.Now().Add(-time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, err := cc.Write([]byte("ok")); err != nil {
		t.Fatalf("Write after a past write deadline: %v", err)
	}
	if got := readN(t, peer, 2); string(got) != "ok" {
		t.Fatalf("peer got %q", got)
	}
	if _, err := io.ReadFull(cc, buf[:3]); err != nil { // "ker" is buffered
		t.Fatal(err)
	}
	if err := cc.SetDeadline(time.Now().Add(10 * time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	if _, err := cc.Read(buf); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read past the deadline = %v, want deadline exceeded", err)
	}
}

func TestCoalescingConnConcurrentWriters(t *testing.T) {
	t.Parallel()
	cc, _, peer := pipe(t, 5*time.Second)
	const writers, each = 8, 500
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				if _, err := cc.Write(fmt.Appendf(nil, "%d:%04d;", w, i)); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	got := readN(t, peer, writers*each*len("0:0000;"))
	wg.Wait()
	// Every writer's packets arrive whole and in its own order.
	next := make([]int, writers)
	for p := range bytes.SplitSeq(bytes.TrimSuffix(got, []byte(";")), []byte(";")) {
		var w, i int
		if _, err := fmt.Sscanf(string(p), "%d:%d", &w, &i); err != nil {
			t.Fatalf("torn packet %q: %v", p, err)
		}
		if i != next[w] {
			t.Fatalf("writer %d: packet %d after %d", w, i, next[w]-1)
		}
		next[w]++
	}
}
