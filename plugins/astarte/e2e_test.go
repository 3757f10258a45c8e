package main_test

// End-to-end tests of the astarte plugin: a real host (testkit/harness)
// serving the real connector-astarte process over its HTTP API, against the
// local Astarte of testkit/emulators/astarte (Pairing API over HTTPS and a
// TLS broker with client-certificate auth and per-device ACL).
//
// The library-level tests cover what is not repeated here: a device cannot
// publish or subscribe outside its own topic tree — on the emulator broker
// (internal/mqtt TestDeviceConfinedToItsTree, testkit/emulators/astarte
// TestBrokerAuthACLAndRecording) and on a second broker, Debian's
// (internal/mqtt TestMosquittoConfinesDevices, which .ci/run requires).

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/connector-host/connector-host/host/config"
	astarteemu "github.com/connector-host/connector-host/testkit/emulators/astarte"
	"github.com/connector-host/connector-host/testkit/harness"
)

// stack is one test's local Astarte and a host running the plugin.
type stack struct {
	t        *testing.T
	emu      *astarteemu.Emulator
	host     *harness.Host
	files    astarteemu.Files
	settings map[string]any
	bin      string
}

// pluginBinary builds connector-astarte once per test process.
func pluginBinary(t *testing.T) string {
	t.Helper()
	return harness.Build(t, "./plugins/astarte", "connector-astarte")
}

// newStack starts an emulator and a host whose astarte connector points at
// it (pairing_base_url, realm, ca_file as default settings).
func newStack(t *testing.T) *stack {
	t.Helper()
	bin := pluginBinary(t)
	emu, err := astarteemu.Start(astarteemu.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = emu.Close() })
	files, err := emu.WriteFiles(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	s := &stack{t: t, emu: emu, files: files, settings: emu.Settings(files), bin: bin}
	s.host = harness.StartHost(t, []harness.Plugin{{Path: bin}}, func(c *config.Config) {
		c.Connectors["astarte"] = config.Connector{Settings: s.settings}
	})
	return s
}

// call invokes a capability through the host and returns the HTTP status
// and the decoded envelope.
func (s *stack) call(capability string, request any) (int, map[string]any) {
	s.t.Helper()
	body, err := json.Marshal(map[string]any{"request": request})
	if err != nil {
		s.t.Fatal(err)
	}
	r := s.host.Post(s.t, "/v1/connectors/astarte/"+capability, string(body))
	var m map[string]any
	dec := json.NewDecoder(bytes.NewReader(r.Body))
	dec.UseNumber()
	if err := dec.Decode(&m); err != nil {
		s.t.Fatalf("%s: answer is not a JSON object (%d): %s", capability, r.Status, r.Body)
	}
	return r.Status, m
}

// ok calls a capability that must succeed and returns its response.
func (s *stack) ok(capability string, request any) map[string]any {
	s.t.Helper()
	status, m := s.call(capability, request)
	if status != http.StatusOK {
		s.t.Fatalf("%s %v: status %d: %v", capability, request, status, m["error"])
	}
	resp, _ := m["response"].(map[string]any)
	return resp
}

// fail calls a capability that must fail with HTTP status and
// astarte.<code>, its message containing every one of parts.
func (s *stack) fail(capability string, request any, status int, code string, parts ...string) {
	s.t.Helper()
	got, m := s.call(capability, request)
	e, _ := m["error"].(map[string]any)
	if got != status || e == nil {
		s.t.Fatalf("%s %v: status %d %v, want %d astarte.%s", capability, request, got, m, status, code)
	}
	msg := fmt.Sprint(e["message"])
	if e["error_code"] != "astarte."+code {
		s.t.Fatalf("%s %v: %v %q, want astarte.%s", capability, request, e["error_code"], msg, code)
	}
	for _, p := range parts {
		if !strings.Contains(msg, p) {
			s.t.Fatalf("%s %v: message %q does not name %q", capability, request, msg, p)
		}
	}
}

// pair runs generate_device_id → register_device (JWT signed here from the
// realm key file) → obtain_device_certificate through the host.
func (s *stack) pair() string {
	s.t.Helper()
	id, _ := s.ok("generate_device_id", map[string]any{})["device_id"].(string)
	if len(id) != 22 {
		s.t.Fatalf("generated device id %q", id)
	}
	reg := s.ok("register_device", map[string]any{"device_id": id, "realm_private_key_file": s.files.RealmKeyFile})
	if reg["credentials_stored"] != true {
		s.t.Fatalf("register_device %v", reg)
	}
	if _, ok := reg["credentials_secret"]; ok {
		s.t.Fatalf("register_device returned the credentials secret: %v", reg)
	}
	if registered, _ := s.emu.Registered(id); !registered {
		s.t.Fatalf("the Pairing API did not register %s", id)
	}
	cert := s.ok("obtain_device_certificate", map[string]any{"device_id": id})
	if cert["subject"] != "CN="+s.emu.Realm()+"/"+id+",O=Devices" {
		s.t.Fatalf("certificate %v", cert)
	}
	if _, certs := s.emu.Registered(id); certs != 1 {
		s.t.Fatalf("the Pairing API issued %d certificates, want 1", certs)
	}
	return id
}

// addInterfaces adds interface documents (JSON text) to a device.
func (s *stack) addInterfaces(id string, docs ...string) {
	s.t.Helper()
	for _, d := range docs {
		s.ok("add_interface", map[string]any{"device_id": id, "interface": object(s.t, d)})
	}
}

// connect connects and waits until connected with the queues delivered.
func (s *stack) connect(id string) map[string]any {
	s.t.Helper()
	st := s.ok("connect", map[string]any{"device_id": id, "wait": true, "timeout_ms": 30000})
	if st["state"] != "connected" {
		s.t.Fatalf("connect: %v", st)
	}
	return st
}

// base is the device's base topic.
func (s *stack) base(id string) string { return s.emu.Realm() + "/" + id }

func object(t *testing.T, doc string) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(doc), &m); err != nil {
		t.Fatalf("test interface: %v", err)
	}
	return m
}

func within(t *testing.T, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// stream is a streaming call read line by line as the host writes it.
type stream struct {
	lines chan []byte
}

// openStream starts a streaming capability in the background; its NDJSON
// lines arrive on lines, closed at the end of the body. The host answers
// (status and headers) only with the first chunk, so the call runs in its
// own goroutine; an error answer fails the test. The call is cancelled at
// test end.
func (s *stack) openStream(capability string, request any) *stream {
	s.t.Helper()
	body, err := json.Marshal(map[string]any{"request": request})
	if err != nil {
		s.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.host.URL+"/v1/connectors/astarte/"+capability, bytes.NewReader(body))
	if err != nil {
		cancel()
		s.t.Fatal(err)
	}
	st := &stream{lines: make(chan []byte, 1024)}
	done := make(chan struct{})
	t := s.t
	go func() {
		defer close(done)
		defer close(st.lines)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			if ctx.Err() == nil {
				t.Errorf("%s: %v", capability, err)
			}
			return
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			b, _ := io.ReadAll(resp.Body)
			t.Errorf("%s: status %d: %s", capability, resp.StatusCode, b)
			return
		}
		if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/x-ndjson") {
			t.Errorf("%s: content type %q, want application/x-ndjson", capability, ct)
		}
		r := bufio.NewReader(resp.Body)
		for {
			line, err := r.ReadBytes('\n')
			if len(bytes.TrimSpace(line)) > 0 {
				st.lines <- bytes.TrimSpace(line)
			}
			if err != nil {
				return
			}
		}
	}()
	s.t.Cleanup(func() {
		cancel()
		<-done
	})
	return st
}

// next returns the next line of the stream decoded, failing the test after
// timeout or at the end of the stream.
func (st *stream) next(t *testing.T, timeout time.Duration) map[string]any {
	t.Helper()
	select {
	case line, ok := <-st.lines:
		if !ok {
			t.Fatalf("stream ended early")
		}
		var m map[string]any
		dec := json.NewDecoder(bytes.NewReader(line))
		dec.UseNumber()
		if err := dec.Decode(&m); err != nil {
			t.Fatalf("stream line is not JSON: %v: %s", err, line)
		}
		return m
	case <-time.After(timeout):
		t.Fatalf("no stream line within %s", timeout)
	}
	return nil
}

// pluginPID finds the running plugin process of this stack through /proc:
// a child of the test process running the connector-astarte binary whose
// data dir (CONNECTOR_DATA_DIR) is under this host's data dir.
func (s *stack) pluginPID() (int, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return 0, err
	}
	want, err := filepath.EvalSymlinks(s.bin)
	if err != nil {
		return 0, err
	}
	self := os.Getpid()
	var found []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...; comm may hold spaces, so split after ")".
		rest := stat[bytes.LastIndexByte(stat, ')')+1:]
		f := strings.Fields(string(rest))
		if len(f) < 2 || f[1] != strconv.Itoa(self) || f[0] == "Z" {
			continue
		}
		exe, err := os.Readlink(filepath.Join("/proc", e.Name(), "exe"))
		if err != nil || strings.TrimSuffix(exe, " (deleted)") != want {
			continue
		}
		environ, err := os.ReadFile(filepath.Join("/proc", e.Name(), "environ"))
		if err != nil {
			continue
		}
		for _, kv := range bytes.Split(environ, []byte{0}) {
			if v, ok := bytes.CutPrefix(kv, []byte("CONNECTOR_DATA_DIR=")); ok && strings.HasPrefix(string(v), s.host.Config.DataDir+string(filepath.Separator)) {
				found = append(found, pid)
			}
		}
	}
	if len(found) != 1 {
		return 0, fmt.Errorf("want one connector-astarte child of pid %d under %s, found %v", self, s.host.Config.DataDir, found)
	}
	return found[0], nil
}

// Interfaces of the end-to-end tests.
const (
	// allTypes has one mapping per Astarte type, with explicit timestamps,
	// and one per reliability.
	allTypes = `{"interface_name":"com.example.e2e.AllTypes","version_major":1,"version_minor":2,"type":"datastream","ownership":"device",
	  "mappings":[
	    {"endpoint":"/%{s}/double","type":"double","reliability":"guaranteed","explicit_timestamp":true},
	    {"endpoint":"/%{s}/integer","type":"integer","reliability":"guaranteed","explicit_timestamp":true},
	    {"endpoint":"/%{s}/boolean","type":"boolean","reliability":"guaranteed","explicit_timestamp":true},
	    {"endpoint":"/%{s}/longinteger","type":"longinteger","reliability":"guaranteed","explicit_timestamp":true},
	    {"endpoint":"/%{s}/string","type":"string","reliability":"guaranteed","explicit_timestamp":true},
	    {"endpoint":"/%{s}/binaryblob","type":"binaryblob","reliability":"guaranteed","explicit_timestamp":true},
	    {"endpoint":"/%{s}/datetime","type":"datetime","reliability":"guaranteed","explicit_timestamp":true},
	    {"endpoint":"/%{s}/doublearray","type":"doublearray","reliability":"guaranteed","explicit_timestamp":true},
	    {"endpoint":"/%{s}/integerarray","type":"integerarray","reliability":"guaranteed","explicit_timestamp":true},
	    {"endpoint":"/%{s}/booleanarray","type":"booleanarray","reliability":"guaranteed","explicit_timestamp":true},
	    {"endpoint":"/%{s}/longintegerarray","type":"longintegerarray","reliability":"guaranteed","explicit_timestamp":true},
	    {"endpoint":"/%{s}/stringarray","type":"stringarray","reliability":"guaranteed","explicit_timestamp":true},
	    {"endpoint":"/%{s}/binaryblobarray","type":"binaryblobarray","reliability":"guaranteed","explicit_timestamp":true},
	    {"endpoint":"/%{s}/datetimearray","type":"datetimearray","reliability":"guaranteed","explicit_timestamp":true},
	    {"endpoint":"/%{s}/q0","type":"double","reliability":"unreliable"},
	    {"endpoint":"/%{s}/q2","type":"double","reliability":"unique"}]}`
	geo = `{"interface_name":"com.example.e2e.Geo","version_major":2,"version_minor":0,"type":"datastream","ownership":"device","aggregation":"object",
	  "mappings":[{"endpoint":"/%{id}/lat","type":"double","reliability":"guaranteed","explicit_timestamp":true},
	              {"endpoint":"/%{id}/lon","type":"double","reliability":"guaranteed","explicit_timestamp":true},
	              {"endpoint":"/%{id}/label","type":"string","reliability":"guaranteed","explicit_timestamp":true},
	              {"endpoint":"/%{id}/fix","type":"integerarray","reliability":"guaranteed","explicit_timestamp":true}]}`
	devProps = `{"interface_name":"com.example.e2e.DevProps","version_major":1,"version_minor":0,"type":"properties","ownership":"device",
	  "mappings":[{"endpoint":"/%{n}/name","type":"string","allow_unset":true},{"endpoint":"/%{n}/level","type":"integer"}]}`
	srvProps = `{"interface_name":"com.example.e2e.SrvProps","version_major":1,"version_minor":0,"type":"properties","ownership":"server",
	  "mappings":[{"endpoint":"/%{n}/rate","type":"integer","allow_unset":true}]}`
	srvData = `{"interface_name":"com.example.e2e.SrvData","version_major":1,"version_minor":0,"type":"datastream","ownership":"server",
	  "mappings":[{"endpoint":"/ping","type":"integer","reliability":"unique"},
	              {"endpoint":"/%{x}/temp","type":"double","reliability":"unique","explicit_timestamp":true},
	              {"endpoint":"/%{x}/big","type":"longinteger","reliability":"unique"},
	              {"endpoint":"/%{x}/blob","type":"binaryblob","reliability":"unique"}]}`
	srvObj = `{"interface_name":"com.example.e2e.SrvObj","version_major":1,"version_minor":0,"type":"datastream","ownership":"server","aggregation":"object",
	  "mappings":[{"endpoint":"/%{x}/a","type":"integer","reliability":"unique"},{"endpoint":"/%{x}/b","type":"string","reliability":"unique"}]}`
)
