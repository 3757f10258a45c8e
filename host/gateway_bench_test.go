package host_test

import (
	"bytes"
	"io"
	"net/http"
	"testing"

	"github.com/connector-host/connector-host/testkit/harness"
)

// BenchmarkGatewayNoop is the events gateway's round trip with the host in
// this process (for a CPU profile of the host's share): POST /events
// reference:noop → the events-protocol plugin → the host callback → the
// reference plugin's noop → back. Compare with BenchmarkNoopHTTP; `make
// bench` (plugins/eventsprotocol/cmd/events-hostbench) measures both
// against a `connector-host serve` process and prints the ratios.
func BenchmarkGatewayNoop(b *testing.B) {
	events := harness.Build(b, "./plugins/eventsprotocol", "connector-events-protocol")
	h := harness.StartHost(b, []harness.Plugin{{Path: events}, {Path: harness.Reference(b)}}, quiet)
	url := h.URL + "/events"
	body := []byte(`{"name":"reference:noop","version":1,"id":"b","flowId":"f","payload":{"request":{}}}`)
	want := []byte(`"name":"reference:noop:response"`)
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
