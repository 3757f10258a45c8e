package wire

import (
	"context"
	"sync"

	plugin "github.com/hashicorp/go-plugin"

	pb "github.com/connector-host/connector-host/proto/gen/connector/v1"
)

// CallbackReceiver is implemented by a plugin-side Connector that wants to
// call back into the host. The server hands it a Callback once the host has
// offered one (during the first Describe).
type CallbackReceiver interface {
	SetCallback(Callback)
}

// server adapts a Connector to the generated gRPC server interface.
type server struct {
	pb.UnimplementedConnectorServer
	impl   Connector
	broker *plugin.GRPCBroker

	dialOnce sync.Once
}

func (s *server) Describe(ctx context.Context, req *pb.DescribeRequest) (*pb.DescribeResponse, error) {
	if id := req.GetCallbackBrokerId(); id != 0 {
		if recv, ok := s.impl.(CallbackReceiver); ok {
			s.dialOnce.Do(func() {
				// Dial now: go-plugin's broker forgets an id nobody claims
				// within a few seconds. grpc connects lazily, so this does not
				// block Describe on the host.
				conn, err := s.broker.DialWithOptions(id, DialWindows()...)
				if err != nil {
					recv.SetCallback(unavailableCallback{err: err})
					return
				}
				recv.SetCallback(&callbackClient{raw: pb.NewHostCallbackClient(conn)})
			})
		}
	}
	d, err := s.impl.Describe(ctx)
	if err != nil {
		return nil, err
	}
	return descriptionToProto(d), nil
}

func (s *server) Invoke(ctx context.Context, req *pb.InvokeRequest) (*pb.InvokeResponse, error) {
	res, err := s.impl.Invoke(incomingDeadline(ctx), callFromProto(req))
	if err != nil {
		return nil, err
	}
	return resultToProto(res), nil
}

func (s *server) InvokeStream(req *pb.InvokeRequest, stream pb.Connector_InvokeStreamServer) error {
	return s.impl.InvokeStream(stream.Context(), callFromProto(req), func(c *Chunk) error {
		return stream.Send(chunkToProto(c))
	})
}

func (s *server) HandleInbound(ctx context.Context, req *pb.InboundRequest) (*pb.InboundResponse, error) {
	res, err := s.impl.HandleInbound(ctx, inboundRequestFromProto(req))
	if err != nil {
		return nil, err
	}
	return inboundResponseToProto(res), nil
}
