package dsyncemu

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"
)

func start(t *testing.T, cfg Config) *Emulator {
	t.Helper()
	if cfg.APIKey == "" {
		cfg.APIKey = "key-1"
	}
	e, err := Start(cfg, "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.Close() })
	return e
}

type call struct {
	method, token, id, body, key, ctype string
}

func send(t *testing.T, url string, c call) (int, string, http.Header, error) {
	t.Helper()
	req, err := http.NewRequest(c.method, url, strings.NewReader(c.body))
	if err != nil {
		t.Fatal(err)
	}
	if c.ctype != "-" {
		ct := c.ctype
		if ct == "" {
			ct = "application/json"
		}
		req.Header.Set("Content-Type", ct)
	}
	if c.key != "-" {
		k := c.key
		if k == "" {
			k = "key-1"
		}
		req.Header.Set("Auth-Token", k)
	}
	if c.token != "" {
		req.Header.Set("Entity-Token", c.token)
	}
	if c.id != "" {
		req.Header.Set("Entity-Id", c.id)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, "", nil, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header, nil
}

func TestRealtimeProtocolChecks(t *testing.T) {
	t.Parallel()
	e := start(t, Config{IDKeys: map[string]string{"tok": "sku"}})
	u := e.RealtimeURL()
	steps := []struct {
		name   string
		url    string
		c      call
		status int
		msg    string
	}{
		{"wrong path", e.URL() + "/api/other", call{method: "POST", token: "tok", body: `{}`}, 404, "not found"},
		{"GET not allowed", u, call{method: "GET", token: "tok"}, 405, "method GET not allowed"},
		{"missing key", u, call{method: "POST", token: "tok", body: `{"sku":"a"}`, key: "-"}, 401, "Unauthorized"},
		{"wrong key", u, call{method: "POST", token: "tok", body: `{"sku":"a"}`, key: "key-2"}, 401, "Unauthorized"},
		{"missing content type", u, call{method: "POST", token: "tok", body: `{"sku":"a"}`, ctype: "-"}, 400, "Content-Type must be application/json"},
		{"wrong content type", u, call{method: "POST", token: "tok", body: `{"sku":"a"}`, ctype: "text/plain"}, 400, "Content-Type must be application/json"},
		{"missing entity token", u, call{method: "POST", body: `{"sku":"a"}`}, 400, "Entity-Token header is required"},
		{"wrapped body", u, call{method: "POST", token: "tok", body: `[{"sku":"a"}]`}, 400, "body must be the record"},
		{"entity id on create", u, call{method: "POST", token: "tok", id: "a", body: `{"sku":"a"}`}, 400, "Entity-Id header is only for delete"},
		{"create", u, call{method: "POST", token: "tok", body: `{"sku":"a", "n": 1}`, ctype: "application/json; charset=utf-8"}, 200, "OK"},
		{"duplicate create", u, call{method: "POST", token: "tok", body: `{"sku":"a"}`}, 409, `entity "a" already exists`},
		{"update", u, call{method: "PUT", token: "tok", body: `{"sku":"a","n":2}`}, 200, "OK"},
		{"update missing", u, call{method: "PUT", token: "tok", body: `{"sku":"zz"}`}, 404, `entity "zz" not found`},
		{"delete without id", u, call{method: "DELETE", token: "tok"}, 400, "Entity-Id header is required"},
		{"delete with body", u, call{method: "DELETE", token: "tok", id: "a", body: `{}`}, 400, "delete takes no body"},
	}
	for _, s := range steps {
		status, body, _, err := send(t, s.url, s.c)
		if err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		if status != s.status || !strings.Contains(body, `"message":"`+strings.ReplaceAll(s.msg, `"`, `\"`)) {
			t.Errorf("%s: got %d %s, want %d %q", s.name, status, body, s.status, s.msg)
		}
	}
	r, ok := e.Record("tok", "a")
	if !ok || string(r.Data) != `{"sku":"a","n":2}` || r.Version != 2 {
		t.Fatalf("record %+v %v", r, ok)
	}
	if status, _, _, _ := send(t, u, call{method: "DELETE", token: "tok", id: "a"}); status != 200 {
		t.Fatalf("delete: %d", status)
	}
	if len(e.Records("tok")) != 0 {
		t.Fatal("record not deleted")
	}
	if status, _, _, _ := send(t, u, call{method: "DELETE", token: "tok", id: "a"}); status != 404 {
		t.Fatalf("second delete: %d", status)
	}
	c := e.Counters()
	want := Counters{Requests: int64(len(steps)) + 2, Creates: 1, Updates: 1, Deletes: 1, Unauthorized: 2, Rejected: int64(len(steps)) - 2 - 2 + 1}
	if c != want {
		t.Fatalf("counters %+v, want %+v", c, want)
	}
	calls := e.Calls()
	if len(calls) != int(want.Requests) || calls[9].Method != "POST" || calls[9].EntityID != "a" || calls[9].Status != 200 {
		t.Fatalf("calls: %d %+v", len(calls), calls[9])
	}
}

func TestAutoIDsAndDefaultKey(t *testing.T) {
	t.Parallel()
	e := start(t, Config{})
	for _, b := range []string{`{"id":7}`, `{"x":1}`, `{"x":2}`} {
		if st, body, _, _ := send(t, e.RealtimeURL(), call{method: "POST", token: "t", body: b}); st != 200 {
			t.Fatalf("%d %s", st, body)
		}
	}
	recs := e.Records("t")
	if len(recs) != 3 || recs[0].ID != "#1" || recs[1].ID != "#2" || recs[2].ID != "7" {
		t.Fatalf("records %+v", recs)
	}
}

func TestFaults(t *testing.T) {
	t.Parallel()
	e := start(t, Config{})
	e.Inject(
		Fault{Method: "PUT", Status: 503, Times: 2},
		Fault{Method: "POST", Status: 429, RetryAfter: "3", Message: "slow down"},
	)
	if e.PendingFaults() != 3 {
		t.Fatalf("pending %d", e.PendingFaults())
	}
	st, body, h, _ := send(t, e.RealtimeURL(), call{method: "POST", token: "t", body: `{"id":"a"}`})
	if st != 429 || h.Get("Retry-After") != "3" || !strings.Contains(body, `"message":"slow down"`) {
		t.Fatalf("429 fault: %d %s %v", st, body, h)
	}
	if len(e.Records("t")) != 0 {
		t.Fatal("a before-fault must not process the request")
	}
	for range 2 {
		if st, _, _, _ := send(t, e.RealtimeURL(), call{method: "PUT", token: "t", body: `{"id":"a"}`}); st != 503 {
			t.Fatalf("503 fault: %d", st)
		}
	}
	if st, _, _, _ := send(t, e.RealtimeURL(), call{method: "PUT", token: "t", body: `{"id":"a"}`}); st != 404 {
		t.Fatalf("after faults: %d", st)
	}

	// Reset after processing: record stored, client sees a reset.
	e.Inject(Fault{Method: "POST", Reset: true, After: true})
	_, _, _, err := send(t, e.RealtimeURL(), call{method: "POST", token: "t", body: `{"id":"b"}`})
	if !errors.Is(err, syscall.ECONNRESET) && !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("want connection reset, got %v", err)
	}
	if _, ok := e.Record("t", "b"); !ok {
		t.Fatal("after-fault must process the request")
	}
	// Reset before processing.
	e.Inject(Fault{Reset: true})
	if _, _, _, err := send(t, e.RealtimeURL(), call{method: "POST", token: "t", body: `{"id":"c"}`}); err == nil {
		t.Fatal("want reset")
	}
	if _, ok := e.Record("t", "c"); ok {
		t.Fatal("before-reset stored the record")
	}
	// Fault function, matching by entity token.
	e.SetFaultFunc(func(r *http.Request, seq int64) *Fault {
		if r.Header.Get("Entity-Token") == "slow" {
			return &Fault{Delay: 30 * time.Millisecond}
		}
		return nil
	})
	t0 := time.Now()
	if st, _, _, _ := send(t, e.RealtimeURL(), call{method: "POST", token: "slow", body: `{"id":"s"}`}); st != 200 {
		t.Fatalf("slow: %d", st)
	}
	if time.Since(t0) < 30*time.Millisecond {
		t.Fatal("delay not applied")
	}
	e.ClearFaults()
	c := e.Counters()
	if c.Faults != 6 || c.Resets != 2 {
		t.Fatalf("counters %+v", c)
	}
}

func TestSlowFaultEndsWhenClientLeaves(t *testing.T) {
	t.Parallel()
	e := start(t, Config{})
	e.Inject(Fault{Delay: time.Hour})
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "POST", e.RealtimeURL(), strings.NewReader(`{"id":"x"}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Auth-Token", "key-1")
	req.Header.Set("Entity-Token", "t")
	if _, err := http.DefaultClient.Do(req); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("want deadline, got %v", err)
	}
	// The abandoned call is recorded once the emulator notices; WaitCalls
	// waits for it, and gives up with its context.
	wctx, wcancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer wcancel()
	calls, err := e.WaitCalls(wctx, 1)
	if err != nil || len(calls) != 1 || calls[0].Status != 0 || calls[0].Fault == nil || calls[0].Fault.Delay != time.Hour {
		t.Fatalf("WaitCalls: %+v %v", calls, err)
	}
	short, scancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer scancel()
	if _, err := e.WaitCalls(short, 2); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WaitCalls for a call that never comes: %v", err)
	}
	// Close must not wait for the hour.
	done := make(chan struct{})
	go func() { _ = e.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Close blocked by a slow request")
	}
}

func TestNewRequiresKey(t *testing.T) {
	t.Parallel()
	if _, err := New(Config{}); err == nil {
		t.Fatal("want error")
	}
}
