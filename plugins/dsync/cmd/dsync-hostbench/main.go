// Command dsync-hostbench measures realtime_batch through the host, as a
// user runs it: a `connector-host serve` process with the real
// connector-dsync plugin process, one HTTP call to
// /v1/connectors/dsync/realtime_batch with -ops creates, sent by the plugin
// to the local DSYNC emulator (testkit/emulators/dsync) in this process
// with -concurrency requests in flight:
//
//	dsync-hostbench [-host bin/connector-host] [-plugin bin/plugins/connector-dsync]
//	                [-ops 10000] [-concurrency 32] [-rounds 3]
//
// Beside it, a plain Go net/http client sends the same POST requests
// (same headers and bodies) to the same emulator with the same
// concurrency. It prints both rates per round and the ratio of the totals
// (issue target: at least 0.8).
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"gopkg.in/yaml.v3"

	dsyncemu "github.com/connector-host/connector-host/testkit/emulators/dsync"
)

// apiKey is the emulator's DSYNC API key (a local test value).
const apiKey = "dsync-hostbench-key" //nolint:gosec // the key of the in-process emulator, not a credential

type options struct {
	host, plugin     string
	ops, concurrency int
	rounds           int
}

func main() {
	var o options
	flag.StringVar(&o.host, "host", "bin/connector-host", "connector-host binary")
	flag.StringVar(&o.plugin, "plugin", "bin/plugins/connector-dsync", "connector-dsync plugin binary")
	flag.IntVar(&o.ops, "ops", 10000, "creates per batch")
	flag.IntVar(&o.concurrency, "concurrency", 32, "requests in flight (realtime_batch concurrency and plain client workers)")
	flag.IntVar(&o.rounds, "rounds", 3, "measurement rounds")
	flag.Parse()
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "dsync-hostbench:", err)
		os.Exit(1)
	}
}

type bench struct {
	o    options
	emu  *dsyncemu.Emulator
	dir  string
	url  string
	proc *exec.Cmd
	http *http.Client
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
	// Every create is recorded; keep room for all rounds of both clients.
	if b.emu, err = dsyncemu.Start(dsyncemu.Config{APIKey: apiKey, MaxCalls: 2*o.ops*o.rounds + 16}, ""); err != nil {
		return err
	}
	defer func() { _ = b.emu.Close() }()
	if b.dir, err = os.MkdirTemp("", "dsync-hostbench-"); err != nil {
		return err
	}
	defer func() { _ = os.RemoveAll(b.dir) }()
	if err := b.startHost(); err != nil {
		return err
	}
	defer b.stopHost()
	ctx := context.Background()

	// Warm up both paths (connections, plugin caches).
	if _, err := b.hostBatch(ctx, "warm-host", min(o.ops, 200)); err != nil {
		return err
	}
	plain := newPlainClient(o.concurrency)
	if _, err := b.plainBatch(ctx, plain, "warm-plain", min(o.ops, 200)); err != nil {
		return err
	}

	fmt.Printf("realtime_batch of %d creates, %d in flight, %d CPUs\n", o.ops, o.concurrency, runtime.NumCPU())
	fmt.Printf("%-8s %16s %16s %8s\n", "round", "host ops/s", "plain ops/s", "ratio")
	var hostTotal, plainTotal time.Duration
	for r := 1; r <= o.rounds; r++ {
		hd, err := b.hostBatch(ctx, fmt.Sprintf("host-%d", r), o.ops)
		if err != nil {
			return err
		}
		pd, err := b.plainBatch(ctx, plain, fmt.Sprintf("plain-%d", r), o.ops)
		if err != nil {
			return err
		}
		hostTotal += hd
		plainTotal += pd
		fmt.Printf("%-8d %16.0f %16.0f %8.2f\n", r, rate(o.ops, hd), rate(o.ops, pd), pd.Seconds()/hd.Seconds())
	}
	n := o.ops * o.rounds
	fmt.Printf("%-8s %16.0f %16.0f %8.2f  (target >= 0.80)\n", "total", rate(n, hostTotal), rate(n, plainTotal), plainTotal.Seconds()/hostTotal.Seconds())
	return nil
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
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, b.url+"/v1/connectors/dsync/realtime_batch", bytes.NewReader(body))
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

func (b *bench) startHost() error {
	plugins := filepath.Join(b.dir, "plugins")
	if err := os.MkdirAll(plugins, 0o700); err != nil {
		return err
	}
	abs, err := filepath.Abs(b.o.plugin)
	if err != nil {
		return err
	}
	if err := os.Symlink(abs, filepath.Join(plugins, "connector-dsync")); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	cfg := map[string]any{
		"listen": addr, "plugins_dir": plugins, "data_dir": filepath.Join(b.dir, "data"), "log_level": "warn",
		"connectors": map[string]any{"dsync": map[string]any{
			"settings": map[string]any{"realtime_endpoint": b.emu.RealtimeURL()}}},
	}
	raw, err := yaml.Marshal(cfg)
	if err != nil {
		return err
	}
	cfgPath := filepath.Join(b.dir, "connector-host.yaml")
	if err := os.WriteFile(cfgPath, raw, 0o600); err != nil {
		return err
	}
	b.proc = exec.Command(b.o.host, "serve", "--config", cfgPath)
	b.proc.Stderr = os.Stderr
	if err := b.proc.Start(); err != nil {
		return err
	}
	b.url = "http://" + addr
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if resp, err := b.http.Get(b.url + "/readyz"); err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
	}
	b.stopHost()
	return errors.New("connector-host serve not ready within 60 s")
}

func (b *bench) stopHost() {
	if b.proc == nil || b.proc.Process == nil {
		return
	}
	_ = b.proc.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = b.proc.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		_ = b.proc.Process.Kill()
		<-done
	}
	b.proc = nil
}
