package wire

import (
	plugin "github.com/hashicorp/go-plugin"
)

// ProtocolVersion is the newest plugin protocol this build speaks.
const ProtocolVersion = 1

// PluginName is the go-plugin name under which a plugin serves Connector.
const PluginName = "connector"

// Handshake is the go-plugin handshake shared by the host and every plugin.
// The magic cookie only tells a plugin binary that a host launched it; it is
// not a security measure.
var Handshake = plugin.HandshakeConfig{
	ProtocolVersion:  ProtocolVersion,
	MagicCookieKey:   "CONNECTOR_HOST_PLUGIN",
	MagicCookieValue: "7c1f0b3e-connector-host-v1",
}

// PluginSets returns the versioned plugin sets for go-plugin: on the plugin
// side impl is the Connector to serve and cb is nil; on the host side impl is
// nil and cb, when not nil, is served to the plugin over the broker.
func PluginSets(impl Connector, cb Callback) map[int]plugin.PluginSet {
	return map[int]plugin.PluginSet{
		1: {PluginName: &grpcPlugin{impl: impl, callback: cb}},
	}
}
