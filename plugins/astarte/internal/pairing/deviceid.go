// Package pairing implements the device side of Astarte pairing: device ids,
// the registration JWT, the device key and CSR, the Pairing API client
// (register, info, credentials, verify), the local certificate checks and an
// on-disk store for the device's key, certificate and credentials secret.
package pairing

import (
	"encoding/base64"
	"fmt"
	"regexp"

	"github.com/google/uuid"
)

// DeviceIDLength is the length of an encoded device id: 128 bits in base64url
// without padding.
const DeviceIDLength = 22

var realmRE = regexp.MustCompile(`^[a-z][a-z0-9]{0,47}$`)

// NewDeviceID returns a random (UUIDv4) device id. Ids made this way change on
// every call; derive them with DeviceIDFromNamespace in production.
func NewDeviceID() (string, error) {
	u, err := uuid.NewRandom()
	if err != nil {
		return "", fmt.Errorf("device id: %w", err)
	}
	return encodeID(u), nil
}

// DeviceIDFromNamespace derives a stable device id: UUIDv5 of namespace and
// data (e.g. a hardware serial), encoded as Astarte expects.
func DeviceIDFromNamespace(namespace uuid.UUID, data string) string {
	return encodeID(uuid.NewSHA1(namespace, []byte(data)))
}

func encodeID(u uuid.UUID) string {
	return base64.RawURLEncoding.EncodeToString(u[:])
}

// ValidateDeviceID checks that id is 22 characters of base64url without
// padding that decode to 128 bits.
func ValidateDeviceID(id string) error {
	if len(id) != DeviceIDLength {
		return fmt.Errorf("device id %q: want %d characters of base64url, got %d", clip(id), DeviceIDLength, len(id))
	}
	b, err := base64.RawURLEncoding.Strict().DecodeString(id)
	if err != nil || len(b) != 16 {
		return fmt.Errorf("device id %q: not base64url without padding encoding 128 bits", clip(id))
	}
	return nil
}

// ValidateRealm checks an Astarte realm name: lowercase letters and digits,
// starting with a letter, at most 48 characters.
func ValidateRealm(realm string) error {
	if !realmRE.MatchString(realm) {
		return fmt.Errorf("realm %q: want lowercase letters and digits starting with a letter, at most 48 characters", clip(realm))
	}
	return nil
}

func clip(s string) string {
	if len(s) > 40 {
		return s[:40] + "..."
	}
	return s
}
