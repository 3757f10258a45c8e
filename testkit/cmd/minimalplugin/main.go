// Command minimalplugin is the smallest possible connector-host plugin: the
// go-plugin handshake and a Connector that answers every call with {}, with
// no SDK. hostbench compares the reference plugin's memory against it.
package main

import (
	"context"
	"encoding/json"
	"os"

	"github.com/hashicorp/go-hclog"
	plugin "github.com/hashicorp/go-plugin"

	"github.com/connector-host/connector-host/internal/wire"
)

type minimal struct{}

func (minimal) Describe(context.Context) (*wire.Description, error) {
	return &wire.Description{AppID: appID(), Version: "1.0.0", Capabilities: []wire.Capability{{Name: "noop"}}}, nil
}

func (minimal) Invoke(context.Context, *wire.Call) (*wire.Result, error) {
	return &wire.Result{Response: json.RawMessage("{}")}, nil
}

func (minimal) InvokeStream(_ context.Context, _ *wire.Call, emit func(*wire.Chunk) error) error {
	return emit(&wire.Chunk{Done: true})
}

func (minimal) HandleInbound(context.Context, *wire.InboundRequest) (*wire.InboundResponse, error) {
	return &wire.InboundResponse{Status: 404}, nil
}

func appID() string {
	if v := os.Getenv("MINIMAL_APP_ID"); v != "" {
		return v
	}
	return "minimal"
}

func main() {
	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig:  wire.Handshake,
		VersionedPlugins: wire.PluginSets(minimal{}, nil),
		GRPCServer:       plugin.DefaultGRPCServer,
		Logger:           hclog.New(&hclog.LoggerOptions{JSONFormat: true, Output: os.Stderr, Level: hclog.Warn}),
	})
}
