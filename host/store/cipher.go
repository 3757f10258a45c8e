package store

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// KeySize is the length of the encryption key: AES-256.
const KeySize = 32

// KeyFileName is the generated key file in the data directory when no key
// is configured.
const KeyFileName = "host.key"

// sealVersion is the first byte of every sealed value; a later key or
// algorithm change gets a new version.
const sealVersion byte = 1

// ErrTampered is returned when a sealed value does not decrypt: it was
// changed, moved to another row, or sealed with another key.
var ErrTampered = errors.New("sealed value does not authenticate (tampered, moved, or sealed with another key)")

// Cipher seals secrets at rest with AES-256-GCM. Each value gets a random
// 96-bit nonce; the associated data binds a value to the row it belongs to,
// so a ciphertext copied to another row does not open.
type Cipher struct {
	aead cipher.AEAD
}

// NewCipher returns a Cipher for a 32-byte key.
func NewCipher(key []byte) (*Cipher, error) {
	if len(key) != KeySize {
		return nil, fmt.Errorf("encryption key: must be %d bytes (got %d)", KeySize, len(key))
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("encryption key: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("encryption key: %w", err)
	}
	return &Cipher{aead: aead}, nil
}

// Seal encrypts plaintext bound to aad. The result is
// version || nonce || ciphertext+tag.
func (c *Cipher) Seal(plaintext, aad []byte) ([]byte, error) {
	out := make([]byte, 1+c.aead.NonceSize(), 1+c.aead.NonceSize()+len(plaintext)+c.aead.Overhead())
	out[0] = sealVersion
	if _, err := rand.Read(out[1:]); err != nil {
		return nil, fmt.Errorf("generating a nonce: %w", err)
	}
	return c.aead.Seal(out, out[1:], plaintext, aad), nil //nolint:gosec // G407: the nonce out[1:] comes from crypto/rand above, fresh for every call
}

// Open decrypts a value sealed with Seal and the same aad. Any change to
// the value or aad, or another key, gives ErrTampered.
func (c *Cipher) Open(sealed, aad []byte) ([]byte, error) {
	n := c.aead.NonceSize()
	if len(sealed) < 1+n+c.aead.Overhead() || sealed[0] != sealVersion {
		return nil, ErrTampered
	}
	plain, err := c.aead.Open(nil, sealed[1:1+n], sealed[1+n:], aad)
	if err != nil {
		return nil, ErrTampered
	}
	return plain, nil
}

// LoadKey returns the encryption key: the configured hex key when set,
// else the key in dataDir/host.key, which is generated (32 random bytes,
// hex, mode 0600) on first use. An existing key file readable by group or
// others is refused.
func LoadKey(configuredHex, dataDir string) ([]byte, error) {
	if configuredHex != "" {
		k, err := hex.DecodeString(strings.TrimSpace(configuredHex))
		if err != nil || len(k) != KeySize {
			return nil, errors.New("encryption_key: must be 64 hex characters (a 256-bit key)")
		}
		return k, nil
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return nil, fmt.Errorf("data_dir: %w", err)
	}
	path := filepath.Join(dataDir, KeyFileName)
	k, err := readKeyFile(path)
	if err == nil {
		return k, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	k = make([]byte, KeySize)
	if _, err := rand.Read(k); err != nil {
		return nil, fmt.Errorf("generating the encryption key: %w", err)
	}
	// Write the whole key to a private temporary file, then hard-link it
	// into place: the link appears complete or not at all, and fails when
	// another process got there first (a reader never sees a half-written
	// key).
	f, err := os.CreateTemp(dataDir, KeyFileName+".tmp-*")
	if err != nil {
		return nil, fmt.Errorf("creating key file %s: %w", path, err)
	}
	tmp := f.Name()
	defer func() { _ = os.Remove(tmp) }()
	if _, err := f.WriteString(hex.EncodeToString(k) + "\n"); err != nil {
		_ = f.Close() // the write already failed; that error is the one to report
		return nil, fmt.Errorf("writing key file %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		_ = f.Close() // the sync already failed; that error is the one to report
		return nil, fmt.Errorf("writing key file %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return nil, fmt.Errorf("writing key file %s: %w", path, err)
	}
	if err := os.Link(tmp, path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			// Another process created it first: use theirs.
			return readKeyFile(path)
		}
		return nil, fmt.Errorf("creating key file %s: %w", path, err)
	}
	return k, nil
}

func readKeyFile(path string) ([]byte, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("key file %s: mode %04o lets others read it; chmod 600 it", path, st.Mode().Perm())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("key file %s: %w", path, err)
	}
	k, err := hex.DecodeString(strings.TrimSpace(string(b)))
	if err != nil || len(k) != KeySize {
		return nil, fmt.Errorf("key file %s: must hold 64 hex characters (a 256-bit key)", path)
	}
	return k, nil
}
