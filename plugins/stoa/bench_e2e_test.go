package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"strconv"
	"testing"

	"github.com/connector-host/connector-host/host/config"
	stoaemu "github.com/connector-host/connector-host/testkit/emulators/stoa"
	"github.com/connector-host/connector-host/testkit/harness"
)

// BenchmarkHostFetch fetches every row of STOA_BENCH_OBJECTS objects
// (default 20) of STOA_BENCH_ROWS_PER_OBJECT rows (default 10000) through a
// host running in this process (the plugin in its own), reading the NDJSON
// answer over HTTP. With -cpuprofile it shows where the host's share of a
// fetch goes (`make bench` measures a `connector-host serve` process).
func BenchmarkHostFetch(b *testing.B) {
	objects, perObject := 20, 10_000
	for env, v := range map[string]*int{"STOA_BENCH_OBJECTS": &objects, "STOA_BENCH_ROWS_PER_OBJECT": &perObject} {
		if s := os.Getenv(env); s != "" {
			n, err := strconv.Atoi(s)
			if err != nil || n < 1 {
				b.Fatalf("%s=%q: want a positive integer", env, s)
			}
			*v = n
		}
	}
	srv := stoaemu.New(stoaemu.Options{Email: email, Password: password, Products: []stoaemu.Product{{
		GroupName: "bench", Name: "rows", Workspace: "apps", OwnerID: "o", Objects: objects,
		RowsPerObject: perObject, RowGroupRows: 8192,
	}}})
	if err := srv.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(srv.Close)
	ids := srv.Keys(0)
	for _, id := range ids {
		if _, err := srv.Object(id); err != nil {
			b.Fatal(err)
		}
	}
	bin := harness.Build(b, "./plugins/stoa", "connector-stoa")
	h := harness.StartHost(b, []harness.Plugin{{Path: bin}}, func(c *config.Config) {
		c.LogLevel = "warn"
		c.Connectors["stoa"] = config.Connector{Settings: map[string]any{"auth_base_url": srv.AuthURL(), "api_base_url": srv.APIURL()}}
	})
	body, err := json.Marshal(map[string]any{"request": map[string]any{"order_ids": ids}, "auth": restAuth})
	if err != nil {
		b.Fatal(err)
	}
	var rows, size int64
	b.ResetTimer()
	for b.Loop() {
		resp, err := harness.Client.Post(h.URL+"/v1/connectors/stoa/fetch", "application/json", bytes.NewReader(body))
		if err != nil {
			b.Fatal(err)
		}
		br := bufio.NewReaderSize(resp.Body, 1<<20)
		var last []byte
		for {
			line, err := br.ReadSlice('\n')
			size += int64(len(line))
			if err == nil {
				rows++
				if line[1] != '"' || line[2] != 'i' { // not a row (rows start with {"id":)
					last = bytes.Clone(line)
				}
				continue
			}
			if err != io.EOF || len(line) > 0 {
				b.Fatalf("reading the stream: %v", err)
			}
			break
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !bytes.HasPrefix(last, []byte(`{"page"`)) {
			b.Fatalf("status %d, last line %.200q", resp.StatusCode, last)
		}
		rows-- // the final line
	}
	b.ReportMetric(float64(rows)/b.Elapsed().Seconds(), "rows/s")
	b.SetBytes(size / int64(b.N))
}
