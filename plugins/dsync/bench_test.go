package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"testing"

	"github.com/connector-host/connector-host/host/config"
	dsyncemu "github.com/connector-host/connector-host/testkit/emulators/dsync"
	"github.com/connector-host/connector-host/testkit/harness"
)

// BenchmarkBatchThroughHost sends realtime_batch calls of 10,000 creates
// to a host running in this process (the plugin in its own process, the
// emulator in this one), for profiling the host's share of a batch:
//
//	go test -run XXX -bench BatchThroughHost -benchtime 5x -cpuprofile host.pprof ./plugins/dsync
//
// dsync-hostbench (make bench) measures the same path against
// `connector-host serve` and a plain client.
func BenchmarkBatchThroughHost(b *testing.B) {
	const n, conc = 10000, 32
	emu, err := dsyncemu.Start(dsyncemu.Config{APIKey: platformKey, MaxCalls: 16}, "")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = emu.Close() })
	h := harness.StartHost(b, []harness.Plugin{{Path: binary(b)}}, func(c *config.Config) {
		c.LogLevel = "warn"
		c.Connectors["dsync"] = config.Connector{Settings: map[string]any{"realtime_endpoint": emu.RealtimeURL()}}
	})
	type op struct {
		Op          string          `json:"op"`
		EntityToken string          `json:"entity_token"`
		Data        json.RawMessage `json:"data"`
	}
	round := 0
	for b.Loop() {
		round++
		tok := fmt.Sprintf("bench-%d", round)
		ops := make([]op, n)
		for k := range ops {
			ops[k] = op{Op: "create", EntityToken: tok, Data: fmt.Appendf(nil, `{"id":"%d","name":"product %d","price":%d}`, k, k, k)}
		}
		body, err := json.Marshal(map[string]any{
			"request": map[string]any{"operations": ops, "concurrency": conc},
			"auth":    map[string]any{"token": map[string]any{"token": platformKey}},
		})
		if err != nil {
			b.Fatal(err)
		}
		resp, err := http.Post(h.URL+"/v1/connectors/dsync/realtime_batch", "application/json", bytes.NewReader(body))
		if err != nil {
			b.Fatal(err)
		}
		raw, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		var env struct {
			Response struct {
				Succeeded int `json:"succeeded"`
			} `json:"response"`
		}
		if resp.StatusCode != http.StatusOK || json.Unmarshal(raw, &env) != nil || env.Response.Succeeded != n {
			b.Fatalf("%d %.300s", resp.StatusCode, raw)
		}
	}
	b.ReportMetric(float64(n*round)/b.Elapsed().Seconds(), "ops/s")
}
