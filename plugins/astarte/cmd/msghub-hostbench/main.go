// Command msghub-hostbench measures the astarte plugin's grpc transport
// through the host, as a user runs it: a `connector-host serve` process
// with the real connector-astarte plugin process, HTTP calls to
// /v1/connectors/astarte/send and send_batch for a device attached to the
// local Message Hub emulator (testkit/emulators/msghub) in this process:
//
//	msghub-hostbench [-host bin/connector-host] [-plugin bin/plugins/connector-astarte]
//	                 [-protocol 0.7] [-messages 5000] [-workers 16] [-batches 500,1000]
//	                 [-batch-workers 1,4] [-batch-messages 20000] [-paths 16] [-devices 100]
//
// It prints:
//   - sends/s through the host (each answered once the hub's Send returned)
//     one at a time and with -workers HTTP calls in flight, beside a raw Go
//     gRPC client calling the same hub's Send with the same AstarteMessage
//     (node-id metadata, its own attached node) the same way, and the ratio;
//   - messages/s with send_batch (each batch answered once the hub returned
//     every Send), for each batch size and number of batches in flight,
//     with the messages spread over -paths paths (a path's messages are
//     sent one after another to keep their order; paths go in parallel) and
//     all on one path, against the raw client with -workers in flight
//     measured on as many messages just before the row, and under each row
//     the CPU time per message of the plugin, the host and this process;
//   - the same for the device library's SendBatch in process (no host);
//   - the plugin process RSS idle and with -devices nodes attached.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/google/uuid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/connector-host/connector-host/plugins/astarte/internal/benchutil"
	"github.com/connector-host/connector-host/plugins/astarte/internal/device"
	"github.com/connector-host/connector-host/plugins/astarte/internal/interfaces"
	"github.com/connector-host/connector-host/plugins/astarte/internal/msghub"
	"github.com/connector-host/connector-host/plugins/astarte/internal/pairing"
	"github.com/connector-host/connector-host/plugins/astarte/internal/store"
	"github.com/connector-host/connector-host/testkit/benchkit"
	msghubemu "github.com/connector-host/connector-host/testkit/emulators/msghub"
)

const benchIface = `{"interface_name":"com.example.Bench","version_major":1,"version_minor":0,"type":"datastream","ownership":"device",
  "mappings":[{"endpoint":"/v","type":"double","reliability":"guaranteed","retention":"stored"},
              {"endpoint":"/%{sensor}/v","type":"double","reliability":"guaranteed","retention":"stored"}]}`

const benchInterface = "com.example.Bench"

type options struct {
	host, plugin, protocol string
	messages, workers      int
	batches, batchWorkers  string
	batchMessages, paths   int
	devices                int
}

func main() {
	var o options
	flag.StringVar(&o.host, "host", "bin/connector-host", "connector-host binary")
	flag.StringVar(&o.plugin, "plugin", "bin/plugins/connector-astarte", "connector-astarte plugin binary")
	flag.StringVar(&o.protocol, "protocol", "0.7", "Message Hub protocol (0.7 or 0.8)")
	flag.IntVar(&o.messages, "messages", 5000, "messages per rate measurement")
	flag.IntVar(&o.workers, "workers", 16, "calls in flight for the concurrent rates")
	flag.StringVar(&o.batches, "batches", "500,1000", "send_batch sizes (comma-separated; empty: skip the batch rows)")
	flag.StringVar(&o.batchWorkers, "batch-workers", "1,4", "send_batch calls in flight (comma-separated)")
	flag.IntVar(&o.batchMessages, "batch-messages", 20000, "messages per send_batch measurement")
	flag.IntVar(&o.paths, "paths", 16, "paths the messages of a batch are spread over")
	flag.IntVar(&o.devices, "devices", 100, "attached devices for the RSS figure")
	flag.Parse()
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "msghub-hostbench:", err)
		os.Exit(1)
	}
}

type bench struct {
	o     options
	hub   *msghubemu.Hub
	dir   string
	serve *benchkit.Serve
	c     *benchutil.Client
}

func run(o options) error {
	sizes, err := benchutil.Ints(o.batches)
	if err != nil {
		return fmt.Errorf("-batches: %w", err)
	}
	batchWorkers, err := benchutil.Ints(o.batchWorkers)
	if err != nil {
		return fmt.Errorf("-batch-workers: %w", err)
	}
	b := &bench{o: o}
	if b.hub, err = msghubemu.Start(msghubemu.Options{Protocol: msghubemu.Protocol(o.protocol)}); err != nil {
		return err
	}
	defer func() { _ = b.hub.Close() }()
	if b.dir, err = os.MkdirTemp("", "msghub-hostbench-"); err != nil {
		return err
	}
	defer func() { _ = os.RemoveAll(b.dir) }()
	if b.serve, err = benchutil.Serve(o.host, o.plugin, map[string]any{"realm": "bench", "msghub_protocol": o.protocol}); err != nil {
		return err
	}
	defer b.serve.Stop()
	b.c = benchutil.NewClient(b.serve.URL, 4*max(o.workers, 16))
	ctx := context.Background()

	pid, err := b.serve.PluginPID("astarte")
	if err != nil {
		return err
	}
	idle := benchkit.RSS(pid)
	ids := make([]string, o.devices)
	for k := range ids {
		if ids[k], err = b.newDevice(ctx); err != nil {
			return err
		}
	}
	loaded := benchkit.RSS(pid)
	if n := len(b.hub.Nodes()); n != o.devices {
		return fmt.Errorf("%d nodes attached, want %d", n, o.devices)
	}
	for _, id := range ids {
		if _, err := b.c.Call(ctx, "disconnect", map[string]any{"device_id": id}, nil); err != nil {
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
	fmt.Printf("same Message Hub emulator (protocol %s), same AstarteMessage\n%s\n(%d messages per per-call row, %d per batch row)\n\n",
		o.protocol, benchkit.Machine(), o.messages, o.batchMessages)
	lib, err := newLibDevice(ctx, b.hub, b.dir)
	if err != nil {
		return err
	}
	defer lib.close()
	t := benchutil.Table{Width: 64}
	t.Header("measure", "plugin", "raw gRPC")
	for _, w := range []int{1, o.workers} {
		b.hub.ResetRecords()
		host, err := benchutil.Parallel(o.messages, 0, w, b.c.Sender(ctx, id, benchInterface, "/v", nil))
		if err != nil {
			return err
		}
		b.hub.ResetRecords()
		rr, err := benchutil.Parallel(o.messages, 0, w, raw.send)
		if err != nil {
			return err
		}
		b.hub.ResetRecords()
		libRate, err := benchutil.Parallel(o.messages, 0, w, lib.send)
		if err != nil {
			return err
		}
		floor, err := benchutil.Parallel(o.messages, 0, w, b.floor(ctx, id))
		if err != nil {
			return err
		}
		t.Row(fmt.Sprintf("sends/s through the host, %d in flight", w), host, rr)
		t.Row(fmt.Sprintf("sends/s of the device library (no host), %d in flight", w), libRate, rr)
		t.Value(fmt.Sprintf("host floor: list_interfaces calls/s, %d in flight", w), floor)
	}
	spread := func(k int) string { return fmt.Sprintf("/s%d/v", k%o.paths) }
	one := func(int) string { return "/v" }
	hostPID := b.serve.PID()
	// batchRow measures the raw client with -workers in flight on the same
	// number of messages just before a batch row (the machine's load
	// changes between rows), then the row, and prints both with the CPU
	// per message of each process.
	batchRow := func(name string, calls, size, workers int, send func(int) error) error {
		b.hub.ResetRecords()
		rawRate, err := benchutil.Parallel(calls*size, 0, o.workers, raw.send)
		if err != nil {
			return err
		}
		b.hub.ResetRecords()
		before := [3]time.Duration{benchkit.CPU(pid), benchkit.CPU(hostPID), benchkit.SelfCPU()}
		rate, err := benchutil.Parallel(calls, 0, workers, send)
		if err != nil {
			return err
		}
		msgs := float64(calls * size)
		us := func(k int, now time.Duration) float64 { return float64((now - before[k]).Microseconds()) / msgs }
		t.Row(name, rate*float64(size), rawRate)
		t.Detail(fmt.Sprintf("CPU µs per message: plugin %.1f, host %.1f, this process (hub, client) %.1f",
			us(0, benchkit.CPU(pid)), us(1, benchkit.CPU(hostPID)), us(2, benchkit.SelfCPU())))
		return nil
	}
	for _, size := range sizes {
		n := max(o.batchMessages/size, 1)
		for _, w := range batchWorkers {
			send := benchutil.Warm(b.c.BatchSender(ctx, id, benchInterface, size, spread, nil), 2)
			if err := batchRow(fmt.Sprintf("msgs/s send_batch of %d over %d paths, %d in flight", size, o.paths, w), n, size, w, send); err != nil {
				return err
			}
		}
		send := benchutil.Warm(b.c.BatchSender(ctx, id, benchInterface, size, one, nil), 1)
		if err := batchRow(fmt.Sprintf("msgs/s send_batch of %d on one path, 1 in flight", size), max(n/4, 1), size, 1, send); err != nil {
			return err
		}
		if err := batchRow(fmt.Sprintf("msgs/s library SendBatch of %d over %d paths (no host)", size, o.paths), n, size, 1, lib.batch(size, spread)); err != nil {
			return err
		}
	}
	t.RSS("plugin RSS idle", idle)
	t.RSS(fmt.Sprintf("plugin RSS with %d attached nodes", o.devices), loaded)
	t.RSS("plugin RSS per attached node", (loaded-idle)/int64(max(o.devices, 1)))
	return nil
}

// newDevice creates a device with the bench interface and attaches it to
// the hub (waiting until connected).
func (b *bench) newDevice(ctx context.Context) (string, error) {
	res, err := b.c.Call(ctx, "generate_device_id", map[string]any{}, nil)
	if err != nil {
		return "", err
	}
	id, _ := res["device_id"].(string)
	var iface map[string]any
	if err := json.Unmarshal([]byte(benchIface), &iface); err != nil {
		return "", err
	}
	if _, err := b.c.Call(ctx, "add_interface", map[string]any{"device_id": id, "interface": iface}, nil); err != nil {
		return "", err
	}
	st, err := b.c.Call(ctx, "connect", map[string]any{"device_id": id, "transport": "grpc", "msghub_address": b.hub.Addr(),
		"wait": true, "timeout_ms": 60000}, nil)
	if err != nil {
		return "", err
	}
	if st["state"] != "connected" {
		return "", fmt.Errorf("device %s: %v", id, st)
	}
	return id, nil
}

// floor calls list_interfaces (HTTP, host, plugin, validation, no upstream
// call): the host's own cost per call, an upper bound for any capability.
func (b *bench) floor(ctx context.Context, id string) func(int) error {
	body := fmt.Appendf(nil, `{"request":{"device_id":%q}}`, id)
	return func(int) error {
		out, status, err := b.c.Post(ctx, "list_interfaces", body)
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

// batch returns a func sending batch v of size messages with SendBatch.
func (l *libDevice) batch(size int, path func(int) string) func(int) error {
	return func(v int) error {
		items := make([]device.BatchItem, size)
		for k := range items {
			items[k] = device.BatchItem{Interface: benchInterface, Path: path(k), Value: float64(v*size+k) + 0.5}
		}
		res, err := l.d.SendBatch(context.Background(), items)
		if err != nil {
			return err
		}
		for k, r := range res {
			if r.Err != nil || r.Delivery != device.Delivered {
				return fmt.Errorf("library batch message %d: %s %w", k, r.Delivery, r.Err)
			}
		}
		return nil
	}
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
	if err := b.c.Sender(ctx, id, benchInterface, "/v", nil)(7); err != nil {
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
