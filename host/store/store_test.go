package store

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func testKey() []byte { return bytes.Repeat([]byte{7}, KeySize) }

func openTest(t *testing.T) (*SQLite, string) {
	t.Helper()
	dir := t.TempDir()
	c, err := NewCipher(testKey())
	if err != nil {
		t.Fatal(err)
	}
	s, err := OpenSQLite(filepath.Join(dir, DBFileName), c)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, dir
}

func TestCipherRoundTripAndTamper(t *testing.T) {
	t.Parallel()
	c, err := NewCipher(testKey())
	if err != nil {
		t.Fatal(err)
	}
	sealed, err := c.Seal([]byte("secret value"), []byte("row-1"))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(sealed, []byte("secret value")) {
		t.Fatal("sealed value contains the plaintext")
	}
	plain, err := c.Open(sealed, []byte("row-1"))
	if err != nil || string(plain) != "secret value" {
		t.Fatalf("Open = %q, %v", plain, err)
	}
	other, _ := NewCipher(bytes.Repeat([]byte{8}, KeySize))
	cases := map[string]func() ([]byte, error){
		"flipped ciphertext bit": func() ([]byte, error) {
			b := bytes.Clone(sealed)
			b[len(b)-1] ^= 1
			return c.Open(b, []byte("row-1"))
		},
		"flipped nonce bit": func() ([]byte, error) {
			b := bytes.Clone(sealed)
			b[2] ^= 0x80
			return c.Open(b, []byte("row-1"))
		},
		"other row":     func() ([]byte, error) { return c.Open(sealed, []byte("row-2")) },
		"other key":     func() ([]byte, error) { return other.Open(sealed, []byte("row-1")) },
		"truncated":     func() ([]byte, error) { return c.Open(sealed[:10], []byte("row-1")) },
		"empty":         func() ([]byte, error) { return c.Open(nil, []byte("row-1")) },
		"wrong version": func() ([]byte, error) { b := bytes.Clone(sealed); b[0] = 9; return c.Open(b, []byte("row-1")) },
	}
	for name, open := range cases {
		t.Run(name, func(t *testing.T) {
			if _, err := open(); !errors.Is(err, ErrTampered) {
				t.Fatalf("err = %v, want ErrTampered", err)
			}
		})
	}
	// Two seals of the same value differ (random nonce).
	again, _ := c.Seal([]byte("secret value"), []byte("row-1"))
	if bytes.Equal(again, sealed) {
		t.Fatal("two seals are identical")
	}
}

func TestNewCipherKeySize(t *testing.T) {
	t.Parallel()
	if _, err := NewCipher(make([]byte, 16)); err == nil || !strings.Contains(err.Error(), "32 bytes") {
		t.Fatalf("err = %v", err)
	}
}

func TestLoadKey(t *testing.T) {
	t.Parallel()
	t.Run("configured", func(t *testing.T) {
		k, err := LoadKey(strings.Repeat("ab", 32), t.TempDir())
		if err != nil || len(k) != KeySize || k[0] != 0xab {
			t.Fatalf("k=%x err=%v", k, err)
		}
	})
	t.Run("configured bad", func(t *testing.T) {
		for _, v := range []string{"abc", strings.Repeat("zz", 32), strings.Repeat("ab", 16)} {
			if _, err := LoadKey(v, t.TempDir()); err == nil || !strings.Contains(err.Error(), "encryption_key") {
				t.Fatalf("%q: err = %v", v, err)
			}
		}
	})
	t.Run("generated once, 0600", func(t *testing.T) {
		dir := t.TempDir()
		k1, err := LoadKey("", dir)
		if err != nil {
			t.Fatal(err)
		}
		st, err := os.Stat(filepath.Join(dir, KeyFileName))
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o600 {
			t.Fatalf("key file mode %o", st.Mode().Perm())
		}
		k2, err := LoadKey("", dir)
		if err != nil || !bytes.Equal(k1, k2) {
			t.Fatalf("second load differs: %v", err)
		}
	})
	t.Run("concurrent first use agrees", func(t *testing.T) {
		dir := t.TempDir()
		keys := make([][]byte, 8)
		var wg sync.WaitGroup
		for i := range keys {
			wg.Add(1)
			go func() {
				defer wg.Done()
				k, err := LoadKey("", dir)
				if err != nil {
					t.Error(err)
				}
				keys[i] = k
			}()
		}
		wg.Wait()
		for _, k := range keys[1:] {
			if !bytes.Equal(k, keys[0]) {
				t.Fatal("concurrent loads disagree")
			}
		}
	})
	t.Run("readable by others refused", func(t *testing.T) {
		dir := t.TempDir()
		p := filepath.Join(dir, KeyFileName)
		if err := os.WriteFile(p, []byte(hex.EncodeToString(testKey())), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := LoadKey("", dir); err == nil || !strings.Contains(err.Error(), "chmod 600") {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("garbage refused", func(t *testing.T) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, KeyFileName), []byte("nope"), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := LoadKey("", dir); err == nil || !strings.Contains(err.Error(), "64 hex") {
			t.Fatalf("err = %v", err)
		}
	})
}

func sampleCredential() *Credential {
	return &Credential{
		AppID: "acme", ID: "prod", Flow: "CODE_FLOW", ClientID: "client-1",
		Scopes: []string{"read", "write"}, URLParams: map[string]string{"subdomain": "eu"},
		TokenType: "bearer", Expiry: time.Now().Add(time.Hour).Truncate(time.Millisecond).UTC(),
		Secrets: Secrets{ClientSecret: "CANARY-client-secret", AccessToken: "CANARY-access", RefreshToken: "CANARY-refresh"},
	}
}

func TestCredentialLifecycle(t *testing.T) {
	t.Parallel()
	s, _ := openTest(t)
	ctx := context.Background()
	if _, err := s.Credential(ctx, "acme", "prod"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("missing: err = %v", err)
	}
	c := sampleCredential()
	if err := s.PutCredential(ctx, c); err != nil {
		t.Fatal(err)
	}
	if c.Version != 1 || c.Status != StatusActive || c.CreatedAt.IsZero() {
		t.Fatalf("after put: %+v", c)
	}
	got, err := s.Credential(ctx, "acme", "prod")
	if err != nil {
		t.Fatal(err)
	}
	if got.Secrets != c.Secrets || !got.Expiry.Equal(c.Expiry) || got.URLParams["subdomain"] != "eu" || len(got.Scopes) != 2 || got.Version != 1 {
		t.Fatalf("got %+v", got)
	}

	// Compare-and-swap: the first writer wins, the stale one conflicts.
	a, _ := s.Credential(ctx, "acme", "prod")
	b, _ := s.Credential(ctx, "acme", "prod")
	a.Secrets.AccessToken = "second"
	if err := s.UpdateCredential(ctx, a); err != nil {
		t.Fatal(err)
	}
	if a.Version != 2 {
		t.Fatalf("version %d", a.Version)
	}
	b.Secrets.AccessToken = "stale"
	if err := s.UpdateCredential(ctx, b); !errors.Is(err, ErrConflict) {
		t.Fatalf("stale update: err = %v", err)
	}
	got, _ = s.Credential(ctx, "acme", "prod")
	if got.Secrets.AccessToken != "second" {
		t.Fatalf("access token %q", got.Secrets.AccessToken)
	}

	// Put replaces and keeps created_at.
	c2 := sampleCredential()
	c2.ClientID = "client-2"
	if err := s.PutCredential(ctx, c2); err != nil {
		t.Fatal(err)
	}
	if c2.Version != 3 || !c2.CreatedAt.Equal(c.CreatedAt) {
		t.Fatalf("replace: version %d created %v (was %v)", c2.Version, c2.CreatedAt, c.CreatedAt)
	}

	// Listing carries no secrets.
	other := sampleCredential()
	other.AppID = "zeta"
	if err := s.PutCredential(ctx, other); err != nil {
		t.Fatal(err)
	}
	all, err := s.Credentials(ctx, "")
	if err != nil || len(all) != 2 || all[0].AppID != "acme" || all[1].AppID != "zeta" {
		t.Fatalf("list all: %v %v", all, err)
	}
	for _, c := range all {
		if c.Secrets != (Secrets{}) {
			t.Fatal("listing returned secrets")
		}
	}
	one, _ := s.Credentials(ctx, "zeta")
	if len(one) != 1 {
		t.Fatalf("list zeta: %d", len(one))
	}

	if err := s.DeleteCredential(ctx, "acme", "prod"); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteCredential(ctx, "acme", "prod"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second delete: %v", err)
	}
	if err := s.UpdateCredential(ctx, a); !errors.Is(err, ErrNotFound) {
		t.Fatalf("update deleted: %v", err)
	}
}

func TestCredentialValidation(t *testing.T) {
	t.Parallel()
	s, _ := openTest(t)
	ctx := context.Background()
	for name, mut := range map[string]func(*Credential){
		"no app":     func(c *Credential) { c.AppID = "" },
		"no id":      func(c *Credential) { c.ID = "" },
		"bad status": func(c *Credential) { c.Status = "weird" },
	} {
		c := sampleCredential()
		mut(c)
		if err := s.PutCredential(ctx, c); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestSecretsNotInFile(t *testing.T) {
	t.Parallel()
	s, dir := openTest(t)
	ctx := context.Background()
	c := sampleCredential()
	if err := s.PutCredential(ctx, c); err != nil {
		t.Fatal(err)
	}
	st := &AuthState{State: "CANARY-state-value", AppID: "acme", CredentialID: "prod", ClientID: "client-1",
		ClientSecret: "CANARY-client-secret", CodeVerifier: "CANARY-verifier", ExpiresAt: time.Now().Add(time.Minute)}
	if err := s.PutAuthState(ctx, st); err != nil {
		t.Fatal(err)
	}
	s.Close()
	scanDir(t, dir, "CANARY")
}

// scanDir fails if any file under dir contains needle.
func scanDir(t *testing.T, dir, needle string) {
	t.Helper()
	n := 0
	err := filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err != nil || info.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		n++
		if bytes.Contains(b, []byte(needle)) {
			t.Errorf("%s contains %q", p, needle)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n == 0 {
		t.Fatal("no files scanned")
	}
}

func TestTamperedRowDoesNotOpen(t *testing.T) {
	t.Parallel()
	s, _ := openTest(t)
	ctx := context.Background()
	a := sampleCredential()
	b := sampleCredential()
	b.ID = "other"
	b.Secrets.AccessToken = "other-token"
	for _, c := range []*Credential{a, b} {
		if err := s.PutCredential(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	// Move b's sealed secrets onto a's row: the AAD binding refuses them.
	if _, err := s.db.Exec(`UPDATE credentials SET secrets = (SELECT secrets FROM credentials WHERE id = 'other') WHERE id = 'prod'`); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Credential(ctx, "acme", "prod"); !errors.Is(err, ErrTampered) {
		t.Fatalf("moved secrets: err = %v", err)
	}
	// Flip a byte of b's ciphertext.
	if _, err := s.db.Exec(`UPDATE credentials SET secrets = substr(secrets, 1, length(secrets)-1) || x'00' WHERE id = 'other'`); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Credential(ctx, "acme", "other"); !errors.Is(err, ErrTampered) {
		t.Fatalf("flipped byte: err = %v", err)
	}
}

func TestWrongKeyDoesNotOpen(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, DBFileName)
	c1, _ := NewCipher(testKey())
	s, err := OpenSQLite(path, c1)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.PutCredential(context.Background(), sampleCredential()); err != nil {
		t.Fatal(err)
	}
	s.Close()
	c2, _ := NewCipher(bytes.Repeat([]byte{9}, KeySize))
	s2, err := OpenSQLite(path, c2)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if _, err := s2.Credential(context.Background(), "acme", "prod"); !errors.Is(err, ErrTampered) {
		t.Fatalf("err = %v", err)
	}
}

func TestAuthStateSingleUseAndExpiry(t *testing.T) {
	t.Parallel()
	s, _ := openTest(t)
	ctx := context.Background()
	now := time.Now()
	put := func(state string, exp time.Time) {
		t.Helper()
		if err := s.PutAuthState(ctx, &AuthState{State: state, AppID: "acme", CredentialID: "prod", ClientID: "c",
			RedirectURI: "http://127.0.0.1/cb", Scopes: []string{"a"}, ClientSecret: "s3cret", CodeVerifier: "v", ExpiresAt: exp}); err != nil {
			t.Fatal(err)
		}
	}
	put("good", now.Add(10*time.Minute))
	put("old", now.Add(-time.Second))
	put("stale-other", now.Add(-time.Minute))

	if _, err := s.TakeAuthState(ctx, "wrong", now); !errors.Is(err, ErrNotFound) {
		t.Fatalf("wrong: %v", err)
	}
	got, err := s.TakeAuthState(ctx, "good", now)
	if err != nil {
		t.Fatal(err)
	}
	if got.ClientSecret != "s3cret" || got.CodeVerifier != "v" || got.CredentialID != "prod" || got.RedirectURI != "http://127.0.0.1/cb" || got.Scopes[0] != "a" {
		t.Fatalf("got %+v", got)
	}
	if _, err := s.TakeAuthState(ctx, "good", now); !errors.Is(err, ErrNotFound) {
		t.Fatalf("reuse: %v", err)
	}
	// "old" was purged with the other expired flows by the first Take.
	if _, err := s.TakeAuthState(ctx, "old", now); !errors.Is(err, ErrNotFound) {
		t.Fatalf("purged: %v", err)
	}
	put("expiring", now.Add(time.Minute))
	if _, err := s.TakeAuthState(ctx, "expiring", now.Add(2*time.Minute)); !errors.Is(err, ErrExpired) {
		t.Fatalf("expired: %v", err)
	}
	if _, err := s.TakeAuthState(ctx, "expiring", now); !errors.Is(err, ErrNotFound) {
		t.Fatalf("expired then reused: %v", err)
	}
	if err := s.PutAuthState(ctx, &AuthState{State: "x"}); err == nil {
		t.Fatal("incomplete state accepted")
	}
}

func TestConcurrentUpdatesOneWins(t *testing.T) {
	t.Parallel()
	s, _ := openTest(t)
	ctx := context.Background()
	if err := s.PutCredential(ctx, sampleCredential()); err != nil {
		t.Fatal(err)
	}
	const n = 16
	var wg sync.WaitGroup
	var mu sync.Mutex
	wins := 0
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := s.Credential(ctx, "acme", "prod")
			if err != nil {
				t.Error(err)
				return
			}
			c.Version = 1 // everyone read version 1
			c.Secrets.AccessToken = "t"
			err = s.UpdateCredential(ctx, c)
			switch {
			case err == nil:
				mu.Lock()
				wins++
				mu.Unlock()
			case !errors.Is(err, ErrConflict):
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if wins != 1 {
		t.Fatalf("%d writers won, want 1", wins)
	}
}

func TestReopenKeepsData(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s, err := Open(dir, "")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.PutCredential(context.Background(), sampleCredential()); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s, err = Open(dir, "")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	c, err := s.Credential(context.Background(), "acme", "prod")
	if err != nil || c.Secrets.RefreshToken != "CANARY-refresh" {
		t.Fatalf("%+v %v", c, err)
	}
	st, _ := os.Stat(filepath.Join(dir, DBFileName))
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("db mode %o", st.Mode().Perm())
	}
}

// FuzzOpen: arbitrary bytes never panic Open and never authenticate.
func FuzzOpen(f *testing.F) {
	c, err := NewCipher(testKey())
	if err != nil {
		f.Fatal(err)
	}
	sealed, _ := c.Seal([]byte("x"), []byte("aad"))
	f.Add(sealed)
	f.Add([]byte{})
	f.Add([]byte{1})
	f.Add(bytes.Repeat([]byte{1}, 40))
	f.Fuzz(func(t *testing.T, b []byte) {
		plain, err := c.Open(b, []byte("other-aad"))
		if err == nil {
			t.Fatalf("forged value opened: %q", plain)
		}
	})
}
