// Command astarte-emulator runs the local Astarte (Pairing API and MQTT
// broker) until it is interrupted:
//
//	astarte-emulator [--pairing 127.0.0.1:4003] [--broker 127.0.0.1:8883] [--realm test] [--dir data/astarte-emulator]
//
// It writes the CA certificate (ca.pem, to trust the Pairing API and the
// broker) and the realm private key (realm.key, to sign registration JWTs)
// into --dir, and prints the astarte connector settings that use them.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	astarteemu "github.com/connector-host/connector-host/testkit/emulators/astarte"
)

func main() {
	pairing := flag.String("pairing", "127.0.0.1:4003", "Pairing API listen address (loopback)")
	broker := flag.String("broker", "127.0.0.1:8883", "MQTT broker listen address (loopback)")
	realm := flag.String("realm", "test", "realm name")
	dir := flag.String("dir", "data/astarte-emulator", "directory for ca.pem and realm.key")
	flag.Parse()
	e, err := astarteemu.Start(astarteemu.Options{Realm: *realm, PairingAddr: *pairing, BrokerAddr: *broker})
	if err != nil {
		fmt.Fprintln(os.Stderr, "astarte-emulator:", err)
		os.Exit(1)
	}
	files, err := e.WriteFiles(*dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, "astarte-emulator:", err)
		os.Exit(1)
	}
	settings, _ := json.Marshal(e.Settings(files))
	fmt.Printf("astarte-emulator: pairing API %s, broker %s, realm %q\n", e.PairingURL(), e.BrokerURL(), e.Realm())
	fmt.Printf("astarte-emulator: realm private key %s (register_device realm_private_key_file)\n", files.RealmKeyFile)
	fmt.Printf("astarte-emulator: connector settings %s\n", settings)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	<-ctx.Done()
	if err := e.Close(); err != nil {
		fmt.Fprintln(os.Stderr, "astarte-emulator:", err)
	}
	fmt.Printf("astarte-emulator: stopped after %d messages from devices\n", len(e.Messages()))
}
