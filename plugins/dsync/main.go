// Command connector-dsync is the dsync plugin of connector-host: DSYNC
// realtime create/update/delete and batches, data layout and entity token
// generation, and the inbound API the DSYNC platform calls (see package
// internal/connector).
package main

import (
	"github.com/connector-host/connector-host/internal/gctune"
	"github.com/connector-host/connector-host/plugins/dsync/internal/connector"
	"github.com/connector-host/connector-host/sdk"
)

func main() {
	gctune.Apply(gcPercent, memoryLimit)
	sdk.Serve(connector.New())
}

// GC settings of the plugin process unless the operator set GOGC or
// GOMEMLIMIT (connectors.dsync.env). A batch keeps little alive (the
// operations and their results) but allocates for every request it sends
// (net/http's request, headers, buffers, contexts): with the default
// GOGC=100 the small live heap makes the collector run every few hundred
// requests, about a tenth of the plugin's CPU in a 10,000-create batch.
// GOGC=400 collects a quarter as often; the soft memory limit bounds what
// that may cost in memory when a batch of 100,000 operations is large.
const (
	gcPercent   = 400
	memoryLimit = 512 << 20
)
