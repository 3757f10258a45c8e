// Package realtime is the client of the DSYNC realtime API: it pushes record
// creates, updates and deletes to the platform with the exact wire format of
// PROTOCOLS.md "DSYNC", retries what is safe to retry, and runs batches with
// bounded concurrency while keeping the order of operations on one record.
//
// Wire format: create = POST, update = PUT, delete = DELETE, all to the
// realtime endpoint, each with Content-Type: application/json,
// Auth-Token: <api key> and Entity-Token: <entity token>; delete adds
// Entity-Id: <primary key> and has no body; create and update send the record
// JSON itself. The Python SDK (dsync-sdk 0.1.2) sends DELETE for update,
// which the platform reads as a delete; this client sends PUT like the PHP
// SDK and the platform documentation.
//
// Any status other than 200 is an error (*sdk.Error) whose message is the
// platform's JSON "message" when there is one; the code follows the SPEC's
// default upstream mapping (401 → unauthorized, 429 → rate_limit, ...).
//
// Retries: update and delete are idempotent and are retried on 5xx, on 429
// (waiting the Retry-After the platform asks for) and on connection errors,
// with capped exponential backoff and jitter, at most MaxAttempts times.
// Create is not idempotent: it is retried only when the request provably
// never reached the server — the connection failed before a single byte of
// the request was written (observed with net/http/httptrace) — so a create is
// never duplicated. A delete retried after an attempt that may have been
// applied treats 404 as success (Result.AlreadyApplied).
package realtime

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/net/http/httpguts"

	"github.com/connector-host/connector-host/sdk"
)

// DefaultEndpoint is the production realtime URL.
const DefaultEndpoint = "https://api.dsync.com/api/realtime"

// maxResponse bounds how much of a response body is read.
const maxResponse = 1 << 20

// Config configures a Client. Zero values take the documented defaults.
type Config struct {
	// Endpoint is the realtime URL (default DefaultEndpoint).
	Endpoint string
	// APIKey is the DSYNC API key sent as Auth-Token. Required; never logged
	// or put in error messages.
	APIKey string
	// HTTPClient sends the requests (default: NewHTTPClient(64)).
	HTTPClient *http.Client
	// MaxAttempts bounds the attempts of one operation, first one included
	// (default 4).
	MaxAttempts int
	// BaseDelay is the first backoff delay (default 100ms); it doubles per
	// attempt up to MaxDelay (default 5s), with jitter.
	BaseDelay, MaxDelay time.Duration
	// MaxRetryAfter is the longest Retry-After the client waits (default
	// 30s); a longer one ends the retries with a retryable rate_limit or
	// service_error.
	MaxRetryAfter time.Duration
	// AttemptTimeout bounds one attempt (default 30s).
	AttemptTimeout time.Duration
	// IDFunc, when set, tells Batch the record id of a create or update
	// whose Op.EntityID is empty, so that operations on one record keep
	// their order (typically the layout's primary key).
	IDFunc func(entityToken string, data json.RawMessage) string
}

// Client talks to the realtime API. It is safe for concurrent use.
type Client struct {
	cfg      Config
	http     *http.Client
	redactor *strings.Replacer
	// endpoint is cfg.Endpoint parsed once; each request gets a copy.
	endpoint *url.URL
	// authToken is the Auth-Token header value, shared (read-only) by
	// every request.
	authToken []string
}

// jsonContentType is the Content-Type header value, shared (read-only) by
// every request.
var jsonContentType = []string{"application/json"}

// Result is the outcome of a successful operation.
type Result struct {
	// Status is the HTTP status of the final answer (200, or 404 when
	// AlreadyApplied).
	Status int `json:"status"`
	// Data is the platform's JSON answer, when it sent JSON.
	Data json.RawMessage `json:"data,omitempty"`
	// Attempts is how many requests were sent or tried.
	Attempts int `json:"attempts"`
	// AlreadyApplied is set when a delete got 404 after an earlier attempt
	// that may have been applied.
	AlreadyApplied bool `json:"already_applied,omitempty"`
}

// New returns a client for cfg.
func New(cfg Config) (*Client, error) {
	if cfg.APIKey == "" {
		return nil, sdk.Errorf(sdk.IntegrationMissingParameter, "auth.token: the DSYNC API key is required")
	}
	if !httpguts.ValidHeaderFieldValue(cfg.APIKey) {
		return nil, sdk.Errorf(sdk.InvalidValue, "auth.token: the DSYNC API key contains characters not allowed in a header")
	}
	if cfg.Endpoint == "" {
		cfg.Endpoint = DefaultEndpoint
	}
	endpoint, err := checkEndpoint(cfg.Endpoint)
	if err != nil {
		return nil, err
	}
	if cfg.MaxAttempts <= 0 {
		cfg.MaxAttempts = 4
	}
	if cfg.BaseDelay <= 0 {
		cfg.BaseDelay = 100 * time.Millisecond
	}
	if cfg.MaxDelay <= 0 {
		cfg.MaxDelay = 5 * time.Second
	}
	if cfg.MaxDelay < cfg.BaseDelay {
		cfg.MaxDelay = cfg.BaseDelay
	}
	if cfg.MaxRetryAfter <= 0 {
		cfg.MaxRetryAfter = 30 * time.Second
	}
	if cfg.AttemptTimeout <= 0 {
		cfg.AttemptTimeout = 30 * time.Second
	}
	hc := cfg.HTTPClient
	if hc == nil {
		hc = NewHTTPClient(64)
	}
	return &Client{cfg: cfg, http: hc, redactor: strings.NewReplacer(cfg.APIKey, "[REDACTED]"), endpoint: endpoint, authToken: []string{cfg.APIKey}}, nil
}

func checkEndpoint(endpoint string) (*url.URL, error) {
	req, err := http.NewRequest(http.MethodPost, endpoint, nil)
	if err != nil || (req.URL.Scheme != "http" && req.URL.Scheme != "https") || req.URL.Host == "" {
		return nil, sdk.Errorf(sdk.InvalidValue, "settings.realtime_endpoint: %q is not an absolute http(s) URL", endpoint)
	}
	return req.URL, nil
}

// NewHTTPClient returns an HTTP client whose transport keeps up to
// maxConnsPerHost idle connections per host, so that concurrent batches
// reuse connections.
func NewHTTPClient(maxConnsPerHost int) *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConns = max(100, maxConnsPerHost*2)
	t.MaxIdleConnsPerHost = maxConnsPerHost
	return &http.Client{Transport: t}
}

// Create sends a new record (POST). data must be a JSON object.
func (c *Client) Create(ctx context.Context, entityToken string, data json.RawMessage) (Result, error) {
	return c.Do(ctx, Op{Op: OpCreate, EntityToken: entityToken, Data: data})
}

// Update sends a changed record (PUT). data must be a JSON object.
func (c *Client) Update(ctx context.Context, entityToken string, data json.RawMessage) (Result, error) {
	return c.Do(ctx, Op{Op: OpUpdate, EntityToken: entityToken, Data: data})
}

// Delete deletes the record with primary key entityID (DELETE, Entity-Id).
func (c *Client) Delete(ctx context.Context, entityToken, entityID string) (Result, error) {
	return c.Do(ctx, Op{Op: OpDelete, EntityToken: entityToken, EntityID: entityID})
}

// Do runs one operation.
func (c *Client) Do(ctx context.Context, op Op) (Result, error) {
	method, err := op.check()
	if err != nil {
		return Result{}, err
	}
	var body []byte
	if op.Op != OpDelete {
		body = op.Data
	}
	return c.send(ctx, op, method, body)
}

// attempt is the outcome of one request.
type attempt struct {
	status     int
	body       []byte
	retryAfter string
	err        error
	// written is true when part of the request may have reached the wire.
	written bool
}

func (c *Client) send(ctx context.Context, op Op, method string, body []byte) (Result, error) {
	ambiguous := false // an earlier attempt may have been applied
	for n := 1; ; n++ {
		a := c.try(ctx, op, method, body)
		if a.err == nil && a.status == http.StatusOK {
			return Result{Status: a.status, Data: jsonOrNil(a.body), Attempts: n}, nil
		}
		if a.err == nil && a.status == http.StatusNotFound && op.Op == OpDelete && ambiguous {
			return Result{Status: a.status, Data: jsonOrNil(a.body), Attempts: n, AlreadyApplied: true}, nil
		}
		var failure *sdk.Error
		var wait time.Duration
		retry := false
		if a.err != nil {
			failure = c.transportError(ctx, op, a, n)
			if ctx.Err() == nil {
				retry = op.Op != OpCreate || !a.written
				ambiguous = ambiguous || a.written
				wait = c.backoff(n)
			}
		} else {
			failure = c.statusError(op, a, n)
			if retryableStatus(a.status) {
				failure.Retryable = true
				retry = op.Op != OpCreate
				ambiguous = ambiguous || a.status >= 500
				wait = c.backoff(n)
				if d, ok := parseRetryAfter(a.retryAfter, time.Now()); ok {
					if d > c.cfg.MaxRetryAfter {
						failure.Message += fmt.Sprintf(" (platform asks to retry after %s, longer than the %s the client waits)", d.Round(time.Second), c.cfg.MaxRetryAfter)
						retry = false
					}
					wait = d
				}
			}
		}
		if !retry || n >= c.cfg.MaxAttempts || !sleep(ctx, wait) {
			return Result{}, failure
		}
	}
}

// try sends one request and observes whether any of it was written.
func (c *Client) try(ctx context.Context, op Op, method string, body []byte) attempt {
	var written atomic.Bool
	trace := &httptrace.ClientTrace{
		WroteHeaderField: func(string, []string) { written.Store(true) },
		WroteHeaders:     func() { written.Store(true) },
		WroteRequest:     func(httptrace.WroteRequestInfo) { written.Store(true) },
	}
	actx, cancel := context.WithTimeout(httptrace.WithClientTrace(ctx, trace), c.cfg.AttemptTimeout)
	defer cancel()
	req := c.newRequest(actx, op, method, body)
	resp, err := c.http.Do(req)
	if err != nil {
		return attempt{err: err, written: written.Load()}
	}
	defer func() { _ = resp.Body.Close() }()
	buf := bodyBuffers.Get().(*bytes.Buffer)
	defer putBodyBuffer(buf)
	buf.Reset()
	_, err = buf.ReadFrom(io.LimitReader(resp.Body, maxResponse))
	if err != nil && resp.StatusCode == http.StatusOK {
		// The platform answered 200: the operation was applied even if the
		// body was cut off.
		err = nil
	}
	if err != nil {
		return attempt{err: err, written: true}
	}
	// The answer is kept (Result.Data, error messages): a copy of exactly
	// its bytes, not the pooled buffer.
	b := bytes.Clone(bytes.TrimSpace(buf.Bytes()))
	return attempt{status: resp.StatusCode, body: b, retryAfter: resp.Header.Get("Retry-After"), written: true}
}

// newRequest builds the request of one attempt: what
// http.NewRequestWithContext builds, without parsing the endpoint again
// and with the constant header values shared.
func (c *Client) newRequest(ctx context.Context, op Op, method string, body []byte) *http.Request {
	u := *c.endpoint
	h := make(http.Header, 4)
	h["Content-Type"] = jsonContentType
	h["Auth-Token"] = c.authToken
	h["Entity-Token"] = []string{op.EntityToken}
	if op.Op == OpDelete {
		h["Entity-Id"] = []string{op.EntityID}
	}
	req := &http.Request{
		Method:     method,
		URL:        &u,
		Proto:      "HTTP/1.1",
		ProtoMajor: 1,
		ProtoMinor: 1,
		Header:     h,
		Host:       u.Host,
	}
	if body != nil {
		req.ContentLength = int64(len(body))
		req.Body = io.NopCloser(bytes.NewReader(body))
		// GetBody lets the transport resend the body on a fresh connection
		// when a reused one turned out dead before anything was written.
		req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
		if len(body) == 0 {
			req.Body, req.GetBody = http.NoBody, func() (io.ReadCloser, error) { return http.NoBody, nil }
		}
	}
	return req.WithContext(ctx)
}

// bodyBuffers recycles the buffers answers are read into.
var bodyBuffers = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// putBodyBuffer returns a buffer to the pool unless it grew large (a rare
// big answer is not kept alive).
func putBodyBuffer(b *bytes.Buffer) {
	if b.Cap() <= 64<<10 {
		bodyBuffers.Put(b)
	}
}

func (c *Client) statusError(op Op, a attempt, n int) *sdk.Error {
	msg := http.StatusText(a.status)
	var pe struct {
		Message json.RawMessage `json:"message"`
	}
	if json.Unmarshal(a.body, &pe) == nil && len(pe.Message) > 0 {
		var s string
		if json.Unmarshal(pe.Message, &s) == nil {
			msg = s
		} else if string(pe.Message) != "null" {
			msg = string(pe.Message)
		}
	}
	msg = truncate(c.redactor.Replace(msg), 500)
	code := sdk.CodeForHTTPStatus(a.status)
	e := sdk.Errorf(code, "dsync realtime %s: platform answered %d: %s%s", op.Op, a.status, msg, attemptsNote(n))
	e.AppErrorCode = "dsync.http_" + strconv.Itoa(a.status)
	return e
}

func (c *Client) transportError(ctx context.Context, op Op, a attempt, n int) *sdk.Error {
	code, what := classify(ctx, a.err)
	detail := c.redactor.Replace(a.err.Error())
	note := ""
	if op.Op == OpCreate && a.written {
		note = "; the request may have reached the platform, so it is not repeated to avoid creating the record twice"
	}
	e := sdk.Errorf(code, "dsync realtime %s: %s%s%s: %s", op.Op, what, attemptsNote(n), note, detail)
	e.Err = a.err
	e.Retryable = ctx.Err() == nil
	return e
}

// classify maps a transport error to a contract code and a short phrase.
func classify(ctx context.Context, err error) (sdk.Code, string) {
	var ne net.Error
	switch {
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		return sdk.RequestTimeout, "deadline exceeded"
	case ctx.Err() != nil:
		return sdk.ClientCallError, "canceled"
	case errors.Is(err, syscall.ECONNREFUSED):
		return sdk.ConnectionRejected, "connection refused"
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, syscall.EPIPE):
		return sdk.ConnectionClosed, "connection closed by the platform"
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return sdk.ConnectionTimeout, "timed out"
	}
	return sdk.ClientCallError, "request failed"
}

func retryableStatus(s int) bool { return s == http.StatusTooManyRequests || s >= 500 }

// backoff is the delay after attempt n: BaseDelay·2^(n-1) capped at
// MaxDelay, of which the upper half is random.
func (c *Client) backoff(n int) time.Duration {
	d := c.cfg.MaxDelay
	if n < 31 {
		if e := c.cfg.BaseDelay << (n - 1); e > 0 && e < d {
			d = e
		}
	}
	half := d / 2
	return half + rand.N(half+1) //nolint:gosec // retry jitter, not a secret
}

// parseRetryAfter reads Retry-After as seconds or an HTTP date.
func parseRetryAfter(v string, now time.Time) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil {
		if secs < 0 {
			return 0, false
		}
		if secs > 1<<31 {
			secs = 1 << 31
		}
		return time.Duration(secs) * time.Second, true
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(t.Sub(now), 0), true
	}
	return 0, false
}

// sleep waits d unless ctx ends first, or would end before d elapses.
func sleep(ctx context.Context, d time.Duration) bool {
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) < d {
		return false
	}
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

func attemptsNote(n int) string {
	if n == 1 {
		return ""
	}
	return fmt.Sprintf(" (after %d attempts)", n)
}

func jsonOrNil(b []byte) json.RawMessage {
	b = bytes.TrimSpace(b)
	if len(b) == 0 || !json.Valid(b) {
		return nil
	}
	return b
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
