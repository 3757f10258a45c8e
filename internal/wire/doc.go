// Package wire is the plugin contract in plain Go types, and the only place
// that converts between them and the generated protobuf types of
// proto/connector/v1.
//
// The plugin side (the sdk) implements Connector and serves it with
// NewPluginSet; the host side dials a plugin through go-plugin and gets a
// *Client, which implements Connector over gRPC. Neither side sees generated
// types.
package wire
