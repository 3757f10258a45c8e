package stoa

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/connector-host/connector-host/sdk"
	stoaemu "github.com/connector-host/connector-host/testkit/emulators/stoa"
	"github.com/connector-host/connector-host/testkit/harness"
)

// rowsOf returns the row count of each object key.
func rowsOf(srv *stoaemu.Server, product int) int64 {
	return int64(srv.Products()[product].RowsPerObject)
}

func TestFetchCellByCell(t *testing.T) {
	t.Parallel()
	authModes(t, stoaemu.Options{}, func(t *testing.T, srv *stoaemu.Server, creds Credentials) {
		c := newClient(t, srv, creds, Options{BatchRows: 33}, nil)
		ctx := context.Background()

		// Ordered: the 20 newest objects, newest first.
		var got collector
		res, err := c.Fetch(ctx, FetchRequest{OrderRequest: exampleOrder()}, got.emit)
		if err != nil {
			t.Fatal(err)
		}
		desc := srv.Keys(0)
		slices.Reverse(desc)
		if !slices.Equal(res.OrderIDs, desc[:20]) {
			t.Errorf("order ids %v, want %v", res.OrderIDs, desc[:20])
		}
		cols, want := expectedRows(t, srv, desc[:20], nil)
		compareRows(t, got.rows, cols, want)
		if res.Rows != int64(len(want)) || res.NextPageToken != "20" || len(res.Failures) != 0 {
			t.Errorf("result %+v", res)
		}
		if len(res.Columns) != stoaemu.Schema().NumFields() || res.Columns[3] != (Column{Name: "i16", Type: "int16", Nullable: true}) {
			t.Errorf("columns %+v", res.Columns)
		}

		// Given order ids (no order call) and a projection.
		before := srv.Stats().Orders
		ids := []string{srv.Keys(0)[3], srv.Keys(0)[0], srv.Keys(0)[24]}
		columns := []string{"events", "id", "name", "ts_us", "big", "attrs", "u64"}
		got = collector{}
		res, err = c.Fetch(ctx, FetchRequest{OrderIDs: ids, Columns: columns}, got.emit)
		if err != nil {
			t.Fatal(err)
		}
		cols, want = expectedRows(t, srv, ids, columns)
		compareRows(t, got.rows, cols, want)
		if srv.Stats().Orders != before || res.NextPageToken != "" || len(res.Columns) != len(columns) {
			t.Errorf("order_ids fetch: orders %d→%d, result %+v", before, srv.Stats().Orders, res)
		}

		// The workspace "cart" product.
		got = collector{}
		cart := OrderRequest{ProductGroupName: "exampleGroup", ProductName: "exampleProduct", Workspace: "cart", OwnerID: "owner456", Ascending: true}
		if _, err := c.Fetch(ctx, FetchRequest{OrderRequest: cart}, got.emit); err != nil {
			t.Fatal(err)
		}
		cols, want = expectedRows(t, srv, srv.Keys(1), nil)
		compareRows(t, got.rows, cols, want)
	})
}

func TestFetchBadInput(t *testing.T) {
	t.Parallel()
	srv := startEmu(t, stoaemu.Options{})
	c := newClient(t, srv, restCreds, Options{}, nil)
	ctx := context.Background()
	ids := srv.Keys(0)[:2]
	for _, tc := range []struct {
		req   FetchRequest
		field string
	}{
		{FetchRequest{OrderIDs: ids, Columns: []string{"id", ""}}, "request.columns[1]: must not be empty"},
		{FetchRequest{OrderIDs: ids, Columns: []string{"id", "name", "id"}}, `request.columns[2]: "id" repeats request.columns[0]`},
		{FetchRequest{OrderIDs: []string{"a", "a"}}, "request.order_ids[1]"},
		{FetchRequest{}, "request.product_group_name: is required"},
	} {
		var got collector
		_, err := c.Fetch(ctx, tc.req, got.emit)
		wantCode(t, err, sdk.BadRequest, tc.field)
	}
	if st := srv.Stats(); st.Logins+st.Orders+st.Signs+st.ObjectGets != 0 {
		t.Errorf("bad input reached the network: %+v", st)
	}
	// An unknown column is found in the first object, before any row.
	var got collector
	_, err := c.Fetch(ctx, FetchRequest{OrderIDs: ids, Columns: []string{"id", "nope"}}, got.emit)
	wantCode(t, err, sdk.BadRequest, `request.columns[1]: unknown column "nope"`, "ts_local")
	if len(got.rows) != 0 {
		t.Errorf("%d rows sent before the unknown column error", len(got.rows))
	}
	// With allow_partial too: a bad request is not a partial failure.
	_, err = c.Fetch(ctx, FetchRequest{OrderIDs: ids, Columns: []string{"nope"}, AllowPartial: true}, got.emit)
	wantCode(t, err, sdk.BadRequest, "request.columns[0]")
}

// clientLog keeps what a client logged (JSON lines) for the request
// counts of TestFetchFaults.
type clientLog struct{ harness.Logs }

func (l *clientLog) logger() hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{Output: l, JSONFormat: true, Level: hclog.Info})
}

func (l *clientLog) lines(t *testing.T) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, line := range bytes.Split([]byte(l.String()), []byte("\n")) {
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal(line, &m); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		out = append(out, m)
	}
	return out
}

// timeouts counts the retries of what ("download of order id …", "sign of
// order id …") after a try that made no progress within timeout_s. Under
// load (the race detector on 2 busy cores) a request can stall that long;
// the client then retries it, by design, with the same presigned URL.
func (l *clientLog) timeouts(t *testing.T, what string) int {
	n := 0
	for _, m := range l.lines(t) {
		msg, _ := m["error"].(string)
		if m["@message"] == "stoa request failed; retrying" && m["error_code"] == string(sdk.RequestTimeout) && strings.HasPrefix(msg, what) {
			n++
		}
	}
	return n
}

// resigns counts the re-signings of order id after a refused presigned URL.
func (l *clientLog) resigns(t *testing.T, id string) int {
	n := 0
	for _, m := range l.lines(t) {
		if s, _ := m["@message"].(string); strings.Contains(s, "signing again") && m["order_id"] == id {
			n++
		}
	}
	return n
}

// wantRequests checks a server-side request count against the tries the
// client made: want of them, timedOut of which stalled beyond timeout_s
// and were abandoned. A stalled try may or may not have reached the
// handler, so the count is between want-timedOut and want (exactly want
// without stalls).
func wantRequests(t *testing.T, what string, got, want, timedOut int) {
	t.Helper()
	if got < want-timedOut || got > want {
		if timedOut == 0 {
			t.Errorf("%s: %d requests, want %d", what, got, want)
		} else {
			t.Errorf("%s: %d requests, want %d to %d (%d tries timed out)", what, got, want-timedOut, want, timedOut)
		}
	}
}

func TestFetchFaults(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	small := stoaemu.Options{Products: []stoaemu.Product{{
		GroupName: "g", Name: "n", Workspace: "apps", OwnerID: "o", Objects: 6, RowsPerObject: 40, RowGroupRows: 16,
	}}}
	// The settle checks count the requests of the failing object. Tries
	// that timed out under load (see clientLog.timeouts) are retried on top
	// of the ones the fault causes, except where the attempts are capped.
	type settleFunc func(t *testing.T, st stoaemu.Stats, key string, log *clientLog)
	downloadOf := func(key string) string { return "download of order id " + quoteShort(key) }
	tests := []struct {
		name   string
		fault  stoaemu.Fault
		sign   bool // inject on the sign endpoint instead of the object
		ok     bool // the fetch completes with every row
		code   sdk.Code
		msg    string
		settle settleFunc
	}{
		{name: "503 once", fault: stoaemu.Fault{Status: 503, Times: 1}, ok: true,
			settle: func(t *testing.T, st stoaemu.Stats, key string, log *clientLog) {
				to := log.timeouts(t, downloadOf(key))
				wantRequests(t, "downloads of the failing object", st.Downloads[key], 2+to, to)
			}},
		{name: "500 twice", fault: stoaemu.Fault{Status: 500, Times: 2}, ok: true},
		{name: "429 with Retry-After 0", fault: stoaemu.Fault{Status: 429, RetryAfter: "0", Times: 2}, ok: true},
		{name: "truncated once", fault: stoaemu.Fault{Truncate: true, Times: 1}, ok: true},
		{name: "short body once", fault: stoaemu.Fault{ShortBody: true, Times: 1}, ok: true},
		{name: "expired signature once", fault: stoaemu.Fault{ExpiredSignature: true, Times: 1}, ok: true,
			settle: func(t *testing.T, st stoaemu.Stats, key string, log *clientLog) {
				// Re-signed exactly once: the refused URL, nothing else.
				if n := log.resigns(t, key); n != 1 {
					t.Errorf("%d re-signings of the failing object, want 1", n)
				}
				to := log.timeouts(t, downloadOf(key))
				wantRequests(t, "downloads of the failing object", st.Downloads[key], 2+to, to)
				sto := log.timeouts(t, "sign of order id")
				wantRequests(t, "signs", st.Signs, 7+sto, sto)
			}},
		{name: "sign 502 once", fault: stoaemu.Fault{Status: 502, Times: 1}, sign: true, ok: true},
		{name: "503 always", fault: stoaemu.Fault{Status: 503}, code: sdk.ServiceError, msg: "HTTP 503",
			settle: func(t *testing.T, st stoaemu.Stats, key string, log *clientLog) {
				wantRequests(t, "downloads of the failing object (4 attempts)", st.Downloads[key], 4, log.timeouts(t, downloadOf(key)))
			}},
		{name: "truncated always", fault: stoaemu.Fault{Truncate: true}, code: sdk.ConnectionClosed, msg: "transfer broke"},
		{name: "short body always", fault: stoaemu.Fault{ShortBody: true}, code: sdk.InvalidResponse, msg: "may be truncated"},
		{name: "expired signature always", fault: stoaemu.Fault{ExpiredSignature: true}, code: sdk.PermissionDenied, msg: "HTTP 403",
			settle: func(t *testing.T, st stoaemu.Stats, key string, log *clientLog) {
				if n := log.resigns(t, key); n != maxResigns {
					t.Errorf("%d re-signings, want %d", n, maxResigns)
				}
				to := log.timeouts(t, downloadOf(key))
				wantRequests(t, "downloads of the failing object", st.Downloads[key], 1+maxResigns+to, to)
			}},
		{name: "404", fault: stoaemu.Fault{Status: 404}, code: sdk.NotFound, msg: "HTTP 404",
			settle: func(t *testing.T, st stoaemu.Stats, key string, log *clientLog) {
				// A 404 is not retried (a stalled try before it is).
				to := log.timeouts(t, downloadOf(key))
				wantRequests(t, "downloads of the failing object (a 404 is final)", st.Downloads[key], 1+to, to)
			}},
		{name: "sign missing url", fault: stoaemu.Fault{Status: 200, Body: `{"url":null}`}, sign: true, code: sdk.InvalidResponse, msg: "no url"},
	}
	for _, tc := range tests {
		for _, partial := range []bool{false, true} {
			if tc.ok && partial {
				continue
			}
			name := tc.name
			if partial {
				name += "/allow_partial"
			}
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				srv := startEmu(t, small)
				var log clientLog
				c := newClient(t, srv, restCreds, Options{Logger: log.logger()}, nil)
				keys := srv.Keys(0)
				failing := keys[2]
				if tc.sign {
					srv.InjectFault("/api/v2/sign/", tc.fault)
					if !tc.ok {
						failing = keys[0] // every sign fails: the first object fails first
					}
				} else {
					srv.InjectFault(failing, tc.fault)
				}
				var got collector
				res, err := c.Fetch(ctx, FetchRequest{OrderIDs: keys, AllowPartial: partial}, got.emit)
				switch {
				case tc.ok:
					if err != nil {
						t.Fatalf("fetch: %v", err)
					}
					cols, want := expectedRows(t, srv, keys, nil)
					compareRows(t, got.rows, cols, want)
				case tc.sign:
					// Every object fails: an error either way, never an empty success.
					wantCode(t, err, tc.code, tc.msg, failing)
					if len(got.rows) != 0 {
						t.Errorf("%d rows", len(got.rows))
					}
				case !partial:
					se := wantCode(t, err, tc.code, tc.msg, failing, "80 rows were delivered")
					if se.AppErrorCode != "stoa.fetch_failed" {
						t.Errorf("app error code %q", se.AppErrorCode)
					}
					// The rows before the failed object, and nothing after it.
					cols, want := expectedRows(t, srv, keys[:2], nil)
					compareRows(t, got.rows, cols, want)
				default:
					if err != nil {
						t.Fatalf("allow_partial: %v", err)
					}
					others := slices.Delete(slices.Clone(keys), 2, 3)
					cols, want := expectedRows(t, srv, others, nil)
					compareRows(t, got.rows, cols, want)
					if len(res.Failures) != 1 || res.Failures[0].OrderID != failing || res.Failures[0].ErrorCode != string(tc.code) {
						t.Errorf("failures %+v", res.Failures)
					}
					if res.Rows != 5*rowsOf(srv, 0) {
						t.Errorf("rows %d", res.Rows)
					}
					fe := res.FailureError()
					se := wantCode(t, fe, tc.code, failing, "1 of 6 objects failed")
					if se.AppErrorCode != "stoa.partial_fetch" {
						t.Errorf("app error code %q", se.AppErrorCode)
					}
				}
				if res != nil {
					for _, f := range res.Failures {
						noSecrets(t, f.Message)
					}
				}
				if tc.settle != nil {
					tc.settle(t, srv.Stats(), failing, &log)
				}
			})
		}
	}
}

func TestFetchSlowBody(t *testing.T) {
	t.Parallel()
	opts := stoaemu.Options{Products: []stoaemu.Product{{GroupName: "g", Name: "n", Workspace: "apps", OwnerID: "o", Objects: 3, RowsPerObject: 30}}}
	srv := startEmu(t, opts)
	keys := srv.Keys(0)
	c := newClient(t, srv, restCreds, Options{}, func(s *Settings) { s.TimeoutS = 0.15 })
	ctx := context.Background()
	// Pauses below the timeout: slow but complete.
	srv.InjectFault(keys[1], stoaemu.Fault{SlowBody: 30 * time.Millisecond, Times: 1})
	var got collector
	if _, err := c.Fetch(ctx, FetchRequest{OrderIDs: keys}, got.emit); err != nil {
		t.Fatal(err)
	}
	cols, want := expectedRows(t, srv, keys, nil)
	compareRows(t, got.rows, cols, want)
	// A stall beyond the timeout once: retried.
	srv.InjectFault(keys[1], stoaemu.Fault{SlowBody: 400 * time.Millisecond, Times: 1})
	got = collector{}
	if _, err := c.Fetch(ctx, FetchRequest{OrderIDs: keys}, got.emit); err != nil {
		t.Fatal(err)
	}
	compareRows(t, got.rows, cols, want)
	// Always stalling: request_timeout naming the object and timeout_s
	// ("the transfer stalled after N bytes", or on a loaded machine, when
	// even the headers came later than 0.15 s, "made no progress").
	srv.InjectFault(keys[1], stoaemu.Fault{SlowBody: 400 * time.Millisecond})
	got = collector{}
	_, err := c.Fetch(ctx, FetchRequest{OrderIDs: keys}, got.emit)
	wantCode(t, err, sdk.RequestTimeout, keys[1], "timeout_s")
}

func TestFetchConcurrency(t *testing.T) {
	t.Parallel()
	opts := stoaemu.Options{Products: []stoaemu.Product{{GroupName: "g", Name: "n", Workspace: "apps", OwnerID: "o", Objects: 12, RowsPerObject: 20}}}
	srv := startEmu(t, opts)
	keys := srv.Keys(0)
	srv.InjectFault("/objects/", stoaemu.Fault{Delay: 30 * time.Millisecond})
	c := newClient(t, srv, restCreds, Options{}, func(s *Settings) { s.DownloadWorkers = 3 })
	var got collector
	if _, err := c.Fetch(context.Background(), FetchRequest{OrderIDs: keys}, got.emit); err != nil {
		t.Fatal(err)
	}
	cols, want := expectedRows(t, srv, keys, nil)
	compareRows(t, got.rows, cols, want)
	// Downloads overlap, up to download_workers at a time.
	st := srv.Stats()
	if st.PeakConcurrentObjectGets > 3 || st.PeakConcurrentObjectGets < 2 {
		t.Errorf("peak concurrent downloads %d, want 2..3 with download_workers=3", st.PeakConcurrentObjectGets)
	}
}

func TestFetchStops(t *testing.T) {
	t.Parallel()
	srv := startEmu(t, stoaemu.Options{})
	keys := srv.Keys(0)
	c := newClient(t, srv, restCreds, Options{}, func(s *Settings) { s.DownloadWorkers = 2 })
	stop := errors.New("consumer gone")
	var n atomic.Int64
	_, err := c.Fetch(context.Background(), FetchRequest{OrderIDs: keys}, func(json.RawMessage) error {
		if n.Add(1) == 10 {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) {
		t.Fatalf("error %v, want the emit error", err)
	}
	if st := srv.Stats(); st.ObjectGets > 4 {
		t.Errorf("%d downloads after the consumer stopped at the first object (window 2)", st.ObjectGets)
	}

	ctx, cancel := context.WithCancel(context.Background())
	_, err = c.Fetch(ctx, FetchRequest{OrderIDs: keys}, func(json.RawMessage) error {
		cancel()
		return nil
	})
	wantCode(t, err, sdk.RequestTimeout, "cancelled")
}

func TestFetchSpoolsToDisk(t *testing.T) {
	t.Parallel()
	srv := startEmu(t, stoaemu.Options{})
	dir := t.TempDir()
	keys := srv.Keys(0)[:5]
	c := newClient(t, srv, restCreds, Options{SpoolDir: dir, SpoolMemoryBytes: 1024}, nil)
	seen := 0
	var got collector
	_, err := c.Fetch(context.Background(), FetchRequest{OrderIDs: keys}, func(row json.RawMessage) error {
		if entries, _ := os.ReadDir(dir); len(entries) > seen {
			seen = len(entries)
		}
		return got.emit(row)
	})
	if err != nil {
		t.Fatal(err)
	}
	cols, want := expectedRows(t, srv, keys, nil)
	compareRows(t, got.rows, cols, want)
	if seen == 0 {
		t.Error("no object was spooled to disk")
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("spool files left behind: %v", entries)
	}
	// A spool dir that cannot be written: internal_error, not a retry loop.
	bad := newClient(t, srv, restCreds, Options{SpoolDir: dir + "/missing", SpoolMemoryBytes: 1024}, nil)
	_, err = bad.Fetch(context.Background(), FetchRequest{OrderIDs: keys[:1]}, got.emit)
	wantCode(t, err, sdk.InternalError, "storing the download")
}

// TestFetchReusesRowBuffers: a row is valid during its call; its bytes are
// reused for later rows (the JSON buffers are recycled once emitted), and
// the rows copied during the calls are exactly the emulator's.
func TestFetchReusesRowBuffers(t *testing.T) {
	t.Parallel()
	srv := startEmu(t, stoaemu.Options{})
	keys := srv.Keys(0)[:3]
	c := newClient(t, srv, restCreds, Options{BatchRows: 7}, nil)
	var kept, copies []json.RawMessage
	_, err := c.Fetch(context.Background(), FetchRequest{OrderIDs: keys}, func(row json.RawMessage) error {
		kept = append(kept, row)
		copies = append(copies, bytes.Clone(row))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	cols, want := expectedRows(t, srv, keys, nil)
	compareRows(t, copies, cols, want)
	reused := 0
	for i := range kept {
		if !bytes.Equal(kept[i], copies[i]) {
			reused++
		}
	}
	if reused == 0 {
		t.Errorf("no row buffer was reused over %d rows in batches of 7", len(kept))
	}
}

// TestRetriesAreLogged: every retried request and every re-signing is
// logged (what failed, its code, the pause), without secrets or URLs.
func TestRetriesAreLogged(t *testing.T) {
	t.Parallel()
	srv := startEmu(t, stoaemu.Options{})
	keys := srv.Keys(0)[:2]
	srv.InjectFault(keys[0], stoaemu.Fault{Status: 503, Times: 1})
	srv.InjectFault(keys[1], stoaemu.Fault{ExpiredSignature: true, Times: 1})
	srv.InjectFault("/auth/rest-auth/login/", stoaemu.Fault{Status: 502, Times: 1})
	var buf bytes.Buffer
	var mu sync.Mutex
	logger := hclog.New(&hclog.LoggerOptions{Output: &lockedWriter{w: &buf, mu: &mu}, JSONFormat: true, Level: hclog.Info})
	c := newClient(t, srv, restCreds, Options{Logger: logger}, nil)
	var got collector
	if _, err := c.Fetch(context.Background(), FetchRequest{OrderIDs: keys}, got.emit); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	logs := buf.String()
	mu.Unlock()
	for _, want := range []string{
		`"error_code":"bad_gateway"`, `"error":"login: Stoa answered HTTP 502`,
		`"error_code":"service_error"`, `"error":"download of order id \"` + keys[0],
		"signing again", `"order_id":"` + keys[1] + `"`,
	} {
		if !strings.Contains(logs, want) {
			t.Errorf("logs lack %q:\n%s", want, logs)
		}
	}
	for _, secret := range []string{stoaemu.DefaultPassword, "Signature=", "http://"} {
		if strings.Contains(logs, secret) {
			t.Errorf("logs contain %q:\n%s", secret, logs)
		}
	}
}

// lockedWriter serialises writes of concurrent goroutines.
type lockedWriter struct {
	w  *bytes.Buffer
	mu *sync.Mutex
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
