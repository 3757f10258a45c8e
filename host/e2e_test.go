package host_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/connector-host/connector-host/host/config"
	"github.com/connector-host/connector-host/sdk"
	"github.com/connector-host/connector-host/testkit/harness"
)

// startReference starts a host with the reference plugin, plus a second
// copy of it loaded as "reference2".
func startReference(t *testing.T, configure ...func(*config.Config)) *harness.Host {
	t.Helper()
	bin := harness.Reference(t)
	configure = append([]func(*config.Config){func(c *config.Config) {
		c.Connectors = map[string]config.Connector{"reference2": {Env: map[string]string{"REFERENCE_APP_ID": "reference2"}}}
		c.Supervisor.InitialBackoff = config.Duration(20 * time.Millisecond)
	}}, configure...)
	return harness.StartHost(t, []harness.Plugin{{Path: bin}, {AppID: "reference2", Path: bin}}, configure...)
}

func TestEchoRoundTrip(t *testing.T) {
	t.Parallel()
	h := startReference(t)
	resp := h.Post(t, "/v1/connectors/reference/echo", `{"request":{"message":"hi","count":2,"tags":["a","b"],"extra":{"k":[1,true,null]}},"settings":{"greeting":"hello"}}`)
	if resp.Status != http.StatusOK {
		t.Fatalf("status %d: %s", resp.Status, resp.Body)
	}
	want := `{"response":{"message":"hi","count":2,"tags":["a","b"],"extra":{"k":[1,true,null]},"greeting":"hello"},"raw_data":null,"page":null}`
	if got := strings.TrimSpace(string(resp.Body)); got != want {
		t.Fatalf("echo:\n got %s\nwant %s", got, want)
	}
	raw := h.Post(t, "/v1/connectors/reference/echo", `{"request":{},"include_raw_data":true}`)
	if !strings.Contains(string(raw.Body), `"raw_data":{"echoed":true}`) {
		t.Fatalf("include_raw_data: %s", raw.Body)
	}
}

func TestRequestErrors(t *testing.T) {
	t.Parallel()
	h := startReference(t)
	cases := []struct {
		name, path, body string
		status           int
		code             string
		mention          []string
	}{
		{"not json", "/v1/connectors/reference/echo", `{"request":`, 400, "reference.bad_request", []string{"body", "JSON"}},
		{"not an object", "/v1/connectors/reference/echo", `[1,2]`, 400, "reference.bad_request", []string{"body"}},
		{"missing request", "/v1/connectors/reference/echo", `{}`, 400, "reference.bad_request", []string{"request", "required"}},
		{"unknown envelope field", "/v1/connectors/reference/echo", `{"request":{},"requests":{}}`, 400, "reference.bad_request", []string{"requests"}},
		{"wrong type", "/v1/connectors/reference/echo", `{"request":{"message":5}}`, 400, "reference.bad_request", []string{"request.message", "string"}},
		{"below minimum", "/v1/connectors/reference/echo", `{"request":{"count":-1}}`, 400, "reference.bad_request", []string{"request.count"}},
		{"unknown field", "/v1/connectors/reference/echo", `{"request":{"mesage":"x"}}`, 400, "reference.bad_request", []string{"request.mesage"}},
		{"array item type", "/v1/connectors/reference/echo", `{"request":{"tags":["a",3]}}`, 400, "reference.bad_request", []string{"request.tags[1]"}},
		{"missing required", "/v1/connectors/reference/fail", `{"request":{}}`, 400, "reference.bad_request", []string{"request.code", "required"}},
		{"bad settings", "/v1/connectors/reference/echo", `{"request":{},"settings":{"greeting":1}}`, 400, "reference.bad_request", []string{"settings.greeting"}},
		{"unknown auth kind", "/v1/connectors/reference/echo", `{"request":{},"auth":{"jwt":{"token":"abcd"}}}`, 400, "reference.bad_request", []string{"auth"}},
		{"auth and credential", "/v1/connectors/reference/echo", `{"request":{},"auth":{"token":{"token":"abcd"}},"credential_id":"x"}`, 400, "reference.bad_request", []string{"credential_id"}},
		{"unknown capability", "/v1/connectors/reference/nope", `{"request":{}}`, 501, "reference.not_implemented", []string{"nope"}},
		{"unknown connector", "/v1/connectors/nope/echo", `{"request":{}}`, 404, "host.not_found", []string{"nope"}},
		{"unknown route", "/v2/whatever", ``, 404, "host.not_found", nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			resp := h.Post(t, tc.path, tc.body)
			if resp.Status != tc.status {
				t.Fatalf("status = %d, want %d: %s", resp.Status, tc.status, resp.Body)
			}
			env := resp.JSON(t)
			e, _ := env["error"].(map[string]any)
			if env["is_error"] != true || e == nil {
				t.Fatalf("not an error envelope: %s", resp.Body)
			}
			if e["error_code"] != tc.code || e["status_code"] != float64(tc.status) {
				t.Fatalf("error_code=%v status_code=%v, want %s %d", e["error_code"], e["status_code"], tc.code, tc.status)
			}
			for _, k := range []string{"message", "app_id", "raised_by", "raised_in"} {
				if s, _ := e[k].(string); s == "" {
					t.Errorf("error.%s is empty: %s", k, resp.Body)
				}
			}
			msg, _ := e["message"].(string)
			for _, m := range tc.mention {
				if !strings.Contains(msg, m) {
					t.Errorf("message %q does not mention %q", msg, m)
				}
			}
		})
	}
}

func TestFailMapsEveryCode(t *testing.T) {
	t.Parallel()
	h := startReference(t)
	for _, code := range sdk.Codes() {
		t.Run(string(code), func(t *testing.T) {
			t.Parallel()
			resp := h.Post(t, "/v1/connectors/reference/fail", fmt.Sprintf(`{"request":{"code":%q,"message":"boom","app_error_code":"reference.x"}}`, code))
			if resp.Status != code.HTTPStatus() {
				t.Fatalf("status = %d, want %d", resp.Status, code.HTTPStatus())
			}
			e := resp.JSON(t)["error"].(map[string]any)
			if e["error_code"] != "reference."+string(code) || e["message"] != "boom" || e["app_error_code"] != "reference.x" || e["raised_in"] != "reference.fail" {
				t.Fatalf("envelope: %s", resp.Body)
			}
		})
	}
	resp := h.Post(t, "/v1/connectors/reference/fail", `{"request":{"code":"no_such_code"}}`)
	if resp.Status != 500 || resp.ErrorCode(t) != "reference.internal_error" {
		t.Fatalf("unknown code: %d %s", resp.Status, resp.Body)
	}
}

func TestPanicKeepsProcessServing(t *testing.T) {
	t.Parallel()
	h := startReference(t)
	sup, _ := h.Router().Supervisor("reference")
	gen := sup.Current().Generation
	resp := h.Post(t, "/v1/connectors/reference/panic", `{"request":{}}`)
	if resp.Status != 500 || resp.ErrorCode(t) != "reference.unexpected_error" {
		t.Fatalf("panic: %d %s", resp.Status, resp.Body)
	}
	if ok := h.Post(t, "/v1/connectors/reference/noop", `{"request":{}}`); ok.Status != 200 {
		t.Fatalf("noop after panic: %d %s", ok.Status, ok.Body)
	}
	if g := sup.Current().Generation; g != gen {
		t.Fatalf("plugin restarted after a panic (generation %d → %d)", gen, g)
	}
}

func TestCrashFailsInFlightCallsAndRecovers(t *testing.T) {
	t.Parallel()
	h := startReference(t)
	sup, _ := h.Router().Supervisor("reference")
	gen := sup.Current().Generation

	// Calls in flight when the process dies.
	const inflight = 8
	var wg sync.WaitGroup
	codes := make([]string, inflight)
	for i := 0; i < inflight; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := h.Post(t, "/v1/connectors/reference/sleep", `{"request":{"ms":20000}}`)
			codes[i] = r.ErrorCode(t)
		}()
	}
	// Calls to the other plugin throughout.
	stop := make(chan struct{})
	var otherErrs atomic.Int64
	var otherCalls atomic.Int64
	var ow sync.WaitGroup
	ow.Add(1)
	go func() {
		defer ow.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			r := h.Post(t, "/v1/connectors/reference2/noop", `{"request":{}}`)
			otherCalls.Add(1)
			if r.Status != 200 {
				otherErrs.Add(1)
			}
		}
	}()
	deadline := time.Now().Add(10 * time.Second)
	for strings.Count(h.Logs.String(), "sleep started") < inflight {
		if time.Now().After(deadline) {
			t.Fatal("the sleep calls did not reach the plugin")
		}
		time.Sleep(10 * time.Millisecond)
	}
	crash := h.Post(t, "/v1/connectors/reference/crash", `{"request":{}}`)
	crashedAt := time.Now()
	if crash.Status != 502 || crash.ErrorCode(t) != "reference.connection_closed" {
		t.Fatalf("crash call: %d %s", crash.Status, crash.Body)
	}
	if e := crash.JSON(t)["error"].(map[string]any); e["raised_by"] != "host" {
		t.Fatalf("raised_by = %v, want host", e["raised_by"])
	}
	wg.Wait()
	for i, c := range codes {
		if c != "reference.connection_closed" {
			t.Errorf("in-flight call %d: %q, want reference.connection_closed", i, c)
		}
	}
	// Back and answering within 2 s.
	back := false
	for time.Since(crashedAt) < 2*time.Second {
		if r := h.Post(t, "/v1/connectors/reference/noop", `{"request":{}}`); r.Status == 200 {
			back = true
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if !back {
		t.Fatalf("plugin not answering 2s after the crash")
	}
	close(stop)
	ow.Wait()
	if n := otherErrs.Load(); n != 0 {
		t.Fatalf("%d of %d calls to the other plugin failed during the crash", n, otherCalls.Load())
	}
	if otherCalls.Load() == 0 {
		t.Fatal("no calls reached the other plugin")
	}
	if g := sup.Current().Generation; g != gen+1 {
		t.Fatalf("generation = %d, want %d", g, gen+1)
	}
	metrics := h.Get(t, "/metrics")
	if !strings.Contains(string(metrics.Body), `connector_host_plugin_restarts_total{app_id="reference"} 1`) {
		t.Fatalf("restart not counted in /metrics")
	}
}

func TestDeadlineAndCancellation(t *testing.T) {
	t.Parallel()
	h := startReference(t, func(c *config.Config) {
		c.Connectors["reference"] = config.Connector{Timeout: config.Duration(300 * time.Millisecond)}
	})
	start := time.Now()
	resp := h.Do(t, http.MethodPost, "/v1/connectors/reference/sleep", `{"request":{"ms":5000}}`,
		http.Header{"X-Request-Id": {"deadline-7"}})
	elapsed := time.Since(start)
	if resp.Status != 504 || resp.ErrorCode(t) != "reference.request_timeout" {
		t.Fatalf("sleep past deadline: %d %s", resp.Status, resp.Body)
	}
	if elapsed < 300*time.Millisecond || elapsed > 1500*time.Millisecond {
		t.Fatalf("timed out after %v, want close to 300ms", elapsed)
	}
	// The handler knows its deadline (sent as data, ADR 0009).
	quick := h.Post(t, "/v1/connectors/reference/sleep", `{"request":{"ms":1}}`)
	if left, _ := quick.JSON(t)["response"].(map[string]any)["deadline_in_ms"].(float64); quick.Status != 200 || left <= 0 || left > 300 {
		t.Fatalf("deadline seen by the plugin: %d %s", quick.Status, quick.Body)
	}
	// A call that reached the plugin saw its context end at the deadline.
	// Under load the 300 ms can pass before the call gets there; the host
	// then answers 504 without the plugin's handler ever starting.
	if waitForLine(h.Logs, "sleep started", "deadline-7", 2*time.Second) {
		if !waitForLine(h.Logs, "sleep cancelled", "deadline-7", 2*time.Second) {
			t.Fatal("plugin did not observe the deadline")
		}
	} else {
		t.Log("the call timed out before it reached the plugin's handler (machine under load)")
	}

	// A client going away cancels the plugin-side context.
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, h.URL+"/v1/connectors/reference2/sleep", strings.NewReader(`{"request":{"ms":10000}}`))
	req.Header.Set("X-Request-Id", "cancel-me-42")
	errCh := make(chan error, 1)
	go func() {
		resp, err := harness.Client.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		errCh <- err
	}()
	// Cancel while the plugin is sleeping. Earlier the host answers the
	// cancellation itself and the call never reaches the plugin (a fixed
	// delay does not make sure it got there: under load it took longer).
	if !waitForLine(h.Logs, "sleep started", "cancel-me-42", 10*time.Second) {
		cancel()
		t.Fatalf("the sleep call did not reach the plugin: %v", <-errCh)
	}
	cancel()
	if err := <-errCh; err == nil {
		t.Fatal("request was not cancelled")
	}
	if !waitForLine(h.Logs, "sleep cancelled", "cancel-me-42", 3*time.Second) {
		t.Fatalf("plugin context not cancelled when the client went away")
	}
}

func waitForLine(l *harness.Logs, a, b string, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		for _, line := range strings.Split(l.String(), "\n") {
			if strings.Contains(line, a) && strings.Contains(line, b) {
				return true
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	return false
}

func TestThousandConcurrentEchoes(t *testing.T) {
	t.Parallel()
	h := startReference(t)
	const n = 1000
	var wg sync.WaitGroup
	var failed atomic.Int64
	start := make(chan struct{})
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			body := fmt.Sprintf(`{"request":{"message":"m%d","count":%d}}`, i, i+1)
			r := h.Post(t, "/v1/connectors/reference/echo", body)
			want := fmt.Sprintf(`"message":"m%d","count":%d`, i, i+1)
			if r.Status != 200 || !strings.Contains(string(r.Body), want) {
				if failed.Add(1) <= 3 {
					t.Errorf("echo %d: %d %s", i, r.Status, r.Body)
				}
			}
		}()
	}
	close(start)
	wg.Wait()
	if f := failed.Load(); f != 0 {
		t.Fatalf("%d of %d concurrent echoes failed", f, n)
	}
}

func TestCanarySecretNeverLogged(t *testing.T) {
	t.Parallel()
	h := startReference(t)
	const canary = "canary-7f3a9c1e5b"
	for _, body := range []string{
		`{"request":{"message":"x"},"auth":{"token":{"token":"` + canary + `-tok"}}}`,
		`{"request":{"message":"x"},"auth":{"basic":{"username":"u","password":"` + canary + `-pw"}},"settings":{"api_key":"` + canary + `-key"}}`,
		`{"request":{"message":"x"},"auth":{"oauth":{"access_token":"` + canary + `-at"}}}`,
	} {
		if r := h.Post(t, "/v1/connectors/reference/echo", body); r.Status != 200 {
			t.Fatalf("echo: %d %s", r.Status, r.Body)
		}
	}
	// A failing call whose message would carry the secret.
	r := h.Post(t, "/v1/connectors/reference/fail", `{"request":{"code":"unauthorized","message":"bad token `+canary+`-tok2"},"auth":{"token":{"token":"`+canary+`-tok2"}}}`)
	if strings.Contains(string(r.Body), canary) {
		t.Fatalf("secret in error envelope: %s", r.Body)
	}
	logs := h.Logs.String()
	if !strings.Contains(logs, `"@message":"echo"`) || !strings.Contains(logs, "[REDACTED]") {
		t.Fatalf("the plugin's echo log lines (which log the credentials) were not captured:\n%s", logs)
	}
	if strings.Contains(logs, canary) {
		for _, line := range strings.Split(logs, "\n") {
			if strings.Contains(line, canary) {
				t.Errorf("secret in log line: %s", line)
			}
		}
	}
}

func TestStreamCompleteInOrder(t *testing.T) {
	t.Parallel()
	h := startReference(t)
	const n = 100000
	resp, err := harness.Client.Post(h.URL+"/v1/connectors/reference/stream", "application/json", strings.NewReader(fmt.Sprintf(`{"request":{"n":%d}}`, n)))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "application/x-ndjson" {
		t.Fatalf("content type %q", ct)
	}
	sc := bufio.NewScanner(resp.Body)
	k := 0
	var last string
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, `{"page"`) || strings.HasPrefix(line, `{"error"`) {
			last = line
			break
		}
		if want := fmt.Sprintf(`{"i":%d}`, k); line != want {
			t.Fatalf("line %d = %q, want %q", k, line, want)
		}
		k++
	}
	if k != n || last != `{"page":null}` {
		t.Fatalf("got %d items, final line %q", k, last)
	}
	if sc.Scan() {
		t.Fatalf("data after the final line: %q", sc.Text())
	}
}

// TestStreamHostMemoryConstant streams many megabytes while reading slowly
// and checks that the host (in this process) does not buffer the stream.
func TestStreamHostMemoryConstant(t *testing.T) {
	h := startReference(t)
	const n = 2000000 // about 25 MB of NDJSON
	// Collect garbage eagerly so that the heap measures what is live.
	defer debug.SetGCPercent(debug.SetGCPercent(10))
	runtime.GC()
	var base runtime.MemStats
	runtime.ReadMemStats(&base)
	var peak atomic.Uint64
	stop := make(chan struct{})
	var sampler sync.WaitGroup
	sampler.Add(1)
	go func() {
		defer sampler.Done()
		var ms runtime.MemStats
		for {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse > peak.Load() {
				peak.Store(ms.HeapInuse)
			}
		}
	}()
	resp, err := harness.Client.Post(h.URL+"/v1/connectors/reference/stream", "application/json", strings.NewReader(fmt.Sprintf(`{"request":{"n":%d}}`, n)))
	if err != nil {
		t.Fatal(err)
	}
	total, err := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	close(stop)
	sampler.Wait()
	if err != nil {
		t.Fatal(err)
	}
	if total < 10<<20 {
		t.Fatalf("streamed only %d bytes", total)
	}
	growth := int64(peak.Load()) - int64(base.HeapInuse)
	t.Logf("streamed %d MB; peak heap growth %d KB", total>>20, growth>>10)
	if growth > 8<<20 {
		t.Fatalf("host heap grew by %d MB while streaming %d MB: the stream is being buffered", growth>>20, total>>20)
	}
}

func TestConnectorsInfoAndOpenAPI(t *testing.T) {
	t.Parallel()
	h := startReference(t)
	list := h.Get(t, "/v1/connectors")
	var l struct {
		Connectors []struct {
			AppID        string   `json:"app_id"`
			Version      string   `json:"version"`
			Status       string   `json:"status"`
			Capabilities []string `json:"capabilities"`
		} `json:"connectors"`
	}
	if err := json.Unmarshal(list.Body, &l); err != nil || len(l.Connectors) != 2 {
		t.Fatalf("list: %v %s", err, list.Body)
	}
	if c := l.Connectors[0]; c.AppID != "reference" || c.Version != "1.0.0" || c.Status != "ready" || len(c.Capabilities) != 7 {
		t.Fatalf("list entry: %+v", c)
	}
	info := h.Get(t, "/v1/connectors/reference").JSON(t)
	for _, k := range []string{"app_id", "version", "capabilities", "capability_schema", "user_friendly_name", "description", "categories", "logo_url", "request_settings_schema", "authentication_schema"} {
		if _, ok := info[k]; !ok {
			t.Errorf("info lacks %q", k)
		}
	}
	schema := info["capability_schema"].(map[string]any)["echo"].(map[string]any)
	if _, ok := schema["argument"].(map[string]any)["properties"]; !ok {
		t.Fatalf("echo argument schema: %v", schema)
	}
	settings, _ := json.Marshal(info["request_settings_schema"])
	if !strings.Contains(string(settings), `"x-secret":true`) {
		t.Fatalf("secret setting not marked: %s", settings)
	}
	if r := h.Get(t, "/v1/connectors/nope"); r.Status != 404 || r.ErrorCode(t) != "host.not_found" {
		t.Fatalf("unknown connector info: %d %s", r.Status, r.Body)
	}
	doc := h.Get(t, "/openapi.json").JSON(t)
	if doc["openapi"] != "3.1.0" {
		t.Fatalf("openapi version %v", doc["openapi"])
	}
	paths := doc["paths"].(map[string]any)
	for _, p := range []string{"/v1/connectors/reference/echo", "/v1/connectors/reference2/stream", "/healthz", "/readyz", "/metrics"} {
		if _, ok := paths[p]; !ok {
			t.Errorf("openapi lacks %s", p)
		}
	}
	if r := h.Get(t, "/readyz"); r.Status != 200 {
		t.Fatalf("readyz: %d %s", r.Status, r.Body)
	}
	if r := h.Get(t, "/healthz"); r.Status != 200 {
		t.Fatalf("healthz: %d", r.Status)
	}
}

func TestAPITokenAndBodyLimit(t *testing.T) {
	t.Parallel()
	h := startReference(t, func(c *config.Config) {
		c.APIToken = "s3cret-api-token"
		c.MaxBodyBytes = 1024
	})
	if r := h.Post(t, "/v1/connectors/reference/noop", `{"request":{}}`); r.Status != 401 || r.ErrorCode(t) != "host.unauthenticated" {
		t.Fatalf("no token: %d %s", r.Status, r.Body)
	}
	bad := http.Header{"Authorization": {"Bearer nope"}}
	if r := h.Do(t, "POST", "/v1/connectors/reference/noop", `{"request":{}}`, bad); r.Status != 401 {
		t.Fatalf("wrong token: %d", r.Status)
	}
	good := http.Header{"Authorization": {"Bearer s3cret-api-token"}}
	if r := h.Do(t, "POST", "/v1/connectors/reference/noop", `{"request":{}}`, good); r.Status != 200 {
		t.Fatalf("good token: %d %s", r.Status, r.Body)
	}
	if r := h.Do(t, "GET", "/v1/connectors", "", good); r.Status != 200 {
		t.Fatalf("list with token: %d", r.Status)
	}
	if r := h.Get(t, "/healthz"); r.Status != 200 {
		t.Fatalf("healthz must not need the token: %d", r.Status)
	}
	big := `{"request":{"message":"` + strings.Repeat("x", 2000) + `"}}`
	if r := h.Do(t, "POST", "/v1/connectors/reference/echo", big, good); r.Status != 400 || !strings.Contains(string(r.Body), "limit of 1024 bytes") {
		t.Fatalf("oversized body: %d %s", r.Status, r.Body)
	}
	if r := h.Do(t, "GET", "/v1/connectors/reference/echo", "", good); r.Status != 501 || r.ErrorCode(t) != "host.unsupported_operation" {
		t.Fatalf("GET on a capability: %d %s", r.Status, r.Body)
	}
	if strings.Contains(h.Logs.String(), "s3cret-api-token") {
		t.Fatal("API token logged")
	}
}
