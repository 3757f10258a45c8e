package pairing

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"time"
)

// CommonName is the certificate subject CN of a device: "realm/device_id".
func CommonName(realm, deviceID string) string { return realm + "/" + deviceID }

// GenerateKey creates a device key: EC P-256.
func GenerateKey() (*ecdsa.PrivateKey, error) {
	return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
}

// CreateCSR returns a PEM certificate signing request for the device key with
// subject O=Devices, CN=realm/device_id.
func CreateCSR(key *ecdsa.PrivateKey, realm, deviceID string) ([]byte, error) {
	tmpl := &x509.CertificateRequest{
		Subject: pkix.Name{
			Organization: []string{"Devices"},
			CommonName:   CommonName(realm, deviceID),
		},
		SignatureAlgorithm: x509.ECDSAWithSHA256,
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		return nil, fmt.Errorf("csr: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}), nil
}

// ParseCertificate reads the first certificate of a PEM bundle.
func ParseCertificate(certPEM []byte) (*x509.Certificate, error) {
	block, _ := pem.Decode(certPEM)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, errors.New("certificate: not a PEM CERTIFICATE block")
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("certificate: %w", err)
	}
	return c, nil
}

// Certificate problems reported by CheckCertificate (match with errors.Is).
var (
	ErrCertificateExpired     = errors.New("certificate expired")
	ErrCertificateNotYetValid = errors.New("certificate not yet valid")
	ErrCertificateKeyMismatch = errors.New("certificate does not match the device key")
	ErrCertificateSubject     = errors.New("certificate subject is not this device")
)

// CheckCertificate checks a device certificate locally: it is within its
// validity period at now (with margin subtracted from NotAfter), its public
// key is the device key, and its CN is realm/device_id.
func CheckCertificate(cert *x509.Certificate, key *ecdsa.PrivateKey, realm, deviceID string, now time.Time, margin time.Duration) error {
	if now.Before(cert.NotBefore) {
		return fmt.Errorf("%w: valid from %s", ErrCertificateNotYetValid, cert.NotBefore.UTC().Format(time.RFC3339))
	}
	if !now.Add(margin).Before(cert.NotAfter) {
		return fmt.Errorf("%w: valid until %s", ErrCertificateExpired, cert.NotAfter.UTC().Format(time.RFC3339))
	}
	pub, ok := cert.PublicKey.(*ecdsa.PublicKey)
	if !ok || key == nil || !pub.Equal(&key.PublicKey) {
		return ErrCertificateKeyMismatch
	}
	if cert.Subject.CommonName != CommonName(realm, deviceID) {
		return fmt.Errorf("%w: CN is %q", ErrCertificateSubject, cert.Subject.CommonName)
	}
	return nil
}
