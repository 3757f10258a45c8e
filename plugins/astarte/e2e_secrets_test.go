package main_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestHostSecretsNeverLoggedOrReturned: a device registered elsewhere
// works from its imported credentials secret (certificate, MQTT
// connection), and neither that secret, nor the one register_device
// obtained, nor a realm private key, nor a device key appears in a response
// or in the host's and plugin's logs (debug level).
func TestHostSecretsNeverLoggedOrReturned(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	paired := s.pair()

	id, _ := s.ok("generate_device_id", map[string]any{})["device_id"].(string)
	secret := s.emu.RegisterDevice(id)
	s.fail("import_credentials_secret", map[string]any{"device_id": id, "credentials_secret": secret + "\n"}, 400, "bad_request", "request.credentials_secret")
	if r := s.ok("import_credentials_secret", map[string]any{"device_id": id, "credentials_secret": secret}); r["credentials_stored"] != true || len(r) != 2 {
		t.Fatalf("import_credentials_secret %v", r)
	}
	if cert := s.ok("obtain_device_certificate", map[string]any{"device_id": id}); cert["subject"] != "CN="+s.emu.Realm()+"/"+id+",O=Devices" {
		t.Fatalf("certificate %v", cert)
	}
	if st := s.connect(id); st["state"] != "connected" {
		t.Fatalf("connect %v", st)
	}
	// A realm key that is not PEM: refused without echoing it.
	badKey := "realm-key-canary-6f1d0c"
	s.fail("register_device", map[string]any{"device_id": id, "realm_private_key": badKey}, 400, "bad_request", "request.realm_private_key")
	s.ok("disconnect", map[string]any{"device_id": id})

	realmKey, err := os.ReadFile(s.files.RealmKeyFile)
	if err != nil {
		t.Fatal(err)
	}
	secrets := map[string]string{"imported credentials secret": secret, "invalid realm key": badKey,
		"realm private key": pemBody(string(realmKey))}
	for _, dev := range []string{paired, id} {
		dir := filepath.Join(s.host.Config.DataDir, "plugins", "astarte", "keys", s.emu.Realm(), dev)
		for name, file := range map[string]string{"credentials secret of ": "credentials_secret", "device key of ": "device.key"} {
			b, err := os.ReadFile(filepath.Join(dir, file))
			if err != nil {
				t.Fatal(err)
			}
			secrets[name+dev] = pemBody(strings.TrimSpace(string(b)))
		}
	}
	logs := s.host.Logs.String()
	if !strings.Contains(logs, id) {
		t.Fatal("the logs do not mention the device: nothing was captured")
	}
	for name, v := range secrets {
		if v == "" {
			t.Fatalf("%s is empty", name)
		}
		if strings.Contains(logs, v) {
			t.Errorf("the %s appears in the logs", name)
		}
	}
}

// pemBody is the first line of a PEM block's base64 body (or the text
// itself when it is not PEM): a piece of the secret that a log line holding
// it would contain.
func pemBody(s string) string {
	lines := strings.Split(s, "\n")
	if len(lines) > 1 && strings.HasPrefix(lines[0], "-----BEGIN") {
		return lines[1]
	}
	return s
}
