package plugintls

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/tls"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// handOver gives f's descriptor away as a plugin inherits it: a duplicate
// that ServerConfig owns (and closes), f itself closed here.
func handOver(t *testing.T, f *os.File) string {
	t.Helper()
	fd, err := syscall.Dup(int(f.Fd()))
	if err != nil {
		t.Fatal(err)
	}
	_ = f.Close()
	return strconv.Itoa(fd)
}

// serveWith sets the plugin's environment as the host does and returns
// ServerConfig's result.
func serveWith(t *testing.T, p *Pair) (*tls.Config, error) {
	t.Helper()
	r, err := p.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv(EnvClientCert, string(p.HostCertPEM))
	t.Setenv(EnvFD, handOver(t, r))
	return ServerConfig()
}

func TestHandshakeBothWays(t *testing.T) {
	p, err := New()
	if err != nil {
		t.Fatal(err)
	}
	srv, err := serveWith(t, p)
	if err != nil || srv == nil {
		t.Fatalf("ServerConfig: %v %v", srv, err)
	}
	if os.Getenv(EnvFD) != "" {
		t.Error("the descriptor variable stays set for the plugin's children")
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", srv)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = ln.Close() }()
	done := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			done <- err
			return
		}
		defer func() { _ = c.Close() }()
		tc := c.(*tls.Conn)
		if err := tc.Handshake(); err != nil {
			done <- err
			return
		}
		_, err = tc.Write([]byte("ok"))
		done <- err
	}()
	c, err := tls.Dial("tcp", ln.Addr().String(), p.ClientConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Close() }()
	b, err := io.ReadAll(io.LimitReader(c, 2))
	if err != nil || string(b) != "ok" {
		t.Fatalf("read %q %v", b, err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	peer := c.ConnectionState().PeerCertificates[0].PublicKey.(*ecdsa.PublicKey)
	if peer.Curve != elliptic.P256() {
		t.Errorf("plugin certificate on %s, want P-256", peer.Curve.Params().Name)
	}
}

// A stranger's certificate (another launch's) is refused both ways: each
// launch trusts only its own pair.
func TestOtherLaunchRefused(t *testing.T) {
	p1, err := New()
	if err != nil {
		t.Fatal(err)
	}
	p2, err := New()
	if err != nil {
		t.Fatal(err)
	}
	srv, err := serveWith(t, p1)
	if err != nil {
		t.Fatal(err)
	}
	a, b := net.Pipe()
	defer func() { _ = a.Close() }()
	defer func() { _ = b.Close() }()
	go func() { _ = tls.Server(a, srv).Handshake(); _ = a.Close() }()
	if err := tls.Client(b, p2.ClientConfig()).Handshake(); err == nil {
		t.Fatal("a client of another launch completed the handshake")
	}
}

func TestServerConfigErrors(t *testing.T) {
	p, err := New()
	if err != nil {
		t.Fatal(err)
	}
	junk := func(content string) string {
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		_, _ = w.WriteString(content)
		_ = w.Close()
		return handOver(t, r)
	}
	host := string(p.HostCertPEM)
	cases := []struct {
		name, fd, cert, want string
	}{
		{"not a number", "three", host, "not a file descriptor number"},
		{"stdio", "2", host, "not a file descriptor number"},
		{"not PEM", junk("hello"), host, "is not a certificate and key"},
		{"certificate only", junk(host), host, "is not a certificate and key"},
		{"no host certificate", junk(string(p.PluginPEM)), "", "PLUGIN_CLIENT_CERT holds no certificate"},
		{"host certificate not PEM", junk(string(p.PluginPEM)), "garbage", "PLUGIN_CLIENT_CERT holds no certificate"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Setenv(EnvFD, c.fd)
			t.Setenv(EnvClientCert, c.cert)
			cfg, err := ServerConfig()
			if err == nil || cfg != nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v %v, want an error with %q", cfg, err, c.want)
			}
			if strings.Contains(err.Error(), "PRIVATE KEY") {
				t.Fatalf("error shows key material: %v", err)
			}
		})
	}
	t.Run("unset: go-plugin's AutoMTLS", func(t *testing.T) {
		t.Setenv(EnvFD, "")
		if cfg, err := ServerConfig(); cfg != nil || err != nil {
			t.Fatalf("got %v %v, want nil, nil", cfg, err)
		}
	})
}
