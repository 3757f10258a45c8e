package pairing

import (
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
)

// KeyStore keeps each device's private key, certificate and credentials
// secret in files under a directory: <dir>/<realm>/<device_id>/{device.key,
// device.crt, credentials_secret}. Files are 0600 and directories 0700;
// writes are atomic (temporary file, fsync, rename).
type KeyStore struct {
	dir string
	// keyMu makes Key's load-or-create atomic, so that concurrent calls for
	// a new device all get the one key that is stored.
	keyMu sync.Mutex
}

// ErrNoCredentials is returned when a device has no stored key, certificate
// or credentials secret.
var ErrNoCredentials = errors.New("not stored")

const (
	keyFile    = "device.key"
	certFile   = "device.crt"
	secretFile = "credentials_secret"
)

// OpenKeyStore returns a store rooted at dir, creating it (0700) if needed.
func OpenKeyStore(dir string) (*KeyStore, error) {
	if dir == "" {
		return nil, errors.New("key store: empty directory")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("key store: %w", err)
	}
	return &KeyStore{dir: dir}, nil
}

func (s *KeyStore) deviceDir(realm, deviceID string) (string, error) {
	if err := ValidateRealm(realm); err != nil {
		return "", err
	}
	if err := ValidateDeviceID(deviceID); err != nil {
		return "", err
	}
	return filepath.Join(s.dir, realm, deviceID), nil
}

func (s *KeyStore) write(realm, deviceID, name string, data []byte) error {
	dir, err := s.deviceDir(realm, deviceID)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("key store: %w", err)
	}
	f, err := os.CreateTemp(dir, "."+name+".tmp*")
	if err != nil {
		return fmt.Errorf("key store: %w", err)
	}
	tmp := f.Name()
	// After the rename there is nothing left to remove; before it, this
	// removes a partly written file.
	defer func() { _ = os.Remove(tmp) }()
	if err := f.Chmod(0o600); err != nil {
		return fmt.Errorf("key store: %w", errors.Join(err, f.Close()))
	}
	if _, err := f.Write(data); err != nil {
		return fmt.Errorf("key store: write %s: %w", name, errors.Join(err, f.Close()))
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("key store: sync %s: %w", name, errors.Join(err, f.Close()))
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("key store: %w", err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
		return fmt.Errorf("key store: %w", err)
	}
	// Make the rename durable; a directory that cannot be synced (some
	// file systems refuse) still holds the file.
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		_ = d.Close()
	}
	return nil
}

func (s *KeyStore) read(realm, deviceID, name string) ([]byte, error) {
	dir, err := s.deviceDir(realm, deviceID)
	if err != nil {
		return nil, err
	}
	data, err := os.ReadFile(filepath.Join(dir, name))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%s of device %s: %w", strings.ReplaceAll(name, "_", " "), deviceID, ErrNoCredentials)
	}
	if err != nil {
		return nil, fmt.Errorf("key store: read %s: %w", name, err)
	}
	return data, nil
}

// SaveSecret stores the credentials secret returned by registration.
func (s *KeyStore) SaveSecret(realm, deviceID, secret string) error {
	if secret == "" {
		return errors.New("key store: empty credentials secret")
	}
	return s.write(realm, deviceID, secretFile, []byte(secret))
}

// Secret returns the stored credentials secret (ErrNoCredentials if none).
func (s *KeyStore) Secret(realm, deviceID string) (string, error) {
	b, err := s.read(realm, deviceID, secretFile)
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(b)), nil
}

// Key returns the device key, creating and storing a new P-256 key if none
// exists yet.
func (s *KeyStore) Key(realm, deviceID string) (*ecdsa.PrivateKey, error) {
	s.keyMu.Lock()
	defer s.keyMu.Unlock()
	k, err := s.LoadKey(realm, deviceID)
	if err == nil {
		return k, nil
	}
	if !errors.Is(err, ErrNoCredentials) {
		return nil, err
	}
	if k, err = GenerateKey(); err != nil {
		return nil, fmt.Errorf("key store: generate key: %w", err)
	}
	der, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		return nil, fmt.Errorf("key store: %w", err)
	}
	if err := s.write(realm, deviceID, keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der})); err != nil {
		return nil, err
	}
	return k, nil
}

// LoadKey returns the stored device key (ErrNoCredentials if none).
func (s *KeyStore) LoadKey(realm, deviceID string) (*ecdsa.PrivateKey, error) {
	data, err := s.read(realm, deviceID, keyFile)
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, fmt.Errorf("key store: key of device %s is not PEM", deviceID)
	}
	k, err := x509.ParseECPrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("key store: key of device %s is not an EC private key", deviceID)
	}
	return k, nil
}

// SaveCertificate stores a PEM certificate after checking that it parses.
func (s *KeyStore) SaveCertificate(realm, deviceID string, certPEM []byte) error {
	if _, err := ParseCertificate(certPEM); err != nil {
		return err
	}
	return s.write(realm, deviceID, certFile, certPEM)
}

// CertificatePEM returns the stored certificate (ErrNoCredentials if none).
func (s *KeyStore) CertificatePEM(realm, deviceID string) ([]byte, error) {
	return s.read(realm, deviceID, certFile)
}

// Certificate returns the parsed stored certificate.
func (s *KeyStore) Certificate(realm, deviceID string) (*x509.Certificate, error) {
	data, err := s.CertificatePEM(realm, deviceID)
	if err != nil {
		return nil, err
	}
	return ParseCertificate(data)
}

// HasCertificate reports whether a certificate is stored for the device.
func (s *KeyStore) HasCertificate(realm, deviceID string) (bool, error) {
	_, err := s.CertificatePEM(realm, deviceID)
	if errors.Is(err, ErrNoCredentials) {
		return false, nil
	}
	return err == nil, err
}

// TLSCertificate returns the stored key and certificate as a tls.Certificate
// for the MQTT connection.
func (s *KeyStore) TLSCertificate(realm, deviceID string) (tls.Certificate, error) {
	certPEM, err := s.CertificatePEM(realm, deviceID)
	if err != nil {
		return tls.Certificate{}, err
	}
	key, err := s.LoadKey(realm, deviceID)
	if err != nil {
		return tls.Certificate{}, err
	}
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("key store: %w", err)
	}
	c, err := tls.X509KeyPair(certPEM, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}))
	if err != nil {
		return tls.Certificate{}, errors.New("key store: stored certificate does not match the device key")
	}
	return c, nil
}

// Forget deletes everything stored for the device.
func (s *KeyStore) Forget(realm, deviceID string) error {
	dir, err := s.deviceDir(realm, deviceID)
	if err != nil {
		return err
	}
	return os.RemoveAll(dir)
}
