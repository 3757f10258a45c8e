package host_test

import (
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
	benchPost(b, url, body, want)
}
