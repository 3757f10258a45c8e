package router

import (
	"context"
	"errors"
	"fmt"
	"io"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/connector-host/connector-host/host/supervisor"
	"github.com/connector-host/connector-host/internal/wire"
	"github.com/connector-host/connector-host/sdk"
)

// This file is the host's central error mapping: every failure the host
// sees or raises becomes a *Failure carrying a contract code; the HTTP
// status comes from the one code → status table (sdk.Code.HTTPStatus).

// HostAppID is the app_id of errors raised by the host about no connector
// in particular (e.g. an unknown connector).
const HostAppID = "host"

// Failure is an error envelope in the making: who raised it (a connector's
// app_id, or "host") and the error.
type Failure struct {
	AppID string
	Err   *wire.Error
}

// Status is the HTTP status of the failure.
func (f *Failure) Status() int { return sdk.Code(f.Err.Code).HTTPStatus() }

// Error implements error.
func (f *Failure) Error() string { return f.AppID + "." + f.Err.Code + ": " + f.Err.Message }

// hostFailure is a failure raised by the host itself.
func hostFailure(appID string, code sdk.Code, raisedIn, format string, args ...any) *Failure {
	return &Failure{AppID: appID, Err: &wire.Error{
		Code: string(code), Message: fmt.Sprintf(format, args...), RaisedBy: "host", RaisedIn: raisedIn,
	}}
}

// callFailure classifies an error from calling a plugin. callCtx is the
// call's context (with the deadline); parent is the caller's.
func callFailure(appID, capability string, parent, callCtx context.Context, err error) *Failure {
	const where = "router.Invoke"
	switch {
	case parent.Err() != nil:
		return hostFailure(appID, sdk.RequestTimeout, where, "%s: cancelled by the caller", capability)
	case errors.Is(callCtx.Err(), context.DeadlineExceeded):
		return hostFailure(appID, sdk.RequestTimeout, where, "%s did not answer before its deadline", capability)
	}
	var failed *supervisor.FailedError
	switch {
	case errors.As(err, &failed):
		return hostFailure(appID, sdk.ServiceError, where, "%v", failed)
	case errors.Is(err, supervisor.ErrStopped):
		return hostFailure(appID, sdk.ServiceError, where, "connector %s is shutting down", appID)
	case errors.Is(err, io.ErrUnexpectedEOF):
		return hostFailure(appID, sdk.ConnectionClosed, where, "the %s plugin ended the stream without a final line", appID)
	}
	switch status.Code(err) {
	case codes.Unavailable, codes.Canceled, codes.Aborted:
		return hostFailure(appID, sdk.ConnectionClosed, where, "the %s plugin process closed the connection during the call (it crashed or was stopped); it is being restarted", appID)
	case codes.DeadlineExceeded:
		return hostFailure(appID, sdk.RequestTimeout, where, "%s did not answer before its deadline", capability)
	case codes.ResourceExhausted:
		return hostFailure(appID, sdk.BadRequest, where, "message too large for the plugin connection: %s", status.Convert(err).Message())
	case codes.Unimplemented:
		return hostFailure(appID, sdk.NotImplemented, where, "the %s plugin does not implement this call (protocol mismatch)", appID)
	}
	return hostFailure(appID, sdk.InternalError, where, "calling the %s plugin: %v", appID, err)
}

// pluginFailure wraps an error the plugin reported in-band.
func pluginFailure(appID string, e *wire.Error) *Failure {
	if !sdk.Code(e.Code).Valid() {
		e = &wire.Error{Code: string(sdk.InternalError), Message: fmt.Sprintf("plugin returned unknown error code %q: %s", e.Code, e.Message), RaisedBy: e.RaisedBy, RaisedIn: e.RaisedIn}
	}
	return &Failure{AppID: appID, Err: e}
}
