package connector

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	astarteemu "github.com/connector-host/connector-host/testkit/emulators/astarte"
)

// The ca_file pool is read once while the file is unchanged, read again
// when it changes, and a broken file is a bad request naming the setting.
func TestCAPoolCachedUntilTheFileChanges(t *testing.T) {
	t.Parallel()
	emu, err := astarteemu.Start(astarteemu.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer emu.Close()
	p := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(p, emu.CACertPEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	a, err := loadCAPool(p)
	if err != nil {
		t.Fatal(err)
	}
	if b, err := loadCAPool(p); err != nil || b != a {
		t.Fatalf("second load: %p %v, want the cached %p", b, err, a)
	}
	// A new file (another CA appended, a later modification time).
	other, err := astarteemu.Start(astarteemu.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if err := os.WriteFile(p, append(emu.CACertPEM(), other.CACertPEM()...), 0o600); err != nil {
		t.Fatal(err)
	}
	later := time.Now().Add(time.Second)
	if err := os.Chtimes(p, later, later); err != nil {
		t.Fatal(err)
	}
	c, err := loadCAPool(p)
	if err != nil || c == a {
		t.Fatalf("after a change: %p %v, want a new pool", c, err)
	}
	if err := os.WriteFile(p, []byte("not PEM at all"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := loadCAPool(p); err == nil || !strings.Contains(err.Error(), "settings.ca_file") || !strings.Contains(err.Error(), "no PEM certificate") {
		t.Fatalf("broken file: %v", err)
	}
	if _, err := loadCAPool(p + ".missing"); err == nil || !strings.Contains(err.Error(), "settings.ca_file") {
		t.Fatalf("missing file: %v", err)
	}
}
