package pairing

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"time"
)

// Provisioner ties the Pairing API client to the key store for one realm:
// it registers devices, obtains and renews certificates and resolves the
// broker URL.
type Provisioner struct {
	Client *Client
	Store  *KeyStore
	Realm  string
	// Now is the clock (time.Now when nil).
	Now func() time.Time
	// RenewMargin renews a certificate this long before it expires (default
	// 1 hour).
	RenewMargin time.Duration
}

func (p *Provisioner) now() time.Time {
	if p.Now != nil {
		return p.Now()
	}
	return time.Now()
}

func (p *Provisioner) margin() time.Duration {
	if p.RenewMargin > 0 {
		return p.RenewMargin
	}
	return time.Hour
}

// Register registers the device with a JWT (user-given, or made with
// NewRegistrationJWT) and stores the credentials secret.
func (p *Provisioner) Register(ctx context.Context, deviceID, token string, introspection map[string]IntrospectionVersion) error {
	secret, err := p.Client.Register(ctx, p.Realm, deviceID, token, introspection)
	if err != nil {
		return err
	}
	return p.Store.SaveSecret(p.Realm, deviceID, secret)
}

// ImportSecret stores a credentials secret obtained elsewhere (astartectl,
// dashboard).
func (p *Provisioner) ImportSecret(deviceID, secret string) error {
	return p.Store.SaveSecret(p.Realm, deviceID, secret)
}

// ObtainCertificate creates the device key if needed, sends a CSR and stores
// the returned certificate.
func (p *Provisioner) ObtainCertificate(ctx context.Context, deviceID string) error {
	secret, err := p.Store.Secret(p.Realm, deviceID)
	if err != nil {
		return err
	}
	key, err := p.Store.Key(p.Realm, deviceID)
	if err != nil {
		return err
	}
	csr, err := CreateCSR(key, p.Realm, deviceID)
	if err != nil {
		return err
	}
	certPEM, err := p.Client.ObtainCertificate(ctx, p.Realm, deviceID, secret, csr)
	if err != nil {
		return err
	}
	cert, err := ParseCertificate(certPEM)
	if err != nil {
		return err
	}
	if err := CheckCertificate(cert, key, p.Realm, deviceID, p.now(), 0); err != nil {
		return fmt.Errorf("pairing credentials: certificate from Astarte is unusable: %w", err)
	}
	return p.Store.SaveCertificate(p.Realm, deviceID, certPEM)
}

// ImportCertificate stores a PEM certificate obtained elsewhere after checking
// it matches the device key.
func (p *Provisioner) ImportCertificate(deviceID string, certPEM []byte) error {
	cert, err := ParseCertificate(certPEM)
	if err != nil {
		return err
	}
	key, err := p.Store.LoadKey(p.Realm, deviceID)
	if err != nil {
		return err
	}
	if err := CheckCertificate(cert, key, p.Realm, deviceID, p.now(), 0); err != nil {
		return err
	}
	return p.Store.SaveCertificate(p.Realm, deviceID, certPEM)
}

// HasCertificate reports whether a certificate is stored for the device.
func (p *Provisioner) HasCertificate(deviceID string) (bool, error) {
	return p.Store.HasCertificate(p.Realm, deviceID)
}

// CheckLocal checks the stored certificate locally (validity period with the
// renew margin, key match, subject). It returns nil when it is usable.
func (p *Provisioner) CheckLocal(deviceID string) error {
	cert, err := p.Store.Certificate(p.Realm, deviceID)
	if err != nil {
		return err
	}
	key, err := p.Store.LoadKey(p.Realm, deviceID)
	if err != nil {
		return err
	}
	return CheckCertificate(cert, key, p.Realm, deviceID, p.now(), p.margin())
}

// Verify asks Astarte to verify the stored certificate.
func (p *Provisioner) Verify(ctx context.Context, deviceID string) (*Verification, error) {
	secret, err := p.Store.Secret(p.Realm, deviceID)
	if err != nil {
		return nil, err
	}
	certPEM, err := p.Store.CertificatePEM(p.Realm, deviceID)
	if err != nil {
		return nil, err
	}
	return p.Client.VerifyCertificate(ctx, p.Realm, deviceID, secret, certPEM)
}

// Info returns the device's transport information from the Pairing API.
func (p *Provisioner) Info(ctx context.Context, deviceID string) (*DeviceInfo, error) {
	secret, err := p.Store.Secret(p.Realm, deviceID)
	if err != nil {
		return nil, err
	}
	return p.Client.Info(ctx, p.Realm, deviceID, secret)
}

// Endpoint returns the MQTT broker URL and the client certificate to connect
// with, obtaining a new certificate first when the stored one is missing,
// expired (or about to), or does not match the key. It is meant to be called
// before every connection attempt.
func (p *Provisioner) Endpoint(ctx context.Context, deviceID string) (string, tls.Certificate, error) {
	if err := p.CheckLocal(deviceID); err != nil {
		if !errors.Is(err, ErrNoCredentials) && !errors.Is(err, ErrCertificateExpired) &&
			!errors.Is(err, ErrCertificateKeyMismatch) && !errors.Is(err, ErrCertificateNotYetValid) &&
			!errors.Is(err, ErrCertificateSubject) {
			return "", tls.Certificate{}, err
		}
		if err := p.ObtainCertificate(ctx, deviceID); err != nil {
			return "", tls.Certificate{}, err
		}
	}
	info, err := p.Info(ctx, deviceID)
	if err != nil {
		return "", tls.Certificate{}, err
	}
	if info.BrokerURL == "" {
		return "", tls.Certificate{}, errors.New("pairing info: no astarte_mqtt_v1 broker_url for this device")
	}
	cert, err := p.Store.TLSCertificate(p.Realm, deviceID)
	if err != nil {
		return "", tls.Certificate{}, err
	}
	return info.BrokerURL, cert, nil
}
