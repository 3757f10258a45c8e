package layout

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"strings"
	"unicode"
)

// GenerateEntityToken returns "<name>-<32 lowercase hex>" where <name> is
// entityName lowercased with all white space removed and the suffix is 16
// bytes from crypto/rand, e.g. "product-b5503a0ae5f3bc01b6a2da68afd33305".
// An empty (or all-space) name or one with control characters is an error,
// since the token travels in the Entity-Token header.
func GenerateEntityToken(entityName string) (string, error) {
	var b strings.Builder
	for _, r := range strings.ToLower(entityName) {
		switch {
		case unicode.IsSpace(r):
			continue
		case unicode.IsControl(r) || r == unicode.ReplacementChar:
			return "", errors.New("entity_name: must not contain control characters or invalid UTF-8")
		}
		b.WriteRune(r)
	}
	if b.Len() == 0 {
		return "", errors.New("entity_name: is required")
	}
	var suffix [16]byte
	// crypto/rand.Read never returns an error (it crashes the program
	// irrecoverably instead), per its documentation.
	_, _ = rand.Read(suffix[:])
	b.WriteByte('-')
	b.WriteString(hex.EncodeToString(suffix[:]))
	return b.String(), nil
}
