// Command msghub-hostbench measures the astarte plugin's grpc transport
// through the host, as a user runs it: a `connector-host serve` process
// with the real connector-astarte plugin process, HTTP calls to
// /v1/connectors/astarte/send for a device attached to the local Message
// Hub emulator (testkit/emulators/msghub) in this process:
//
//	msghub-hostbench [-host bin/connector-host] [-plugin bin/plugins/connector-astarte]
//	                 [-protocol 0.7] [-messages 5000] [-workers 16] [-devices 100]
//
// It prints:
//   - sends/s through the host (each answered once the hub's Send returned)
//     one at a time and with -workers HTTP calls in flight, beside a raw Go
//     gRPC client calling the same hub's Send with the same AstarteMessage
//     (node-id metadata, its own attached node) the same way, and the ratio;
//   - the plugin process RSS idle and with -devices nodes attached.
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
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/google/uuid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/emptypb"
	"gopkg.in/yaml.v3"

	"github.com/connector-host/connector-host/plugins/astarte/internal/device"
	"github.com/connector-host/connector-host/plugins/astarte/internal/interfaces"
	"github.com/connector-host/connector-host/plugins/astarte/internal/msghub"
	"github.com/connector-host/connector-host/plugins/astarte/internal/pairing"
	"github.com/connector-host/connector-host/plugins/astarte/internal/store"
	msghubemu "github.com/connector-host/connector-host/testkit/emulators/msghub"
)

const benchIface = `{"interface_name":"com.example.Bench","version_major":1,"version_minor":0,"type":"datastream","ownership":"device",
  "mappings":[{"endpoint":"/v","type":"double","reliability":"guaranteed","retention":"stored"}]}`

type options struct {
	host, plugin, protocol string
	messages, workers      int
	devices                int
}

func main() {
	var o options
	flag.StringVar(&o.host, "host", "bin/connector-host", "connector-host binary")
	flag.StringVar(&o.plugin, "plugin", "bin/plugins/connector-astarte", "connector-astarte plugin binary")
	flag.StringVar(&o.protocol, "protocol", "0.7", "Message Hub protocol (0.7 or 0.8)")
	flag.IntVar(&o.messages, "messages", 5000, "messages per rate measurement")
	flag.IntVar(&o.workers, "workers", 16, "calls in flight for the concurrent rates")
	flag.IntVar(&o.devices, "devices", 100, "attached devices for the RSS figure")
	flag.Parse()
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "msghub-hostbench:", err)
		os.Exit(1)
	}
}

type bench struct {
	o    options
	hub  *msghubemu.Hub
	dir  string
	url  string
	proc *exec.Cmd
	http *http.Client
}

func run(o options) error {
	for _, p := range []string{o.host, o.plugin} {
		if _, err := os.Stat(p); err != nil {
			return fmt.Errorf("%s: %w (run `make build` first)", p, err)
		}
	}
	b := &bench{o: o, http: &http.Client{Timeout: 2 * time.Minute,
		Transport: &http.Transport{MaxIdleConns: 4 * o.workers, MaxIdleConnsPerHost: 4 * o.workers}}}
	var err error
	if b.hub, err = msghubemu.Start(msghubemu.Options{Protocol: msghubemu.Protocol(o.protocol)}); err != nil {
		return err
	}
	defer func() { _ = b.hub.Close() }()
	if b.dir, err = os.MkdirTemp("", "msghub-hostbench-"); err != nil {
		return err
	}
	defer func() { _ = os.RemoveAll(b.dir) }()
	if err := b.startHost(); err != nil {
		return err
	}
	defer b.stopHost()
	ctx := context.Background()

	pid, err := b.pluginPID()
	if err != nil {
		return err
	}
	idle := rss(pid)
	ids := make([]string, o.devices)
	for k := range ids {
		if ids[k], err = b.newDevice(ctx); err != nil {
			return err
		}
	}
	loaded := rss(pid)
	if n := len(b.hub.Nodes()); n != o.devices {
		return fmt.Errorf("%d nodes attached, want %d", n, o.devices)
	}
	for _, id := range ids {
		if _, err := b.call(ctx, "disconnect", map[string]any{"device_id": id}); err != nil {
			return err
		}
	}

	id, err := b.newDevice(ctx)
	if err != nil {
		return err
	}
	raw, err := newRawClient(b.hub)
	if err != nil {
		return err
	}
	defer raw.close()
	if err := b.sameMessage(ctx, id, raw); err != nil {
		return err
	}
	fmt.Printf("astarte over grpc through the host (connector-host serve + connector-astarte) vs a raw gRPC client,\n")
	fmt.Printf("same Message Hub emulator (protocol %s), same AstarteMessage (%d messages per row; %d CPUs)\n\n", o.protocol, o.messages, runtime.NumCPU())
	lib, err := newLibDevice(ctx, b.hub, b.dir)
	if err != nil {
		return err
	}
	defer lib.close()
	fmt.Printf("%-52s %10s %10s %7s\n", "measure", "plugin", "raw gRPC", "ratio")
	for _, w := range []int{1, o.workers} {
		b.hub.ResetRecords()
		host, err := parallel(o.messages, w, b.sender(ctx, id))
		if err != nil {
			return err
		}
		b.hub.ResetRecords()
		rr, err := parallel(o.messages, w, raw.send)
		if err != nil {
			return err
		}
		b.hub.ResetRecords()
		libRate, err := parallel(o.messages, w, lib.send)
		if err != nil {
			return err
		}
		floor, err := parallel(o.messages, w, b.floor(ctx, id))
		if err != nil {
			return err
		}
		fmt.Printf("%-52s %10.0f %10.0f %7.2f\n", fmt.Sprintf("sends/s through the host, %d in flight", w), host, rr, host/rr)
		fmt.Printf("%-52s %10.0f %10.0f %7.2f\n", fmt.Sprintf("sends/s of the device library (no host), %d in flight", w), libRate, rr, libRate/rr)
		fmt.Printf("%-52s %10.0f\n", fmt.Sprintf("host floor: list_interfaces calls/s, %d in flight", w), floor)
	}
	fmt.Printf("%-52s %6d KiB\n", "plugin RSS idle", idle)
	fmt.Printf("%-52s %6d KiB\n", fmt.Sprintf("plugin RSS with %d attached nodes", o.devices), loaded)
	fmt.Printf("%-52s %6d KiB\n", "plugin RSS per attached node", (loaded-idle)/int64(max(o.devices, 1)))
	return nil
}

// startHost runs `connector-host serve` with the plugin; the astarte
// connector's settings name the realm and the hub protocol only.
func (b *bench) startHost() error {
	plugins := filepath.Join(b.dir, "plugins")
	if err := os.MkdirAll(plugins, 0o700); err != nil {
		return err
	}
	abs, err := filepath.Abs(b.o.plugin)
	if err != nil {
		return err
	}
	if err := os.Symlink(abs, filepath.Join(plugins, "connector-astarte")); err != nil {
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
		"connectors": map[string]any{"astarte": map[string]any{"max_concurrency": 1024,
			"settings": map[string]any{"realm": "bench", "msghub_protocol": b.o.protocol}}},
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

func (b *bench) post(ctx context.Context, capability string, body []byte) ([]byte, int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, b.url+"/v1/connectors/astarte/"+capability, bytes.NewReader(body))
	if err != nil {
		return nil, 0, err
	}
	resp, err := b.http.Do(req)
	if err != nil {
		return nil, 0, err
	}
	defer func() { _ = resp.Body.Close() }()
	out, err := io.ReadAll(resp.Body)
	return out, resp.StatusCode, err
}

// call invokes a capability and returns the response object.
func (b *bench) call(ctx context.Context, capability string, request map[string]any) (map[string]any, error) {
	body, err := json.Marshal(map[string]any{"request": request})
	if err != nil {
		return nil, err
	}
	out, status, err := b.post(ctx, capability, body)
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

// newDevice creates a device with the bench interface and attaches it to
// the hub (waiting until connected).
func (b *bench) newDevice(ctx context.Context) (string, error) {
	res, err := b.call(ctx, "generate_device_id", map[string]any{})
	if err != nil {
		return "", err
	}
	id, _ := res["device_id"].(string)
	var iface map[string]any
	if err := json.Unmarshal([]byte(benchIface), &iface); err != nil {
		return "", err
	}
	if _, err := b.call(ctx, "add_interface", map[string]any{"device_id": id, "interface": iface}); err != nil {
		return "", err
	}
	st, err := b.call(ctx, "connect", map[string]any{"device_id": id, "transport": "grpc", "msghub_address": b.hub.Addr(),
		"wait": true, "timeout_ms": 60000})
	if err != nil {
		return "", err
	}
	if st["state"] != "connected" {
		return "", fmt.Errorf("device %s: %v", id, st)
	}
	return id, nil
}

// sender sends value v+0.5 through the host; each send must be answered
// "delivered".
func (b *bench) sender(ctx context.Context, id string) func(int) error {
	return func(v int) error {
		body := fmt.Appendf(nil, `{"request":{"device_id":%q,"interface":"com.example.Bench","path":"/v","value":%d.5}}`, id, v)
		out, status, err := b.post(ctx, "send", body)
		if err != nil {
			return err
		}
		if status != http.StatusOK || !bytes.Contains(out, []byte(`"delivery":"delivered"`)) {
			return fmt.Errorf("send: status %d: %s", status, out)
		}
		return nil
	}
}

// floor calls list_interfaces (HTTP, host, plugin, validation, no upstream
// call): the host's own cost per call, an upper bound for any capability.
func (b *bench) floor(ctx context.Context, id string) func(int) error {
	body := fmt.Appendf(nil, `{"request":{"device_id":%q}}`, id)
	return func(int) error {
		out, status, err := b.post(ctx, "list_interfaces", body)
		if err == nil && status != http.StatusOK {
			err = fmt.Errorf("list_interfaces: status %d: %s", status, out)
		}
		return err
	}
}

// libDevice is the plugin's device library in this process over the
// grpc transport: the transport's cost without the host's.
type libDevice struct {
	d  *device.Device
	st *store.Store
}

func newLibDevice(ctx context.Context, hub *msghubemu.Hub, dir string) (*libDevice, error) {
	st, err := store.Open(filepath.Join(dir, "lib.db"))
	if err != nil {
		return nil, err
	}
	id, err := pairing.NewDeviceID()
	if err != nil {
		return nil, err
	}
	d, err := device.New(ctx, device.Config{DeviceID: id, Realm: "bench", Store: st})
	if err != nil {
		_ = st.Close()
		return nil, err
	}
	l := &libDevice{d: d, st: st}
	iface, err := interfaces.Parse([]byte(benchIface))
	if err == nil {
		err = d.AddInterface(ctx, iface)
	}
	var tr *msghub.Transport
	if err == nil {
		tr, err = msghub.New(msghub.Config{Address: hub.Addr(), NodeID: uuid.New(), Protocol: msghub.Protocol(hub.Protocol())})
	}
	if err == nil {
		err = d.Connect(tr)
	}
	if err == nil {
		wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err = d.WaitDrained(wctx)
		cancel()
	}
	if err != nil {
		l.close()
		return nil, err
	}
	return l, nil
}

func (l *libDevice) send(v int) error {
	got, err := l.d.Send(context.Background(), "com.example.Bench", "/v", float64(v)+0.5, nil)
	if err == nil && got != device.Delivered {
		err = fmt.Errorf("library send: %s", got)
	}
	return err
}

func (l *libDevice) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = l.d.Close(ctx)
	_ = l.st.Close()
}

// rawClient is a plain Go gRPC client: one channel, a node of its own
// attached with the bench interface, Send with node-id metadata.
type rawClient struct {
	hub    *msghubemu.Hub
	cc     *grpc.ClientConn
	ctx    context.Context
	cancel context.CancelFunc
}

const service = "/astarteplatform.msghub.MessageHub/"

func newRawClient(hub *msghubemu.Hub) (*rawClient, error) {
	cc, err := grpc.NewClient(hub.Addr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(metadata.AppendToOutgoingContext(context.Background(), "node-id", uuid.NewString()))
	r := &rawClient{hub: hub, cc: cc, ctx: ctx, cancel: cancel}
	node := hub.NewMessage("Node").ProtoReflect()
	node.Mutable(node.Descriptor().Fields().ByName("interfaces_json")).List().Append(protoreflect.ValueOfString(benchIface))
	st, err := cc.NewStream(ctx, &grpc.StreamDesc{ServerStreams: true}, service+"Attach")
	if err == nil {
		err = st.SendMsg(node.Interface())
	}
	if err == nil {
		err = st.CloseSend()
	}
	if err == nil {
		var md metadata.MD
		if md, err = st.Header(); err == nil && md == nil {
			err = errors.New("attach refused")
		}
	}
	if err != nil {
		r.close()
		return nil, fmt.Errorf("raw client attach: %w", err)
	}
	return r, nil
}

func (r *rawClient) message(v int) proto.Message {
	m, err := r.hub.Encode(msghubemu.Data{Interface: "com.example.Bench", Path: "/v", Kind: msghubemu.KindIndividual, Value: float64(v) + 0.5})
	if err != nil {
		panic(err) // a fixed, valid message
	}
	return m
}

func (r *rawClient) send(v int) error {
	return r.cc.Invoke(r.ctx, service+"Send", r.message(v), &emptypb.Empty{})
}

func (r *rawClient) close() {
	_ = r.cc.Invoke(r.ctx, service+"Detach", &emptypb.Empty{}, &emptypb.Empty{})
	r.cancel()
	_ = r.cc.Close()
}

// sameMessage checks that the host and the raw client put the same bytes
// on the wire.
func (b *bench) sameMessage(ctx context.Context, id string, raw *rawClient) error {
	b.hub.ResetRecords()
	if err := b.sender(ctx, id)(7); err != nil {
		return err
	}
	if err := raw.send(7); err != nil {
		return err
	}
	sends := b.hub.Sends()
	if len(sends) != 2 {
		return fmt.Errorf("the hub recorded %d sends, want 2", len(sends))
	}
	h, _ := proto.MarshalOptions{Deterministic: true}.Marshal(sends[0].Message)
	r, _ := proto.MarshalOptions{Deterministic: true}.Marshal(sends[1].Message)
	if !bytes.Equal(h, r) {
		return fmt.Errorf("host and raw messages differ: %x vs %x", h, r)
	}
	return nil
}

// parallel runs f for 0..n-1 with workers goroutines and returns calls/s.
func parallel(n, workers int, f func(int) error) (float64, error) {
	var next atomic.Int64
	var firstErr error
	var once sync.Once
	var wg sync.WaitGroup
	start := time.Now()
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				v := int(next.Add(1)) - 1
				if v >= n {
					return
				}
				if err := f(v); err != nil {
					once.Do(func() { firstErr = err })
					return
				}
			}
		}()
	}
	wg.Wait()
	return float64(n) / time.Since(start).Seconds(), firstErr
}

// pluginPID finds the plugin process: a child of the host running the
// plugin binary.
func (b *bench) pluginPID() (int, error) {
	want, err := filepath.EvalSymlinks(b.o.plugin)
	if err != nil {
		return 0, err
	}
	if want, err = filepath.Abs(want); err != nil {
		return 0, err
	}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return 0, err
	}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		f := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
		if len(f) < 2 || f[1] != strconv.Itoa(b.proc.Process.Pid) {
			continue
		}
		if exe, err := os.Readlink(filepath.Join("/proc", e.Name(), "exe")); err == nil && strings.TrimSuffix(exe, " (deleted)") == want {
			return pid, nil
		}
	}
	return 0, fmt.Errorf("no child of connector-host (pid %d) runs %s", b.proc.Process.Pid, want)
}

// rss is a process's resident set in KiB (0 when unknown).
func rss(pid int) int64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			if f := strings.Fields(v); len(f) >= 1 {
				n, _ := strconv.ParseInt(f[0], 10, 64)
				return n
			}
		}
	}
	return 0
}
