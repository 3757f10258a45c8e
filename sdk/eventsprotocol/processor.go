package eventsprotocol

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"runtime/debug"
	"strconv"

	"github.com/google/uuid"
)

// DefaultMaxBodyBytes is the request body limit of a Processor serving HTTP
// when MaxBodyBytes is 0.
const DefaultMaxBodyBytes = 4 << 20

// Processor turns a raw request body into a response event through a
// Registry. It never panics and always answers with an event:
//
//   - body not a valid event (see ParseEvent) → "badProtocol", version 1,
//     code INVALID_COMMUNICATION_PROTOCOL, parameters {"fields": {field:
//     reason}}; id and flowId are kept when they were readable strings,
//     otherwise fresh;
//   - no handler for (name, version) → "<name>:notFound", code
//     EVENT_NOT_FOUND, parameters {"event": name, "version": version}. This
//     follows the Python original; the Kotlin original answers
//     "eventNotFound" instead, whose name does not carry the request name and
//     whose type is outside the protocol's error types;
//   - handler error *EventError → "<name>:<type>" with its code/parameters
//     (a typed handler's payload failing its schema → "<name>:badRequest",
//     MISSING_FIELDS);
//   - handler error *Redirect → "<name>:redirect";
//   - any other error, a panic, or a response payload that cannot be
//     marshaled → "<name>:error", code UNHANDLED_ERROR, parameters {} (the
//     error itself is logged, not sent: it may reveal internals).
//
// Every answer to a parsed event copies its version, id, flowId, identity,
// auth and metadata.
//
// A Processor is also an http.Handler serving the protocol over HTTP.
type Processor struct {
	// Registry resolves handlers. Required.
	Registry *Registry
	// Logger receives handler failures; nil means slog.Default(). Event
	// auth, identity and payloads are never logged.
	Logger *slog.Logger
	// MaxBodyBytes limits HTTP request bodies; 0 means DefaultMaxBodyBytes.
	MaxBodyBytes int64
}

// NewProcessor returns a Processor for reg.
func NewProcessor(reg *Registry) *Processor { return &Processor{Registry: reg} }

// Process answers one raw event. The result is never nil.
func (p *Processor) Process(ctx context.Context, body []byte) *Event {
	ev, perr := parse(body, true)
	if perr != nil {
		return badProtocol(ev, perr.Fields)
	}
	return p.Dispatch(ctx, ev)
}

// Dispatch answers an event that has already been parsed and validated
// (e.g. by ParseEvent). The result is never nil.
func (p *Processor) Dispatch(ctx context.Context, ev *Event) *Event {
	resp, err := p.answer(ctx, ev)
	if err == nil {
		return resp
	}
	p.logger().ErrorContext(ctx, "events-protocol handler failed",
		"event", ev.Name, "version", ev.Version, "id", ev.ID, "flow_id", ev.FlowID, "error", err)
	return mustErrorFor(ev, ErrorGeneric, CodeUnhandledError, nil)
}

// answer looks the handler up, runs it and builds its answer. Any error it
// returns, a recovered panic included, becomes UNHANDLED_ERROR.
func (p *Processor) answer(ctx context.Context, ev *Event) (resp *Event, err error) {
	defer func() {
		if r := recover(); r != nil {
			p.logger().ErrorContext(ctx, "events-protocol handler panicked",
				"event", ev.Name, "version", ev.Version, "id", ev.ID, "panic", fmt.Sprint(r),
				"stack", string(debug.Stack()))
			resp, err = nil, fmt.Errorf("eventsprotocol: handler panicked: %v", r)
		}
	}()
	var h Handler
	var ok bool
	if p.Registry != nil {
		h, ok = p.Registry.Lookup(ev.Name, ev.Version)
	}
	if !ok {
		return ErrorFor(ev, ErrorNotFound, CodeEventNotFound,
			map[string]any{"event": ev.Name, "version": ev.Version})
	}
	payload, err := h.Handle(ctx, ev)
	if err == nil {
		return ResponseFor(ev, payload)
	}
	var evErr *EventError
	var redirect *Redirect
	switch {
	case errors.As(err, &evErr):
		return ErrorFor(ev, evErr.Type, evErr.Code, evErr.Parameters)
	case errors.As(err, &redirect):
		return RedirectFor(ev, redirect.URL, redirect.QueryParameters)
	}
	return nil, err
}

func (p *Processor) logger() *slog.Logger {
	if p.Logger != nil {
		return p.Logger
	}
	return slog.Default()
}

// mustErrorFor builds an error event whose parameters are known to marshal.
func mustErrorFor(ev *Event, t ErrorType, code string, params map[string]any) *Event {
	resp, err := ErrorFor(ev, t, code, params)
	if err != nil {
		// Unreachable: params hold only strings and ints.
		panic(err)
	}
	return resp
}

// badProtocol answers an unusable body. ev holds what could be read.
func badProtocol(ev *Event, fields map[string]string) *Event {
	params := make(map[string]any, len(fields))
	for k, v := range fields {
		params[k] = v
	}
	payload, _ := json.Marshal(map[string]any{
		"code":       CodeInvalidCommunicationProtocol,
		"parameters": map[string]any{"fields": params},
	})
	resp := &Event{
		Name:     NameBadProtocol,
		Version:  1,
		ID:       ev.ID,
		FlowID:   ev.FlowID,
		Payload:  payload,
		Identity: emptyObject,
		Auth:     emptyObject,
		Metadata: emptyObject,
	}
	if resp.ID == "" {
		resp.ID = uuid.NewString()
	}
	if resp.FlowID == "" {
		resp.FlowID = uuid.NewString()
	}
	return resp
}

// ServeHTTP serves the protocol: POST only (405 with "Allow: POST"
// otherwise); a body over MaxBodyBytes → 413 with a badProtocol event; every
// event answer, error events included, with 200 and application/json.
func (p *Processor) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "events-protocol: only POST is allowed", http.StatusMethodNotAllowed)
		return
	}
	limit := p.MaxBodyBytes
	if limit <= 0 {
		limit = DefaultMaxBodyBytes
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writeEvent(w, http.StatusRequestEntityTooLarge, badProtocol(&Event{},
				map[string]string{"body": "must not exceed " + strconv.FormatInt(limit, 10) + " bytes"}))
			return
		}
		http.Error(w, "events-protocol: cannot read request body", http.StatusBadRequest)
		return
	}
	writeEvent(w, http.StatusOK, p.Process(r.Context(), body))
}

func writeEvent(w http.ResponseWriter, status int, ev *Event) {
	data, err := json.Marshal(ev)
	if err != nil {
		// Unreachable: every event the processor builds holds valid JSON.
		http.Error(w, "events-protocol: cannot encode response", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(data)
}
