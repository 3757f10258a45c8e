package pairing

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Claims are the claims of an Astarte Pairing API token: a_pa lists
// "METHOD_REGEX::PATH_REGEX" authorizations.
type Claims struct {
	AuthPairing []string `json:"a_pa"`
	jwt.RegisteredClaims
}

// DefaultRegistrationTTL is how long a JWT made by NewRegistrationJWT lives.
const DefaultRegistrationTTL = 5 * time.Minute

// NewRegistrationJWT signs a short-lived Pairing API token with the realm
// private key (PEM, EC P-256/P-384 or RSA; SEC 1, PKCS #1 or PKCS #8). The
// token allows the agent registration calls of the realm ("POST::.*"). The
// key is used only to sign and never appears in errors.
func NewRegistrationJWT(realmKeyPEM []byte, ttl time.Duration, now time.Time) (string, error) {
	key, err := parsePrivateKey(realmKeyPEM)
	if err != nil {
		return "", err
	}
	if ttl <= 0 {
		ttl = DefaultRegistrationTTL
	}
	var method jwt.SigningMethod
	switch k := key.(type) {
	case *ecdsa.PrivateKey:
		switch k.Curve {
		case elliptic.P256():
			method = jwt.SigningMethodES256
		case elliptic.P384():
			method = jwt.SigningMethodES384
		default:
			return "", errors.New("realm key: EC keys must use P-256 or P-384")
		}
	case *rsa.PrivateKey:
		method = jwt.SigningMethodRS256
	default:
		return "", errors.New("realm key: want an EC or RSA private key")
	}
	claims := Claims{
		AuthPairing: []string{"POST::.*"},
		RegisteredClaims: jwt.RegisteredClaims{
			IssuedAt:  jwt.NewNumericDate(now),
			ExpiresAt: jwt.NewNumericDate(now.Add(ttl)),
		},
	}
	tok, err := jwt.NewWithClaims(method, claims).SignedString(key)
	if err != nil {
		return "", fmt.Errorf("realm key: cannot sign the registration token: %w", err)
	}
	return tok, nil
}

// parsePrivateKey reads an EC or RSA private key from PEM without echoing
// any of its bytes in errors.
func parsePrivateKey(data []byte) (crypto.Signer, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, errors.New("realm key: not PEM data")
	}
	if k, err := x509.ParseECPrivateKey(block.Bytes); err == nil {
		return k, nil
	}
	if k, err := x509.ParsePKCS1PrivateKey(block.Bytes); err == nil {
		return k, nil
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("realm key: PEM block %q is not an EC or RSA private key", block.Type)
	}
	s, ok := k.(crypto.Signer)
	if !ok {
		return nil, errors.New("realm key: unsupported private key type")
	}
	switch s.(type) {
	case *ecdsa.PrivateKey, *rsa.PrivateKey:
		return s, nil
	}
	return nil, errors.New("realm key: want an EC or RSA private key")
}
