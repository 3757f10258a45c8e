// Command connector-stoa is the stoa plugin of connector-host: Stoa data
// products (order, sign, fetch as a stream of JSON rows, export to a file),
// with REST or OAuth2 client-credentials authentication (see package
// internal/connector).
package main

import (
	"os"
	"runtime/debug"

	"github.com/connector-host/connector-host/plugins/stoa/internal/connector"
	"github.com/connector-host/connector-host/sdk"
)

// memoryLimit is the plugin's default soft memory limit. A fetch keeps
// little alive (about 20 MiB: a few decoded batches, their JSON, the spool
// buffers) but allocates every row anew, so with the default GC pacing the
// heap grows to several times that between collections; the limit makes the
// collector keep the process near 64 MiB at no cost in throughput.
// GOMEMLIMIT overrides it.
const memoryLimit = 64 << 20

func main() {
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(memoryLimit)
	}
	sdk.Serve(connector.New())
}
