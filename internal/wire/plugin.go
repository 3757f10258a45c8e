package wire

import (
	"context"
	"errors"

	plugin "github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	pb "github.com/connector-host/connector-host/proto/gen/connector/v1"
)

// grpcPlugin is the go-plugin GRPCPlugin for protocol version 1.
type grpcPlugin struct {
	plugin.NetRPCUnsupportedPlugin
	impl     Connector // plugin side
	callback Callback  // host side, optional
}

// GRPCServer registers the Connector service in the plugin process.
func (p *grpcPlugin) GRPCServer(broker *plugin.GRPCBroker, s *grpc.Server) error {
	if p.impl == nil {
		return errors.New("wire: no Connector implementation to serve")
	}
	pb.RegisterConnectorServer(s, &server{impl: p.impl, broker: broker})
	return nil
}

// GRPCClient returns the host's *Client for a started plugin process and,
// when the host offers a Callback, serves it on the broker.
func (p *grpcPlugin) GRPCClient(_ context.Context, broker *plugin.GRPCBroker, conn *grpc.ClientConn) (any, error) {
	c := &Client{raw: pb.NewConnectorClient(conn), conn: conn}
	if p.callback != nil {
		c.brokerID = broker.NextId()
		cb := p.callback
		go broker.AcceptAndServe(c.brokerID, func(opts []grpc.ServerOption) *grpc.Server {
			s := grpc.NewServer(opts...)
			pb.RegisterHostCallbackServer(s, &callbackServer{impl: cb})
			return s
		})
	}
	return c, nil
}
