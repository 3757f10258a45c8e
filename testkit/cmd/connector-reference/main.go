// Command connector-reference is the reference test plugin (see package
// testkit/reference).
package main

import (
	"github.com/connector-host/connector-host/sdk"
	"github.com/connector-host/connector-host/testkit/reference"
)

func main() { sdk.Serve(reference.New()) }
