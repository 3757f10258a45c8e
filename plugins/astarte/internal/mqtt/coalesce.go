package mqtt

import (
	"bufio"
	"errors"
	"net"
	"sync"
	"time"
)

// corkBytes is how much a corked connection gathers before writing anyway.
const corkBytes = 64 << 10

// maxPending bounds the bytes a coalescing connection holds before a
// writer waits for the socket: enough for hundreds of small publishes per
// write, small enough that a slow broker pushes back on paho.
const maxPending = 256 << 10

// readBuffer is the size of the read buffer: paho reads a packet's header
// and body in small reads; the TLS connection keeps the rest of a record.
const readBuffer = 4 << 10

// keepSpare is the largest write buffer kept for reuse after a write; a
// larger one (a burst) is left to the collector, so an idle device holds
// little.
const keepSpare = 64 << 10

// errConnClosed is returned by writes after Close.
var errConnClosed = errors.New("mqtt: connection closed")

// coalescingConn is the TLS connection under paho. paho writes every packet
// with its own Write, which on a TLS socket is one record (encryption,
// framing) and one syscall per packet. Here Write only appends to a buffer
// and one goroutine writes whatever has gathered: a lone packet goes out at
// once, and while a write is in progress the packets behind it (a batch of
// publishes) gather and leave together in one record and one syscall.
//
// Reads are buffered so that paho's small reads of packet headers and
// bodies do not each call into TLS.
//
// A write error is returned by the next Write and closes the connection,
// so paho's reader sees it and reports the connection lost; packets whose
// write failed are handled like any lost in the socket: QoS 1 and 2 ones
// are not acknowledged and are sent again by the device's queue.
type coalescingConn struct {
	net.Conn
	r       *bufio.Reader
	timeout time.Duration // per underlying write

	mu     sync.Mutex
	cond   sync.Cond
	buf    []byte // gathered, not yet handed to the writer
	spare  []byte // the buffer the writer gives back
	corked int    // Cork calls not yet undone
	closed bool
	err    error
	done   chan struct{} // closed when the writer goroutine has ended
}

// newCoalescingConn wraps c; writeTimeout bounds each write to the socket
// (0: none).
func newCoalescingConn(c net.Conn, writeTimeout time.Duration) *coalescingConn {
	cc := &coalescingConn{Conn: c, r: bufio.NewReaderSize(c, readBuffer), timeout: writeTimeout, done: make(chan struct{})}
	cc.cond.L = &cc.mu
	go cc.writer()
	return cc
}

// Read reads through the buffer.
func (c *coalescingConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// Write queues p for the writer goroutine. It waits only while maxPending
// bytes are already queued.
func (c *coalescingConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for c.err == nil && !c.closed && len(c.buf) >= maxPending {
		c.cond.Wait()
	}
	switch {
	case c.err != nil:
		return 0, c.err
	case c.closed:
		return 0, errConnClosed
	}
	c.buf = append(c.buf, p...)
	c.cond.Broadcast()
	return len(p), nil
}

// writer writes what Write gathered until the connection is closed and
// everything queued before Close is written (or a write fails).
func (c *coalescingConn) writer() {
	defer close(c.done)
	c.mu.Lock()
	for {
		for (len(c.buf) == 0 || c.corked > 0 && len(c.buf) < corkBytes) && !c.closed && c.err == nil {
			c.cond.Wait()
		}
		if len(c.buf) == 0 || c.err != nil {
			c.mu.Unlock()
			return
		}
		out := c.buf
		c.buf, c.spare = c.spare[:0], nil
		c.cond.Broadcast() // writers waiting on maxPending
		c.mu.Unlock()

		var err error
		if c.timeout > 0 {
			err = c.Conn.SetWriteDeadline(time.Now().Add(c.timeout))
		}
		if err == nil {
			_, err = c.Conn.Write(out)
		}

		c.mu.Lock()
		if cap(out) <= keepSpare {
			c.spare = out[:0]
		}
		if err != nil {
			c.err = err
			c.cond.Broadcast()
			c.mu.Unlock()
			_ = c.Conn.Close() // paho's reader fails and reports the loss
			return
		}
	}
}

// closeFlushTimeout bounds how long Close waits for queued packets when the
// connection has no write timeout.
const closeFlushTimeout = 10 * time.Second

// Cork holds writes back until the matching Uncork (or until corkBytes have
// gathered), so that a burst of publishes leaves in one write. Every Cork
// must be undone by an Uncork.
func (c *coalescingConn) Cork() {
	c.mu.Lock()
	c.corked++
	c.mu.Unlock()
}

// Uncork undoes one Cork; the gathered packets are written when no Cork is
// left.
func (c *coalescingConn) Uncork() {
	c.mu.Lock()
	c.corked--
	c.cond.Broadcast()
	c.mu.Unlock()
}

// Close writes what is queued (each write bounded by the write timeout),
// then closes the socket.
func (c *coalescingConn) Close() error {
	c.mu.Lock()
	c.closed = true
	c.cond.Broadcast()
	c.mu.Unlock()
	wait := c.timeout
	if wait <= 0 {
		wait = closeFlushTimeout
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-c.done:
	case <-t.C:
	}
	err := c.Conn.Close() // also ends a write still blocked in the socket
	<-c.done
	return err
}

// SetWriteDeadline is a no-op: writes happen later, in the writer
// goroutine, each bounded by the connection's write timeout.
func (c *coalescingConn) SetWriteDeadline(time.Time) error { return nil }

// SetDeadline sets the read deadline (see SetWriteDeadline).
func (c *coalescingConn) SetDeadline(t time.Time) error { return c.SetReadDeadline(t) }
