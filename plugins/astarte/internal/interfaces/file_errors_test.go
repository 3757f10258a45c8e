package interfaces

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// An invalid interface file is an *Error (bad request) that names the file.
func TestParseFileErrorNamesTheFile(t *testing.T) {
	t.Parallel()
	p := filepath.Join(t.TempDir(), "broken.json")
	if err := os.WriteFile(p, []byte(`{"interface_name":"com.example.X","version_major":0,"version_minor":0}`), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := ParseFile(p)
	var e *Error
	if !errors.As(err, &e) || !errors.Is(err, ErrInvalid) || e.Field != "version_major" || !strings.Contains(err.Error(), p) {
		t.Fatalf("ParseFile = %v, want an invalid-interface error naming version_major and %s", err, p)
	}
}

// A negative expiry is refused (Astarte: expiry >= 0, 0 never expires).
func TestNegativeExpiryRefused(t *testing.T) {
	t.Parallel()
	doc := `{"interface_name":"com.example.X","version_major":1,"version_minor":0,"type":"datastream","ownership":"device",
	  "mappings":[{"endpoint":"/v","type":"double","expiry":-1}]}`
	_, err := Parse([]byte(doc))
	var e *Error
	if !errors.As(err, &e) || e.Field != "mappings[0].expiry" || !strings.Contains(e.Reason, "negative") {
		t.Fatalf("Parse = %v, want mappings[0].expiry must not be negative", err)
	}
	doc = strings.Replace(doc, "-1", "0", 1)
	if i, err := Parse([]byte(doc)); err != nil || i.Mappings[0].Expiry != 0 {
		t.Fatalf("expiry 0: %v %v", i, err)
	}
}
