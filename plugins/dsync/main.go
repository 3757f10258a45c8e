// Command connector-dsync is the dsync plugin of connector-host: DSYNC
// realtime create/update/delete and batches, data layout and entity token
// generation, and the inbound API the DSYNC platform calls (see package
// internal/connector).
package main

import (
	"github.com/connector-host/connector-host/plugins/dsync/internal/connector"
	"github.com/connector-host/connector-host/sdk"
)

func main() { sdk.Serve(connector.New()) }
