// Command dsync-hostbench measures realtime_batch through the host, as a
// user runs it: a `connector-host serve` process with the real
// connector-dsync plugin process, one HTTP call to
// /v1/connectors/dsync/realtime_batch with -ops creates, sent by the plugin
// to the local DSYNC emulator (testkit/emulators/dsync) in this process
// with -concurrency requests in flight:
//
//	dsync-hostbench [-host bin/connector-host] [-plugin bin/plugins/connector-dsync]
//	                [-ops 10000] [-concurrency 32] [-rounds 5] [-plugin-env K=V]... [-cpuprofile F]
//
// Beside it, a plain Go net/http client sends the same POST requests
// (same headers and bodies) to the same emulator with the same
// concurrency. It prints both rates per round, the ratio of the totals
// (issue target: at least 0.8) and the median of the rounds' ratios, and
// the CPU time per operation of each process (host, plugin, this one) read
// from /proc.
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
	"runtime"
	"runtime/pprof"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/connector-host/connector-host/testkit/benchkit"
	dsyncemu "github.com/connector-host/connector-host/testkit/emulators/dsync"
)

// apiKey is the emulator's DSYNC API key (a local test value).
const apiKey = "dsync-hostbench-key" //nolint:gosec // the key of the in-process emulator, not a credential

type options struct {
	host, plugin     string
	ops, concurrency int
	rounds           int
	pluginEnv        benchkit.EnvFlag
	cpuProfile       string
}

func main() {
	o := options{pluginEnv: benchkit.EnvFlag{}}
	flag.StringVar(&o.host, "host", "bin/connector-host", "connector-host binary")
	flag.StringVar(&o.plugin, "plugin", "bin/plugins/connector-dsync", "connector-dsync plugin binary")
	flag.IntVar(&o.ops, "ops", 10000, "creates per batch")
	flag.IntVar(&o.concurrency, "concurrency", 32, "requests in flight (realtime_batch concurrency and plain client workers)")
	flag.IntVar(&o.rounds, "rounds", 5, "measurement rounds (host and plain alternate)")
	flag.StringVar(&o.cpuProfile, "cpuprofile", "", "write a CPU profile of this process (the emulator, the plain client and the host call) to this file")
	flag.Var(o.pluginEnv, "plugin-env", "K=V added to the plugin's environment (repeatable), e.g. GOGC=200")
	flag.Parse()
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "dsync-hostbench:", err)
		os.Exit(1)
	}
}

type bench struct {
	o     options
	emu   *dsyncemu.Emulator
	serve *benchkit.Serve
	http  *http.Client
}

func run(o options) error {
	if o.ops <= 0 || o.concurrency <= 0 || o.concurrency > 256 || o.rounds <= 0 {
		return errors.New("-ops and -rounds must be positive, -concurrency 1..256")
	}
	for _, p := range []string{o.host, o.plugin} {
		if _, err := os.Stat(p); err != nil {
			return fmt.Errorf("%s: %w (run `make build` first)", p, err)
		}
	}
	b := &bench{o: o, http: &http.Client{Timeout: 10 * time.Minute}}
	var err error
	// The checks read the stored records, not the call log: keep one call
	// only, so that this process's heap (which the plain client shares
	// with the emulator) does not grow with every request's headers and
	// body, making later rounds pay more GC than earlier ones.
	if b.emu, err = dsyncemu.Start(dsyncemu.Config{APIKey: apiKey, MaxCalls: 1}, ""); err != nil {
		return err
	}
	defer func() { _ = b.emu.Close() }()
	if b.serve, err = benchkit.StartServe(benchkit.ServeOptions{
		Host:    o.host,
		Plugins: map[string]string{"dsync": o.plugin},
		Connectors: map[string]any{"dsync": map[string]any{
			"settings": map[string]any{"realtime_endpoint": b.emu.RealtimeURL()},
			"env":      pluginEnv(o.pluginEnv)}},
	}); err != nil {
		return err
	}
	defer b.serve.Stop()
	ctx := context.Background()
	if o.cpuProfile != "" {
		f, err := os.Create(o.cpuProfile)
		if err != nil {
			return err
		}
		defer func() { _ = f.Close() }()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}

	// Warm up both paths (connections, plugin caches).
	if _, err := b.hostBatch(ctx, "warm-host", min(o.ops, 200)); err != nil {
		return err
	}
	plain := newPlainClient(o.concurrency)
	if _, err := b.plainBatch(ctx, plain, "warm-plain", min(o.ops, 200)); err != nil {
		return err
	}

	fmt.Printf("realtime_batch of %d creates, %d in flight, %d CPUs\n", o.ops, o.concurrency, runtime.NumCPU())
	fmt.Println("CPU µs per operation during the host batch (host = connector-host serve, plugin = connector-dsync, bench = this process: the emulator and the HTTP call) and during the plain one (this process: emulator and plain client)")
	fmt.Printf("%-8s %12s %12s %7s   %8s %8s %8s   %8s\n", "round", "host ops/s", "plain ops/s", "ratio", "host", "plugin", "bench", "plain")
	var hostTotal, plainTotal time.Duration
	var hostCPU, plainCPU cpuTimes
	var ratios []float64
	for r := 1; r <= o.rounds; r++ {
		c0 := b.cpu()
		hd, err := b.hostBatch(ctx, fmt.Sprintf("host-%d", r), o.ops)
		if err != nil {
			return err
		}
		c1 := b.cpu()
		pd, err := b.plainBatch(ctx, plain, fmt.Sprintf("plain-%d", r), o.ops)
		if err != nil {
			return err
		}
		c2 := b.cpu()
		hostTotal += hd
		plainTotal += pd
		hc, pc := c1.sub(c0), c2.sub(c1)
		hostCPU, plainCPU = hostCPU.add(hc), plainCPU.add(pc)
		ratios = append(ratios, pd.Seconds()/hd.Seconds())
		perOp := func(d time.Duration) float64 { return float64(d.Microseconds()) / float64(o.ops) }
		fmt.Printf("%-8d %12.0f %12.0f %7.2f   %8.1f %8.1f %8.1f   %8.1f\n", r, rate(o.ops, hd), rate(o.ops, pd), pd.Seconds()/hd.Seconds(),
			perOp(hc.host), perOp(hc.plugin), perOp(hc.self), perOp(pc.self))
	}
	n := o.ops * o.rounds
	perOp := func(d time.Duration) float64 { return float64(d.Microseconds()) / float64(n) }
	fmt.Printf("%-8s %12.0f %12.0f %7.2f   %8.1f %8.1f %8.1f   %8.1f  (target >= 0.80)\n", "total", rate(n, hostTotal), rate(n, plainTotal), plainTotal.Seconds()/hostTotal.Seconds(),
		perOp(hostCPU.host), perOp(hostCPU.plugin), perOp(hostCPU.self), perOp(plainCPU.self))
	slices.Sort(ratios)
	fmt.Printf("%-8s %12s %12s %7.2f   (median of the rounds' ratios; min %.2f, max %.2f)\n", "median", "", "", median(ratios), ratios[0], ratios[len(ratios)-1])
	hostTotalCPU := hostCPU.host + hostCPU.plugin + hostCPU.self
	if hostTotalCPU > 0 {
		fmt.Printf("CPU per operation: %.1f µs through the host (all three processes), %.1f µs plain: %.2f× (the ratio to expect when the CPUs are saturated)\n",
			perOp(hostTotalCPU), perOp(plainCPU.self), float64(plainCPU.self)/float64(hostTotalCPU))
	}
	return nil
}

// median of sorted values.
func median(sorted []float64) float64 {
	n := len(sorted)
	if n%2 == 1 {
		return sorted[n/2]
	}
	return (sorted[n/2-1] + sorted[n/2]) / 2
}

// cpuTimes is the CPU time (user + system) used so far by the host
// process, its plugin process(es) and this process.
type cpuTimes struct{ host, plugin, self time.Duration }

func (c cpuTimes) sub(d cpuTimes) cpuTimes {
	return cpuTimes{c.host - d.host, c.plugin - d.plugin, c.self - d.self}
}

func (c cpuTimes) add(d cpuTimes) cpuTimes {
	return cpuTimes{c.host + d.host, c.plugin + d.plugin, c.self + d.self}
}

// cpu reads the CPU times from /proc (zero where it cannot: not Linux).
func (b *bench) cpu() cpuTimes {
	var c cpuTimes
	c.self = benchkit.CPU(os.Getpid())
	if b.serve == nil {
		return c
	}
	c.host = benchkit.CPU(b.serve.PID())
	for _, pid := range benchkit.Children(b.serve.PID()) {
		c.plugin += benchkit.CPU(pid)
	}
	return c
}

func rate(n int, d time.Duration) float64 { return float64(n) / d.Seconds() }

// record is the body of create k of a round (entity token tok).
func record(k int) []byte {
	return fmt.Appendf(nil, `{"id":"%d","name":"product %d","price":%d}`, k, k, k)
}

// hostBatch sends one realtime_batch of n creates through the host and
// checks that every one succeeded and reached the emulator.
func (b *bench) hostBatch(ctx context.Context, tok string, n int) (time.Duration, error) {
	type op struct {
		Op          string          `json:"op"`
		EntityToken string          `json:"entity_token"`
		Data        json.RawMessage `json:"data"`
	}
	ops := make([]op, n)
	for k := range ops {
		ops[k] = op{Op: "create", EntityToken: tok, Data: record(k)}
	}
	body, err := json.Marshal(map[string]any{
		"request": map[string]any{"operations": ops, "concurrency": b.o.concurrency},
		"auth":    map[string]any{"token": map[string]any{"token": apiKey}},
	})
	if err != nil {
		return 0, err
	}
	start := time.Now()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, b.serve.URL+"/v1/connectors/dsync/realtime_batch", bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	resp, err := b.http.Do(req)
	if err != nil {
		return 0, err
	}
	raw, err := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	took := time.Since(start)
	if err != nil {
		return 0, err
	}
	var env struct {
		Response struct {
			Succeeded int `json:"succeeded"`
			Failed    int `json:"failed"`
		} `json:"response"`
	}
	if resp.StatusCode != http.StatusOK || json.Unmarshal(raw, &env) != nil || env.Response.Succeeded != n {
		return 0, fmt.Errorf("realtime_batch %s: %d %.300s", tok, resp.StatusCode, raw)
	}
	if got := len(b.emu.Records(tok)); got != n {
		return 0, fmt.Errorf("realtime_batch %s: the emulator holds %d records, want %d", tok, got, n)
	}
	return took, nil
}

func newPlainClient(conc int) *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConns, t.MaxIdleConnsPerHost = 2*conc, conc
	return &http.Client{Transport: t, Timeout: time.Minute}
}

// plainBatch sends the same n creates with a plain client and conc workers.
func (b *bench) plainBatch(ctx context.Context, hc *http.Client, tok string, n int) (time.Duration, error) {
	bodies := make([][]byte, n)
	for k := range bodies {
		bodies[k] = record(k)
	}
	work := make(chan []byte)
	var failed atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	start := time.Now()
	for range b.o.concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for body := range work {
				if err := b.plainCreate(ctx, hc, tok, body); err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err)
				}
			}
		}()
	}
	for _, body := range bodies {
		work <- body
	}
	close(work)
	wg.Wait()
	took := time.Since(start)
	if f := failed.Load(); f > 0 {
		return 0, fmt.Errorf("plain client %s: %d of %d creates failed, first: %v", tok, f, n, firstErr.Load())
	}
	if got := len(b.emu.Records(tok)); got != n {
		return 0, fmt.Errorf("plain client %s: the emulator holds %d records, want %d", tok, got, n)
	}
	return took, nil
}

func (b *bench) plainCreate(ctx context.Context, hc *http.Client, tok string, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, b.emu.RealtimeURL(), bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header["Content-Type"] = []string{"application/json"}
	req.Header["Auth-Token"] = []string{apiKey}
	req.Header["Entity-Token"] = []string{tok}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	if cerr := resp.Body.Close(); err == nil {
		err = cerr
	}
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("status %d", resp.StatusCode)
	}
	return err
}

// pluginEnv is the plugin's extra environment: the -plugin-env flags, and
// the profiling variables of a `-tags dsyncprofile` build of the plugin
// (see plugins/dsync/profile.go) passed on from this process.
func pluginEnv(extra benchkit.EnvFlag) map[string]string {
	env := map[string]string{}
	for _, k := range []string{"DSYNC_CPUPROFILE", "DSYNC_CPUPROFILE_SECONDS"} {
		if v, ok := os.LookupEnv(k); ok {
			env[k] = v
		}
	}
	for k, v := range extra {
		env[k] = v
	}
	return env
}
