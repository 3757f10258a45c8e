package astarteemu

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"sync"
	"time"
)

// pki is the emulator's local certificate authority. It signs the server
// certificate of the broker and Pairing API (for 127.0.0.1, ::1 and
// localhost) and the device certificates.
type pki struct {
	caKey   *ecdsa.PrivateKey
	caCert  *x509.Certificate
	caPEM   []byte
	pool    *x509.CertPool
	server  tls.Certificate
	mu      sync.Mutex
	serials int64
}

func newPKI() (*pki, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "Astarte emulator CA", Organization: []string{"connector-host testkit"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(10 * 365 * 24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	p := &pki{caKey: key, caCert: cert, pool: x509.NewCertPool(), serials: 1}
	p.caPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	p.pool.AddCert(cert)

	skey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	stmpl := &x509.Certificate{
		Subject:     pkix.Name{CommonName: "127.0.0.1"},
		NotBefore:   now.Add(-time.Hour),
		NotAfter:    now.Add(10 * 365 * 24 * time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:    []string{"localhost"},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("::1")},
	}
	sder, err := p.sign(stmpl, &skey.PublicKey)
	if err != nil {
		return nil, err
	}
	p.server = tls.Certificate{Certificate: [][]byte{sder}, PrivateKey: skey}
	return p, nil
}

// sign issues a certificate from tmpl for pub, with a fresh serial number.
func (p *pki) sign(tmpl *x509.Certificate, pub any) ([]byte, error) {
	p.mu.Lock()
	p.serials++
	tmpl.SerialNumber = big.NewInt(p.serials)
	p.mu.Unlock()
	return x509.CreateCertificate(rand.Reader, tmpl, p.caCert, pub, p.caKey)
}

// clientCert issues a device certificate with subject CN=cn, O=Devices.
func (p *pki) clientCert(cn string, pub any, notBefore, notAfter time.Time) ([]byte, error) {
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{CommonName: cn, Organization: []string{"Devices"}},
		NotBefore:   notBefore,
		NotAfter:    notAfter,
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	return p.sign(tmpl, pub)
}

// verify checks that cert was issued by the CA and is valid at now; it
// returns an Astarte-style cause when it is not.
func (p *pki) verify(cert *x509.Certificate, now time.Time) (cause string, err error) {
	if now.After(cert.NotAfter) {
		return "EXPIRED", fmt.Errorf("certificate expired at %s", cert.NotAfter.UTC().Format(time.RFC3339))
	}
	if now.Before(cert.NotBefore) {
		return "NOT_YET_VALID", fmt.Errorf("certificate valid from %s", cert.NotBefore.UTC().Format(time.RFC3339))
	}
	if _, err := cert.Verify(x509.VerifyOptions{Roots: p.pool, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		return "INVALID_ISSUER", err
	}
	return "", nil
}
