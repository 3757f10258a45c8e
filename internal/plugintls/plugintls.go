// Package plugintls is the mutual TLS between the host and a plugin
// process: go-plugin's AutoMTLS handshake, with ECDSA P-256 certificates
// made by the host for both ends instead of the P-521 ones go-plugin
// generates on each side (ADR 0007).
//
// go-plugin's AutoMTLS makes each side generate a P-521 key and a
// self-signed certificate at every launch, then sign and verify with them
// in the TLS handshake. P-521 has no assembly in Go: on a small machine
// that is most of a plugin's cold start. Here the host generates both
// certificates with P-256 (a few hundred microseconds in all):
//
//   - its own, sent as PLUGIN_CLIENT_CERT as go-plugin does, so a plugin
//     that only knows go-plugin's AutoMTLS still works (it answers with its
//     own certificate in the handshake line, which go-plugin then trusts);
//   - the plugin's certificate and key, written to a pipe the plugin
//     inherits (EnvFD names its descriptor). An sdk plugin reads it and
//     serves with it (ServerConfig), so it generates nothing. The key is
//     never in the environment or on disk; the pipe is as private as the
//     stdout pipe that carries go-plugin's handshake line.
package plugintls

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"os"
	"strconv"
	"time"
)

// EnvFD names the environment variable holding the number of the file
// descriptor from which a plugin reads its certificate and key (PEM).
const EnvFD = "CONNECTOR_PLUGIN_TLS_FD"

// EnvClientCert is go-plugin's variable for the host's certificate (PEM).
const EnvClientCert = "PLUGIN_CLIENT_CERT"

// serverName is the name both certificates carry and both ends check, as
// go-plugin's AutoMTLS does.
const serverName = "localhost"

// Pair is the key material of one plugin launch.
type Pair struct {
	// Host is the host's certificate and key.
	Host tls.Certificate
	// HostCertPEM is the host's certificate for PLUGIN_CLIENT_CERT.
	HostCertPEM []byte
	// PluginPEM is the plugin's certificate and key, for the pipe.
	PluginPEM  []byte
	pluginCert *x509.Certificate
}

// New generates the two certificates of one launch.
func New() (*Pair, error) {
	_, hostDER, hostKeyDER, err := selfSigned()
	if err != nil {
		return nil, err
	}
	plug, plugDER, plugKeyDER, err := selfSigned()
	if err != nil {
		return nil, err
	}
	p := &Pair{
		HostCertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: hostDER}),
		PluginPEM: append(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: plugDER}),
			pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: plugKeyDER})...),
		pluginCert: plug,
	}
	p.Host, err = tls.X509KeyPair(p.HostCertPEM, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: hostKeyDER}))
	if err != nil {
		return nil, err
	}
	return p, nil
}

// ClientConfig is the host's side: its certificate, and the plugin's as the
// only root and client CA. When the plugin answers the handshake with a
// certificate of its own (go-plugin's AutoMTLS), go-plugin replaces both
// pools with that one.
func (p *Pair) ClientConfig() *tls.Config {
	pool := x509.NewCertPool()
	pool.AddCert(p.pluginCert)
	return &tls.Config{
		Certificates: []tls.Certificate{p.Host},
		RootCAs:      pool,
		ClientCAs:    pool,
		ClientAuth:   tls.RequireAndVerifyClientCert,
		MinVersion:   tls.VersionTLS12,
		ServerName:   serverName,
	}
}

// Pipe writes the plugin's key material into a new pipe and returns its
// read end, for exec.Cmd.ExtraFiles. The caller closes it once the plugin
// has started.
func (p *Pair) Pipe() (*os.File, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	// A pipe buffers 64 KiB; the material is about 1 KiB, so this write
	// does not wait for the reader.
	_, err = w.Write(p.PluginPEM)
	if cerr := w.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = r.Close()
		return nil, fmt.Errorf("writing the plugin's TLS material: %w", err)
	}
	return r, nil
}

// ServerConfig is the plugin's side. It returns (nil, nil) when the host
// did not send key material (EnvFD unset): the plugin then falls back to
// go-plugin's own AutoMTLS. Errors name what is wrong and never include
// key material.
func ServerConfig() (*tls.Config, error) {
	fdText := os.Getenv(EnvFD)
	if fdText == "" {
		return nil, nil
	}
	// Not for the plugin's own child processes: the descriptor is read once.
	_ = os.Unsetenv(EnvFD)
	fd, err := strconv.Atoi(fdText)
	if err != nil || fd < 3 {
		return nil, fmt.Errorf("%s=%q: not a file descriptor number ≥ 3", EnvFD, fdText)
	}
	f := os.NewFile(uintptr(fd), "plugin-tls")
	if f == nil {
		return nil, fmt.Errorf("%s=%d: not an open file descriptor", EnvFD, fd)
	}
	material, err := io.ReadAll(io.LimitReader(f, 64<<10))
	_ = f.Close()
	if err != nil {
		return nil, fmt.Errorf("reading the TLS material from descriptor %d: %w", fd, err)
	}
	cert, err := tls.X509KeyPair(material, material)
	if err != nil {
		return nil, fmt.Errorf("the TLS material from descriptor %d is not a certificate and key: %w", fd, err)
	}
	hostPEM := os.Getenv(EnvClientCert)
	pool := x509.NewCertPool()
	if hostPEM == "" || !pool.AppendCertsFromPEM([]byte(hostPEM)) {
		return nil, errors.New(EnvClientCert + " holds no certificate: the host's certificate is needed to verify it")
	}
	return &tls.Config{
		Certificates: []tls.Certificate{cert},
		ClientCAs:    pool,
		RootCAs:      pool,
		ClientAuth:   tls.RequireAndVerifyClientCert,
		MinVersion:   tls.VersionTLS12,
		ServerName:   serverName,
	}, nil
}

// selfSigned makes a P-256 key and a self-signed certificate for
// "localhost", usable by either end (client and server auth) and as its
// own root, as go-plugin's AutoMTLS certificates are.
func selfSigned() (*x509.Certificate, []byte, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, nil, err
	}
	sn, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, nil, nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		Subject:               pkix.Name{CommonName: serverName, Organization: []string{"connector-host"}},
		DNSNames:              []string{serverName},
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		SerialNumber:          sn,
		NotBefore:             now.Add(-30 * time.Second),
		// As long as go-plugin's: gRPC may redial a long-running plugin.
		NotAfter: now.Add(30 * 365 * 24 * time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, nil, nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, nil, err
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, nil, nil, err
	}
	return cert, der, keyDER, nil
}
