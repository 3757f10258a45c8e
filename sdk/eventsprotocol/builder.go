package eventsprotocol

import (
	"encoding/json"
	"strings"

	"github.com/google/uuid"
)

// Suffixes of success and redirect response names.
const (
	suffixResponse = ":response"
	suffixRedirect = ":redirect"
)

// ResponseFor builds the success response to req: name "<name>:response",
// the request's version, and id, flowId, identity, auth and metadata copied
// from req; only name and payload differ. payload is marshaled to JSON (nil
// becomes {}); an error is returned when it cannot be.
func ResponseFor(req *Event, payload any) (*Event, error) {
	raw, err := marshalPayload(payload)
	if err != nil {
		return nil, err
	}
	return answer(req, req.Name+suffixResponse, raw), nil
}

// RedirectFor builds the redirect response to req: name "<name>:redirect",
// payload {"url": url, "queryParameters": queryParameters} (nil becomes {}),
// the rest copied from req.
func RedirectFor(req *Event, url string, queryParameters map[string]any) (*Event, error) {
	if queryParameters == nil {
		queryParameters = map[string]any{}
	}
	raw, err := marshalPayload(map[string]any{"url": url, "queryParameters": queryParameters})
	if err != nil {
		return nil, err
	}
	return answer(req, req.Name+suffixRedirect, raw), nil
}

// BadProtocolFor builds the answer to a body that is not a usable event,
// as a Processor does: name "badProtocol", version 1, code
// INVALID_COMMUNICATION_PROTOCOL, parameters {"fields": fields} (field →
// reason), fresh id and flowId, empty identity, auth and metadata. Servers
// use it for what they refuse before an event is read (a body over the
// size limit, a method other than POST).
func BadProtocolFor(fields map[string]string) *Event {
	return badProtocol(&Event{}, fields)
}

// ErrorFor builds the error response to req: name "<name>:<errorType>",
// payload {"code": code, "parameters": parameters} (nil becomes {}), the rest
// copied from req. An invalid errorType is sent as ErrorGeneric; when req has
// no name the event is named after the error type alone (as the Python
// original does). The error is non-nil only when parameters cannot be
// marshaled.
func ErrorFor(req *Event, errorType ErrorType, code string, parameters map[string]any) (*Event, error) {
	if !errorType.Valid() {
		errorType = ErrorGeneric
	}
	if parameters == nil {
		parameters = map[string]any{}
	}
	raw, err := marshalPayload(map[string]any{"code": code, "parameters": parameters})
	if err != nil {
		return nil, err
	}
	name := string(errorType)
	if req.Name != "" {
		name = req.Name + ":" + name
	}
	return answer(req, name, raw), nil
}

// answer copies req with a new name and payload.
func answer(req *Event, name string, payload json.RawMessage) *Event {
	resp := *req
	resp.Name = name
	resp.Payload = payload
	if resp.ID == "" {
		resp.ID = uuid.NewString()
	}
	if resp.FlowID == "" {
		resp.FlowID = uuid.NewString()
	}
	return &resp
}

func marshalPayload(v any) (json.RawMessage, error) {
	raw, err := json.Marshal(v)
	if err != nil {
		return nil, &marshalError{err: err}
	}
	if string(raw) == "null" {
		raw = emptyObject
	}
	return raw, nil
}

// marshalError reports a payload that cannot be marshaled to JSON.
type marshalError struct{ err error }

func (e *marshalError) Error() string { return "eventsprotocol: payload: " + e.err.Error() }
func (e *marshalError) Unwrap() error { return e.err }

// Kind classifies a response event.
type Kind string

// The kinds of response events.
const (
	KindResponse Kind = "response"
	KindRedirect Kind = "redirect"
	KindError    Kind = "error"
)

// Classify returns the kind of a response event and, for errors, its error
// type: the last ":"-separated segment of the name ("badProtocol" and
// "eventNotFound" are their own types). Unknown types are kept as received.
func Classify(resp *Event) (Kind, ErrorType) {
	switch {
	case strings.HasSuffix(resp.Name, suffixResponse):
		return KindResponse, ""
	case strings.HasSuffix(resp.Name, suffixRedirect):
		return KindRedirect, ""
	}
	name := resp.Name
	if i := strings.LastIndexByte(name, ':'); i >= 0 {
		name = name[i+1:]
	}
	return KindError, ErrorType(name)
}
