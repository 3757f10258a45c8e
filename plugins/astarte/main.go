// Command connector-astarte is the astarte plugin of connector-host: Astarte
// devices (pairing and certificates, interfaces, MQTT v1 over TLS, durable
// properties and offline queue, server data as events), many per process,
// keyed by device id (see package internal/connector).
package main

import (
	"github.com/connector-host/connector-host/plugins/astarte/internal/connector"
	"github.com/connector-host/connector-host/sdk"
)

func main() { sdk.Serve(connector.New()) }
