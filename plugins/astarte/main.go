// Command connector-astarte is the astarte plugin of connector-host: Astarte
// devices (pairing and certificates, interfaces, MQTT v1 over TLS, durable
// properties and offline queue, server data as events), many per process,
// keyed by device id (see package internal/connector).
package main

import (
	"github.com/connector-host/connector-host/internal/gctune"
	"github.com/connector-host/connector-host/plugins/astarte/internal/connector"
	"github.com/connector-host/connector-host/sdk"
)

// GC settings of the plugin process unless the operator set GOGC or
// GOMEMLIMIT (connectors.astarte.env). Devices keep little alive (the
// interfaces, a bounded volatile queue; stored messages live in SQLite) but
// every message sent allocates (JSON and BSON, protobuf and gRPC or MQTT
// buffers, contexts): with the default GOGC=100 the collector took about a
// sixth of the plugin's CPU in a send_batch over the Message Hub. GOGC=400
// cut the plugin's CPU per message by a fifth, for more memory: with 100
// devices connected over MQTT the plugin's RSS is 68-76 MiB instead of
// 52 MiB. The soft memory limit bounds what it may cost with many devices.
const (
	gcPercent   = 400
	memoryLimit = 512 << 20
)

func main() {
	gctune.Apply(gcPercent, memoryLimit)
	sdk.Serve(connector.New())
}
