// Command connector-reference-oauth is the OAuth test plugin (see package
// testkit/referenceoauth).
package main

import (
	"github.com/connector-host/connector-host/sdk"
	"github.com/connector-host/connector-host/testkit/referenceoauth"
)

func main() { sdk.Serve(referenceoauth.New()) }
