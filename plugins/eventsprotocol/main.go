// Command connector-events-protocol is the events-protocol plugin of
// connector-host (app_id "events-protocol"): send_event sends a
// GuiaBolso events-protocol event to a remote service, process_event answers
// one event through the plugin's handler registry (which ships the seed's
// get:event:example v1). See package sdk/eventsprotocol for the protocol.
package main

import (
	"fmt"
	"os"

	"github.com/connector-host/connector-host/sdk"
	"github.com/connector-host/connector-host/sdk/eventsprotocol"
)

func main() {
	reg := eventsprotocol.NewRegistry()
	reg.SetResolver(gatewayResolver)
	integ, err := newIntegration(reg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "connector-events-protocol:", err)
		os.Exit(2)
	}
	sdk.Serve(integ)
}
