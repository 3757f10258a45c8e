package astarteemu

import (
	"errors"
	"net"
	"syscall"
	"testing"
	"time"
)

// While the broker is stopped its port stays bound by the emulator: another
// socket cannot take it (here an explicit bind without SO_REUSEADDR, as a
// connect() or a listen on port 0 elsewhere would be refused it), a client
// is refused at once, and StartBroker gets it back.
func TestStoppedBrokerKeepsItsPort(t *testing.T) {
	t.Parallel()
	e := start(t, Options{})
	addr := e.BrokerAddr()
	if err := e.StopBroker(); err != nil {
		t.Fatal(err)
	}
	ta, err := net.ResolveTCPAddr("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(fd)
	sa := &syscall.SockaddrInet4{Port: ta.Port}
	copy(sa.Addr[:], ta.IP.To4())
	if err := syscall.Bind(fd, sa); !errors.Is(err, syscall.EADDRINUSE) {
		t.Fatalf("bind to the stopped broker's port %s: %v, want EADDRINUSE", addr, err)
	}
	if c, err := net.DialTimeout("tcp", addr, 5*time.Second); !errors.Is(err, syscall.ECONNREFUSED) {
		if c != nil {
			c.Close()
		}
		t.Fatalf("dial the stopped broker: %v, want connection refused", err)
	}
	if err := e.StartBroker(); err != nil {
		t.Fatal(err)
	}
	if e.BrokerAddr() != addr {
		t.Fatalf("restarted on %s, want %s", e.BrokerAddr(), addr)
	}
}
