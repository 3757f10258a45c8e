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
			s := grpc.NewServer(append(opts, ServerWindows()...)...)
			pb.RegisterHostCallbackServer(s, &callbackServer{impl: cb})
			return s
		})
	}
	return c, nil
}

// StreamWindow is the gRPC flow-control window of each call on every
// connection between host and plugin (the connection's is four times
// that). Fixed windows turn off grpc-go's BDP estimator, whose PING after
// every received message costs each call an extra write and read on both
// sides, and bound what a slow reader makes the other side hold.
const StreamWindow = 1 << 20

// ServerWindows are the server options that fix the flow-control windows.
func ServerWindows() []grpc.ServerOption {
	return []grpc.ServerOption{grpc.InitialWindowSize(StreamWindow), grpc.InitialConnWindowSize(4 * StreamWindow)}
}

// DialWindows are the dial options that fix the flow-control windows.
func DialWindows() []grpc.DialOption {
	return []grpc.DialOption{grpc.WithInitialWindowSize(StreamWindow), grpc.WithInitialConnWindowSize(4 * StreamWindow)}
}
