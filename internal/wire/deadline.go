package wire

import (
	"context"
	"strconv"
	"time"

	"google.golang.org/grpc/metadata"
)

// MetadataDeadline is the gRPC metadata key that carries a unary call's
// deadline (Unix milliseconds) from the host to the plugin, in place of
// gRPC's own grpc-timeout (ADR 0009): a grpc-timeout makes the plugin's
// gRPC server arm a runtime timer for every call, and the host enforces
// the deadline itself, cancelling the call (RST_STREAM) when it passes.
const MetadataDeadline = "connector-deadline-ms"

// withDeadline adds d to ctx's outgoing metadata.
func withDeadline(ctx context.Context, d time.Time) context.Context {
	return metadata.AppendToOutgoingContext(ctx, MetadataDeadline, strconv.FormatInt(d.UnixMilli(), 10))
}

// incomingDeadline gives a plugin-side call context the deadline the host
// sent in MetadataDeadline, when ctx has none of its own (a grpc-timeout
// from another host wins). The context reports the deadline (Deadline,
// and Err says DeadlineExceeded once it is done past it) without a timer:
// the host cancels the call when the deadline passes.
func incomingDeadline(ctx context.Context) context.Context {
	if _, ok := ctx.Deadline(); ok {
		return ctx
	}
	md, ok := metadata.FromIncomingContext(ctx)
	if !ok {
		return ctx
	}
	v := md.Get(MetadataDeadline)
	if len(v) != 1 {
		return ctx
	}
	ms, err := strconv.ParseInt(v[0], 10, 64)
	if err != nil || ms <= 0 {
		return ctx
	}
	return &deadlined{Context: ctx, deadline: time.UnixMilli(ms)}
}

// deadlined is ctx reporting deadline from Deadline, and
// context.DeadlineExceeded from Err once ctx is done at or after it; ctx
// itself must be cancelled when the deadline passes (no timer is armed).
type deadlined struct {
	context.Context
	deadline time.Time
}

func (c *deadlined) Deadline() (time.Time, bool) { return c.deadline, true }

func (c *deadlined) Err() error {
	err := c.Context.Err()
	if err != nil && !time.Now().Before(c.deadline) {
		return context.DeadlineExceeded
	}
	return err
}
