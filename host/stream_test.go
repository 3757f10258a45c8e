package host_test

import (
	"bufio"
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/connector-host/connector-host/host/config"
	"github.com/connector-host/connector-host/testkit/harness"
)

// streamLines posts a stream request and returns the response (headers
// received) and a scanner over its lines.
func postStream(t *testing.T, ctx context.Context, url, body string) (*http.Response, *bufio.Scanner) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := harness.Client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = resp.Body.Close() })
	return resp, bufio.NewScanner(resp.Body)
}

// A quiet stream whose handler declares it open (sdk Stream.Open) is
// answered 200 with its headers before the first item.
func TestQuietStreamHeadersComeFirst(t *testing.T) {
	t.Parallel()
	h := startReference(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	start := time.Now()
	resp, sc := postStream(t, ctx, h.URL+"/v1/connectors/reference/stream", `{"request":{"n":1,"interval_ms":3000}}`)
	headersAfter := time.Since(start)
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/x-ndjson" {
		t.Fatalf("status %d, content type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	if headersAfter > 2500*time.Millisecond {
		t.Fatalf("headers arrived after %v, only with the first item (3 s)", headersAfter)
	}
	var lines []string
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	if strings.Join(lines, "\n") != "{\"i\":0}\n{\"page\":null}" {
		t.Fatalf("lines %q", lines)
	}
	if time.Since(start) < 3*time.Second {
		t.Fatalf("the item came before its interval")
	}
}

// A stream outlives the unary timeout (none by default for streams), and
// stream_timeout, when set, ends it with a request_timeout line.
func TestStreamTimeouts(t *testing.T) {
	t.Parallel()
	h := startReference(t, func(c *config.Config) {
		c.Connectors["reference"] = config.Connector{Timeout: config.Duration(300 * time.Millisecond)}
		r2 := c.Connectors["reference2"] // keeps startReference's app_id override
		r2.Timeout = config.Duration(300 * time.Millisecond)
		r2.StreamTimeout = config.Duration(time.Second)
		c.Connectors["reference2"] = r2
	})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	body := `{"request":{"n":10,"interval_ms":200}}` // 2 s in all

	_, sc := postStream(t, ctx, h.URL+"/v1/connectors/reference/stream", body)
	var lines []string
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	if len(lines) != 11 || lines[10] != `{"page":null}` {
		t.Fatalf("reference (no stream_timeout): %d lines, last %q", len(lines), lines[len(lines)-1])
	}

	start := time.Now()
	resp, sc := postStream(t, ctx, h.URL+"/v1/connectors/reference2/stream", body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
	lines = lines[:0]
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	took := time.Since(start)
	last := lines[len(lines)-1]
	if len(lines) < 2 || len(lines) > 10 || !strings.Contains(last, `"error_code":"reference2.request_timeout"`) {
		t.Fatalf("reference2 (stream_timeout 1s): %d lines, last %q", len(lines), last)
	}
	if took < 900*time.Millisecond || took > 1800*time.Millisecond {
		t.Fatalf("the stream ended after %v, want about 1 s", took)
	}
}

// A stream that fails before any item or Open gets the error's own status.
func TestStreamEarlyErrorKeepsStatus(t *testing.T) {
	t.Parallel()
	h := startReference(t)
	resp, err := harness.Client.Post(h.URL+"/v1/connectors/reference/stream", "application/json", strings.NewReader(`{"request":{"n":-1}}`))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("status %d, want 400", resp.StatusCode)
	}
}
