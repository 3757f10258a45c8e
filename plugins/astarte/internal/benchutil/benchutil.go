// Package benchutil is what the astarte benches (cmd/astarte-hostbench,
// cmd/msghub-hostbench) share beyond testkit/benchkit: calls to the astarte
// connector of a `connector-host serve` over HTTP, the parallel rate runner,
// send_batch bodies and their checks, and the report's table rows.
package benchutil

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/connector-host/connector-host/testkit/benchkit"
)

// Client calls the astarte connector of a host.
type Client struct {
	URL  string
	HTTP *http.Client
}

// NewClient returns a client of the host at url keeping up to conns idle
// connections.
func NewClient(url string, conns int) *Client {
	return &Client{URL: url, HTTP: &http.Client{Timeout: 2 * time.Minute,
		Transport: &http.Transport{MaxIdleConns: conns, MaxIdleConnsPerHost: conns}}}
}

// Post sends a request envelope (JSON) to a capability and returns the
// answer's body and status.
func (c *Client) Post(ctx context.Context, capability string, body []byte) ([]byte, int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.URL+"/v1/connectors/astarte/"+capability, bytes.NewReader(body))
	if err != nil {
		return nil, 0, err
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return nil, 0, err
	}
	defer func() { _ = resp.Body.Close() }()
	out, err := io.ReadAll(resp.Body)
	return out, resp.StatusCode, err
}

// Call invokes a capability with settings overriding the defaults (when
// not nil) and returns the response object; an error answer is an error.
func (c *Client) Call(ctx context.Context, capability string, request, settings map[string]any) (map[string]any, error) {
	env := map[string]any{"request": request}
	if settings != nil {
		env["settings"] = settings
	}
	body, err := json.Marshal(env)
	if err != nil {
		return nil, err
	}
	out, status, err := c.Post(ctx, capability, body)
	if err != nil {
		return nil, err
	}
	var resp struct {
		Response map[string]any `json:"response"`
	}
	if err := json.Unmarshal(out, &resp); err != nil || status != http.StatusOK {
		return nil, fmt.Errorf("%s: status %d: %s", capability, status, out)
	}
	return resp.Response, nil
}

// Sender returns a func that sends value v+0.5 with send on iface/path for
// the device and requires the answer "delivered". settings may be nil.
func (c *Client) Sender(ctx context.Context, deviceID, iface, path string, settings map[string]any) func(int) error {
	s := []byte("null")
	if settings != nil {
		s, _ = json.Marshal(settings)
	}
	return func(v int) error {
		body := fmt.Appendf(nil, `{"request":{"device_id":%q,"interface":%q,"path":%q,"value":%d.5},"settings":%s}`, deviceID, iface, path, v, s)
		out, status, err := c.Post(ctx, "send", body)
		if err != nil {
			return err
		}
		if status != http.StatusOK || !bytes.Contains(out, []byte(`"delivery":"delivered"`)) {
			return fmt.Errorf("send %s: status %d: %s", path, status, out)
		}
		return nil
	}
}

// BatchBody is a send_batch envelope of size messages on iface, message k
// on path(k) with value first+k+0.5.
func BatchBody(deviceID, iface string, size, first int, path func(k int) string, settings map[string]any) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, `{"request":{"device_id":%q,"messages":[`, deviceID)
	for k := 0; k < size; k++ {
		if k > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"interface":%q,"path":%q,"value":%d.5}`, iface, path(k), first+k)
	}
	b.WriteString(`]}`)
	if settings != nil {
		s, _ := json.Marshal(settings)
		b.WriteString(`,"settings":`)
		b.Write(s)
	}
	b.WriteByte('}')
	return b.Bytes()
}

// BatchResponse is the part of a send_batch answer the benches check.
type BatchResponse struct {
	Response struct {
		Delivered int `json:"delivered"`
		Failed    int `json:"failed"`
	} `json:"response"`
}

// BatchSender returns a func that sends batch number v (size messages,
// paths from path) with send_batch and requires every message delivered.
func (c *Client) BatchSender(ctx context.Context, deviceID, iface string, size int, path func(k int) string, settings map[string]any) func(int) error {
	return func(v int) error {
		out, status, err := c.Post(ctx, "send_batch", BatchBody(deviceID, iface, size, v*size, path, settings))
		if err != nil {
			return err
		}
		var r BatchResponse
		if status != http.StatusOK || json.Unmarshal(out, &r) != nil || r.Response.Delivered != size {
			if len(out) > 400 {
				out = out[:400]
			}
			return fmt.Errorf("send_batch: status %d, %d of %d delivered: %s", status, r.Response.Delivered, size, out)
		}
		return nil
	}
}

// Ints parses a comma-separated list of positive integers (a flag's value).
func Ints(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		n, err := strconv.Atoi(f)
		if err != nil || n <= 0 {
			return nil, fmt.Errorf("%q is not a positive integer", f)
		}
		out = append(out, n)
	}
	return out, nil
}

// Warm runs f a few times before a measurement; the first error is then
// returned by every call of the result.
func Warm(f func(int) error, times int) func(int) error {
	for v := 0; v < times; v++ {
		if err := f(v); err != nil {
			return func(int) error { return err }
		}
	}
	return f
}

// Parallel runs f(0), f(1), ... on workers goroutines, n calls in all (or
// for duration d when n is 0), and returns calls/s.
func Parallel(n int, d time.Duration, workers int, f func(int) error) (float64, error) {
	var next, done atomic.Int64
	var firstErr error
	var once sync.Once
	var wg sync.WaitGroup
	stop := make(chan struct{})
	if n == 0 {
		t := time.AfterFunc(d, func() { close(stop) })
		defer t.Stop()
	}
	start := time.Now()
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				v := int(next.Add(1)) - 1
				if n > 0 && v >= n {
					return
				}
				if err := f(v); err != nil {
					once.Do(func() { firstErr = err })
					return
				}
				done.Add(1)
			}
		}()
	}
	wg.Wait()
	return float64(done.Load()) / time.Since(start).Seconds(), firstErr
}

// Table prints the report's rows: a name, the measured value, the
// baseline and their ratio.
type Table struct {
	// Width is the width of the name column.
	Width int
}

// Header prints the column names.
func (t Table) Header(name, value, baseline string) {
	fmt.Printf("%-*s %10s %10s %7s\n", t.Width, name, value, baseline, "ratio")
}

// Row prints a row with its ratio.
func (t Table) Row(name string, value, baseline float64) {
	fmt.Printf("%-*s %10.0f %10.0f %7.2f\n", t.Width, name, value, baseline, value/baseline)
}

// Value prints a row without a baseline.
func (t Table) Value(name string, value float64) {
	fmt.Printf("%-*s %10.0f\n", t.Width, name, value)
}

// Detail prints an indented note under a row.
func (t Table) Detail(text string) {
	fmt.Printf("  %s\n", text)
}

// RSS prints a memory row in KiB.
func (t Table) RSS(name string, bytes int64) {
	fmt.Printf("%-*s %6d KiB\n", t.Width, name, bytes>>10)
}

// Serve starts `connector-host serve` with the astarte plugin, the given
// settings as the connector's defaults and up to 1024 calls in flight. The
// profiling variables of a `-tags astarteprofile` plugin build
// (ASTARTE_CPUPROFILE, ASTARTE_CPUPROFILE_SECONDS) are passed on from this
// process's environment.
func Serve(host, plugin string, settings map[string]any) (*benchkit.Serve, error) {
	connector := map[string]any{"settings": settings, "max_concurrency": 1024}
	env := map[string]string{}
	for _, k := range []string{"ASTARTE_CPUPROFILE", "ASTARTE_CPUPROFILE_SECONDS"} {
		if v, ok := os.LookupEnv(k); ok {
			env[k] = v
		}
	}
	if v, ok := os.LookupEnv("ASTARTE_GOGC"); ok {
		env["GOGC"] = v
	}
	if len(env) > 0 {
		connector["env"] = env
	}
	return benchkit.StartServe(benchkit.ServeOptions{Host: host, Plugins: map[string]string{"astarte": plugin},
		Connectors: map[string]any{"astarte": connector}})
}
