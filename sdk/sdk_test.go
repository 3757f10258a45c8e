package sdk

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/connector-host/connector-host/internal/wire"
)

type none struct{}

func minimal(appID string) *Integration {
	i := &Integration{AppID: appID, Version: "1.0.0", Description: DescriptionData{Description: "test"}}
	return i
}

func noop(context.Context, Request[none]) (none, error) { return none{}, nil }

func TestValidateRejectsBadIntegrations(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name  string
		build func() *Integration
		want  []string
	}{
		{"bad app id", func() *Integration { i := minimal("Bad_ID"); Register(i, "noop", noop); return i }, []string{`app_id "Bad_ID"`}},
		{"bad version", func() *Integration { i := minimal("x"); i.Version = "v1"; Register(i, "noop", noop); return i }, []string{`version "v1"`}},
		{"empty description", func() *Integration {
			i := minimal("x")
			i.Description.Description = " "
			Register(i, "noop", noop)
			return i
		}, []string{"description"}},
		{"no capabilities", func() *Integration { return minimal("x") }, []string{"no capabilities"}},
		{"camelCase name", func() *Integration { i := minimal("x"); Register(i, "listAccounts", noop); return i }, []string{`"listAccounts"`, "snake_case"}},
		{"leading digit", func() *Integration { i := minimal("x"); Register(i, "1abc", noop); return i }, []string{`"1abc"`}},
		{"duplicate", func() *Integration { i := minimal("x"); Register(i, "noop", noop); Register(i, "noop", noop); return i }, []string{"registered twice"}},
		{"unknown auth", func() *Integration {
			i := minimal("x")
			i.Auth = []AuthKind{"kerberos"}
			Register(i, "noop", noop)
			return i
		}, []string{"kerberos"}},
		{"inbound without handler", func() *Integration {
			i := minimal("x")
			i.InboundRoutes = []InboundRoute{{Path: "/hook"}}
			Register(i, "noop", noop)
			return i
		}, []string{"Inbound handler"}},
		{"oauth bad flow", func() *Integration {
			i := minimal("x")
			i.OAuth = &OAuthSettings{TokenURL: "https://a/token", AuthorizationURL: "https://a/auth", Flow: "IMPLICIT"}
			Register(i, "noop", noop)
			return i
		}, []string{"IMPLICIT"}},
		{"oauth missing url", func() *Integration {
			i := minimal("x")
			i.OAuth = &OAuthSettings{}
			Register(i, "noop", noop)
			return i
		}, []string{"oauth.token_url", "oauth.authorization_url"}},
		{"oauth scopes for unknown capability", func() *Integration {
			i := minimal("x")
			i.OAuth = &OAuthSettings{TokenURL: "https://a/t", AuthorizationURL: "https://{sub}.a/auth", Scopes: map[string]string{"nope": "a"}}
			Register(i, "noop", noop)
			return i
		}, []string{`"nope"`}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := tc.build().Validate()
			if err == nil {
				t.Fatal("Validate accepted an invalid integration")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
	ok := minimal("good-one")
	Register(ok, ListAccounts, noop)
	Register(ok, "custom_thing_2", noop)
	if err := ok.Validate(); err != nil {
		t.Fatalf("valid integration rejected: %v", err)
	}
}

func TestServeRefusesInvalidIntegration(t *testing.T) {
	t.Parallel()
	i := minimal("x")
	Register(i, "BadName", noop)
	var stderr bytes.Buffer
	if code := run(i, []string{"info"}, io.Discard, &stderr); code != 2 || !strings.Contains(stderr.String(), "BadName") {
		t.Fatalf("run = %d, stderr %q", code, stderr.String())
	}
}

type quotaErr struct{}

func (quotaErr) Error() string { return "quota" }

func TestErrorMappingOrder(t *testing.T) {
	t.Parallel()
	i := minimal("m")
	i.ErrorHandlers = []ErrorHandler{
		MapError[quotaErr](RateLimit),
		MapErrorFunc(func(e *net.OpError) *Error { return &Error{Code: ServiceError, Message: "custom: " + e.Op} }),
	}
	deadline, cancel := context.WithTimeout(context.Background(), 0)
	defer cancel()
	<-deadline.Done()
	cases := []struct {
		name string
		err  error
		code Code
	}{
		{"explicit sdk error wins", fmt.Errorf("wrapped: %w", NewError(Conflict, "c")), Conflict},
		{"integration handler", fmt.Errorf("x: %w", quotaErr{}), RateLimit},
		{"integration func handler before defaults", &net.OpError{Op: "dial", Err: syscall.ECONNREFUSED}, ServiceError},
		{"http status", &HTTPStatusError{StatusCode: 404, Status: "404 Not Found"}, NotFound},
		{"http 503", &HTTPStatusError{StatusCode: 503}, ServiceError},
		{"http teapot", &HTTPStatusError{StatusCode: 418}, APIError},
		{"deadline", deadline.Err(), RequestTimeout},
		{"reset", fmt.Errorf("read: %w", syscall.ECONNRESET), ConnectionClosed},
		{"unexpected", errors.New("boom"), UnexpectedError},
	}
	for _, tc := range cases {
		if got := i.mapError(tc.err); got.Code != tc.code {
			t.Errorf("%s: code %s, want %s", tc.name, got.Code, tc.code)
		}
	}
}

func TestCodeForHTTPStatusTable(t *testing.T) {
	t.Parallel()
	want := map[int]Code{
		400: BadRequest, 413: BadRequest, 415: BadRequest, 422: BadRequest, 401: Unauthorized,
		403: PermissionDenied, 404: NotFound, 408: RequestTimeout, 409: Conflict, 429: RateLimit,
		405: UnsupportedOperation, 406: UnsupportedOperation, 501: UnsupportedOperation,
		503: ServiceError, 500: BadGateway, 502: BadGateway, 504: BadGateway, 418: APIError, 302: APIError,
	}
	for status, code := range want {
		if got := CodeForHTTPStatus(status); got != code {
			t.Errorf("%d → %s, want %s", status, got, code)
		}
	}
}

func TestCodesTableIsComplete(t *testing.T) {
	t.Parallel()
	if len(Codes()) != 26 {
		t.Fatalf("%d codes, the contract has 26", len(Codes()))
	}
	for _, c := range Codes() {
		if !c.Valid() || c.HTTPStatus() < 400 {
			t.Errorf("code %s has no status", c)
		}
	}
	if Code("nope").Valid() || Code("nope").HTTPStatus() != 500 {
		t.Error("unknown code")
	}
}

func TestCheckResponse(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Retry-After", "7")
		w.WriteHeader(http.StatusTooManyRequests)
		_, _ = io.WriteString(w, strings.Repeat("slow down ", 500))
	}))
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/path?token=secret-query")
	if err != nil {
		t.Fatal(err)
	}
	err = CheckResponse(resp)
	var he *HTTPStatusError
	if !errors.As(err, &he) {
		t.Fatalf("got %v", err)
	}
	if he.StatusCode != 429 || he.RetryAfter != 7*time.Second || len(he.Body) > maxErrorBody || strings.Contains(he.Error(), "secret-query") || he.Method != "GET" {
		t.Fatalf("HTTPStatusError = %+v", he)
	}
	ok, _ := http.Get(srv.URL)
	ok.StatusCode = 204
	if CheckResponse(ok) != nil {
		t.Fatal("2xx is not an error")
	}
	ok.Body.Close()
}

func TestErrorsAndLogsMaskCredentials(t *testing.T) {
	t.Parallel()
	var logs bytes.Buffer
	i := minimal("masking")
	i.Auth = []AuthKind{AuthToken}
	i.Logger = newLogger("masking", &syncWriter{w: &logs})
	Register(i, "leak", func(_ context.Context, req Request[none]) (none, error) {
		tok := req.Auth.Token.Token.Reveal()
		req.Logger().Info("calling upstream", "token", tok, "header", "Bearer "+tok)
		return none{}, fmt.Errorf("upstream rejected token %s", tok)
	})
	status, body := i.Invoke(context.Background(), "leak", []byte(`{"request":{},"auth":{"token":{"token":"tok-canary-998877"}}}`))
	if status != 500 || strings.Contains(string(body), "tok-canary-998877") || !strings.Contains(string(body), "[REDACTED]") {
		t.Fatalf("error envelope: %d %s", status, body)
	}
	if strings.Contains(logs.String(), "tok-canary-998877") || !strings.Contains(logs.String(), "calling upstream") {
		t.Fatalf("logs: %s", logs.String())
	}
}

type syncWriter struct{ w io.Writer }

func (s *syncWriter) Write(p []byte) (int, error) { return s.w.Write(p) }

func TestPanicBecomesUnexpectedError(t *testing.T) {
	t.Parallel()
	i := minimal("p")
	i.Logger = hclog.NewNullLogger()
	Register(i, "boom", func(context.Context, Request[none]) (none, error) {
		var m map[string]int
		m["x"] = 1 //nolint:staticcheck // the nil map write is the panic under test
		return none{}, nil
	})
	RegisterStream(i, "boom_stream", func(_ context.Context, _ Request[none], out *Stream[int]) error {
		_ = out.Send(1)
		panic("mid-stream")
	})
	status, body := i.Invoke(context.Background(), "boom", []byte(`{"request":{}}`))
	if status != 500 || !strings.Contains(string(body), `"error_code":"p.unexpected_error"`) || !strings.Contains(string(body), "panic(runtime.") {
		t.Fatalf("%d %s", status, body)
	}
	_, body = i.Invoke(context.Background(), "boom_stream", []byte(`{"request":{}}`))
	lines := strings.Split(strings.TrimSpace(string(body)), "\n")
	if len(lines) != 2 || lines[0] != "1" || !strings.Contains(lines[1], `"error":{"message":"panic: mid-stream"`) {
		t.Fatalf("stream: %q", body)
	}
}

func TestStreamErrorBeforeItemsIsAnEnvelope(t *testing.T) {
	t.Parallel()
	i := minimal("s")
	RegisterStream(i, "st", func(context.Context, Request[none], *Stream[int]) error {
		return NewError(NotFound, "nothing")
	})
	status, body := i.Invoke(context.Background(), "st", []byte(`{"request":{}}`))
	if status != 404 || !strings.HasPrefix(string(body), `{"is_error":true`) {
		t.Fatalf("%d %s", status, body)
	}
}

// TestStreamBatchingFlushesSlowStreams checks that a trickle of items is
// delivered promptly rather than held until a chunk fills.
func TestStreamBatchingFlushesSlowStreams(t *testing.T) {
	t.Parallel()
	i := minimal("slow")
	release := make(chan struct{})
	RegisterStream(i, "trickle", func(ctx context.Context, _ Request[none], out *Stream[int]) error {
		if err := out.Send(1); err != nil {
			return err
		}
		<-release
		return nil
	})
	if err := i.Validate(); err != nil {
		t.Fatal(err)
	}
	c := &connector{integ: i}
	got := make(chan *wire.Chunk, 4)
	go func() {
		_ = c.InvokeStream(context.Background(), &wire.Call{Capability: "trickle", Request: json.RawMessage(`{}`)}, func(ch *wire.Chunk) error {
			got <- ch
			return nil
		})
	}()
	select {
	case ch := <-got:
		if len(ch.Lines()) != 1 || ch.End() {
			t.Fatalf("first chunk %+v", ch)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("the first item was held back")
	}
	close(release)
	if ch := <-got; !ch.Done {
		t.Fatalf("final chunk %+v", ch)
	}
}

// TestStreamOpen checks that Open sends an empty chunk before any item (the
// host then starts its answer), once, and flushes batched items instead
// when there are some.
func TestStreamOpen(t *testing.T) {
	t.Parallel()
	i := minimal("open")
	RegisterStream(i, "quiet", func(_ context.Context, _ Request[none], out *Stream[int]) error {
		if err := out.Open(); err != nil {
			return err
		}
		if err := out.Open(); err != nil { // a second Open sends nothing
			return err
		}
		if err := out.Send(7); err != nil {
			return err
		}
		if err := out.Open(); err != nil { // flushes the batched item
			return err
		}
		return Errorf(NotFound, "gone")
	})
	if err := i.Validate(); err != nil {
		t.Fatal(err)
	}
	c := &connector{integ: i}
	var chunks []*wire.Chunk
	err := c.InvokeStream(context.Background(), &wire.Call{Capability: "quiet", Request: json.RawMessage(`{}`)}, func(ch *wire.Chunk) error {
		chunks = append(chunks, &wire.Chunk{NDJSON: append([]byte(nil), ch.NDJSON...), Err: ch.Err, Done: ch.Done})
		return nil
	})
	if err != nil || len(chunks) != 3 {
		t.Fatalf("err %v, %d chunks", err, len(chunks))
	}
	if len(chunks[0].NDJSON) != 0 || chunks[0].End() {
		t.Errorf("first chunk %+v, want empty and not final", chunks[0])
	}
	if string(chunks[1].NDJSON) != "7\n" || chunks[1].End() {
		t.Errorf("second chunk %q", chunks[1].NDJSON)
	}
	if chunks[2].Err == nil || chunks[2].Err.Code != string(NotFound) {
		t.Errorf("final chunk %+v", chunks[2])
	}
}

func TestStreamLargeIsChunked(t *testing.T) {
	t.Parallel()
	i := minimal("big")
	RegisterStream(i, "many", func(_ context.Context, _ Request[none], out *Stream[int]) error {
		for k := 0; k < 10000; k++ {
			if err := out.Send(k); err != nil {
				return err
			}
		}
		return nil
	})
	_ = i.Validate()
	c := &connector{integ: i}
	var chunks, items, next int
	err := c.InvokeStream(context.Background(), &wire.Call{Capability: "many", Request: json.RawMessage(`{}`)}, func(ch *wire.Chunk) error {
		chunks++
		for _, it := range ch.Lines() {
			if string(it) != strconv.Itoa(next) {
				t.Errorf("item %d = %s", next, it)
			}
			next++
			items++
		}
		if len(ch.NDJSON) > maxChunkBytes+16 {
			t.Errorf("chunk of %d bytes", len(ch.NDJSON))
		}
		return nil
	})
	if err != nil || items != 10000 || chunks < 1 {
		t.Fatalf("err %v items %d chunks %d", err, items, chunks)
	}
}

func TestAuthKindsEnforced(t *testing.T) {
	t.Parallel()
	i := minimal("a")
	i.Auth = []AuthKind{AuthBasic}
	Register(i, "who", func(_ context.Context, req Request[none]) (string, error) { return req.Auth.Basic.Username, nil })
	cases := map[string]int{
		`{"request":{},"auth":{"basic":{"username":"u","password":"p"}}}`:          200,
		`{"request":{},"auth":{"token":{"token":"abcdef"}}}`:                       400,
		`{"request":{},"auth":{"basic":{"username":"u"}}}`:                         400,
		`{"request":{},"auth":{"basic":{"username":"u","password":"p","x":1}}}`:    400,
		`{"request":{},"auth":{"basic":{"username":"","password":"p"}}}`:           400,
		`{"request":{},"auth":{"basic":{"username":"u","password":"p"},"jwt":{}}}`: 400,
	}
	for body, want := range cases {
		if status, out := i.Invoke(context.Background(), "who", []byte(body)); status != want {
			t.Errorf("%s → %d %s, want %d", body, status, out, want)
		}
	}
}

func TestCLI(t *testing.T) {
	t.Parallel()
	i := minimal("cli")
	type echoReq struct {
		Msg string `json:"msg"`
	}
	Register(i, "echo", func(_ context.Context, r Request[echoReq]) (echoReq, error) { return r.Args, nil }, WithDescription("echoes"))
	Register(i, "fail", func(context.Context, Request[none]) (none, error) { return none{}, NewError(Conflict, "no") })
	var out, errb bytes.Buffer
	if code := runCLI(i, []string{"--help"}, &out, &errb); code != 0 || !strings.Contains(out.String(), "echo — echoes") || !strings.Contains(out.String(), "info") {
		t.Fatalf("--help: %d %q", code, out.String())
	}
	out.Reset()
	if code := runCLI(i, []string{"info"}, &out, &errb); code != 0 || !strings.Contains(out.String(), `"capability_schema"`) {
		t.Fatalf("info: %d %q", code, out.String())
	}
	out.Reset()
	if code := runCLI(i, []string{"echo", "--json", `{"request":{"msg":"x"}}`}, &out, &errb); code != 0 || !strings.Contains(out.String(), `{"response":{"msg":"x"}`) {
		t.Fatalf("echo: %d %q", code, out.String())
	}
	out.Reset()
	f := filepath.Join(t.TempDir(), "req.json")
	_ = os.WriteFile(f, []byte(`{"request":{}}`), 0o600)
	res := filepath.Join(t.TempDir(), "res.json")
	if code := runCLI(i, []string{"fail", "--json-file", f, "--result-file", res}, &out, &errb); code != 1 {
		t.Fatalf("fail: %d", code)
	}
	if b, _ := os.ReadFile(res); !strings.Contains(string(b), "cli.conflict") {
		t.Fatalf("result file %q", b)
	}
	for _, args := range [][]string{{"nope"}, {"echo"}, {"echo", "--json", "{}", "--json-file", f}, {"echo", "--json-file", "/does/not/exist"}} {
		if code := runCLI(i, args, &out, &errb); code != 2 {
			t.Errorf("%v: exit %d, want 2", args, code)
		}
	}
}

func TestInboundHandler(t *testing.T) {
	t.Parallel()
	i := minimal("in")
	Register(i, "noop", noop)
	i.InboundRoutes = []InboundRoute{{Method: "POST", Path: "/hook"}}
	i.Inbound = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.Header().Set("X-Got", r.Header.Get("X-Key"))
		w.WriteHeader(http.StatusCreated)
		fmt.Fprintf(w, "%s %s?%s %s %s", r.Method, r.URL.Path, r.URL.RawQuery, b, InboundSettings(r))
	})
	if err := i.Validate(); err != nil {
		t.Fatal(err)
	}
	res := i.serveInbound(context.Background(), &wire.InboundRequest{
		Method: "POST", Path: "/hook", RawQuery: "a=1", Header: map[string][]string{"X-Key": {"k"}},
		Body: []byte("body"), Settings: []byte(`{"s":1}`),
	})
	if res.Status != 201 || res.Header["X-Got"][0] != "k" || string(res.Body) != `POST /hook?a=1 body {"s":1}` {
		t.Fatalf("%d %v %q", res.Status, res.Header, res.Body)
	}
}

func TestSchemasAreDraft2020AndMarkSecrets(t *testing.T) {
	t.Parallel()
	type settings struct {
		Key  Secret `json:"key"`
		Name string `json:"name"`
	}
	i := minimal("sch")
	i.Settings = settings{}
	i.Auth = []AuthKind{AuthBasic}
	Register(i, "noop", noop)
	d, err := i.describe()
	if err != nil {
		t.Fatal(err)
	}
	var s map[string]any
	_ = json.Unmarshal(d.SettingsSchema, &s)
	if s["$schema"] != "https://json-schema.org/draft/2020-12/schema" {
		t.Fatalf("$schema = %v", s["$schema"])
	}
	props := s["properties"].(map[string]any)
	if props["key"].(map[string]any)["x-secret"] != true || props["name"].(map[string]any)["x-secret"] != nil {
		t.Fatalf("x-secret marks: %v", props)
	}
	if !strings.Contains(string(d.AuthModels[0].Schema), `"password":{"type":"string","x-secret":true}`) {
		t.Fatalf("basic auth schema: %s", d.AuthModels[0].Schema)
	}
}

// FuzzInvoke feeds arbitrary envelopes to a capability: the SDK must never
// panic and must always answer a JSON envelope with a contract status.
func FuzzInvoke(f *testing.F) {
	type req struct {
		Name  string            `json:"name" jsonschema:"minLength=1,maxLength=20"`
		Count int               `json:"count,omitempty" jsonschema:"minimum=0"`
		Tags  map[string]string `json:"tags,omitempty"`
	}
	i := minimal("fuzz")
	i.Auth = []AuthKind{AuthBasic, AuthToken}
	i.Settings = struct {
		Region string `json:"region,omitempty" jsonschema:"enum=eu,enum=us"`
	}{}
	i.Logger = hclog.NewNullLogger()
	Register(i, "c", func(_ context.Context, r Request[req]) (req, error) { return r.Args, nil })
	for _, s := range []string{`{"request":{"name":"a"}}`, `{"request":{"name":""}}`, `{"request":{},"auth":{"basic":{}}}`, `{"request":{"name":"x","tags":{"a":"b"}},"settings":{"region":"eu"}}`, `{`, `[]`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		status, out := i.Invoke(context.Background(), "c", body)
		if !json.Valid(out) {
			t.Fatalf("answer is not JSON: %q", out)
		}
		if status != 200 && status != 400 {
			t.Fatalf("status %d for %q: %s", status, body, out)
		}
	})
}
