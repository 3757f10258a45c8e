package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"time"

	"github.com/invopop/jsonschema"

	"github.com/connector-host/connector-host/plugins/eventsprotocol/exampleevent"
	"github.com/connector-host/connector-host/sdk"
	"github.com/connector-host/connector-host/sdk/eventsprotocol"
)

// AppID is the plugin's app_id.
const AppID = "events-protocol"

// JSONObject is a JSON object kept as raw JSON (numbers are not rounded).
type JSONObject json.RawMessage

// MarshalJSON writes the raw JSON ({} when empty).
func (o JSONObject) MarshalJSON() ([]byte, error) { return rawOrEmpty(o), nil }

// UnmarshalJSON keeps a copy of the raw JSON.
func (o *JSONObject) UnmarshalJSON(b []byte) error {
	*o = append((*o)[:0], b...)
	return nil
}

// JSONSchema declares a JSON object.
func (JSONObject) JSONSchema() *jsonschema.Schema { return &jsonschema.Schema{Type: "object"} }

// SecretObject is a JSON object of credentials (an event's auth). Its
// string members are marked "x-secret", so the SDK masks them in logs.
type SecretObject json.RawMessage

// MarshalJSON writes the raw JSON ({} when empty).
func (o SecretObject) MarshalJSON() ([]byte, error) { return rawOrEmpty(o), nil }

// UnmarshalJSON keeps a copy of the raw JSON.
func (o *SecretObject) UnmarshalJSON(b []byte) error {
	*o = append((*o)[:0], b...)
	return nil
}

// JSONSchema declares an object whose members are secret.
func (SecretObject) JSONSchema() *jsonschema.Schema {
	return &jsonschema.Schema{
		Type:                 "object",
		AdditionalProperties: &jsonschema.Schema{Extras: map[string]any{"x-secret": true}},
	}
}

// RawEvent is an event as received: any JSON value, validated by the
// processor rather than by the request schema (so that a bad event gets
// the protocol's badProtocol answer). Its auth members are marked secret.
type RawEvent json.RawMessage

// MarshalJSON writes the raw JSON (null when empty).
func (e RawEvent) MarshalJSON() ([]byte, error) {
	if len(e) == 0 {
		return []byte("null"), nil
	}
	return e, nil
}

// UnmarshalJSON keeps a copy of the raw JSON.
func (e *RawEvent) UnmarshalJSON(b []byte) error {
	*e = append((*e)[:0], b...)
	return nil
}

// JSONSchema accepts any value and marks auth members secret.
func (RawEvent) JSONSchema() *jsonschema.Schema {
	props := jsonschema.NewProperties()
	// No type constraints: an invalid event is the processor's to report.
	props.Set("auth", &jsonschema.Schema{AdditionalProperties: &jsonschema.Schema{Extras: map[string]any{"x-secret": true}}})
	return &jsonschema.Schema{Properties: props}
}

func rawOrEmpty(b []byte) []byte {
	if len(bytes.TrimSpace(b)) == 0 {
		return []byte("{}")
	}
	return b
}

// SendEventRequest is send_event's request.
type SendEventRequest struct {
	URL       string       `json:"url" jsonschema:"format=uri,description=Events endpoint of the remote service (http or https),example=https://service.example.com/events"`
	Name      string       `json:"name" jsonschema:"pattern=^[a-z_]+[a-z]:[a-z_]+[a-z](:[a-z]+[a-z])*$,description=Event name,example=get:event:example"`
	Version   int          `json:"version" jsonschema:"minimum=-2147483648,maximum=2147483647,description=Event version"`
	Payload   JSONObject   `json:"payload" jsonschema:"description=Event payload (an object)"`
	ID        string       `json:"id,omitempty" jsonschema:"description=Event id; a fresh UUID when absent"`
	FlowID    string       `json:"flow_id,omitempty" jsonschema:"description=Flow id; a fresh UUID when absent"`
	Identity  JSONObject   `json:"identity,omitempty" jsonschema:"description=Who the event acts for"`
	Auth      SecretObject `json:"auth,omitempty" jsonschema:"description=Credentials sent in the event (secret)"`
	Metadata  JSONObject   `json:"metadata,omitempty" jsonschema:"description=Free-form metadata"`
	TimeoutMS int          `json:"timeout_ms,omitempty" jsonschema:"minimum=0,maximum=600000,description=Timeout in milliseconds; 0 or absent means 15000"`
}

// EventData is an event in a capability's response: the protocol's
// camelCase event, with auth marked secret.
type EventData struct {
	Name     string          `json:"name"`
	Version  int             `json:"version"`
	ID       string          `json:"id"`
	FlowID   string          `json:"flowId"`
	Payload  json.RawMessage `json:"payload"`
	Identity JSONObject      `json:"identity"`
	Auth     SecretObject    `json:"auth"`
	Metadata JSONObject      `json:"metadata"`
}

func eventData(ev *eventsprotocol.Event) EventData {
	payload := ev.Payload
	if len(payload) == 0 {
		payload = json.RawMessage("{}")
	}
	return EventData{
		Name: ev.Name, Version: ev.Version, ID: ev.ID, FlowID: ev.FlowID, Payload: payload,
		Identity: JSONObject(ev.Identity), Auth: SecretObject(ev.Auth), Metadata: JSONObject(ev.Metadata),
	}
}

// SendEventResponse is send_event's response: the response event and how
// to read it.
type SendEventResponse struct {
	Kind      eventsprotocol.Kind      `json:"kind" jsonschema:"enum=response,enum=redirect,enum=error,description=response on success; redirect; error (see error_type)"`
	ErrorType eventsprotocol.ErrorType `json:"error_type,omitempty" jsonschema:"description=The error type when kind is error (e.g. badRequest or notFound)"`
	Event     EventData                `json:"event"`
}

// ProcessEventRequest is process_event's request: the event as JSON, or the
// raw body as text (for bodies that are not JSON).
type ProcessEventRequest struct {
	Event RawEvent `json:"event,omitempty" jsonschema:"description=The request event"`
	Raw   *string  `json:"raw,omitempty" jsonschema:"description=The request body as text (instead of event)"`
}

// plugin holds what the capabilities share.
type plugin struct {
	client    *eventsprotocol.Client
	processor *eventsprotocol.Processor
}

// newIntegration builds the events-protocol integration: send_event (the
// client) and process_event (the server, with the seed's example handler
// registered in reg). reg may carry more handlers or a Resolver.
func newIntegration(reg *eventsprotocol.Registry) (*sdk.Integration, error) {
	if reg == nil {
		return nil, errNilRegistry
	}
	if err := exampleevent.Register(reg); err != nil {
		return nil, err
	}
	p := &plugin{
		client:    &eventsprotocol.Client{HTTPClient: &http.Client{}},
		processor: eventsprotocol.NewProcessor(reg),
	}
	integ := &sdk.Integration{
		AppID:   AppID,
		Version: "1.0.0",
		Description: sdk.DescriptionData{
			UserFriendlyName: "Events Protocol",
			Description: "GuiaBolso events-protocol: sends events to remote services (send_event) and " +
				"answers events through registered handlers (process_event).",
			Categories: []string{"messaging", "integration"},
		},
	}
	p.processor.Logger = integ.Slog()
	sdk.Register(integ, "send_event", p.sendEvent, sdk.WithDescription(
		"POSTs an event to url and returns the response event with its kind (response, redirect, "+
			"error + error_type). Error events are returned, not raised. Timeout → request_timeout, "+
			"non-2xx or unreachable → bad_gateway, unparseable or invalid response → invalid_response."))
	sdk.Register(integ, "process_event", p.processEvent, sdk.WithDescription(
		"Answers one raw event through the registered handlers, exactly as an events-protocol "+
			"server does: the response event, badProtocol, <name>:notFound, <name>:badRequest or <name>:error."))
	return integ, nil
}

func (p *plugin) sendEvent(ctx context.Context, req sdk.Request[SendEventRequest]) (SendEventResponse, error) {
	a := req.Args
	if u, err := url.Parse(a.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return SendEventResponse{}, sdk.Errorf(sdk.BadRequest, "request.url: must be an absolute http or https URL")
	}
	ev := &eventsprotocol.Event{
		Name: a.Name, Version: a.Version, ID: a.ID, FlowID: a.FlowID,
		Payload:  json.RawMessage(rawOrEmpty(a.Payload)),
		Identity: json.RawMessage(rawOrEmpty(a.Identity)),
		Auth:     json.RawMessage(rawOrEmpty(a.Auth)),
		Metadata: json.RawMessage(rawOrEmpty(a.Metadata)),
	}
	timeout := time.Duration(a.TimeoutMS) * time.Millisecond
	resp, err := p.client.Send(ctx, a.URL, ev, timeout)
	if err != nil {
		return SendEventResponse{}, err
	}
	return SendEventResponse{Kind: resp.Kind, ErrorType: resp.ErrorType, Event: eventData(resp.Event)}, nil
}

func (p *plugin) processEvent(ctx context.Context, req sdk.Request[ProcessEventRequest]) (EventData, error) {
	body := []byte(req.Args.Event)
	if req.Args.Raw != nil {
		if len(req.Args.Event) > 0 {
			return EventData{}, sdk.Errorf(sdk.BadRequest, "request.raw: not allowed with request.event (give one of them)")
		}
		body = []byte(*req.Args.Raw)
	}
	if len(body) == 0 {
		return EventData{}, sdk.Errorf(sdk.BadRequest, "request.event: is required (or request.raw)")
	}
	if req.Envelope != nil {
		ctx = context.WithValue(ctx, hostKey{}, req.Host())
	}
	return eventData(p.processor.Process(ctx, body)), nil
}

// hostKey is the context key of the HostClient of a process_event call.
type hostKey struct{}

// hostFrom returns the HostClient of the process_event call that is running
// a handler (nil outside one). Handlers, e.g. a gateway Resolver reaching
// other connectors, use it to call back into the host.
func hostFrom(ctx context.Context) *sdk.HostClient {
	h, _ := ctx.Value(hostKey{}).(*sdk.HostClient)
	return h
}

// errNilRegistry guards newIntegration's caller.
var errNilRegistry = errors.New("events-protocol: registry is required")
