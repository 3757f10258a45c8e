package eventsprotocol

import "fmt"

// ErrorType is the last segment of an error event's name:
// "get:event:example:notFound" has ErrorType NotFound.
type ErrorType string

// The error types of the protocol.
const (
	ErrorGeneric        ErrorType = "error"
	ErrorBadProtocol    ErrorType = "badProtocol"
	ErrorBadRequest     ErrorType = "badRequest"
	ErrorUnauthorized   ErrorType = "unauthorized"
	ErrorNotFound       ErrorType = "notFound"
	ErrorForbidden      ErrorType = "forbidden"
	ErrorUserDenied     ErrorType = "userDenied"
	ErrorResourceDenied ErrorType = "resourceDenied"
	ErrorExpired        ErrorType = "expired"
	ErrorGone           ErrorType = "gone"
	ErrorUnprocessable  ErrorType = "unprocessable"
	ErrorUnknown        ErrorType = "unknown"
)

// ErrorTypes lists every error type of the protocol.
func ErrorTypes() []ErrorType {
	return []ErrorType{
		ErrorGeneric, ErrorBadProtocol, ErrorBadRequest, ErrorUnauthorized, ErrorNotFound,
		ErrorForbidden, ErrorUserDenied, ErrorResourceDenied, ErrorExpired, ErrorGone,
		ErrorUnprocessable, ErrorUnknown,
	}
}

// Valid reports whether t is one of the protocol's error types. A client may
// still receive other types from newer servers (the Kotlin original's
// EventErrorType.Unknown); Response.ErrorType keeps them as received.
func (t ErrorType) Valid() bool {
	for _, k := range ErrorTypes() {
		if t == k {
			return true
		}
	}
	return false
}

// The codes the processor puts in its error events' payloads.
const (
	// CodeInvalidCommunicationProtocol: the body is not a valid event
	// (name "badProtocol"); parameters {"fields": {field: reason}}.
	CodeInvalidCommunicationProtocol = "INVALID_COMMUNICATION_PROTOCOL"
	// CodeEventNotFound: no handler for the name and version
	// (name "<name>:notFound"); parameters {"event": name, "version": n}.
	CodeEventNotFound = "EVENT_NOT_FOUND"
	// CodeMissingFields: the payload fails the handler's JSON Schema
	// (name "<name>:badRequest"); parameters {"fields": {field: reason}}.
	CodeMissingFields = "MISSING_FIELDS"
	// CodeUnhandledError: any other failure of the handler, panics included
	// (name "<name>:error"); parameters {}.
	CodeUnhandledError = "UNHANDLED_ERROR"
)

// NameBadProtocol is the name of the event answering a body that is not a
// valid event. It has no request-name prefix, as the request name may be
// missing or invalid.
const NameBadProtocol = "badProtocol"

// EventError is returned by a handler to answer with an error event
// "<name>:<Type>" whose payload is {"code": Code, "parameters": Parameters}.
type EventError struct {
	// Type is the error type; an invalid type is sent as ErrorGeneric.
	Type ErrorType
	// Code is an application code, e.g. "USER_NOT_FOUND".
	Code string
	// Parameters are sent as the payload's parameters ({} when nil).
	Parameters map[string]any
}

// Error implements error.
func (e *EventError) Error() string {
	return fmt.Sprintf("eventsprotocol: %s event, code %s", e.Type, e.Code)
}

// Redirect is returned (as an error) by a handler to answer with a redirect
// event "<name>:redirect" whose payload is {"url": URL, "queryParameters":
// QueryParameters}.
type Redirect struct {
	// URL is where the caller should go.
	URL string
	// QueryParameters are sent as the payload's queryParameters ({} when nil).
	QueryParameters map[string]any
}

// Error implements error; a Redirect is an answer, not a failure.
func (r *Redirect) Error() string { return "eventsprotocol: redirect" }
