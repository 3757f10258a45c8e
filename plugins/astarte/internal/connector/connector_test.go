package connector

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/connector-host/connector-host/plugins/astarte/internal/interfaces"
	"github.com/connector-host/connector-host/plugins/astarte/internal/pairing"
	"github.com/connector-host/connector-host/plugins/astarte/internal/payload"
	"github.com/connector-host/connector-host/sdk"
	astarteemu "github.com/connector-host/connector-host/testkit/emulators/astarte"
)

const (
	sensors = `{"interface_name":"org.astarte-platform.genericsensors.Values","version_major":1,"version_minor":0,
	  "type":"datastream","ownership":"device","mappings":[{"endpoint":"/%{sensor_id}/value","type":"double",
	  "reliability":"guaranteed","retention":"stored","explicit_timestamp":true},
	  {"endpoint":"/%{sensor_id}/count","type":"longinteger","reliability":"unique"}]}`
	geo = `{"interface_name":"com.example.Geo","version_major":1,"version_minor":0,"type":"datastream","ownership":"device","aggregation":"object",
	  "mappings":[{"endpoint":"/%{id}/lat","type":"double","reliability":"guaranteed"},{"endpoint":"/%{id}/lon","type":"double","reliability":"guaranteed"}]}`
	devProps = `{"interface_name":"com.example.DevProps","version_major":1,"version_minor":0,"type":"properties","ownership":"device",
	  "mappings":[{"endpoint":"/%{n}/name","type":"string","allow_unset":true}]}`
	srvProps = `{"interface_name":"com.example.SrvProps","version_major":1,"version_minor":0,"type":"properties","ownership":"server",
	  "mappings":[{"endpoint":"/%{n}/rate","type":"integer","allow_unset":true}]}`
)

type harness struct {
	t        *testing.T
	emu      *astarteemu.Emulator
	plugin   *plugin
	integ    *sdk.Integration
	settings map[string]any
	dir      string
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	emu, err := astarteemu.Start(astarteemu.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = emu.Close() })
	dir := t.TempDir()
	ca := filepath.Join(dir, "ca.pem")
	key := filepath.Join(dir, "realm.key")
	if err := os.WriteFile(ca, emu.CACertPEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(key, emu.RealmPrivateKeyPEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, emu: emu, dir: dir, settings: map[string]any{"pairing_base_url": emu.PairingURL(), "realm": "test", "ca_file": ca}}
	h.integ = h.start(filepath.Join(dir, "data"))
	return h
}

// start runs a plugin instance on dataDir, as the host would (Setup, then
// calls; Shutdown at the end).
func (h *harness) start(dataDir string) *sdk.Integration {
	h.plugin = newPlugin()
	integ := h.plugin.integ
	if err := integ.Setup(context.Background(), sdk.Runtime{DataDir: dataDir}); err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = integ.Shutdown(ctx)
	})
	return integ
}

// call invokes a capability and returns the status and decoded envelope.
func (h *harness) call(capability string, request any, extra ...map[string]any) (int, map[string]any) {
	h.t.Helper()
	env := map[string]any{"request": request, "settings": h.settings}
	for _, e := range extra {
		for k, v := range e {
			env[k] = v
		}
	}
	body, _ := json.Marshal(env)
	status, out := h.integ.Invoke(context.Background(), capability, body)
	var m map[string]any
	if err := json.Unmarshal(out, &m); err != nil {
		h.t.Fatalf("%s: not JSON: %s", capability, out)
	}
	return status, m
}

func (h *harness) ok(capability string, request any, extra ...map[string]any) map[string]any {
	h.t.Helper()
	status, m := h.call(capability, request, extra...)
	if status != 200 {
		h.t.Fatalf("%s: status %d: %v", capability, status, m["error"])
	}
	resp, _ := m["response"].(map[string]any)
	return resp
}

func (h *harness) fail(capability string, request any, code string, contains string) {
	h.t.Helper()
	status, m := h.call(capability, request)
	e, _ := m["error"].(map[string]any)
	if status == 200 || e == nil {
		h.t.Fatalf("%s %v: succeeded, want %s", capability, request, code)
	}
	if e["error_code"] != "astarte."+code || !strings.Contains(fmt.Sprint(e["message"]), contains) {
		h.t.Fatalf("%s %v: %v %q, want astarte.%s containing %q", capability, request, e["error_code"], e["message"], code, contains)
	}
}

func obj(doc string) map[string]any {
	var m map[string]any
	if err := json.Unmarshal([]byte(doc), &m); err != nil {
		panic(err)
	}
	return m
}

// pairDevice runs generate → register (realm key file) → certificate.
func (h *harness) pairDevice() string {
	h.t.Helper()
	id := h.ok("generate_device_id", map[string]any{})["device_id"].(string)
	reg := h.ok("register_device", map[string]any{"device_id": id, "realm_private_key_file": filepath.Join(h.dir, "realm.key")})
	if reg["credentials_stored"] != true || reg["credentials_secret"] != nil {
		h.t.Fatalf("register response %v", reg)
	}
	cert := h.ok("obtain_device_certificate", map[string]any{"device_id": id})
	if cert["subject"] != "CN=test/"+id+",O=Devices" {
		h.t.Fatalf("certificate %v", cert)
	}
	return id
}

func TestCapabilitiesEndToEnd(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	id := h.pairDevice()
	base := "test/" + id

	if r := h.ok("device_has_certificate", map[string]any{"device_id": id}); r["has_certificate"] != true {
		t.Fatalf("has certificate %v", r)
	}
	if r := h.ok("certificate_is_valid", map[string]any{"device_id": id, "remote": true}); r["valid"] != true {
		t.Fatalf("certificate_is_valid %v", r)
	}
	if r := h.ok("verify_device_certificate", map[string]any{"device_id": id}); r["valid"] != true {
		t.Fatalf("verify %v", r)
	}
	if r := h.ok("get_transport_info", map[string]any{"device_id": id}); r["broker_url"] != h.emu.BrokerURL() {
		t.Fatalf("transport info %v", r)
	}
	for _, doc := range []string{sensors, geo, devProps, srvProps} {
		h.ok("add_interface", map[string]any{"device_id": id, "interface": obj(doc)})
	}
	file := filepath.Join(h.dir, "x.json")
	os.WriteFile(file, []byte(strings.Replace(devProps, "DevProps", "FileProps", 1)), 0o600)
	h.ok("add_interface", map[string]any{"device_id": id, "file": file})
	h.ok("remove_interface", map[string]any{"device_id": id, "interface_name": "com.example.FileProps"})
	list := h.ok("list_interfaces", map[string]any{"device_id": id})
	if list["introspection"] != "com.example.DevProps:1:0;com.example.Geo:1:0;com.example.SrvProps:1:0;org.astarte-platform.genericsensors.Values:1:0" {
		t.Fatalf("introspection %v", list["introspection"])
	}
	if d := h.ok("set_property", map[string]any{"device_id": id, "interface": "com.example.DevProps", "path": "/a/name", "value": "before"}); d["delivery"] != "pending" {
		t.Fatalf("offline set_property %v", d)
	}

	st := h.ok("connect", map[string]any{"device_id": id, "wait": true, "timeout_ms": 20000})
	if st["state"] != "connected" || st["transport"] != "mqtt" {
		t.Fatalf("connect %v", st)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	msgs, err := h.emu.WaitMessages(ctx, base, 4)
	if err != nil {
		t.Fatal(err)
	}
	for k, want := range []string{base, base + "/control/emptyCache", base + "/com.example.DevProps/a/name", base + "/control/producer/properties"} {
		if msgs[k].Topic != want || msgs[k].QoS != 2 {
			t.Fatalf("handshake %d: %s QoS %d, want %s", k, msgs[k].Topic, msgs[k].QoS, want)
		}
	}

	// A streaming subscriber sees server data.
	subDone := make(chan []byte, 1)
	go func() {
		body, _ := json.Marshal(map[string]any{"request": map[string]any{"device_id": id, "max_events": 2,
			"types": []string{"data_received", "property_unset"}, "timeout_ms": 20000}, "settings": h.settings})
		_, out := h.integ.Invoke(context.Background(), "subscribe", body)
		subDone <- out
	}()
	dev, _ := h.plugin.mgr.Lookup(id)
	if err := dev.WaitSubscribers(ctx, 1); err != nil {
		t.Fatal(err)
	}

	h.emu.ResetMessages()
	ts := "2024-05-06T07:08:09.123Z"
	if d := h.ok("send", map[string]any{"device_id": id, "interface": "org.astarte-platform.genericsensors.Values", "path": "/s1/value", "value": 21.5, "timestamp": ts}); d["delivery"] != "delivered" {
		t.Fatalf("send %v", d)
	}
	// A 64-bit integer beyond 2^53 keeps its exact value (JSON number).
	if d := h.ok("send", map[string]any{"device_id": id, "interface": "org.astarte-platform.genericsensors.Values", "path": "/s1/count", "value": json.Number("9223372036854775807")}); d["delivery"] != "delivered" {
		t.Fatalf("send longinteger %v", d)
	}
	if d := h.ok("send_aggregate", map[string]any{"device_id": id, "interface": "com.example.Geo", "path": "/g1", "value": map[string]any{"lat": 1.5, "lon": -2}}); d["delivery"] != "delivered" {
		t.Fatalf("send_aggregate %v", d)
	}
	got := h.emu.MessagesFrom(base)
	if len(got) != 3 {
		t.Fatalf("broker got %d messages", len(got))
	}
	v, _ := payload.Decode(interfaces.Double, got[0].Payload)
	if v.Value != 21.5 || v.Timestamp == nil || v.Timestamp.Format(time.RFC3339Nano) != "2024-05-06T07:08:09.123Z" || got[0].QoS != 1 {
		t.Fatalf("sent value %+v QoS %d", v, got[0].QoS)
	}
	n, _ := payload.Decode(interfaces.LongInteger, got[1].Payload)
	if n.Value != int64(9223372036854775807) || got[1].QoS != 2 {
		t.Fatalf("longinteger %v", n.Value)
	}

	rate, _ := payload.Encode(int32(9), nil)
	if err := h.emu.PublishData(id, "com.example.SrvProps", "/x/rate", rate, 2); err != nil {
		t.Fatal(err)
	}
	if err := h.emu.PublishData(id, "com.example.SrvProps", "/x/rate", nil, 2); err != nil {
		t.Fatal(err)
	}
	var out []byte
	select {
	case out = <-subDone:
	case <-ctx.Done():
		t.Fatalf("subscribe did not end: %s", <-subDone)
	}
	lines := bytes.Split(bytes.TrimSpace(out), []byte("\n"))
	if len(lines) != 3 {
		t.Fatalf("subscribe stream %s", out)
	}
	var e1, e2 map[string]any
	json.Unmarshal(lines[0], &e1)
	json.Unmarshal(lines[1], &e2)
	if e1["type"] != "data_received" || e1["interface"] != "com.example.SrvProps" || e1["path"] != "/x/rate" || e1["value"] != float64(9) || e1["device_id"] != id {
		t.Fatalf("event 1 %v", e1)
	}
	if e2["type"] != "property_unset" || e2["path"] != "/x/rate" {
		t.Fatalf("event 2 %v", e2)
	}
	if !bytes.HasPrefix(lines[2], []byte(`{"page"`)) {
		t.Fatalf("stream end %s", lines[2])
	}

	if r := h.ok("get_property", map[string]any{"device_id": id, "interface": "com.example.DevProps", "path": "/a/name"}); r["set"] != true || r["value"] != "before" {
		t.Fatalf("get_property %v", r)
	}
	if d := h.ok("unset_property", map[string]any{"device_id": id, "interface": "com.example.DevProps", "path": "/a/name"}); d["delivery"] != "delivered" {
		t.Fatalf("unset %v", d)
	}
	h.ok("set_property", map[string]any{"device_id": id, "interface": "com.example.DevProps", "path": "/b/name", "value": "b"})
	if r := h.ok("list_properties", map[string]any{"device_id": id}); len(r["properties"].([]any)) != 1 {
		t.Fatalf("list_properties %v", r)
	}
	if r := h.ok("status", map[string]any{"device_id": id}); r["state"] != "connected" || r["queued_stored"] != float64(0) {
		t.Fatalf("status %v", r)
	}
	if r := h.ok("disconnect", map[string]any{"device_id": id}); r["state"] != "disconnected" {
		t.Fatalf("disconnect %v", r)
	}
	// Stored retention while disconnected: queued, not lost.
	if d := h.ok("send", map[string]any{"device_id": id, "interface": "org.astarte-platform.genericsensors.Values", "path": "/s1/value", "value": 1, "timestamp": ts}); d["delivery"] != "queued_stored" {
		t.Fatalf("offline send %v", d)
	}
}

// TestCSRAndImportedCertificate: a device key's CSR signed outside the
// plugin (here by the Pairing API, called directly), imported, is the
// certificate the device connects with; certificates of another key or
// subject, or without a device key, are refused.
func TestCSRAndImportedCertificate(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	other := h.pairDevice()
	id := h.ok("generate_device_id", map[string]any{})["device_id"].(string)
	h.ok("register_device", map[string]any{"device_id": id, "realm_private_key_file": filepath.Join(h.dir, "realm.key")})

	h.fail("import_device_certificate", map[string]any{"device_id": id, "client_crt": "not a certificate"}, "bad_request", "request.client_crt")
	otherPEM, err := h.plugin.keys.CertificatePEM("test", other)
	if err != nil {
		t.Fatal(err)
	}
	h.fail("import_device_certificate", map[string]any{"device_id": id, "client_crt": string(otherPEM)}, "not_found", "generate_device_csr")

	r := h.ok("generate_device_csr", map[string]any{"device_id": id})
	csr, _ := r["csr"].(string)
	if r["device_id"] != id || !strings.HasPrefix(csr, "-----BEGIN CERTIFICATE REQUEST-----") {
		t.Fatalf("generate_device_csr %v", r)
	}
	// The key is kept: a second CSR is for the same key, with the subject
	// Astarte wants.
	first, second := parseCSR(t, csr), parseCSR(t, h.ok("generate_device_csr", map[string]any{"device_id": id})["csr"])
	if !first.PublicKey.(*ecdsa.PublicKey).Equal(second.PublicKey) {
		t.Fatal("a second CSR has another key")
	}
	if first.Subject.String() != "CN=test/"+id+",O=Devices" {
		t.Fatalf("CSR subject %s", first.Subject)
	}
	if has := h.ok("device_has_certificate", map[string]any{"device_id": id}); has["has_certificate"] != false {
		t.Fatalf("certificate before import: %v", has)
	}
	h.fail("import_device_certificate", map[string]any{"device_id": id, "client_crt": string(otherPEM)}, "bad_request", "does not match the device key")

	client, err := pairing.NewClient(h.emu.PairingURL(), &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: h.emu.CAPool(), MinVersion: tls.VersionTLS12}}})
	if err != nil {
		t.Fatal(err)
	}
	secret, err := h.plugin.keys.Secret("test", id)
	if err != nil {
		t.Fatal(err)
	}
	crt, err := client.ObtainCertificate(context.Background(), "test", id, secret, []byte(csr))
	if err != nil {
		t.Fatal(err)
	}
	imp := h.ok("import_device_certificate", map[string]any{"device_id": id, "client_crt": string(crt)})
	if imp["device_id"] != id || imp["subject"] != "CN=test/"+id+",O=Devices" {
		t.Fatalf("import %v", imp)
	}
	if v := h.ok("certificate_is_valid", map[string]any{"device_id": id, "remote": true}); v["valid"] != true {
		t.Fatalf("imported certificate not valid: %v", v)
	}
	if st := h.ok("connect", map[string]any{"device_id": id, "wait": true, "timeout_ms": 20000}); st["state"] != "connected" {
		t.Fatalf("connect with the imported certificate: %v", st)
	}
	if _, issued := h.emu.Registered(id); issued != 1 {
		t.Fatalf("%d certificates issued, want the imported one only", issued)
	}
	h.ok("disconnect", map[string]any{"device_id": id})
}

// TestImportedCredentialsSecret: a device registered elsewhere (as with
// astartectl) works from its credentials secret: certificate, connection.
func TestImportedCredentialsSecret(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	id := h.ok("generate_device_id", map[string]any{})["device_id"].(string)
	h.fail("obtain_device_certificate", map[string]any{"device_id": id}, "not_found", "credentials secret")
	secret := h.emu.RegisterDevice(id)

	// A wrong secret is stored as given; the Pairing API refuses it (403).
	h.ok("import_credentials_secret", map[string]any{"device_id": id, "credentials_secret": "wrong-" + secret})
	h.fail("obtain_device_certificate", map[string]any{"device_id": id}, "permission_denied", "pairing credentials: HTTP 403")
	h.fail("import_credentials_secret", map[string]any{"device_id": id, "credentials_secret": secret + "\n"}, "bad_request", "request.credentials_secret")

	r := h.ok("import_credentials_secret", map[string]any{"device_id": id, "credentials_secret": secret})
	if r["device_id"] != id || r["credentials_stored"] != true || len(r) != 2 {
		t.Fatalf("import_credentials_secret %v", r)
	}
	if cert := h.ok("obtain_device_certificate", map[string]any{"device_id": id}); cert["subject"] != "CN=test/"+id+",O=Devices" {
		t.Fatalf("certificate %v", cert)
	}
	if st := h.ok("connect", map[string]any{"device_id": id, "wait": true, "timeout_ms": 20000}); st["state"] != "connected" {
		t.Fatalf("connect %v", st)
	}
	h.ok("disconnect", map[string]any{"device_id": id})
}

func parseCSR(t *testing.T, v any) *x509.CertificateRequest {
	t.Helper()
	s, _ := v.(string)
	block, _ := pem.Decode([]byte(s))
	if block == nil || block.Type != "CERTIFICATE REQUEST" {
		t.Fatalf("not a PEM CSR: %q", s)
	}
	csr, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if err := csr.CheckSignature(); err != nil {
		t.Fatal(err)
	}
	return csr
}

func TestErrorCodes(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	id := "AAAAAAAAAAAAAAAAAAAAAA"
	h.ok("add_interface", map[string]any{"device_id": id, "interface": obj(sensors)})
	h.ok("add_interface", map[string]any{"device_id": id, "interface": obj(devProps)})
	bad := obj(sensors)
	bad["version_major"], bad["version_minor"] = 0, 0
	h.fail("add_interface", map[string]any{"device_id": id, "interface": bad}, "bad_request", "must not both be 0")
	bad = obj(devProps)
	bad["aggregation"] = "object"
	h.fail("add_interface", map[string]any{"device_id": id, "interface": bad}, "bad_request", "cannot be object-aggregated")
	h.fail("add_interface", map[string]any{"device_id": id}, "bad_request", "interface (a JSON object) or file")
	h.fail("add_interface", map[string]any{"device_id": id, "file": "/nonexistent.json"}, "bad_request", "request.file")
	h.fail("send", map[string]any{"device_id": id, "interface": "com.example.Nope", "path": "/x", "value": 1}, "not_found", "not in the device introspection")
	h.fail("send", map[string]any{"device_id": id, "interface": "org.astarte-platform.genericsensors.Values", "path": "/s/value", "value": 1}, "bad_request", "timestamp is required")
	h.fail("send", map[string]any{"device_id": id, "interface": "org.astarte-platform.genericsensors.Values", "path": "/s/nope", "value": 1}, "bad_request", "no mapping matches")
	h.fail("send", map[string]any{"device_id": id, "interface": "org.astarte-platform.genericsensors.Values", "path": "/s/count", "value": 1.5}, "bad_request", "whole number")
	h.fail("send", map[string]any{"device_id": id, "interface": "org.astarte-platform.genericsensors.Values", "path": "/s/count", "value": 1}, "service_error", "retention discard")
	h.fail("set_property", map[string]any{"device_id": id, "interface": "com.example.DevProps", "path": "/a/name", "value": 5}, "bad_request", "wants a string")
	h.fail("send_aggregate", map[string]any{"device_id": id, "interface": "com.example.DevProps", "path": "/a", "value": 1}, "bad_request", "wants an object")
	h.fail("status", map[string]any{"device_id": "short"}, "bad_request", "device_id")
	h.fail("obtain_device_certificate", map[string]any{"device_id": id}, "not_found", "register the device")
	h.fail("register_device", map[string]any{"device_id": id}, "bad_request", "auth.jwt")
	h.fail("generate_device_id", map[string]any{"namespace": "nope", "data": "x"}, "bad_request", "not a UUID")
	h.fail("subscribe", map[string]any{"device_id": id, "types": []string{"weird"}}, "bad_request", "unknown event type")

	// A JWT the realm key did not sign → unauthorized from the Pairing API.
	status, m := h.call("register_device", map[string]any{"device_id": id}, map[string]any{"auth": map[string]any{"jwt": map[string]any{"token": "e30.e30.sig"}}})
	if e := m["error"].(map[string]any); status != 401 || e["error_code"] != "astarte.unauthorized" || strings.Contains(fmt.Sprint(e), "e30.e30.sig") {
		t.Fatalf("bad JWT: %d %v", status, m["error"])
	}
	// A JWT with an a_pa that does not cover registration → permission_denied.
	tok, _ := h.emu.SignJWT([]string{"GET::.*"}, time.Minute)
	status, _ = h.call("register_device", map[string]any{"device_id": id}, map[string]any{"auth": map[string]any{"jwt": map[string]any{"token": tok}}})
	if status != 403 {
		t.Fatalf("a_pa refusal: %d", status)
	}
	// A good user-given JWT registers.
	tok, _ = h.emu.SignJWT([]string{"POST::.*"}, time.Minute)
	status, m = h.call("register_device", map[string]any{"device_id": id}, map[string]any{"auth": map[string]any{"jwt": map[string]any{"token": tok}}})
	if status != 200 {
		t.Fatalf("register with JWT: %d %v", status, m)
	}

	// Missing settings.
	h.settings = map[string]any{"realm": "test"}
	h.fail("get_transport_info", map[string]any{"device_id": id}, "integration_missing_parameter", "pairing_base_url")
	h.settings = map[string]any{"pairing_base_url": "https://astarte.example.com/pairing", "realm": "test", "insecure_skip_verify": true}
	h.fail("get_transport_info", map[string]any{"device_id": id}, "bad_request", "loopback")
}

// insecure_skip_verify works against a loopback Pairing API and broker.
func TestInsecureLoopback(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.settings = map[string]any{"pairing_base_url": h.emu.PairingURL(), "realm": "test", "insecure_skip_verify": true}
	id := h.pairDevice()
	h.ok("add_interface", map[string]any{"device_id": id, "interface": obj(devProps)})
	if st := h.ok("connect", map[string]any{"device_id": id, "wait": true}); st["state"] != "connected" {
		t.Fatalf("connect %v", st)
	}
}

// Interfaces from interfaces_dir; a restarted plugin reconnects the devices
// that were connected and delivers what they had queued.
func TestInterfacesDirAndResumeAfterRestart(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	idir := filepath.Join(h.dir, "interfaces")
	os.MkdirAll(idir, 0o700)
	os.WriteFile(filepath.Join(idir, "values.json"), []byte(sensors), 0o600)
	h.settings["interfaces_dir"] = idir
	id := h.pairDevice()
	base := "test/" + id
	if st := h.ok("connect", map[string]any{"device_id": id, "wait": true}); st["introspection"] != "org.astarte-platform.genericsensors.Values:1:0" {
		t.Fatalf("introspection from interfaces_dir: %v", st)
	}
	if err := h.emu.StopBroker(); err != nil {
		t.Fatal(err)
	}
	for k := 0; k < 5; k++ {
		if d := h.ok("send", map[string]any{"device_id": id, "interface": "org.astarte-platform.genericsensors.Values", "path": "/s/value", "value": k, "timestamp": "2024-01-01T00:00:00Z"}); d["delivery"] != "queued_stored" {
			t.Fatalf("offline send %v", d)
		}
	}
	// Stop this plugin instance and start another on the same data dir.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := h.integ.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	h.emu.ResetMessages()
	if err := h.emu.StartBroker(); err != nil {
		t.Fatal(err)
	}
	h.integ = h.start(filepath.Join(h.dir, "data"))
	var vals []float64
	err := h.emu.Wait(ctx, func() bool {
		vals = nil
		for _, m := range h.emu.MessagesFrom(base) {
			if strings.HasSuffix(m.Topic, "/s/value") {
				v, _ := payload.Decode(interfaces.Double, m.Payload)
				vals = append(vals, v.Value.(float64))
			}
		}
		return len(vals) >= 5
	})
	if err != nil {
		t.Fatalf("queued messages after restart: %v (%v)", err, vals)
	}
	if fmt.Sprint(vals) != "[0 1 2 3 4]" {
		t.Fatalf("order %v", vals)
	}
}

func TestPluginBinaryHelp(t *testing.T) {
	t.Parallel()
	integ := New()
	if err := integ.Validate(); err != nil {
		t.Fatal(err)
	}
	// Every capability of issue 8 is registered.
	status, out := integ.Invoke(context.Background(), "generate_device_id", []byte(`{"request":{"namespace":"6ba7b810-9dad-11d1-80b4-00c04fd430c8","data":"serial"}}`))
	if status != 200 || !bytes.Contains(out, []byte(`"device_id"`)) {
		t.Fatalf("generate_device_id %d %s", status, out)
	}
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Scan()
}
