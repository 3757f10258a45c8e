// Command eventsemu runs the events-protocol emulator until interrupted:
//
//	eventsemu -listen 127.0.0.1:8091
//
// It prints the events URL on stdout.
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"syscall"

	eventsemu "github.com/connector-host/connector-host/testkit/emulators/events"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:8091", "listen address (loopback only)")
	flag.Parse()
	if host, _, err := net.SplitHostPort(*listen); err != nil || !isLoopback(host) {
		fmt.Fprintln(os.Stderr, "eventsemu: -listen must be a loopback address such as 127.0.0.1:8091")
		os.Exit(2)
	}
	emu := eventsemu.New()
	emu.Addr = *listen
	if err := emu.Start(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Println(emu.URL())
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	<-ctx.Done()
	if err := emu.Close(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

// isLoopback reports whether host is localhost or a loopback IP.
func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
