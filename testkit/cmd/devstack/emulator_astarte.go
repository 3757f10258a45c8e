package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/google/uuid"

	astarteemu "github.com/connector-host/connector-host/testkit/emulators/astarte"
)

// The local Astarte (testkit/emulators/astarte) behind the astarte plugin:
// a Pairing API over HTTPS and a TLS MQTT broker with client-certificate
// auth, both on 127.0.0.1, with a fresh CA and realm key on every run.

func init() {
	emulators = append(emulators, emulator{name: "Astarte", appID: "astarte", start: startAstarte})
}

// devAstarteNamespace is the UUID namespace of the dev stack's device ids.
var devAstarteNamespace = uuid.MustParse("0b6f3d3e-5c1a-4e0c-9a57-6c0d2f1e8a41")

// devAstarteInterfaces are written to files the add_interface examples use.
var devAstarteInterfaces = map[string]string{
	"sensors.json": `{"interface_name":"com.example.devstack.Sensors","version_major":1,"version_minor":0,"type":"datastream","ownership":"device",
  "mappings":[{"endpoint":"/%{sensor_id}/temperature","type":"double","reliability":"guaranteed","retention":"stored","explicit_timestamp":true}]}
`,
	"settings.json": `{"interface_name":"com.example.devstack.Settings","version_major":1,"version_minor":0,"type":"properties","ownership":"device",
  "mappings":[{"endpoint":"/%{sensor_id}/name","type":"string","allow_unset":true}]}
`,
}

// startAstarte runs the Astarte emulator and points the astarte connector
// at it (pairing_base_url, realm, ca_file). The emulator's CA and realm key
// are new on every run, so the examples pair a new device each time: its
// id is UUIDv5 of a fixed namespace and the run's start time, the value
// generate_device_id prints for the same input.
func startAstarte(_ context.Context, dir string) (started, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return started{}, err
	}
	emu, err := astarteemu.Start(astarteemu.Options{Realm: "devstack"})
	if err != nil {
		return started{}, err
	}
	files, err := emu.WriteFiles(dir)
	if err != nil {
		_ = emu.Close()
		return started{}, err
	}
	ifaceFiles := map[string]string{}
	for name, doc := range devAstarteInterfaces {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(doc), 0o600); err != nil {
			_ = emu.Close()
			return started{}, err
		}
		ifaceFiles[name] = p
	}
	serial := "devstack-" + time.Now().UTC().Format("20060102T150405")
	u := uuid.NewSHA1(devAstarteNamespace, []byte(serial))
	id := base64.RawURLEncoding.EncodeToString(u[:])

	call := func(capability string, request map[string]any) (string, error) {
		b, err := json.Marshal(map[string]any{"request": request})
		if err != nil {
			return "", err
		}
		return fmt.Sprintf("curl -s {URL}/v1/connectors/astarte/%s -d %s; echo", capability, shellQuote(string(b))), nil
	}
	steps := []struct {
		capability string
		request    map[string]any
	}{
		{"generate_device_id", map[string]any{"namespace": devAstarteNamespace.String(), "data": serial}},
		{"register_device", map[string]any{"device_id": id, "realm_private_key_file": files.RealmKeyFile}},
		{"obtain_device_certificate", map[string]any{"device_id": id}},
		{"add_interface", map[string]any{"device_id": id, "file": ifaceFiles["sensors.json"]}},
		{"add_interface", map[string]any{"device_id": id, "file": ifaceFiles["settings.json"]}},
		{"connect", map[string]any{"device_id": id, "wait": true}},
		{"set_property", map[string]any{"device_id": id, "interface": "com.example.devstack.Settings", "path": "/room1/name", "value": "Room 1"}},
		{"send", map[string]any{"device_id": id, "interface": "com.example.devstack.Sensors", "path": "/room1/temperature", "value": 21.5,
			"timestamp": "2024-05-06T07:08:09.123Z"}},
		{"status", map[string]any{"device_id": id}},
		{"disconnect", map[string]any{"device_id": id}},
	}
	var examples []string
	for _, s := range steps {
		ex, err := call(s.capability, s.request)
		if err != nil {
			_ = emu.Close()
			return started{}, err
		}
		examples = append(examples, ex)
	}
	return started{
		settings: emu.Settings(files),
		about: fmt.Sprintf("pairing %s, broker %s, realm %q (CA and realm key in %s; example device %s)",
			emu.PairingURL(), emu.BrokerURL(), emu.Realm(), dir, id),
		examples: examples,
		stop:     func() { _ = emu.Close() },
	}, nil
}
