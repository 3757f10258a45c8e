package host

import (
	"context"
	"strings"

	"github.com/connector-host/connector-host/host/router"
	"github.com/connector-host/connector-host/internal/envelope"
	"github.com/connector-host/connector-host/internal/wire"
	"github.com/connector-host/connector-host/sdk"
)

// callback is the HostCallback service the host offers one plugin: it runs
// capabilities of other connectors through the router, but only those the
// configuration allows that plugin (connectors.<app_id>.callbacks).
type callback struct {
	router *router.Router
	caller string
	allow  []string
}

func newCallback(r *router.Router, caller string, allow []string) wire.Callback {
	return &callback{router: r, caller: caller, allow: allow}
}

// allowed reports whether the caller may reach appID's capability ("" for
// any capability of appID).
func (c *callback) allowed(appID, capability string) bool {
	for _, a := range c.allow {
		switch {
		case a == "*":
			return true
		case a == appID:
			return true
		case capability != "" && a == appID+"/"+capability:
			return true
		}
	}
	return false
}

func (c *callback) allowedApp(appID string) bool {
	for _, a := range c.allow {
		if a == "*" || a == appID || strings.HasPrefix(a, appID+"/") {
			return true
		}
	}
	return false
}

func (c *callback) ListConnectors(ctx context.Context) ([]wire.ConnectorSummary, error) {
	var out []wire.ConnectorSummary
	for _, id := range c.router.AppIDs() {
		if !c.allowedApp(id) {
			continue
		}
		sup, _ := c.router.Supervisor(id)
		d := sup.Description()
		if d == nil {
			continue
		}
		s := wire.ConnectorSummary{AppID: id, Version: d.Version}
		for _, capa := range c.router.Capabilities(d) {
			if c.allowed(id, capa.Name) {
				s.Capabilities = append(s.Capabilities, capa.Name)
			}
		}
		out = append(out, s)
	}
	return out, nil
}

func (c *callback) Invoke(ctx context.Context, appID, capability, requestID string, body []byte) (*wire.Result, error) {
	// Permission first: a restricted plugin learns nothing about which
	// connectors or capabilities exist beyond what it may call.
	if !c.allowed(appID, capability) {
		return &wire.Result{Err: &wire.Error{
			Code: string(sdk.PermissionDenied), RaisedBy: "host", RaisedIn: "host.callback",
			Message: "plugin " + c.caller + " is not allowed to call " + appID + "/" + capability + " (connectors." + c.caller + ".callbacks)",
		}}, nil
	}
	if !c.exists(ctx, appID, capability) {
		return nil, wire.ErrUnknownTarget
	}
	env, perr := envelope.Parse(body)
	if perr != nil {
		return inBand(&wire.Error{Code: string(sdk.BadRequest), Message: perr.Error(), RaisedBy: "host", RaisedIn: "host.callback"})
	}
	req := &router.Request{AppID: appID, Capability: capability, Envelope: env, RequestID: callbackRequestID(c.caller, requestID)}
	if c.router.IsStreaming(ctx, appID, capability) {
		return &wire.Result{Err: &wire.Error{Code: string(sdk.UnsupportedOperation), Message: capability + " is streaming; callbacks run unary capabilities", RaisedBy: "host", RaisedIn: "host.callback"}}, nil
	}
	res, f := c.router.Invoke(ctx, req)
	if f != nil {
		return inBand(f.Err)
	}
	return res, nil
}

// exists reports whether appID is loaded and has capability (its own or a
// host-provided one).
func (c *callback) exists(ctx context.Context, appID, capability string) bool {
	d, f := c.router.Describe(ctx, appID)
	if f != nil {
		return false
	}
	for _, capa := range c.router.Capabilities(d) {
		if capa.Name == capability {
			return true
		}
	}
	return false
}

// inBand answers a callback with an error envelope: the call itself
// succeeded, the capability (or the host on its behalf) failed.
func inBand(e *wire.Error) (*wire.Result, error) { return &wire.Result{Err: e}, nil }

// callbackRequestID is the inner call's request id: the calling plugin's
// own (when sane: printable ASCII, at most 64 bytes), else "cb-<caller>".
func callbackRequestID(caller, requestID string) string {
	if requestID == "" || len(requestID) > 64 {
		return "cb-" + caller
	}
	for i := 0; i < len(requestID); i++ {
		if requestID[i] < 0x21 || requestID[i] > 0x7e {
			return "cb-" + caller
		}
	}
	return requestID
}
