package host_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"testing"

	"github.com/connector-host/connector-host/host/config"
	"github.com/connector-host/connector-host/host/router"
	"github.com/connector-host/connector-host/internal/envelope"
	pb "github.com/connector-host/connector-host/proto/gen/connector/v1"
	"github.com/connector-host/connector-host/testkit/harness"
)

// The three benchmarks call the reference plugin's noop: straight over the
// plugin's gRPC connection (the floor), through the router in-process, and
// through the HTTP API. `make bench` (testkit/cmd/hostbench) runs the same
// comparison across processes and prints the ratios.

func BenchmarkNoopRawGRPC(b *testing.B) {
	h := harness.StartHost(b, []harness.Plugin{{Path: harness.Reference(b)}})
	sup, _ := h.Router().Supervisor("reference")
	inst, err := sup.Acquire(context.Background())
	if err != nil {
		b.Fatal(err)
	}
	c := pb.NewConnectorClient(inst.Conn.Conn())
	req := &pb.InvokeRequest{Capability: "noop", Request: []byte("{}")}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := c.Invoke(context.Background(), req); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

func BenchmarkNoopRouter(b *testing.B) {
	h := harness.StartHost(b, []harness.Plugin{{Path: harness.Reference(b)}})
	r := h.Router()
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			env, _ := envelope.Parse([]byte(`{"request":{}}`))
			if _, f := r.Invoke(context.Background(), &router.Request{AppID: "reference", Capability: "noop", Envelope: env}); f != nil {
				b.Error(f)
				return
			}
		}
	})
}

func BenchmarkNoopHTTP(b *testing.B) {
	h := harness.StartHost(b, []harness.Plugin{{Path: harness.Reference(b)}}, quiet)
	benchPost(b, h.URL+"/v1/connectors/reference/noop", []byte(`{"request":{}}`), []byte(`{"response":{}`))
}

// benchPost POSTs body to url from parallel callers, each answer checked to
// contain want (a benchmark of failures would measure nothing).
func benchPost(b *testing.B, url string, body, want []byte) {
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 256}}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			resp, err := client.Post(url, "application/json", bytes.NewReader(body))
			if err != nil {
				b.Error(err)
				return
			}
			got, err := io.ReadAll(resp.Body)
			_ = resp.Body.Close()
			if err != nil || !bytes.Contains(got, want) {
				b.Errorf("answer %s (%v)", got, err)
				return
			}
		}
	})
}

func quiet(c *config.Config) { c.LogLevel = "warn" }
