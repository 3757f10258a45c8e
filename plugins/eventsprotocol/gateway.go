package main

import (
	"context"
	"encoding/json"
	"errors"
	"strings"

	"github.com/connector-host/connector-host/sdk"
	"github.com/connector-host/connector-host/sdk/eventsprotocol"
)

// The events gateway: every capability of every connector in the host is
// an event named "<app_id with - as _>:<capability>", version 1. The event's
// payload is the request envelope (request, settings, credential_id, page,
// include_raw_data); the answer's payload is the success envelope
// (response, raw_data, page). The plugin runs the capability through the
// host callback service, so the host's credentials store, OAuth and error
// mapping apply, and the host decides what this plugin may reach
// (connectors.events-protocol.callbacks).

// gatewayResolver resolves names the static registry does not know.
func gatewayResolver(name string, version int) (eventsprotocol.Handler, bool) {
	if version != 1 {
		return nil, false
	}
	app, capability, ok := strings.Cut(name, ":")
	if !ok || strings.Contains(capability, ":") {
		return nil, false
	}
	appID := strings.ReplaceAll(app, "_", "-")
	return eventsprotocol.HandlerFunc(func(ctx context.Context, ev *eventsprotocol.Event) (any, error) {
		return invokeThroughHost(ctx, ev, appID, capability)
	}), true
}

// successPayload is the payload of a gateway response event.
type successPayload struct {
	Response json.RawMessage `json:"response"`
	RawData  json.RawMessage `json:"raw_data"`
	Page     *sdk.Page       `json:"page"`
}

func invokeThroughHost(ctx context.Context, ev *eventsprotocol.Event, appID, capability string) (any, error) {
	host := hostFrom(ctx)
	if host == nil {
		return nil, &eventsprotocol.EventError{Type: eventsprotocol.ErrorGeneric, Code: "GATEWAY_UNAVAILABLE",
			Parameters: map[string]any{"message": "the events gateway needs connector-host"}}
	}
	envelope := []byte(ev.Payload)
	if len(envelope) == 0 || string(envelope) == "{}" {
		envelope = []byte(`{"request":{}}`)
	}
	res, err := host.Invoke(ctx, appID, capability, envelope)
	switch {
	case errors.Is(err, sdk.ErrUnknownTarget):
		return nil, &eventsprotocol.EventError{Type: eventsprotocol.ErrorNotFound, Code: eventsprotocol.CodeEventNotFound,
			Parameters: map[string]any{"event": ev.Name, "version": ev.Version}}
	case errors.Is(err, sdk.ErrNoHost):
		return nil, &eventsprotocol.EventError{Type: eventsprotocol.ErrorGeneric, Code: "GATEWAY_UNAVAILABLE",
			Parameters: map[string]any{"message": "the host offers no callbacks to this plugin"}}
	case err != nil:
		return nil, err // UNHANDLED_ERROR, logged without the payload
	}
	if res.Err != nil {
		return nil, gatewayError(appID, res.Err)
	}
	raw := res.RawData
	if len(raw) == 0 {
		raw = json.RawMessage("null")
	}
	resp := res.Response
	if len(resp) == 0 {
		resp = json.RawMessage("null")
	}
	return successPayload{Response: resp, RawData: raw, Page: res.Page}, nil
}

// errorTypes maps contract codes to event error types; anything else is
// "error". The event's code is always the full error_code.
var errorTypes = map[sdk.Code]eventsprotocol.ErrorType{
	sdk.BadRequest:            eventsprotocol.ErrorBadRequest,
	sdk.Unauthorized:          eventsprotocol.ErrorUnauthorized,
	sdk.Unauthenticated:       eventsprotocol.ErrorUnauthorized,
	sdk.PermissionDenied:      eventsprotocol.ErrorForbidden,
	sdk.NotFound:              eventsprotocol.ErrorNotFound,
	sdk.AuthenticationExpired: eventsprotocol.ErrorExpired,
}

func gatewayError(appID string, e *sdk.Error) *eventsprotocol.EventError {
	t, ok := errorTypes[e.Code]
	if !ok {
		t = eventsprotocol.ErrorGeneric
	}
	params := map[string]any{
		"message":     e.Message,
		"error_code":  appID + "." + string(e.Code),
		"status_code": e.Code.HTTPStatus(),
	}
	if e.AppErrorCode != "" {
		params["app_error_code"] = e.AppErrorCode
	}
	return &eventsprotocol.EventError{Type: t, Code: appID + "." + string(e.Code), Parameters: params}
}
