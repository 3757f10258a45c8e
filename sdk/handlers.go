package sdk

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unicode/utf8"
)

// ErrorHandler maps an error returned by a capability handler to an *Error.
// It returns nil when it does not handle err.
type ErrorHandler func(err error) *Error

// MapError returns an ErrorHandler that maps any error of type E (matched
// with errors.As) to code, keeping its message.
func MapError[E error](code Code) ErrorHandler {
	return func(err error) *Error {
		var target E
		if !errors.As(err, &target) {
			return nil
		}
		return &Error{Code: code, Message: target.Error(), Err: target}
	}
}

// MapErrorFunc returns an ErrorHandler that maps errors of type E with fn.
// fn may return nil to leave the error to the next handler.
func MapErrorFunc[E error](fn func(E) *Error) ErrorHandler {
	return func(err error) *Error {
		var target E
		if !errors.As(err, &target) {
			return nil
		}
		e := fn(target)
		if e != nil && e.Err == nil {
			e.Err = target
		}
		return e
	}
}

// HTTPStatusError is an upstream HTTP response with a non-2xx status, as
// returned by CheckResponse.
type HTTPStatusError struct {
	StatusCode int
	Status     string
	Method     string
	// URL is the request URL without its query string (which may carry
	// credentials).
	URL string
	// Body is the start of the response body (at most 1 KiB).
	Body string
	// RetryAfter is the parsed Retry-After header, 0 when absent.
	RetryAfter time.Duration
}

// Error implements error.
func (e *HTTPStatusError) Error() string {
	msg := fmt.Sprintf("%s %s: upstream answered %s", e.Method, e.URL, e.Status)
	if e.Body != "" {
		msg += ": " + e.Body
	}
	return msg
}

// maxErrorBody is how much of an error response body CheckResponse keeps.
const maxErrorBody = 1024

// CheckResponse returns nil for a 2xx response and an *HTTPStatusError
// otherwise, like Python's raise_for_status. For an error it reads (at most
// 1 KiB of) and closes the body.
func CheckResponse(resp *http.Response) error {
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return nil
	}
	e := &HTTPStatusError{StatusCode: resp.StatusCode, Status: resp.Status}
	if e.Status == "" {
		e.Status = strconv.Itoa(resp.StatusCode) + " " + http.StatusText(resp.StatusCode)
	}
	if req := resp.Request; req != nil && req.URL != nil {
		u := *req.URL
		u.RawQuery, u.User, u.Fragment = "", nil, ""
		e.Method, e.URL = req.Method, u.String()
	}
	if resp.Body != nil {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		_ = resp.Body.Close()
		if utf8.Valid(b) {
			e.Body = strings.TrimSpace(string(b))
		}
	}
	if ra := resp.Header.Get("Retry-After"); ra != "" {
		if secs, err := strconv.Atoi(ra); err == nil && secs >= 0 {
			e.RetryAfter = time.Duration(secs) * time.Second
		} else if t, err := http.ParseTime(ra); err == nil {
			e.RetryAfter = time.Until(t)
		}
	}
	return e
}

// CodeForHTTPStatus maps an upstream HTTP status to a code with the SPEC's
// default table.
func CodeForHTTPStatus(status int) Code {
	switch status {
	case 400, 413, 415, 422:
		return BadRequest
	case 401:
		return Unauthorized
	case 403:
		return PermissionDenied
	case 404:
		return NotFound
	case 408:
		return RequestTimeout
	case 409:
		return Conflict
	case 429:
		return RateLimit
	case 405, 406, 501:
		return UnsupportedOperation
	case 503:
		return ServiceError
	case 500, 502, 504:
		return BadGateway
	}
	return APIError
}

// HTTPErrors is the default handler for *HTTPStatusError: it maps the status
// with CodeForHTTPStatus. The SDK always tries it after the integration's
// own ErrorHandlers.
func HTTPErrors(err error) *Error {
	var he *HTTPStatusError
	if !errors.As(err, &he) {
		return nil
	}
	code := CodeForHTTPStatus(he.StatusCode)
	return &Error{
		Code:      code,
		Message:   he.Error(),
		Err:       he,
		Retryable: code == RateLimit || code == ServiceError || code == BadGateway,
	}
}

// transportErrors maps context, timeout and connection errors.
func transportErrors(err error) *Error {
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return &Error{Code: RequestTimeout, Message: "deadline exceeded: " + err.Error(), Err: err, Retryable: true}
	case errors.Is(err, context.Canceled):
		return &Error{Code: RequestTimeout, Message: "cancelled: " + err.Error(), Err: err}
	case errors.Is(err, syscall.ECONNREFUSED):
		return &Error{Code: ConnectionRejected, Message: err.Error(), Err: err, Retryable: true}
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, io.ErrUnexpectedEOF):
		return &Error{Code: ConnectionClosed, Message: err.Error(), Err: err, Retryable: true}
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return &Error{Code: ConnectionTimeout, Message: err.Error(), Err: err, Retryable: true}
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		return &Error{Code: ClientCallError, Message: err.Error(), Err: err}
	}
	return nil
}

// mapError turns any handler error into an *Error: an *Error as is, then the
// integration's handlers, then the defaults; anything else is
// unexpected_error.
func (i *Integration) mapError(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	for _, h := range i.ErrorHandlers {
		if e := h(err); e != nil {
			return e
		}
	}
	if e := HTTPErrors(err); e != nil {
		return e
	}
	if e := transportErrors(err); e != nil {
		return e
	}
	return &Error{Code: UnexpectedError, Message: err.Error(), Err: err}
}
