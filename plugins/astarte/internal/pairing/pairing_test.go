package pairing

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"

	astarteemu "github.com/connector-host/connector-host/testkit/emulators/astarte"
)

func TestDeviceIDs(t *testing.T) {
	t.Parallel()
	a, err := NewDeviceID()
	if err != nil {
		t.Fatal(err)
	}
	b, _ := NewDeviceID()
	if a == b || len(a) != 22 || ValidateDeviceID(a) != nil {
		t.Fatalf("random ids %q %q", a, b)
	}
	raw, _ := base64.RawURLEncoding.DecodeString(a)
	if u, _ := uuid.FromBytes(raw); u.Version() != 4 {
		t.Fatalf("random id version %d", u.Version())
	}
	ns := uuid.MustParse("b068931c-c450-342b-a3f5-b3d276ea4297")
	x := DeviceIDFromNamespace(ns, "serial-1")
	if x != DeviceIDFromNamespace(ns, "serial-1") || x == DeviceIDFromNamespace(ns, "serial-2") {
		t.Fatal("namespace ids not deterministic/distinct")
	}
	raw, _ = base64.RawURLEncoding.DecodeString(x)
	u, _ := uuid.FromBytes(raw)
	if u.Version() != 5 || u != uuid.NewSHA1(ns, []byte("serial-1")) {
		t.Fatalf("namespace id is not UUIDv5: %v", u)
	}
	for _, bad := range []string{"", "short", strings.Repeat("A", 23), strings.Repeat("A", 21) + "=", strings.Repeat("*", 22), "AAAAAAAAAAAAAAAAAAAAAB"} {
		if ValidateDeviceID(bad) == nil {
			t.Errorf("ValidateDeviceID(%q) accepted", bad)
		}
	}
	for _, bad := range []string{"", "Test", "1abc", "a-b", strings.Repeat("a", 49)} {
		if ValidateRealm(bad) == nil {
			t.Errorf("ValidateRealm(%q) accepted", bad)
		}
	}
}

func keyPEM(t *testing.T, kind string) ([]byte, any) {
	t.Helper()
	switch kind {
	case "ec":
		k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		der, _ := x509.MarshalECPrivateKey(k)
		return pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), &k.PublicKey
	case "ec-pkcs8":
		k, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
		der, _ := x509.MarshalPKCS8PrivateKey(k)
		return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), &k.PublicKey
	case "rsa":
		k, _ := rsa.GenerateKey(rand.Reader, 2048)
		return pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(k)}), &k.PublicKey
	}
	t.Fatal(kind)
	return nil, nil
}

func TestRegistrationJWT(t *testing.T) {
	t.Parallel()
	now := time.Now()
	for _, kind := range []string{"ec", "ec-pkcs8", "rsa"} {
		priv, pub := keyPEM(t, kind)
		tok, err := NewRegistrationJWT(priv, 0, now)
		if err != nil {
			t.Fatalf("%s: %v", kind, err)
		}
		var claims Claims
		if _, err := jwt.ParseWithClaims(tok, &claims, func(*jwt.Token) (any, error) { return pub, nil }); err != nil {
			t.Fatalf("%s: token does not verify: %v", kind, err)
		}
		if len(claims.AuthPairing) != 1 || claims.ExpiresAt.Sub(now) > DefaultRegistrationTTL+time.Second {
			t.Fatalf("%s: claims %+v", kind, claims)
		}
	}
	if _, err := NewRegistrationJWT([]byte("nope"), 0, now); err == nil || !strings.Contains(err.Error(), "not PEM") {
		t.Fatalf("bad PEM: %v", err)
	}
	garbage := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte("SECRETBYTES")})
	_, err := NewRegistrationJWT(garbage, 0, now)
	if err == nil || strings.Contains(err.Error(), "SECRETBYTES") {
		t.Fatalf("garbage key error %v", err)
	}
}

type fixture struct {
	emu   *astarteemu.Emulator
	prov  *Provisioner
	store *KeyStore
	dir   string
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	emu, err := astarteemu.Start(astarteemu.Options{Realm: "myrealm"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = emu.Close() })
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: emu.CAPool()}}}
	c, err := NewClient(emu.PairingURL(), hc)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	ks, err := OpenKeyStore(filepath.Join(dir, "keys"))
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{emu: emu, prov: &Provisioner{Client: c, Store: ks, Realm: "myrealm"}, store: ks, dir: dir}
}

func TestRegisterObtainVerifyEndpoint(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	id, _ := NewDeviceID()
	tok, err := NewRegistrationJWT(f.emu.RealmPrivateKeyPEM(), time.Minute, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := f.prov.Register(ctx, id, tok, map[string]IntrospectionVersion{"com.example.A": {1, 0}}); err != nil {
		t.Fatal(err)
	}
	if ok, _ := f.prov.HasCertificate(id); ok {
		t.Fatal("certificate before obtaining one")
	}
	if err := f.prov.CheckLocal(id); !errors.Is(err, ErrNoCredentials) {
		t.Fatalf("CheckLocal without cert = %v", err)
	}
	if err := f.prov.ObtainCertificate(ctx, id); err != nil {
		t.Fatal(err)
	}
	if ok, _ := f.prov.HasCertificate(id); !ok {
		t.Fatal("no certificate after obtaining one")
	}
	if err := f.prov.CheckLocal(id); err != nil {
		t.Fatal(err)
	}
	cert, _ := f.store.Certificate("myrealm", id)
	if cert.Subject.CommonName != "myrealm/"+id {
		t.Fatalf("CN %s", cert.Subject.CommonName)
	}
	v, err := f.prov.Verify(ctx, id)
	if err != nil || !v.Valid || v.Until.IsZero() || v.Timestamp.IsZero() {
		t.Fatalf("verify = %+v %v", v, err)
	}
	url, tc, err := f.prov.Endpoint(ctx, id)
	if err != nil || url != f.emu.BrokerURL() || len(tc.Certificate) != 1 {
		t.Fatalf("endpoint = %s %v", url, err)
	}
	if _, n := f.emu.Registered(id); n != 1 {
		t.Fatalf("Endpoint re-obtained a valid certificate (%d issued)", n)
	}
	// Registering again after credentials: the emulator refuses with 422.
	var apiErr *APIError
	if err := f.prov.Register(ctx, id, tok, nil); !errors.As(err, &apiErr) || apiErr.Status != 422 {
		t.Fatalf("re-register = %v", err)
	}
	if strings.Contains(apiErr.Error(), tok) {
		t.Fatal("JWT in error")
	}

	// Files are private.
	for _, name := range []string{keyFile, certFile, secretFile} {
		st, err := os.Stat(filepath.Join(f.dir, "keys", "myrealm", id, name))
		if err != nil || st.Mode().Perm() != 0o600 {
			t.Fatalf("%s mode %v %v", name, st.Mode(), err)
		}
	}
	st, _ := os.Stat(filepath.Join(f.dir, "keys", "myrealm", id))
	if st.Mode().Perm() != 0o700 {
		t.Fatalf("dir mode %v", st.Mode())
	}
}

func TestEndpointRenewsExpiredCertificate(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	id := DeviceIDFromNamespace(uuid.NameSpaceDNS, "renew")
	if err := f.prov.ImportSecret(id, f.emu.RegisterDevice(id)); err != nil {
		t.Fatal(err)
	}
	// First certificate lives 30 minutes: inside the 1 h renew margin.
	f.emu.SetCertValidity(30 * time.Minute)
	if err := f.prov.ObtainCertificate(ctx, id); err != nil {
		t.Fatal(err)
	}
	if err := f.prov.CheckLocal(id); !errors.Is(err, ErrCertificateExpired) {
		t.Fatalf("CheckLocal = %v, want expired (within margin)", err)
	}
	f.emu.SetCertValidity(48 * time.Hour)
	if _, _, err := f.prov.Endpoint(ctx, id); err != nil {
		t.Fatal(err)
	}
	if _, n := f.emu.Registered(id); n != 2 {
		t.Fatalf("certificates issued = %d, want renewal", n)
	}
	if err := f.prov.CheckLocal(id); err != nil {
		t.Fatal(err)
	}
}

func TestPairingErrors(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	id, _ := NewDeviceID()
	var apiErr *APIError
	// Wrong realm key → 401.
	other, _ := keyPEM(t, "ec")
	bad, _ := NewRegistrationJWT(other, time.Minute, time.Now())
	if err := f.prov.Register(ctx, id, bad, nil); !errors.As(err, &apiErr) || apiErr.Status != 401 || apiErr.Detail == "" {
		t.Fatalf("forged JWT = %v", err)
	}
	// a_pa not covering the call → 403.
	getOnly, _ := f.emu.SignJWT([]string{"GET::.*"}, time.Minute)
	if err := f.prov.Register(ctx, id, getOnly, nil); !errors.As(err, &apiErr) || apiErr.Status != 403 {
		t.Fatalf("a_pa GET only = %v", err)
	}
	if err := f.prov.Register(ctx, "bad", "tok", nil); err == nil || !strings.Contains(err.Error(), "device id") {
		t.Fatalf("bad id = %v", err)
	}
	if err := f.prov.Register(ctx, id, "", nil); err == nil {
		t.Fatal("empty JWT accepted")
	}
	// No secret stored yet.
	if err := f.prov.ObtainCertificate(ctx, id); !errors.Is(err, ErrNoCredentials) {
		t.Fatalf("obtain without secret = %v", err)
	}
	// Wrong secret → 403, never echoed.
	if err := f.prov.ImportSecret(id, "wrong-secret-value"); err != nil {
		t.Fatal(err)
	}
	_, err := f.prov.Info(ctx, id)
	if !errors.As(err, &apiErr) || apiErr.Status != 403 || strings.Contains(err.Error(), "wrong-secret-value") {
		t.Fatalf("wrong secret = %v", err)
	}
	// Non-PEM CSR → 422 (through the client directly).
	secret := f.emu.RegisterDevice(id)
	if _, err := f.prov.Client.ObtainCertificate(ctx, "myrealm", id, secret, []byte("junk")); !errors.As(err, &apiErr) || apiErr.Status != 422 {
		t.Fatalf("junk CSR = %v", err)
	}
	// Unreachable server.
	dead, _ := NewClient("http://127.0.0.1:1/pairing", &http.Client{Timeout: 2 * time.Second})
	if _, err := dead.Info(ctx, "myrealm", id, secret); err == nil {
		t.Fatal("unreachable server answered")
	}
	for _, u := range []string{"", "ftp://x", "http://", "https://user:pw@host/p"} {
		if _, err := NewClient(u, nil); err == nil {
			t.Errorf("NewClient(%q) accepted", u)
		}
	}
}

func TestCheckCertificate(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	id, _ := NewDeviceID()
	if err := f.prov.ImportSecret(id, f.emu.RegisterDevice(id)); err != nil {
		t.Fatal(err)
	}
	if err := f.prov.ObtainCertificate(ctx, id); err != nil {
		t.Fatal(err)
	}
	cert, _ := f.store.Certificate("myrealm", id)
	key, _ := f.store.LoadKey("myrealm", id)
	now := time.Now()
	if err := CheckCertificate(cert, key, "myrealm", id, now, 0); err != nil {
		t.Fatal(err)
	}
	if err := CheckCertificate(cert, key, "myrealm", id, cert.NotAfter.Add(time.Second), 0); !errors.Is(err, ErrCertificateExpired) {
		t.Fatalf("after NotAfter: %v", err)
	}
	if err := CheckCertificate(cert, key, "myrealm", id, cert.NotBefore.Add(-time.Second), 0); !errors.Is(err, ErrCertificateNotYetValid) {
		t.Fatalf("before NotBefore: %v", err)
	}
	otherKey, _ := GenerateKey()
	if err := CheckCertificate(cert, otherKey, "myrealm", id, now, 0); !errors.Is(err, ErrCertificateKeyMismatch) {
		t.Fatalf("other key: %v", err)
	}
	other, _ := NewDeviceID()
	if err := CheckCertificate(cert, key, "myrealm", other, now, 0); !errors.Is(err, ErrCertificateSubject) {
		t.Fatalf("other device: %v", err)
	}
	// Importing a certificate for another key is refused.
	if err := f.prov.ImportCertificate(id, []byte("junk")); err == nil {
		t.Fatal("junk certificate imported")
	}
	foreign, _ := f.emu.IssueClientCertificate("myrealm/"+id, time.Hour)
	fp := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: foreign.Certificate[0]})
	if err := f.prov.ImportCertificate(id, fp); !errors.Is(err, ErrCertificateKeyMismatch) {
		t.Fatalf("import foreign-key cert: %v", err)
	}
	// A tampered stored certificate makes Endpoint obtain a fresh one.
	if err := f.store.SaveCertificate("myrealm", id, fp); err != nil {
		t.Fatal(err)
	}
	if _, _, err := f.prov.Endpoint(ctx, id); err != nil {
		t.Fatal(err)
	}
	if err := f.prov.CheckLocal(id); err != nil {
		t.Fatal(err)
	}
}

func TestCSR(t *testing.T) {
	t.Parallel()
	key, _ := GenerateKey()
	id, _ := NewDeviceID()
	data, err := CreateCSR(key, "myrealm", id)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(data)
	csr, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil || csr.CheckSignature() != nil {
		t.Fatal(err)
	}
	if csr.Subject.CommonName != "myrealm/"+id || len(csr.Subject.Organization) != 1 || csr.Subject.Organization[0] != "Devices" {
		t.Fatalf("subject %v", csr.Subject)
	}
	if pub := csr.PublicKey.(*ecdsa.PublicKey); pub.Curve != elliptic.P256() {
		t.Fatal("not P-256")
	}
}

func TestKeyStorePaths(t *testing.T) {
	t.Parallel()
	ks, _ := OpenKeyStore(t.TempDir())
	id, _ := NewDeviceID()
	if err := ks.SaveSecret("../etc", id, "x"); err == nil {
		t.Fatal("path traversal realm accepted")
	}
	if err := ks.SaveSecret("myrealm", "../../../../etc/passwd", "x"); err == nil {
		t.Fatal("path traversal device accepted")
	}
	k1, err := ks.Key("myrealm", id)
	if err != nil {
		t.Fatal(err)
	}
	k2, _ := ks.Key("myrealm", id)
	if !k1.Equal(k2) {
		t.Fatal("Key not stable")
	}
	if err := ks.Forget("myrealm", id); err != nil {
		t.Fatal(err)
	}
	if _, err := ks.LoadKey("myrealm", id); !errors.Is(err, ErrNoCredentials) {
		t.Fatal("key survived Forget")
	}
	if _, err := OpenKeyStore(""); err == nil {
		t.Fatal("empty dir accepted")
	}
}

// TestKeyCreatedOnce: calls that race to create a device's key all get the
// one key that is stored (a CSR made from a key that was then overwritten
// would give a certificate for no key).
func TestKeyCreatedOnce(t *testing.T) {
	t.Parallel()
	ks, _ := OpenKeyStore(t.TempDir())
	id, _ := NewDeviceID()
	const n = 16
	keys := make([]*ecdsa.PrivateKey, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for k := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			keys[k], errs[k] = ks.Key("myrealm", id)
		}()
	}
	wg.Wait()
	stored, err := ks.LoadKey("myrealm", id)
	if err != nil {
		t.Fatal(err)
	}
	for k := range n {
		if errs[k] != nil || !keys[k].Equal(stored) {
			t.Fatalf("call %d: %v; its key is not the stored one", k, errs[k])
		}
	}
}
