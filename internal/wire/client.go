package wire

import (
	"context"
	"errors"
	"io"

	"google.golang.org/grpc"

	pb "github.com/connector-host/connector-host/proto/gen/connector/v1"
)

// Client is the host side of the contract: a Connector that calls a plugin
// process over gRPC.
type Client struct {
	raw      pb.ConnectorClient
	conn     *grpc.ClientConn
	brokerID uint32
}

var _ Connector = (*Client)(nil)

// Conn is the underlying gRPC connection (for health checks and
// benchmarks that measure the raw floor).
func (c *Client) Conn() *grpc.ClientConn { return c.conn }

// Describe implements Connector. It also tells the plugin where the host's
// Callback service is, when the host offers one.
func (c *Client) Describe(ctx context.Context) (*Description, error) {
	resp, err := c.raw.Describe(ctx, &pb.DescribeRequest{CallbackBrokerId: c.brokerID})
	if err != nil {
		return nil, err
	}
	return descriptionFromProto(resp), nil
}

// Invoke implements Connector.
func (c *Client) Invoke(ctx context.Context, call *Call) (*Result, error) {
	if !call.Deadline.IsZero() {
		ctx = withDeadline(ctx, call.Deadline)
	}
	resp, err := c.raw.Invoke(ctx, callToProto(call))
	if err != nil {
		return nil, err
	}
	return resultFromProto(resp), nil
}

// InvokeStream implements Connector. It returns an error when the stream
// breaks before its final chunk.
func (c *Client) InvokeStream(ctx context.Context, call *Call, emit func(*Chunk) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := c.raw.InvokeStream(ctx, callToProto(call))
	if err != nil {
		return err
	}
	for {
		msg, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return io.ErrUnexpectedEOF // the plugin ended without a final chunk
		}
		if err != nil {
			return err
		}
		chunk := chunkFromProto(msg)
		if err := emit(chunk); err != nil {
			return err
		}
		if chunk.End() {
			return nil
		}
	}
}

// HandleInbound implements Connector.
func (c *Client) HandleInbound(ctx context.Context, req *InboundRequest) (*InboundResponse, error) {
	resp, err := c.raw.HandleInbound(ctx, inboundRequestToProto(req))
	if err != nil {
		return nil, err
	}
	return inboundResponseFromProto(resp), nil
}
