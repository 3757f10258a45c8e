package eventsprotocol

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"time"

	"github.com/connector-host/connector-host/sdk"
	"github.com/google/uuid"
)

// DefaultTimeout is the client's timeout when Send is given 0. It is the
// Kotlin original's 15 s; the Python original's default of 60000 is passed
// to requests as seconds (almost 17 hours), a unit bug not copied.
const DefaultTimeout = 15 * time.Second

// DefaultMaxResponseBytes limits response bodies when
// Client.MaxResponseBytes is 0.
const DefaultMaxResponseBytes = 16 << 20

// Sentinel errors of the client's failure kinds; test with errors.Is.
var (
	// ErrTimeout: no complete answer within the timeout.
	ErrTimeout = errors.New("eventsprotocol: timeout")
	// ErrFailedDependency: the server answered with a non-2xx status or
	// could not be reached.
	ErrFailedDependency = errors.New("eventsprotocol: failed dependency")
	// ErrBadProtocol: the answer is not a valid response event.
	ErrBadProtocol = errors.New("eventsprotocol: bad protocol")
)

// ClientError is a transport failure of Client.Send. Kind is ErrTimeout,
// ErrFailedDependency or ErrBadProtocol, so errors.Is(err, ErrTimeout)
// works. Messages never contain the URL's query, user info or the event.
type ClientError struct {
	// Kind is one of the sentinel errors.
	Kind error
	// StatusCode is the HTTP status when the server answered, else 0.
	StatusCode int
	// Fields names the bad fields of an invalid response event.
	Fields map[string]string
	// Err is the underlying cause, if any.
	Err error

	msg string
}

// Error describes the failure.
func (e *ClientError) Error() string { return e.msg }

// Unwrap returns the cause.
func (e *ClientError) Unwrap() error { return e.Err }

// Is reports whether target is e's Kind.
func (e *ClientError) Is(target error) bool { return target == e.Kind }

// Code is the connector-host error code of the failure: request_timeout,
// bad_gateway or invalid_response.
func (e *ClientError) Code() sdk.Code {
	switch {
	case errors.Is(e.Kind, ErrTimeout):
		return sdk.RequestTimeout
	case errors.Is(e.Kind, ErrBadProtocol):
		return sdk.InvalidResponse
	default:
		return sdk.BadGateway
	}
}

// Response is the answer to a sent event.
type Response struct {
	// Event is the response event.
	Event *Event
	// Kind is response, redirect or error.
	Kind Kind
	// ErrorType is the error type when Kind is KindError.
	ErrorType ErrorType
}

// Client sends events over HTTP. The zero value is ready to use.
type Client struct {
	// HTTPClient sends the requests; nil means http.DefaultClient. Its own
	// Timeout, if any, also applies.
	HTTPClient *http.Client
	// MaxResponseBytes limits response bodies; 0 means
	// DefaultMaxResponseBytes. A larger body is a bad-protocol failure.
	MaxResponseBytes int64
}

// Send posts ev as JSON to rawURL and returns the response event, classified.
// Error events are returned as responses, not as errors. timeout 0 means
// DefaultTimeout. A request event without id or flowId gets fresh UUIDs (ev
// itself is not modified); an invalid request event is an *sdk.Error with
// code bad_request naming the field. A transport failure is an *sdk.Error
// wrapping a *ClientError (errors.As finds it; errors.Is matches its Kind):
// timeout → ErrTimeout, code request_timeout; non-2xx status or unreachable
// server → ErrFailedDependency, code bad_gateway; unparseable or invalid
// response → ErrBadProtocol, code invalid_response. Cancellation of ctx is
// returned wrapping ctx's error.
func (c *Client) Send(ctx context.Context, rawURL string, ev *Event, timeout time.Duration) (*Response, error) {
	if ev == nil {
		return nil, sdk.Errorf(sdk.BadRequest, "eventsprotocol: event is required")
	}
	if timeout < 0 {
		return nil, sdk.Errorf(sdk.BadRequest, "eventsprotocol: timeout must not be negative")
	}
	if timeout == 0 {
		timeout = DefaultTimeout
	}
	u, err := url.Parse(rawURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, sdk.Errorf(sdk.BadRequest, "eventsprotocol: url must be an absolute http(s) URL")
	}
	req := *ev
	if req.ID == "" {
		req.ID = uuid.NewString()
	}
	if req.FlowID == "" {
		req.FlowID = uuid.NewString()
	}
	if err := req.Validate(); err != nil {
		var pe *ProtocolError
		if errors.As(err, &pe) {
			return nil, sdk.Errorf(sdk.BadRequest, "eventsprotocol: event: %s", formatFields(pe.Fields))
		}
		return nil, sdk.Errorf(sdk.BadRequest, "eventsprotocol: event: %v", err)
	}
	body, err := json.Marshal(req)
	if err != nil {
		return nil, sdk.Errorf(sdk.BadRequest, "eventsprotocol: event cannot be encoded: %v", err)
	}

	out, err := c.roundTrip(ctx, u, body, timeout)
	var ce *ClientError
	if errors.As(err, &ce) {
		e := sdk.Errorf(ce.Code(), "%w", ce)
		e.Retryable = !errors.Is(ce.Kind, ErrBadProtocol)
		return nil, e
	}
	if err != nil {
		return nil, err
	}
	kind, errType := Classify(out)
	return &Response{Event: out, Kind: kind, ErrorType: errType}, nil
}

// roundTrip posts body to u and parses the answer. Its errors are
// *ClientError, or the cancellation of ctx.
func (c *Client) roundTrip(ctx context.Context, u *url.URL, body []byte, timeout time.Duration) (*Event, error) {
	where := safeURL(u)
	tctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	hreq, err := http.NewRequestWithContext(tctx, http.MethodPost, u.String(), bytes.NewReader(body))
	if err != nil {
		return nil, &ClientError{Kind: ErrFailedDependency, Err: err,
			msg: fmt.Sprintf("eventsprotocol: failed dependency: cannot build request for %s", where)}
	}
	hreq.Header.Set("Content-Type", "application/json; charset=utf-8")
	hreq.Header.Set("Accept", "application/json")

	hc := c.HTTPClient
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(hreq)
	if err != nil {
		return nil, transportError(ctx, where, timeout, err)
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		return nil, &ClientError{Kind: ErrFailedDependency, StatusCode: resp.StatusCode,
			msg: fmt.Sprintf("eventsprotocol: failed dependency: %s answered HTTP %d", where, resp.StatusCode)}
	}
	limit := c.MaxResponseBytes
	if limit <= 0 {
		limit = DefaultMaxResponseBytes
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return nil, transportError(ctx, where, timeout, err)
	}
	if int64(len(data)) > limit {
		return nil, &ClientError{Kind: ErrBadProtocol, StatusCode: resp.StatusCode,
			msg: fmt.Sprintf("eventsprotocol: bad protocol: response from %s exceeds %d bytes", where, limit)}
	}
	out, perr := parse(data, false)
	if perr != nil {
		return nil, &ClientError{Kind: ErrBadProtocol, StatusCode: resp.StatusCode, Fields: perr.Fields,
			msg: fmt.Sprintf("eventsprotocol: bad protocol: invalid response event from %s: %s", where, formatFields(perr.Fields))}
	}
	return out, nil
}

// transportError classifies a failure to get or read the answer.
func transportError(ctx context.Context, where string, timeout time.Duration, err error) error {
	if ctxErr := ctx.Err(); errors.Is(ctxErr, context.Canceled) {
		return fmt.Errorf("eventsprotocol: sending to %s: %w", where, ctxErr)
	}
	// *url.Error repeats the full URL (query included); keep its cause only.
	var uerr *url.Error
	if errors.As(err, &uerr) {
		err = uerr.Err
	}
	var nerr net.Error
	if errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &nerr) && nerr.Timeout()) {
		return &ClientError{Kind: ErrTimeout, Err: err,
			msg: fmt.Sprintf("eventsprotocol: timeout: no answer from %s within %s", where, timeout)}
	}
	return &ClientError{Kind: ErrFailedDependency, Err: err,
		msg: fmt.Sprintf("eventsprotocol: failed dependency: %s: %v", where, err)}
}

// safeURL renders u without user info, query or fragment, for messages.
func safeURL(u *url.URL) string {
	s := url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path}
	return s.String()
}
