package astarteemu

import (
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
)

// reservePort binds a TCP socket to addr (port 0 picks a free port) without
// listening on it, and returns it with the address it holds. While it is
// open, the port stays out of the kernel's automatic choice: a bind to
// port 0 anywhere on the host skips it (it conflicts with any socket, with
// or without SO_REUSEADDR, in the kernel's strict check for automatic
// ports) and so does the source port choice of connect(). An explicit
// listen on the port by the broker still succeeds: both sockets have
// SO_REUSEADDR (Go sets it on every listener) and this one does not
// listen. Connection attempts while the broker is stopped are refused, as
// without the reservation.
func reservePort(addr string) (io.Closer, string, error) {
	ta, err := net.ResolveTCPAddr("tcp", addr)
	if err != nil {
		return nil, "", err
	}
	family := syscall.AF_INET6
	var sa syscall.Sockaddr
	if ip4 := ta.IP.To4(); ip4 != nil {
		family = syscall.AF_INET
		s4 := &syscall.SockaddrInet4{Port: ta.Port}
		copy(s4.Addr[:], ip4)
		sa = s4
	} else {
		s6 := &syscall.SockaddrInet6{Port: ta.Port}
		copy(s6.Addr[:], ta.IP.To16())
		sa = s6
	}
	fd, err := syscall.Socket(family, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, "", os.NewSyscallError("socket", err)
	}
	f := os.NewFile(uintptr(fd), "astarteemu-broker-port")
	if err := syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_REUSEADDR, 1); err != nil {
		_ = f.Close()
		return nil, "", os.NewSyscallError("setsockopt", err)
	}
	if err := syscall.Bind(fd, sa); err != nil {
		_ = f.Close()
		return nil, "", os.NewSyscallError("bind", err)
	}
	bound, err := syscall.Getsockname(fd)
	if err != nil {
		_ = f.Close()
		return nil, "", os.NewSyscallError("getsockname", err)
	}
	var ip net.IP
	var port int
	switch b := bound.(type) {
	case *syscall.SockaddrInet4:
		ip, port = net.IP(b.Addr[:]), b.Port
	case *syscall.SockaddrInet6:
		ip, port = net.IP(b.Addr[:]), b.Port
	default:
		_ = f.Close()
		return nil, "", fmt.Errorf("getsockname: unexpected address %T", bound)
	}
	return f, net.JoinHostPort(ip.String(), fmt.Sprint(port)), nil
}
