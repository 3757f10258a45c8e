// Package sdk is what a connector-host plugin author imports.
//
// A plugin is a Go program whose main builds an Integration, registers its
// capabilities with Register and RegisterStream, and calls Serve:
//
//	integ := &sdk.Integration{
//		AppID:   "acme",
//		Version: "1.0.0",
//		Description: sdk.DescriptionData{
//			UserFriendlyName: "Acme",
//			Description:      "Accounts and groups of Acme.",
//		},
//		Auth:     []sdk.AuthKind{sdk.AuthBasic},
//		Settings: Settings{},
//	}
//	sdk.Register(integ, sdk.ListAccounts, listAccounts)
//	sdk.Serve(integ)
//
// The host launches the binary as a hashicorp/go-plugin plugin and calls it
// over gRPC. The SDK generates the JSON Schema of every request and response
// type, validates each request against it before the handler runs, maps
// returned errors to the contract's error codes (see Code, Error,
// ErrorHandler), recovers panics, and redacts credentials from logs and error
// messages.
//
// Run by a person instead of by the host, the same binary answers --help,
// info, and CAPABILITY --json '{...}' in-process.
package sdk
