package sdk

import (
	"errors"
	"fmt"
	"net/http"
	"runtime"
	"strings"
)

// Code is one of the error codes of the connector-host contract. The host
// prefixes it with the app_id ("stoa.bad_request") in error envelopes.
type Code string

// The error codes of the contract (SPEC "Error codes").
const (
	NotFound                    Code = "not_found"
	InternalError               Code = "internal_error"
	APIError                    Code = "api_error"
	Unauthorized                Code = "unauthorized"
	BadRequest                  Code = "bad_request"
	PermissionDenied            Code = "permission_denied"
	NotImplemented              Code = "not_implemented"
	UnexpectedError             Code = "unexpected_error"
	UnsupportedOperation        Code = "unsupported_operation"
	UnknownValue                Code = "unknown_value"
	InvalidValue                Code = "invalid_value"
	Unauthenticated             Code = "unauthenticated"
	RequestTimeout              Code = "request_timeout"
	ConnectionTimeout           Code = "connection_timeout"
	ConnectionRejected          Code = "connection_rejected"
	RateLimit                   Code = "rate_limit"
	AuthenticationExpired       Code = "authentication_expired"
	ServiceError                Code = "service_error"
	InvalidResponse             Code = "invalid_response"
	ClientCallError             Code = "client_call_error"
	ConnectionClosed            Code = "connection_closed"
	CredsRevoked                Code = "creds_revoked"
	InvalidPageToken            Code = "invalid_page_token"
	IntegrationMissingParameter Code = "integration_missing_parameter"
	BadGateway                  Code = "bad_gateway"
	Conflict                    Code = "conflict"
)

// statusByCode is the one code → HTTP status table of the project. The host
// uses it for every error envelope it writes; docs/errors.md documents it.
var statusByCode = map[Code]int{
	BadRequest:                  http.StatusBadRequest,
	InvalidValue:                http.StatusBadRequest,
	UnknownValue:                http.StatusBadRequest,
	InvalidPageToken:            http.StatusBadRequest,
	IntegrationMissingParameter: http.StatusBadRequest,
	Unauthorized:                http.StatusUnauthorized,
	Unauthenticated:             http.StatusUnauthorized,
	AuthenticationExpired:       http.StatusUnauthorized,
	CredsRevoked:                http.StatusUnauthorized,
	PermissionDenied:            http.StatusForbidden,
	NotFound:                    http.StatusNotFound,
	Conflict:                    http.StatusConflict,
	RateLimit:                   http.StatusTooManyRequests,
	InternalError:               http.StatusInternalServerError,
	UnexpectedError:             http.StatusInternalServerError,
	NotImplemented:              http.StatusNotImplemented,
	UnsupportedOperation:        http.StatusNotImplemented,
	APIError:                    http.StatusBadGateway,
	BadGateway:                  http.StatusBadGateway,
	InvalidResponse:             http.StatusBadGateway,
	ClientCallError:             http.StatusBadGateway,
	ConnectionClosed:            http.StatusBadGateway,
	ConnectionRejected:          http.StatusBadGateway,
	ServiceError:                http.StatusServiceUnavailable,
	RequestTimeout:              http.StatusGatewayTimeout,
	ConnectionTimeout:           http.StatusGatewayTimeout,
}

// Codes lists every error code of the contract, in the SPEC's order.
func Codes() []Code {
	return []Code{
		NotFound, InternalError, APIError, Unauthorized, BadRequest, PermissionDenied,
		NotImplemented, UnexpectedError, UnsupportedOperation, UnknownValue, InvalidValue,
		Unauthenticated, RequestTimeout, ConnectionTimeout, ConnectionRejected, RateLimit,
		AuthenticationExpired, ServiceError, InvalidResponse, ClientCallError, ConnectionClosed,
		CredsRevoked, InvalidPageToken, IntegrationMissingParameter, BadGateway, Conflict,
	}
}

// Valid reports whether c is one of the contract's codes.
func (c Code) Valid() bool {
	_, ok := statusByCode[c]
	return ok
}

// HTTPStatus is the HTTP status the host answers with for an error of this
// code. Unknown codes map to 500.
func (c Code) HTTPStatus() int {
	if s, ok := statusByCode[c]; ok {
		return s
	}
	return http.StatusInternalServerError
}

// Error is the error a capability handler returns to report a failure with a
// contract code. Handlers may also return any other error: the integration's
// ErrorHandlers map it to a code, and anything unmapped becomes
// unexpected_error.
type Error struct {
	// Code is the contract code, e.g. BadRequest.
	Code Code
	// Message is shown to the caller. It must not contain secrets (the SDK
	// also redacts the request's known secrets from it).
	Message string
	// AppErrorCode is an optional application-specific code, e.g.
	// "stoa.order_empty".
	AppErrorCode string
	// Retryable tells the caller the same request may succeed later.
	Retryable bool
	// Err is the underlying cause, if any; its Go type becomes raised_by.
	Err error

	raisedIn string
}

// Errorf returns an *Error with the given code and a formatted message. The
// calling function is recorded as raised_in. A %w verb sets Err.
func Errorf(code Code, format string, args ...any) *Error {
	wrapped := fmt.Errorf(format, args...)
	e := &Error{Code: code, Message: wrapped.Error(), Err: errors.Unwrap(wrapped), raisedIn: callerName(2)}
	return e
}

// NewError returns an *Error with code and message, recording the calling
// function as raised_in.
func NewError(code Code, message string) *Error {
	return &Error{Code: code, Message: message, raisedIn: callerName(2)}
}

// Error implements the error interface.
func (e *Error) Error() string {
	if e.Message == "" {
		return string(e.Code)
	}
	return string(e.Code) + ": " + e.Message
}

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }

// RaisedIn is the "package.Function" that created the error, when known.
func (e *Error) RaisedIn() string { return e.raisedIn }

// RaisedBy is the Go type of the cause, or "sdk.Error" when there is none.
func (e *Error) RaisedBy() string {
	if p, ok := e.Err.(panicError); ok { //nolint:errorlint // the direct cause's type, as below; the SDK sets a panicError as Err itself
		return "panic(" + typeName(p.value) + ")"
	}
	if e.Err != nil {
		return typeName(e.Err)
	}
	return "sdk.Error"
}

// callerName returns "pkg.Func" of the function skip frames up the stack.
func callerName(skip int) string {
	pc, _, _, ok := runtime.Caller(skip)
	if !ok {
		return ""
	}
	fn := runtime.FuncForPC(pc)
	if fn == nil {
		return ""
	}
	return shortFuncName(fn.Name())
}

// shortFuncName turns "github.com/a/b/pkg.(*T).Method" into
// "pkg.(*T).Method".
func shortFuncName(full string) string {
	if i := strings.LastIndex(full, "/"); i >= 0 {
		full = full[i+1:]
	}
	return full
}

// typeName returns the Go type of v without the import path, e.g.
// "*url.Error".
func typeName(v any) string {
	return shortFuncName(fmt.Sprintf("%T", v))
}
