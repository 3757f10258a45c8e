// Command events-hostbench measures the events gateway as a user runs it:
// one `connector-host serve` process with the real connector-events-protocol
// and connector-reference plugin processes, and HTTP calls from this
// process on 127.0.0.1:
//
//	gateway: POST /events {"name":"reference:noop","version":1,"payload":{"request":{}}}
//	         → host → events-protocol process_event → host callback (go-plugin
//	         broker) → router → reference noop → back, answered
//	         reference:noop:response
//	direct:  POST /v1/connectors/reference/noop {"request":{}} (the baseline,
//	         same host process, same run)
//
//	events-hostbench [-host bin/connector-host] [-plugin bin/plugins/connector-events-protocol]
//	                 [-reference bin/testplugins/connector-reference] [-n 5000] [-duration 3s]
//	                 [-out FILE]
//
// It prints a markdown table: p50, p99 and calls/s of each path with 1, 16
// and 64 callers, and the ratios against the direct call (the target is a
// gateway p50 at most 2.5× the direct p50). A third path, a raw go-plugin
// gRPC noop to a reference plugin process of this program's own (the
// floor of hostbench), gives the gateway's structural floor: it makes three
// gRPC round trips where the direct call makes one, so its p50 cannot be
// below direct + 2 × raw.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/connector-host/connector-host/host/supervisor"
	pb "github.com/connector-host/connector-host/proto/gen/connector/v1"
	"github.com/connector-host/connector-host/testkit/benchkit"
)

type options struct {
	host, plugin, reference string
	serial                  int
	duration                time.Duration
	out                     string
}

func main() {
	var o options
	flag.StringVar(&o.host, "host", "bin/connector-host", "connector-host binary")
	flag.StringVar(&o.plugin, "plugin", "bin/plugins/connector-events-protocol", "connector-events-protocol plugin binary")
	flag.StringVar(&o.reference, "reference", "bin/testplugins/connector-reference", "connector-reference test plugin binary")
	flag.IntVar(&o.serial, "n", 5000, "serial calls per path (one caller)")
	flag.DurationVar(&o.duration, "duration", 3*time.Second, "duration of each concurrent run")
	flag.StringVar(&o.out, "out", "", "also write the report (markdown) to this file")
	flag.Parse()
	report, err := run(o)
	benchkit.Finish("events-hostbench", report, o.out, err)
}

// caller makes one call and checks its answer.
type caller func(ctx context.Context) error

// point is one path at one number of callers.
type point struct {
	callers  int
	p50, p99 time.Duration
	rps      float64
	calls    int
	errors   int64
	firstErr error
}

var levels = []int{1, 16, 64}

func run(o options) (string, error) {
	for _, p := range []string{o.host, o.plugin, o.reference} {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("%s: %w (run `make build` first)", p, err)
		}
	}
	serve, err := benchkit.StartServe(benchkit.ServeOptions{
		Host:    o.host,
		Plugins: map[string]string{"events-protocol": o.plugin, "reference": o.reference},
	})
	if err != nil {
		return "", err
	}
	defer serve.Stop()
	base := serve.URL

	client := &http.Client{Timeout: time.Minute, Transport: &http.Transport{
		MaxIdleConns: 256, MaxIdleConnsPerHost: 256, IdleConnTimeout: time.Minute,
	}}
	direct := post(client, base+"/v1/connectors/reference/noop", []byte(`{"request":{}}`), checkEnvelope)
	gateway := post(client, base+"/events",
		[]byte(`{"name":"reference:noop","version":1,"id":"bench-id","flowId":"bench-flow","payload":{"request":{}}}`),
		checkEvent)
	raw, stopRaw, err := rawCaller(o.reference)
	if err != nil {
		return "", err
	}
	defer stopRaw()
	paths := []struct {
		name string
		call caller
	}{
		{"direct: POST /v1/connectors/reference/noop", direct},
		{"gateway: POST /events reference:noop", gateway},
		{"raw go-plugin gRPC noop (floor of one hop)", raw},
	}
	for _, p := range paths { // warm up: connections, plugin goroutines, the broker stream
		for i := 0; i < 500; i++ {
			if err := p.call(context.Background()); err != nil {
				return "", fmt.Errorf("%s warm-up: %w", p.name, err)
			}
		}
	}
	results := make([][]point, len(paths))
	for _, n := range levels {
		// The paths take turns at each level, so that drift of the
		// machine affects both alike.
		for k, p := range paths {
			pt := measure(p.call, n, o)
			if pt.errors > 0 {
				return "", fmt.Errorf("%s with %d callers: %d errors, the first: %w", p.name, n, pt.errors, pt.firstErr)
			}
			results[k] = append(results[k], pt)
		}
	}
	return format(o, paths[0].name, paths[1].name, paths[2].name, results[0], results[1], results[2]), nil
}

// rawCaller launches the reference plugin with the host's supervisor and
// returns a caller of its noop straight over the plugin's gRPC connection.
func rawCaller(reference string) (caller, func(), error) {
	bin, err := supervisor.FromPath(reference)
	if err != nil {
		return nil, nil, err
	}
	bin.AppID = "reference"
	sup := supervisor.New(supervisor.Options{Binary: bin})
	if err := sup.Start(context.Background()); err != nil {
		return nil, nil, fmt.Errorf("reference plugin: %w", err)
	}
	inst, err := sup.Acquire(context.Background())
	if err != nil {
		sup.Stop()
		return nil, nil, err
	}
	c := pb.NewConnectorClient(inst.Conn.Conn())
	call := func(ctx context.Context) error {
		resp, err := c.Invoke(ctx, &pb.InvokeRequest{Capability: "noop", Request: []byte("{}"), RequestId: "bench"})
		if err != nil {
			return err
		}
		if e := resp.GetError(); e != nil {
			return errors.New(e.GetMessage())
		}
		return nil
	}
	return call, sup.Stop, nil
}

// measure runs callers goroutines calling in a loop: o.serial calls when
// alone, for o.duration otherwise. It records every call's latency.
func measure(call caller, callers int, o options) point {
	var (
		mu       sync.Mutex
		lat      []time.Duration
		errs     atomic.Int64
		firstErr error
		wg       sync.WaitGroup
	)
	deadline := time.Now().Add(o.duration)
	var budget atomic.Int64
	budget.Store(int64(o.serial))
	start := time.Now()
	for w := 0; w < callers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			local := make([]time.Duration, 0, 4096)
			for {
				if callers == 1 {
					if budget.Add(-1) < 0 {
						break
					}
				} else if time.Now().After(deadline) {
					break
				}
				t0 := time.Now()
				err := call(context.Background())
				d := time.Since(t0)
				if err != nil {
					if errs.Add(1) == 1 {
						mu.Lock()
						firstErr = err
						mu.Unlock()
					}
					continue
				}
				local = append(local, d)
			}
			mu.Lock()
			lat = append(lat, local...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	sort.Slice(lat, func(a, b int) bool { return lat[a] < lat[b] })
	pt := point{callers: callers, calls: len(lat), errors: errs.Load(), firstErr: firstErr}
	if len(lat) > 0 {
		pt.p50, pt.p99 = lat[len(lat)/2], lat[len(lat)*99/100]
		pt.rps = float64(len(lat)) / elapsed.Seconds()
	}
	return pt
}

func post(client *http.Client, url string, body []byte, check func([]byte) error) caller {
	return func(ctx context.Context) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		b, err := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		if err != nil {
			return err
		}
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("HTTP %d: %.200s", resp.StatusCode, b)
		}
		return check(b)
	}
}

// checkEnvelope accepts noop's success envelope.
func checkEnvelope(b []byte) error {
	if !bytes.HasPrefix(b, []byte(`{"response":{}`)) {
		return fmt.Errorf("not noop's answer: %.200s", b)
	}
	return nil
}

// checkEvent accepts the gateway's answer to reference:noop.
func checkEvent(b []byte) error {
	var ev struct {
		Name   string `json:"name"`
		ID     string `json:"id"`
		FlowID string `json:"flowId"`
	}
	if err := json.Unmarshal(b, &ev); err != nil {
		return fmt.Errorf("answer is not an event: %w: %.200s", err, b)
	}
	if ev.Name != "reference:noop:response" || ev.ID != "bench-id" || ev.FlowID != "bench-flow" {
		return fmt.Errorf("unexpected answer: %.200s", b)
	}
	return nil
}

func format(o options, directName, gatewayName, rawName string, direct, gateway, raw []point) string {
	var s strings.Builder
	fmt.Fprintf(&s, "## Events gateway: noop through POST /events vs a direct call\n\n")
	fmt.Fprintf(&s, "Machine: %s. One `connector-host serve` process (log level warn) with the "+
		"events-protocol and reference plugin processes; the callers are HTTP clients in another process on 127.0.0.1. "+
		"%d serial calls for 1 caller, %v per run with 16 and 64 callers; the paths take turns at each level.\n\n",
		benchkit.Machine(), o.serial, o.duration)
	fmt.Fprintf(&s, "| path | callers | p50 | p99 | calls/s | calls |\n|---|---|---|---|---|---|\n")
	for _, set := range []struct {
		name string
		pts  []point
	}{{directName, direct}, {gatewayName, gateway}, {rawName, raw}} {
		for _, p := range set.pts {
			fmt.Fprintf(&s, "| %s | %d | %s | %s | %.0f | %d |\n", set.name, p.callers, us(p.p50), us(p.p99), p.rps, p.calls)
		}
	}
	fmt.Fprintf(&s, "\n| gateway / direct | callers | measured | goal | |\n|---|---|---|---|---|\n")
	for k := range direct {
		d, g := direct[k], gateway[k]
		p50 := float64(g.p50) / float64(d.p50)
		goal, mark := "—", ""
		if d.callers == 1 {
			goal, mark = "≤ 2.50", "met"
			if p50 > 2.5 {
				mark = "**missed**"
			}
		}
		fmt.Fprintf(&s, "| p50 | %d | %.2f | %s | %s |\n", d.callers, p50, goal, mark)
		fmt.Fprintf(&s, "| p99 | %d | %.2f | — | |\n", d.callers, float64(g.p99)/float64(d.p99))
		fmt.Fprintf(&s, "| calls/s | %d | %.2f | — | |\n", d.callers, g.rps/d.rps)
	}
	d, g, r := direct[0], gateway[0], raw[0]
	floor := d.p50 + 2*r.p50
	fmt.Fprintf(&s, "\nStructural floor with one caller: the gateway makes three gRPC round trips (host → events-protocol, "+
		"its callback → host, host → reference) where the direct call makes one, so its p50 is at least direct + 2 × raw = "+
		"%s + 2 × %s = %s, a ratio of %.2f. Measured %s: %s (%.0f%%) above that floor.\n",
		us(d.p50), us(r.p50), us(floor), float64(floor)/float64(d.p50), us(g.p50), us(g.p50-floor), 100*float64(g.p50-floor)/float64(floor))
	return s.String()
}

func us(d time.Duration) string { return fmt.Sprintf("%.0f µs", float64(d)/1e3) }
