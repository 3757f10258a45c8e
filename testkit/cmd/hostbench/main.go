// Command hostbench is `make bench` for the host: in one run it measures a
// capability call (the reference plugin's noop) four ways and prints the
// ratios the project targets:
//
//	(a) raw:    a go-plugin gRPC call straight to the plugin process (floor)
//	(b) router: the host's router in-process (a + routing)
//	(c) http:   an HTTP call to a `connector-host serve` process
//	(d) bare:   an HTTP call to a bare net/http no-op server process
//	(e) proxy:  an HTTP call to a minimal net/http → go-plugin gRPC proxy
//	            process (no envelope, router or error mapping): the cost of
//	            composing the two libraries, which no host can go below
//
// plus plugin cold start (launch + AutoMTLS handshake + Describe) and the
// memory of the reference plugin, a minimal go-plugin plugin and the host.
//
// Every path is measured in each of -rounds rounds; a ratio is computed
// within a round (both sides under about the same load from other work)
// and judged by its median over the rounds.
package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/connector-host/connector-host/host/router"
	"github.com/connector-host/connector-host/host/supervisor"
	"github.com/connector-host/connector-host/internal/envelope"
	pb "github.com/connector-host/connector-host/proto/gen/connector/v1"
	"github.com/connector-host/connector-host/testkit/benchkit"
)

const (
	bareEnv  = "HOSTBENCH_BARE_ADDR"
	proxyEnv = "HOSTBENCH_PROXY_ADDR"
	refEnv   = "HOSTBENCH_REFERENCE"
)

func main() {
	if addr := os.Getenv(bareEnv); addr != "" {
		serveBare(addr)
		return
	}
	if addr := os.Getenv(proxyEnv); addr != "" {
		serveProxy(addr, os.Getenv(refEnv))
		return
	}
	var o options
	flag.StringVar(&o.reference, "reference", "bin/testplugins/connector-reference", "reference plugin binary")
	flag.StringVar(&o.minimal, "minimal", "bin/bench/connector-minimal", "minimal go-plugin plugin binary")
	flag.StringVar(&o.host, "host", "bin/connector-host", "connector-host binary")
	flag.IntVar(&o.serial, "n", 5000, "serial calls per measurement")
	flag.DurationVar(&o.duration, "duration", 3*time.Second, "duration of each concurrent measurement")
	flag.IntVar(&o.coldRuns, "cold", 15, "cold starts to time")
	flag.IntVar(&o.rounds, "rounds", 3, "rounds; each measures every path, ratios are judged by their median over the rounds")
	flag.StringVar(&o.out, "out", "", "also write the report (markdown) to this file")
	o.hostEnv = benchkit.EnvFlag{}
	flag.Var(o.hostEnv, "host-env", "K=V for the `serve` process only (repeatable), e.g. -host-env GOGC=400")
	flag.Parse()
	report, err := run(o)
	benchkit.Finish("hostbench", report, o.out, err)
}

type options struct {
	reference, minimal, host string
	serial                   int
	duration                 time.Duration
	coldRuns, rounds         int
	out                      string
	hostEnv                  benchkit.EnvFlag
}

// result is one way of calling noop.
type result struct {
	name          string
	p50, p99      time.Duration
	rps16, rps64  float64
	errors        int64
	serialSamples int
	// cpu64 is the CPU time per call during the 64-caller run, of the
	// server process (host, bare or proxy; none for a and b), the plugin
	// process and this process (the callers, and for a and b the gRPC
	// client).
	cpu64 [3]time.Duration
}

// procs names the processes whose CPU a path's 64-caller run is charged
// to: server (0 when in-process) and plugin.
type procs struct{ server, plugin int }

func (p procs) cpu() [3]time.Duration {
	var c [3]time.Duration
	if p.server != 0 {
		c[0] = benchkit.CPU(p.server)
	}
	if p.plugin != 0 {
		c[1] = benchkit.CPU(p.plugin)
	}
	c[2] = benchkit.SelfCPU()
	return c
}

// caller makes one call; it returns an error on failure.
type caller func(ctx context.Context) error

func measure(name string, call caller, pp procs, o options) (result, error) {
	ctx := context.Background()
	for i := 0; i < 500; i++ { // warm up
		if err := call(ctx); err != nil {
			return result{}, fmt.Errorf("%s warm-up: %w", name, err)
		}
	}
	lat := make([]time.Duration, o.serial)
	for i := range lat {
		start := time.Now()
		if err := call(ctx); err != nil {
			return result{}, fmt.Errorf("%s: %w", name, err)
		}
		lat[i] = time.Since(start)
	}
	sort.Slice(lat, func(a, b int) bool { return lat[a] < lat[b] })
	r := result{name: name, p50: lat[len(lat)/2], p99: lat[len(lat)*99/100], serialSamples: len(lat)}
	var errs int64
	r.rps16, _, errs = throughput(call, 16, o.duration)
	r.errors += errs
	before := pp.cpu()
	var n int64
	r.rps64, n, errs = throughput(call, 64, o.duration)
	after := pp.cpu()
	if n > 0 {
		for i := range after {
			r.cpu64[i] = (after[i] - before[i]) / time.Duration(n)
		}
	}
	r.errors += errs
	return r, nil
}

// throughput runs workers callers for d: calls per second, calls made and
// errors.
func throughput(call caller, workers int, d time.Duration) (float64, int64, int64) {
	var n, errs atomic.Int64
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	var wg sync.WaitGroup
	start := time.Now()
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				if err := call(context.Background()); err != nil {
					errs.Add(1)
					continue
				}
				n.Add(1)
			}
		}()
	}
	wg.Wait()
	return float64(n.Load()) / time.Since(start).Seconds(), n.Load(), errs.Load()
}

func run(o options) (string, error) {
	for _, p := range []string{o.reference, o.minimal, o.host} {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("%s: %w (run `make build` first)", p, err)
		}
	}
	ref, err := supervisor.FromPath(o.reference)
	if err != nil {
		return "", err
	}
	ref.AppID = "reference"

	// Cold start.
	var colds []time.Duration
	for i := 0; i < o.coldRuns; i++ {
		s := supervisor.New(supervisor.Options{Binary: ref})
		start := time.Now()
		if err := s.Start(context.Background()); err != nil {
			return "", fmt.Errorf("cold start: %w", err)
		}
		colds = append(colds, time.Since(start))
		s.Stop()
	}
	sort.Slice(colds, func(a, b int) bool { return colds[a] < colds[b] })

	// (a) raw and (b) router, on one plugin process.
	sup := supervisor.New(supervisor.Options{Binary: ref})
	if err := sup.Start(context.Background()); err != nil {
		return "", err
	}
	defer sup.Stop()
	inst, err := sup.Acquire(context.Background())
	if err != nil {
		return "", err
	}
	raw := pb.NewConnectorClient(inst.Conn.Conn())
	rawCall := func(ctx context.Context) error {
		resp, err := raw.Invoke(ctx, &pb.InvokeRequest{Capability: "noop", Request: []byte("{}"), RequestId: "bench"})
		if err != nil {
			return err
		}
		if resp.GetError() != nil {
			return fmt.Errorf("%s", resp.GetError().GetMessage())
		}
		return nil
	}
	rt := router.New()
	if err := rt.Add("reference", sup, router.ConnectorOptions{}); err != nil {
		return "", err
	}
	routerCall := func(ctx context.Context) error {
		env, err := envelope.Parse([]byte(`{"request":{}}`))
		if err != nil {
			return err
		}
		_, f := rt.Invoke(ctx, &router.Request{AppID: "reference", Capability: "noop", Envelope: env, RequestID: "bench"})
		if f != nil {
			return f
		}
		return nil
	}

	// (c) connector-host serve, and (d) a bare net/http server, each its own process.
	var hostEnv []string
	for k, v := range o.hostEnv {
		hostEnv = append(hostEnv, k+"="+v)
	}
	serve, err := benchkit.StartServe(benchkit.ServeOptions{Host: o.host, Plugins: map[string]string{"reference": o.reference}, Env: hostEnv})
	if err != nil {
		return "", err
	}
	defer serve.Stop()
	hostURL := serve.URL
	bareProc, bareURL, err := startSelf(bareEnv + "=")
	if err != nil {
		return "", err
	}
	defer stopProc(bareProc)
	refAbs, err := filepath.Abs(o.reference)
	if err != nil {
		return "", err
	}
	proxyProc, proxyURL, err := startSelf(proxyEnv+"=", refEnv+"="+refAbs)
	if err != nil {
		return "", err
	}
	defer stopProc(proxyProc)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 128, MaxIdleConns: 256}, Timeout: 30 * time.Second}
	post := func(url string) caller {
		body := []byte(`{"request":{}}`)
		return func(ctx context.Context) error {
			req, _ := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
			req.Header.Set("Content-Type", "application/json")
			resp, err := client.Do(req)
			if err != nil {
				return err
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			_ = resp.Body.Close() // drained above; only the status matters
			if resp.StatusCode != 200 {
				return fmt.Errorf("HTTP %d", resp.StatusCode)
			}
			return nil
		}
	}

	servedPID, err := serve.PluginPID("reference")
	if err != nil {
		return "", err
	}
	proxiedPID := 0
	if kids := benchkit.Children(proxyProc.Process.Pid); len(kids) > 0 {
		proxiedPID = kids[0]
	}
	paths := []struct {
		name string
		call caller
		pp   procs
	}{
		{"(a) raw go-plugin gRPC", rawCall, procs{plugin: inst.PID()}},
		{"(b) router in-process", routerCall, procs{plugin: inst.PID()}},
		{"(c) HTTP → connector-host serve", post(hostURL + "/v1/connectors/reference/noop"), procs{serve.PID(), servedPID}},
		{"(d) bare net/http no-op", post(bareURL + "/noop"), procs{server: bareProc.Process.Pid}},
		{"(e) minimal net/http → gRPC proxy", post(proxyURL + "/noop"), procs{proxyProc.Process.Pid, proxiedPID}},
	}
	// Every round measures every path, so a round's ratios compare
	// measurements taken under about the same load from other work.
	rounds := make([][]result, max(o.rounds, 1))
	for k := range rounds {
		for _, m := range paths {
			r, err := measure(m.name, m.call, m.pp, o)
			if err != nil {
				return "", err
			}
			rounds[k] = append(rounds[k], r)
		}
	}

	// Memory after load.
	refRSS := benchkit.RSS(inst.PID())
	hostRSS := benchkit.RSS(serve.PID())
	servedPlugin := benchkit.RSS(servedPID)
	minBin, err := supervisor.FromPath(o.minimal)
	if err != nil {
		return "", err
	}
	minBin.AppID = "minimal"
	minSup := supervisor.New(supervisor.Options{Binary: minBin})
	if err := minSup.Start(context.Background()); err != nil {
		return "", fmt.Errorf("minimal plugin: %w", err)
	}
	defer minSup.Stop()
	minInst, _ := minSup.Acquire(context.Background())
	minRaw := pb.NewConnectorClient(minInst.Conn.Conn())
	// The same load as the reference plugin had under (a) and (b), so that
	// both are compared "after load".
	minCall := func(ctx context.Context) error {
		_, err := minRaw.Invoke(ctx, &pb.InvokeRequest{Capability: "noop", Request: []byte("{}")})
		return err
	}
	for i := 0; i < 2; i++ {
		if _, err := measure("minimal", minCall, procs{plugin: minInst.PID()}, o); err != nil {
			return "", err
		}
	}
	minRSS := benchkit.RSS(minInst.PID())

	return format(o, rounds, colds, refRSS, servedPlugin, minRSS, hostRSS), nil
}

func format(o options, rounds [][]result, colds []time.Duration, refRSS, servedRSS, minRSS, hostRSS int64) string {
	rs := medianResults(rounds)
	var s strings.Builder
	fmt.Fprintf(&s, "## Host: noop through every layer\n\n")
	fmt.Fprintf(&s, "Machine: %s. %d serial calls per row, %v per concurrent run, %d rounds (every path in each).\n\n",
		benchkit.Machine(), o.serial, o.duration, len(rounds))
	if len(o.hostEnv) > 0 {
		fmt.Fprintf(&s, "`serve` ran with %s.\n\n", o.hostEnv)
	}
	fmt.Fprintf(&s, "Median over the rounds:\n\n| path | p50 | p99 | calls/s @16 | calls/s @64 | errors |\n|---|---|---|---|---|---|\n")
	for _, r := range rs {
		fmt.Fprintf(&s, "| %s | %s | %s | %.0f | %.0f | %d |\n", r.name, us(r.p50), us(r.p99), r.rps16, r.rps64, r.errors)
	}
	fmt.Fprintf(&s, "\nCPU per call in the 64-caller runs (median over the rounds; /proc and getrusage, 10 ms ticks for other processes):\n\n")
	fmt.Fprintf(&s, "| path | server process | plugin | bench process (callers) | total |\n|---|---|---|---|---|\n")
	for _, r := range rs {
		fmt.Fprintf(&s, "| %s | %s | %s | %s | %s |\n", r.name, us1(r.cpu64[0]), us1(r.cpu64[1]), us1(r.cpu64[2]),
			us1(r.cpu64[0]+r.cpu64[1]+r.cpu64[2]))
	}
	// A ratio is computed within each round (same load), then its median
	// over the rounds is judged; every round's value is listed.
	floorP50 := func(r []result) time.Duration { return r[3].p50 + r[0].p50 }
	floorRPS := func(r []result) float64 { return 1 / (1/r[3].rps64 + 1/r[0].rps64) }
	perRound := func(f func(r []result) float64) (float64, string) {
		vs := make([]float64, len(rounds))
		txt := make([]string, len(rounds))
		for k, r := range rounds {
			vs[k] = f(r)
			txt[k] = fmt.Sprintf("%.2f", vs[k])
		}
		sort.Float64s(vs)
		return vs[len(vs)/2], strings.Join(txt, " ")
	}
	fmt.Fprintf(&s, "\n| target | median of rounds | goal | | each round |\n|---|---|---|---|---|\n")
	row := func(name string, f func(r []result) float64, goal float64, le bool) {
		v, each := perRound(f)
		ok := v <= goal
		if !le {
			ok = v >= goal
		}
		mark := "met"
		if !ok {
			mark = "**missed**"
		}
		cmp := "≤"
		if !le {
			cmp = "≥"
		}
		fmt.Fprintf(&s, "| %s | %.2f | %s %.2f | %s | %s |\n", name, v, cmp, goal, mark, each)
	}
	const a, b, c, d, e = 0, 1, 2, 3, 4
	row("(b) p50 / (a) p50", func(r []result) float64 { return ratio(r[b].p50, r[a].p50) }, 1.15, true)
	row("(c) p50 / ((d) p50 + (a) p50)", func(r []result) float64 { return ratio(r[c].p50, floorP50(r)) }, 1.2, true)
	row("(c) calls/s @64 / (1/(1/(d) + 1/(a)))", func(r []result) float64 { return r[c].rps64 / floorRPS(r) }, 0.8, false)
	row("(c) p50 / (a) p50 (issue 2, superseded)", func(r []result) float64 { return ratio(r[c].p50, r[a].p50) }, 1.5, true)
	row("(c) calls/s @64 / (a) calls/s @64 (issue 2, superseded)", func(r []result) float64 { return r[c].rps64 / r[a].rps64 }, 0.6, false)
	fmt.Fprintf(&s, "\nThe composition floor, (e): a minimal net/http → gRPC proxy, none of the host's work (medians of rounds).\n\n")
	fmt.Fprintf(&s, "| (e) p50 / ((d) p50 + (a) p50) | (c) p50 / (e) p50 | (e) calls/s @64 / floor | (c) calls/s @64 / (e) |\n|---|---|---|---|\n")
	ep, _ := perRound(func(r []result) float64 { return ratio(r[e].p50, floorP50(r)) })
	ce, _ := perRound(func(r []result) float64 { return ratio(r[c].p50, r[e].p50) })
	ef, _ := perRound(func(r []result) float64 { return r[e].rps64 / floorRPS(r) })
	ce64, _ := perRound(func(r []result) float64 { return r[c].rps64 / r[e].rps64 })
	fmt.Fprintf(&s, "| %.2f | %.2f | %.2f | %.2f |\n\n", ep, ce, ef, ce64)
	fmt.Fprintf(&s, "| other targets | measured | goal | |\n|---|---|---|---|\n")
	single := func(name string, v, goal float64, le bool) {
		mark := "met"
		if (le && v > goal) || (!le && v < goal) {
			mark = "**missed**"
		}
		cmp := map[bool]string{true: "≤", false: "≥"}[le]
		fmt.Fprintf(&s, "| %s | %.2f | %s %.2f | %s |\n", name, v, cmp, goal, mark)
	}
	single("cold start p50, ms", ms(colds[len(colds)/2]), 60, true)
	single("reference plugin RSS / minimal go-plugin plugin RSS", float64(refRSS)/float64(minRSS), 1.25, true)
	fmt.Fprintf(&s, "\nCold start (launch + AutoMTLS handshake + Describe), %d runs: p50 %.1f ms, max %.1f ms.\n",
		len(colds), ms(colds[len(colds)/2]), ms(colds[len(colds)-1]))
	fmt.Fprintf(&s, "Memory after the runs above (VmRSS): reference plugin %s (the one under `serve`: %s), minimal go-plugin plugin %s, host (`serve`) %s.\n",
		benchkit.MiB(refRSS), benchkit.MiB(servedRSS), benchkit.MiB(minRSS), benchkit.MiB(hostRSS))
	return s.String()
}

func ratio(x, y time.Duration) float64 { return float64(x) / float64(y) }

// medianResults gives, for each path, the median over the rounds of each
// of its figures (errors are summed).
func medianResults(rounds [][]result) []result {
	out := make([]result, len(rounds[0]))
	for p := range out {
		var p50, p99 []time.Duration
		var r16, r64 []float64
		var cpus [3][]time.Duration
		out[p].name = rounds[0][p].name
		for _, r := range rounds {
			p50, p99 = append(p50, r[p].p50), append(p99, r[p].p99)
			r16, r64 = append(r16, r[p].rps16), append(r64, r[p].rps64)
			for i := range cpus {
				cpus[i] = append(cpus[i], r[p].cpu64[i])
			}
			out[p].errors += r[p].errors
			out[p].serialSamples += r[p].serialSamples
		}
		slices.Sort(p50)
		slices.Sort(p99)
		slices.Sort(r16)
		slices.Sort(r64)
		out[p].p50, out[p].p99 = p50[len(p50)/2], p99[len(p99)/2]
		out[p].rps16, out[p].rps64 = r16[len(r16)/2], r64[len(r64)/2]
		for i := range cpus {
			slices.Sort(cpus[i])
			out[p].cpu64[i] = cpus[i][len(cpus[i])/2]
		}
	}
	return out
}
func us(d time.Duration) string  { return fmt.Sprintf("%.0f µs", float64(d)/1e3) }
func ms(d time.Duration) float64 { return float64(d) / 1e6 }

// startSelf runs this program again as a baseline server: env's first
// entry is the mode variable ("NAME="), given a free address.
func startSelf(env ...string) (*exec.Cmd, string, error) {
	addr, err := benchkit.FreeAddr()
	if err != nil {
		return nil, "", err
	}
	self, err := os.Executable()
	if err != nil {
		return nil, "", err
	}
	cmd := exec.Command(self)
	cmd.Env = append(append(os.Environ(), env[0]+addr), env[1:]...)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, "", err
	}
	url := "http://" + addr
	if err := waitHTTP(url + "/healthz"); err != nil {
		stopProc(cmd)
		return nil, "", err
	}
	return cmd, url, nil
}

func waitHTTP(url string) error {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if resp, err := http.Get(url); err == nil { //nolint:gosec // a 127.0.0.1 URL of a process this command started
			_ = resp.Body.Close() // only the status is read
			if resp.StatusCode == 200 {
				return nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("%s did not answer 200 within 30s", url)
}

func stopProc(cmd *exec.Cmd) {
	_ = cmd.Process.Signal(os.Interrupt)
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = cmd.Process.Kill()
	}
}

// serveBare is the (d) baseline: a net/http server that reads the body and
// answers a fixed JSON envelope.
func serveBare(addr string) {
	resp := []byte(`{"response":{},"raw_data":null,"page":null}` + "\n")
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(200) })
	mux.HandleFunc("/noop", func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(resp)
	})
	if err := http.ListenAndServe(addr, mux); err != nil { //nolint:gosec // the bare net/http baseline on 127.0.0.1, kept as plain as can be
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

// serveProxy is the (e) baseline: net/http in front of the reference
// plugin's gRPC connection, with none of the host's work (no envelope,
// router, settings, credentials or error mapping) — only the composition
// of the two libraries and three processes that every host pays.
func serveProxy(addr, reference string) {
	fail := func(err error) {
		fmt.Fprintln(os.Stderr, "hostbench proxy:", err)
		os.Exit(1)
	}
	bin, err := supervisor.FromPath(reference)
	if err != nil {
		fail(err)
	}
	bin.AppID = "reference"
	sup := supervisor.New(supervisor.Options{Binary: bin})
	if err := sup.Start(context.Background()); err != nil {
		fail(err)
	}
	defer sup.Stop()
	inst, err := sup.Acquire(context.Background())
	if err != nil {
		fail(err)
	}
	client := pb.NewConnectorClient(inst.Conn.Conn())
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(200) })
	mux.HandleFunc("/noop", func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		resp, err := client.Invoke(r.Context(), &pb.InvokeRequest{Capability: "noop", Request: []byte("{}")})
		if err != nil || resp.GetError() != nil {
			w.WriteHeader(http.StatusBadGateway)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(append(append([]byte(`{"response":`), resp.GetSuccess().GetResponse()...), '}', '\n'))
	})
	if err := http.ListenAndServe(addr, mux); err != nil { //nolint:gosec // a baseline on 127.0.0.1, kept as plain as can be
		fail(err)
	}
}
func us1(d time.Duration) string { return fmt.Sprintf("%.1f µs", float64(d)/1e3) }
