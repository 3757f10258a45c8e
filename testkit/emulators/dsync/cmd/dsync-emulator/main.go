// Command dsync-emulator runs the local DSYNC platform emulator until it is
// interrupted:
//
//	dsync-emulator [--listen 127.0.0.1:8091] [--api-key-env DSYNC_API_KEY]
//
// The API key clients must send is read from the environment variable named
// by --api-key-env (default DSYNC_API_KEY; "dev-key" when unset) so that it
// never appears in a process listing. The realtime endpoint is printed on
// start.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	dsyncemu "github.com/connector-host/connector-host/testkit/emulators/dsync"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:8091", "address to listen on")
	keyEnv := flag.String("api-key-env", "DSYNC_API_KEY", "environment variable holding the API key")
	flag.Parse()
	key := os.Getenv(*keyEnv)
	if key == "" {
		key = "dev-key"
		fmt.Fprintf(os.Stderr, "dsync-emulator: %s is not set; using the development key \"dev-key\"\n", *keyEnv)
	}
	e, err := dsyncemu.Start(dsyncemu.Config{APIKey: key}, *listen)
	if err != nil {
		fmt.Fprintln(os.Stderr, "dsync-emulator:", err)
		os.Exit(1)
	}
	fmt.Printf("dsync-emulator: realtime endpoint %s\n", e.RealtimeURL())
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	<-ctx.Done()
	if err := e.Close(); err != nil {
		fmt.Fprintln(os.Stderr, "dsync-emulator:", err)
	}
	c := e.Counters()
	fmt.Printf("dsync-emulator: stopped after %d requests (%d creates, %d updates, %d deletes)\n", c.Requests, c.Creates, c.Updates, c.Deletes)
}
