// Package harness runs real connector-host pieces in tests: it builds
// plugin binaries with the go tool (once per test process), starts a host
// on 127.0.0.1 with them, captures every log line of the host and its
// plugins, and stops everything at the end of the test.
package harness

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/connector-host/connector-host/host"
	"github.com/connector-host/connector-host/host/config"
	"github.com/connector-host/connector-host/host/supervisor"
	"github.com/connector-host/connector-host/internal/redact"
)

var (
	buildMu sync.Mutex
	built   = map[string]string{}
)

// ModuleRoot returns the repository root (the directory of go.mod).
func ModuleRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// Build compiles the main package pkg (a path below the module root, e.g.
// "./testkit/cmd/connector-reference") into a binary named name and returns
// its path. Each package is built once per test process, into a fixed
// directory under the system temp dir (so runs do not pile up binaries);
// the binary is replaced atomically, so concurrent test processes are safe.
func Build(t testing.TB, pkg, name string) string {
	t.Helper()
	buildMu.Lock()
	defer buildMu.Unlock()
	key := pkg + "\x00" + name
	if p, ok := built[key]; ok {
		return p
	}
	sum := sha256.Sum256([]byte(ModuleRoot() + "\x00" + key))
	dir := filepath.Join(os.TempDir(), "connector-host-test-bin", hex.EncodeToString(sum[:8]))
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, name)
	tmp := fmt.Sprintf("%s.tmp-%d", out, os.Getpid())
	cmd := exec.Command(goTool(), "build", "-o", tmp, pkg)
	cmd.Dir = ModuleRoot()
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		_ = os.Remove(tmp)
		t.Fatalf("building %s: %v\n%s", pkg, err, b)
	}
	if err := os.Rename(tmp, out); err != nil {
		t.Fatal(err)
	}
	built[key] = out
	return out
}

// Reference builds the reference test plugin.
func Reference(t testing.TB) string {
	return Build(t, "./testkit/cmd/connector-reference", "connector-reference")
}

// goTool is the go command of the toolchain running the tests: go test
// puts its own GOROOT/bin first on PATH.
func goTool() string { return "go" }

// Logs collects log lines, safe for concurrent use.
type Logs struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

// Write implements io.Writer.
func (l *Logs) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

// String returns everything logged so far.
func (l *Logs) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// WaitFor waits until a log line contains substr, up to timeout.
func (l *Logs) WaitFor(substr string, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if strings.Contains(l.String(), substr) {
			return true
		}
		time.Sleep(10 * time.Millisecond)
	}
	return false
}

// Host is a running host under test.
type Host struct {
	*host.Host
	// URL is the base URL of its HTTP API, e.g. http://127.0.0.1:41234.
	URL string
	// Logs holds the host's and its plugins' log lines.
	Logs *Logs
	// Config is the configuration the host runs with.
	Config config.Config
}

// Plugin names a plugin binary to load, with an optional app_id override
// (the binary name decides otherwise).
type Plugin struct {
	AppID string
	Path  string
}

// StartHost starts a host serving on 127.0.0.1 with the given plugins.
// The configuration is config.Default() with a temporary data directory,
// changed by the configure funcs. Everything is stopped when the test ends.
func StartHost(t testing.TB, plugins []Plugin, configure ...func(*config.Config)) *Host {
	t.Helper()
	cfg := config.Default()
	cfg.DataDir = t.TempDir()
	cfg.LogLevel = "debug"
	for _, c := range configure {
		c(&cfg)
	}
	cfg.LogFormat = "json"
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Listen = ln.Addr().String()
	logs := &Logs{}
	secrets := redact.NewSet()
	var bins []supervisor.Binary
	for _, p := range plugins {
		b, err := supervisor.FromPath(p.Path)
		if err != nil {
			t.Fatal(err)
		}
		if p.AppID != "" {
			b.AppID = p.AppID
		}
		bins = append(bins, b)
	}
	h, err := host.New(cfg, host.WithLogger(host.NewLogger(cfg, secrets, logs)), host.WithSecrets(secrets), host.WithBinaries(bins...))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	startCtx, startCancel := context.WithTimeout(ctx, 60*time.Second)
	defer startCancel()
	if err := h.Start(startCtx); err != nil {
		cancel()
		h.Close()
		t.Fatalf("starting host: %v\nlogs:\n%s", err, logs.String())
	}
	done := make(chan error, 1)
	go func() { done <- h.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Logf("host stopped: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Errorf("host did not stop within 30s")
		}
		if t.Failed() {
			t.Logf("host logs:\n%s", tail(logs.String(), 8000))
		}
	})
	return &Host{Host: h, URL: "http://" + cfg.Listen, Logs: logs, Config: cfg}
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "...\n" + s[len(s)-n:]
}

// Response is a decoded HTTP answer.
type Response struct {
	Status int
	Body   []byte
	Header http.Header
}

// JSON decodes the body into a generic map.
func (r *Response) JSON(t testing.TB) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.Body, &m); err != nil {
		t.Fatalf("response is not a JSON object: %v\n%s", err, r.Body)
	}
	return m
}

// ErrorCode returns error.error_code of an error envelope ("" if none).
func (r *Response) ErrorCode(t testing.TB) string {
	t.Helper()
	e, _ := r.JSON(t)["error"].(map[string]any)
	code, _ := e["error_code"].(string)
	return code
}

// Client is the HTTP client used by Post and Get: no global state, bounded
// by a per-request timeout.
var Client = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1024, MaxConnsPerHost: 0}, Timeout: 2 * time.Minute}

// Post sends body to the host path and returns the whole answer.
func (h *Host) Post(t testing.TB, path, body string) *Response {
	t.Helper()
	return h.Do(t, http.MethodPost, path, body, nil)
}

// Get fetches path.
func (h *Host) Get(t testing.TB, path string) *Response {
	t.Helper()
	return h.Do(t, http.MethodGet, path, "", nil)
}

// Do sends a request with optional headers and returns the whole answer.
func (h *Host) Do(t testing.TB, method, path, body string, header http.Header) *Response {
	t.Helper()
	req, err := http.NewRequest(method, h.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := Client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer func() { _ = resp.Body.Close() }()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading body: %v", method, path, err)
	}
	return &Response{Status: resp.StatusCode, Body: b, Header: resp.Header}
}
