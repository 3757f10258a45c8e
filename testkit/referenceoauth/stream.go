package referenceoauth

import (
	"context"

	"github.com/connector-host/connector-host/sdk"
)

// registerStream adds whoami_stream: whoami as a streaming capability (one
// item), so that the host's credential handling of streams is tested too.
func registerStream(integ *sdk.Integration) {
	sdk.RegisterStream(integ, "whoami_stream", func(ctx context.Context, req sdk.Request[Empty], out *sdk.Stream[WhoAmI]) error {
		me, err := whoami(ctx, req)
		if err != nil {
			return err
		}
		return out.Send(me)
	}, sdk.WithDescription("whoami as a stream of one item."))
}
