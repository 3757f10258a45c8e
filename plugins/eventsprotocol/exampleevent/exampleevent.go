// Package exampleevent is the example handler of the events-protocol seed:
// event "get:event:example" version 1 with payload {"example": "…"} answers
// {"MyEventPayload": "…"}. The events-protocol plugin registers it so that
// process_event works out of the box.
package exampleevent

import (
	"context"

	"github.com/connector-host/connector-host/sdk/eventsprotocol"
)

// Name and Version identify the example event.
const (
	Name    = "get:event:example"
	Version = 1
)

// Payload is the example event's payload. Example is required.
type Payload struct {
	Example string `json:"example" jsonschema:"description=Any text; it is echoed back as MyEventPayload."`
}

// Response is the example event's response payload.
type Response struct {
	MyEventPayload string `json:"MyEventPayload"`
}

// Handle answers the example event.
func Handle(_ context.Context, req eventsprotocol.Request[Payload]) (Response, error) {
	return Response{MyEventPayload: req.Payload.Example}, nil
}

// Register adds the example handler to reg.
func Register(reg *eventsprotocol.Registry) error {
	return eventsprotocol.Register(reg, Name, Version, Handle)
}
