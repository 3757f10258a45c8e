package realtime

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/connector-host/connector-host/sdk"
	dsyncemu "github.com/connector-host/connector-host/testkit/emulators/dsync"
)

const apiKey = "s3cret-api-key"

func startEmu(t testing.TB) *dsyncemu.Emulator {
	t.Helper()
	e, err := dsyncemu.Start(dsyncemu.Config{APIKey: apiKey, IDKeys: map[string]string{"product-tok": "sku"}}, "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.Close() })
	return e
}

func newClient(t testing.TB, e *dsyncemu.Emulator, mod func(*Config)) *Client {
	t.Helper()
	cfg := Config{Endpoint: e.RealtimeURL(), APIKey: apiKey, BaseDelay: time.Millisecond, MaxDelay: 5 * time.Millisecond}
	if mod != nil {
		mod(&cfg)
	}
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func wantCode(t *testing.T, err error, code sdk.Code, msgPart string) *sdk.Error {
	t.Helper()
	var se *sdk.Error
	if !errors.As(err, &se) {
		t.Fatalf("want *sdk.Error %s, got %T %v", code, err, err)
	}
	if se.Code != code || !strings.Contains(se.Message, msgPart) {
		t.Fatalf("got %s %q, want %s containing %q", se.Code, se.Message, code, msgPart)
	}
	if strings.Contains(se.Error(), apiKey) {
		t.Fatalf("error leaks the API key: %v", se)
	}
	return se
}

func TestWireFormat(t *testing.T) {
	t.Parallel()
	e := startEmu(t)
	c := newClient(t, e, nil)
	ctx := context.Background()
	rec := json.RawMessage(`{"sku":"A-1", "name":"Chair"}`)
	if r, err := c.Create(ctx, "product-tok", rec); err != nil || r.Status != 200 || r.Attempts != 1 || !json.Valid(r.Data) {
		t.Fatalf("create: %+v %v", r, err)
	}
	upd := json.RawMessage(`{"sku":"A-1","name":"Table"}`)
	if _, err := c.Update(ctx, "product-tok", upd); err != nil {
		t.Fatalf("update: %v", err)
	}
	if got, _ := e.Record("product-tok", "A-1"); string(got.Data) != string(upd) || got.Version != 2 {
		t.Fatalf("stored %+v", got)
	}
	if _, err := c.Delete(ctx, "product-tok", "A-1"); err != nil {
		t.Fatalf("delete: %v", err)
	}
	calls := e.Calls()
	if len(calls) != 3 {
		t.Fatalf("%d calls", len(calls))
	}
	wantMethods := []string{"POST", "PUT", "DELETE"}
	wantBodies := []string{string(rec), string(upd), ""}
	for i, call := range calls {
		if call.Method != wantMethods[i] || call.Path != "/api/realtime" || string(call.Body) != wantBodies[i] {
			t.Errorf("call %d: %s %s %q", i, call.Method, call.Path, call.Body)
		}
		h := call.Header
		if h.Get("Content-Type") != "application/json" || h.Get("Auth-Token") != apiKey || h.Get("Entity-Token") != "product-tok" {
			t.Errorf("call %d headers %v", i, h)
		}
		if len(h.Values("Content-Type")) != 1 || len(h.Values("Auth-Token")) != 1 || len(h.Values("Entity-Token")) != 1 {
			t.Errorf("call %d repeats a header: %v", i, h)
		}
		if gotID := h.Get("Entity-Id"); (i == 2) != (gotID == "A-1") || (i != 2 && gotID != "") {
			t.Errorf("call %d Entity-Id %q", i, gotID)
		}
	}
}

func TestPlatformErrors(t *testing.T) {
	t.Parallel()
	e := startEmu(t)
	c := newClient(t, e, nil)
	ctx := context.Background()

	bad := newClient(t, e, func(cfg *Config) { cfg.APIKey = "wrong-key" })
	_, err := bad.Create(ctx, "product-tok", json.RawMessage(`{"sku":"x"}`))
	wantCode(t, err, sdk.Unauthorized, "platform answered 401: Unauthorized")

	if _, err := c.Create(ctx, "product-tok", json.RawMessage(`{"sku":"dup"}`)); err != nil {
		t.Fatal(err)
	}
	_, err = c.Create(ctx, "product-tok", json.RawMessage(`{"sku":"dup"}`))
	se := wantCode(t, err, sdk.Conflict, `platform answered 409: entity "dup" already exists`)
	if se.AppErrorCode != "dsync.http_409" || se.Retryable {
		t.Fatalf("%+v", se)
	}
	_, err = c.Delete(ctx, "product-tok", "missing")
	wantCode(t, err, sdk.NotFound, `entity "missing" not found`)

	// The platform's message is redacted if it echoes the key.
	e.Inject(dsyncemu.Fault{Status: 400, Message: "bad token " + apiKey})
	_, err = c.Update(ctx, "product-tok", json.RawMessage(`{"sku":"dup"}`))
	wantCode(t, err, sdk.BadRequest, "bad token [REDACTED]")

	// A non-JSON error body falls back to the status text.
	e.Inject(dsyncemu.Fault{Status: 418})
	_, err = c.Update(ctx, "product-tok", json.RawMessage(`{"sku":"dup"}`))
	wantCode(t, err, sdk.APIError, "418")
}

// TestStatusCodes checks that every platform status reaches the caller as
// the SPEC's default code (sdk.CodeForHTTPStatus), with the platform's
// message and an app error code naming the status.
func TestStatusCodes(t *testing.T) {
	t.Parallel()
	e := startEmu(t)
	c := newClient(t, e, nil)
	want := map[int]sdk.Code{
		400: sdk.BadRequest, 413: sdk.BadRequest, 415: sdk.BadRequest, 422: sdk.BadRequest,
		401: sdk.Unauthorized, 403: sdk.PermissionDenied, 404: sdk.NotFound, 408: sdk.RequestTimeout,
		409: sdk.Conflict, 429: sdk.RateLimit, 405: sdk.UnsupportedOperation, 406: sdk.UnsupportedOperation,
		501: sdk.UnsupportedOperation, 503: sdk.ServiceError, 500: sdk.BadGateway, 502: sdk.BadGateway,
		504: sdk.BadGateway, 418: sdk.APIError, 302: sdk.APIError, 599: sdk.APIError,
	}
	for status, code := range want {
		// Create is never retried on a status, so each fault is one answer.
		e.Inject(dsyncemu.Fault{Method: "POST", Status: status, Message: fmt.Sprintf("injected %d", status)})
		_, err := c.Create(context.Background(), "product-tok", json.RawMessage(`{"sku":"s"}`))
		se := wantCode(t, err, code, fmt.Sprintf("platform answered %d: injected %d", status, status))
		if se.AppErrorCode != fmt.Sprintf("dsync.http_%d", status) {
			t.Errorf("%d: app error code %q", status, se.AppErrorCode)
		}
	}
	if n := e.PendingFaults(); n != 0 {
		t.Errorf("%d faults not consumed", n)
	}
}

func TestUpdateDeleteRetry(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	t.Run("update survives 5xx and 429", func(t *testing.T) {
		t.Parallel()
		e := startEmu(t)
		c := newClient(t, e, nil)
		if _, err := c.Create(ctx, "product-tok", json.RawMessage(`{"sku":"u"}`)); err != nil {
			t.Fatal(err)
		}
		e.Inject(dsyncemu.Fault{Method: "PUT", Status: 503}, dsyncemu.Fault{Method: "PUT", Status: 500},
			dsyncemu.Fault{Method: "PUT", Status: 429, RetryAfter: "0"})
		r, err := c.Update(ctx, "product-tok", json.RawMessage(`{"sku":"u","v":2}`))
		if err != nil || r.Attempts != 4 {
			t.Fatalf("update: %+v %v", r, err)
		}
		if got, _ := e.Record("product-tok", "u"); string(got.Data) != `{"sku":"u","v":2}` {
			t.Fatalf("stored %s", got.Data)
		}
	})
	t.Run("honours Retry-After", func(t *testing.T) {
		t.Parallel()
		e := startEmu(t)
		c := newClient(t, e, nil)
		if _, err := c.Create(ctx, "product-tok", json.RawMessage(`{"sku":"r"}`)); err != nil {
			t.Fatal(err)
		}
		e.Inject(dsyncemu.Fault{Method: "DELETE", Status: 429, RetryAfter: "1"})
		t0 := time.Now()
		r, err := c.Delete(ctx, "product-tok", "r")
		if err != nil || r.Attempts != 2 {
			t.Fatalf("delete: %+v %v", r, err)
		}
		if d := time.Since(t0); d < time.Second {
			t.Fatalf("retried after %s, Retry-After asked 1s", d)
		}
	})
	t.Run("Retry-After too long ends retries", func(t *testing.T) {
		t.Parallel()
		e := startEmu(t)
		c := newClient(t, e, func(cfg *Config) { cfg.MaxRetryAfter = time.Second })
		e.Inject(dsyncemu.Fault{Status: 429, RetryAfter: "120", Message: "quota"})
		_, err := c.Update(ctx, "product-tok", json.RawMessage(`{"sku":"x"}`))
		se := wantCode(t, err, sdk.RateLimit, "quota (platform asks to retry after 2m0s")
		if !se.Retryable || len(e.Calls()) != 1 {
			t.Fatalf("retryable %v, %d calls", se.Retryable, len(e.Calls()))
		}
	})
	t.Run("attempts are bounded", func(t *testing.T) {
		t.Parallel()
		e := startEmu(t)
		c := newClient(t, e, func(cfg *Config) { cfg.MaxAttempts = 3 })
		e.Inject(dsyncemu.Fault{Status: 502, Times: 100})
		_, err := c.Delete(ctx, "product-tok", "x")
		se := wantCode(t, err, sdk.BadGateway, "(after 3 attempts)")
		if !se.Retryable || len(e.Calls()) != 3 {
			t.Fatalf("retryable %v, %d calls", se.Retryable, len(e.Calls()))
		}
	})
	t.Run("delete survives connection reset", func(t *testing.T) {
		t.Parallel()
		e := startEmu(t)
		c := newClient(t, e, nil)
		if _, err := c.Create(ctx, "product-tok", json.RawMessage(`{"sku":"d"}`)); err != nil {
			t.Fatal(err)
		}
		e.Inject(dsyncemu.Fault{Method: "DELETE", Reset: true})
		r, err := c.Delete(ctx, "product-tok", "d")
		if err != nil || r.Attempts != 2 || r.AlreadyApplied {
			t.Fatalf("delete: %+v %v", r, err)
		}
		if len(e.Records("product-tok")) != 0 {
			t.Fatal("not deleted")
		}
	})
	t.Run("delete applied but answer lost", func(t *testing.T) {
		t.Parallel()
		e := startEmu(t)
		c := newClient(t, e, nil)
		if _, err := c.Create(ctx, "product-tok", json.RawMessage(`{"sku":"d"}`)); err != nil {
			t.Fatal(err)
		}
		e.Inject(dsyncemu.Fault{Method: "DELETE", Reset: true, After: true})
		r, err := c.Delete(ctx, "product-tok", "d")
		if err != nil || r.Attempts != 2 || !r.AlreadyApplied || r.Status != 404 {
			t.Fatalf("delete: %+v %v", r, err)
		}
	})
	t.Run("update after a reset", func(t *testing.T) {
		t.Parallel()
		e := startEmu(t)
		c := newClient(t, e, nil)
		if _, err := c.Create(ctx, "product-tok", json.RawMessage(`{"sku":"u"}`)); err != nil {
			t.Fatal(err)
		}
		e.Inject(dsyncemu.Fault{Method: "PUT", Reset: true, After: true}, dsyncemu.Fault{Method: "PUT", Reset: true})
		r, err := c.Update(ctx, "product-tok", json.RawMessage(`{"sku":"u","v":3}`))
		if err != nil || r.Attempts != 3 {
			t.Fatalf("update: %+v %v", r, err)
		}
	})
}

func TestCreateNeverDuplicated(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	tests := []struct {
		name      string
		fault     dsyncemu.Fault
		code      sdk.Code
		msg       string
		stored    bool
		retryable bool
	}{
		{"503", dsyncemu.Fault{Status: 503}, sdk.ServiceError, "platform answered 503", false, true},
		{"500 after applying", dsyncemu.Fault{Status: 500, After: true}, sdk.BadGateway, "platform answered 500", true, true},
		{"429", dsyncemu.Fault{Status: 429, RetryAfter: "0"}, sdk.RateLimit, "platform answered 429", false, true},
		{"reset after applying", dsyncemu.Fault{Reset: true, After: true}, sdk.ConnectionClosed, "not repeated to avoid creating the record twice", true, true},
		{"reset before applying", dsyncemu.Fault{Reset: true}, sdk.ConnectionClosed, "not repeated to avoid creating the record twice", false, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := startEmu(t)
			c := newClient(t, e, nil)
			e.Inject(tc.fault)
			_, err := c.Create(ctx, "product-tok", json.RawMessage(`{"sku":"c"}`))
			se := wantCode(t, err, tc.code, tc.msg)
			if se.Retryable != tc.retryable {
				t.Errorf("retryable = %v", se.Retryable)
			}
			// A reset call is recorded when its handler returns, which may
			// be after the client saw the reset; a second create would
			// have been answered (so recorded) before Create returned.
			wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			if _, err := e.WaitCalls(wctx, 1); err != nil {
				t.Fatal(err)
			}
			if n := len(e.Calls()); n != 1 {
				t.Fatalf("create sent %d times", n)
			}
			if _, ok := e.Record("product-tok", "c"); ok != tc.stored {
				t.Fatalf("stored = %v", ok)
			}
		})
	}
	t.Run("slow platform times out without a second create", func(t *testing.T) {
		t.Parallel()
		e := startEmu(t)
		c := newClient(t, e, func(cfg *Config) { cfg.AttemptTimeout = 50 * time.Millisecond })
		e.Inject(dsyncemu.Fault{Delay: 5 * time.Second})
		_, err := c.Create(ctx, "product-tok", json.RawMessage(`{"sku":"slow"}`))
		wantCode(t, err, sdk.ConnectionTimeout, "not repeated")
		if n := len(e.Calls()); n > 1 {
			t.Fatalf("create sent %d times", n)
		}
	})
	t.Run("caller deadline", func(t *testing.T) {
		t.Parallel()
		e := startEmu(t)
		c := newClient(t, e, nil)
		e.Inject(dsyncemu.Fault{Delay: 5 * time.Second})
		dctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
		defer cancel()
		_, err := c.Update(dctx, "product-tok", json.RawMessage(`{"sku":"slow"}`))
		se := wantCode(t, err, sdk.RequestTimeout, "deadline exceeded")
		if se.Retryable {
			t.Fatal("caller deadline must not be retryable")
		}
	})
}

// refusingDialer fails the first n dials with a real "connection refused"
// (dialing a port nobody listens on) and then dials normally.
func refusingDialer(t *testing.T, n int32) (func(ctx context.Context, network, addr string) (net.Conn, error), *atomic.Int32) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close()
	var dials atomic.Int32
	var d net.Dialer
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		if dials.Add(1) <= n {
			return d.DialContext(ctx, network, dead)
		}
		return d.DialContext(ctx, network, addr)
	}, &dials
}

func TestCreateRetriesWhenNeverSent(t *testing.T) {
	t.Parallel()
	e := startEmu(t)
	dial, dials := refusingDialer(t, 2)
	tr := &http.Transport{DialContext: dial}
	t.Cleanup(tr.CloseIdleConnections)
	c := newClient(t, e, func(cfg *Config) { cfg.HTTPClient = &http.Client{Transport: tr} })
	r, err := c.Create(context.Background(), "product-tok", json.RawMessage(`{"sku":"n"}`))
	if err != nil || r.Attempts != 3 || dials.Load() != 3 {
		t.Fatalf("create: %+v %v, %d dials", r, err, dials.Load())
	}
	if len(e.Calls()) != 1 {
		t.Fatalf("%d calls", len(e.Calls()))
	}

	dial2, _ := refusingDialer(t, 100)
	tr2 := &http.Transport{DialContext: dial2}
	c2 := newClient(t, e, func(cfg *Config) { cfg.HTTPClient = &http.Client{Transport: tr2}; cfg.MaxAttempts = 2 })
	_, err = c2.Create(context.Background(), "product-tok", json.RawMessage(`{"sku":"m"}`))
	se := wantCode(t, err, sdk.ConnectionRejected, "connection refused (after 2 attempts)")
	if strings.Contains(se.Message, "not repeated") {
		t.Fatalf("refused create wrongly reported as possibly sent: %s", se.Message)
	}
}

func TestNewAndOpValidation(t *testing.T) {
	t.Parallel()
	if _, err := New(Config{}); err == nil {
		t.Fatal("missing key accepted")
	}
	if _, err := New(Config{APIKey: "a\nb"}); err == nil || strings.Contains(err.Error(), "a\nb") {
		t.Fatalf("bad key: %v", err)
	}
	for _, ep := range []string{"api.dsync.com/api/realtime", "ftp://x/y", "http://", "::"} {
		if _, err := New(Config{APIKey: "k", Endpoint: ep}); err == nil {
			t.Errorf("endpoint %q accepted", ep)
		}
	}
	c, err := New(Config{APIKey: "k"})
	if err != nil || c.cfg.Endpoint != DefaultEndpoint {
		t.Fatalf("defaults: %v", err)
	}
	ctx := context.Background()
	bad := []struct {
		op  Op
		msg string
	}{
		{Op{Op: "upsert", EntityToken: "t", Data: json.RawMessage(`{}`)}, `op: "upsert" is not one of`},
		{Op{Op: OpCreate, Data: json.RawMessage(`{}`)}, "entity_token: is required"},
		{Op{Op: OpCreate, EntityToken: "t\r\nX: y", Data: json.RawMessage(`{}`)}, "entity_token: contains characters"},
		{Op{Op: OpCreate, EntityToken: "t"}, "data: the record must be a JSON object"},
		{Op{Op: OpUpdate, EntityToken: "t", Data: json.RawMessage(`[1]`)}, "data: the record must be a JSON object"},
		{Op{Op: OpUpdate, EntityToken: "t", Data: json.RawMessage(`{"a":`)}, "data: the record must be a JSON object"},
		{Op{Op: OpDelete, EntityToken: "t"}, "entity_id: is required"},
		{Op{Op: OpDelete, EntityToken: "t", EntityID: "a\nb"}, "entity_id: contains characters"},
	}
	for _, b := range bad {
		_, err := c.Do(ctx, b.op)
		wantCode(t, err, sdk.BadRequest, b.msg)
	}
}

func TestParseRetryAfter(t *testing.T) {
	t.Parallel()
	now := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"", 0, false}, {"3", 3 * time.Second, true}, {" 0 ", 0, true}, {"-1", 0, false}, {"soon", 0, false},
		{"Mon, 01 Jan 2024 00:00:10 GMT", 10 * time.Second, true}, {"Sun, 31 Dec 2023 00:00:00 GMT", 0, true},
	}
	for _, tc := range tests {
		if got, ok := parseRetryAfter(tc.in, now); got != tc.want || ok != tc.ok {
			t.Errorf("parseRetryAfter(%q) = %s %v", tc.in, got, ok)
		}
	}
	c := &Client{cfg: Config{BaseDelay: 100 * time.Millisecond, MaxDelay: time.Second}}
	for n := 1; n < 100; n++ {
		d := c.backoff(n)
		capd := min(time.Second, 100*time.Millisecond<<min(n-1, 20))
		if d < capd/2 || d > capd {
			t.Fatalf("backoff(%d) = %s outside [%s, %s]", n, d, capd/2, capd)
		}
	}
}
