// Command connector-stoa is the stoa plugin of connector-host: Stoa data
// products (order, sign, fetch as a stream of JSON rows, export to a file),
// with REST or OAuth2 client-credentials authentication (see package
// internal/connector).
package main

import (
	"github.com/connector-host/connector-host/plugins/stoa/internal/connector"
	"github.com/connector-host/connector-host/sdk"
)

func main() { sdk.Serve(connector.New()) }
