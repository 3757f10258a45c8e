package wire

import (
	"context"
	"errors"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/connector-host/connector-host/proto/gen/connector/v1"
)

// ErrUnknownTarget is returned by Callback.Invoke when the host has no
// such connector or capability. It crosses the wire as gRPC NotFound.
var ErrUnknownTarget = errors.New("no such connector or capability")

// callbackServer serves the host's Callback to one plugin process.
type callbackServer struct {
	pb.UnimplementedHostCallbackServer
	impl Callback
}

func (s *callbackServer) ListConnectors(ctx context.Context, _ *pb.ListConnectorsRequest) (*pb.ListConnectorsResponse, error) {
	list, err := s.impl.ListConnectors(ctx)
	if err != nil {
		return nil, err
	}
	return summariesToProto(list), nil
}

func (s *callbackServer) Invoke(ctx context.Context, req *pb.CallbackInvokeRequest) (*pb.InvokeResponse, error) {
	res, err := s.impl.Invoke(ctx, req.GetAppId(), req.GetCapability(), req.GetRequestId(), req.GetEnvelope())
	if errors.Is(err, ErrUnknownTarget) {
		return nil, status.Error(codes.NotFound, err.Error())
	}
	if err != nil {
		return nil, err
	}
	return resultToProto(res), nil
}

// callbackClient is the plugin's view of the host's Callback.
type callbackClient struct {
	raw pb.HostCallbackClient
}

func (c *callbackClient) ListConnectors(ctx context.Context) ([]ConnectorSummary, error) {
	resp, err := c.raw.ListConnectors(ctx, &pb.ListConnectorsRequest{})
	if err != nil {
		return nil, err
	}
	return summariesFromProto(resp), nil
}

func (c *callbackClient) Invoke(ctx context.Context, appID, capability, requestID string, envelope []byte) (*Result, error) {
	resp, err := c.raw.Invoke(ctx, &pb.CallbackInvokeRequest{AppId: appID, Capability: capability, Envelope: envelope, RequestId: requestID})
	if status.Code(err) == codes.NotFound {
		return nil, ErrUnknownTarget
	}
	if err != nil {
		return nil, err
	}
	return resultFromProto(resp), nil
}

// unavailableCallback reports why the host's Callback could not be reached.
type unavailableCallback struct{ err error }

func (u unavailableCallback) ListConnectors(context.Context) ([]ConnectorSummary, error) {
	return nil, u.err
}

func (u unavailableCallback) Invoke(context.Context, string, string, string, []byte) (*Result, error) {
	return nil, u.err
}
