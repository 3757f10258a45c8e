// Command stoa-bench is the stoa part of `make bench`: it fetches every row
// of a generated Stoa product through a `connector-host serve` process (the
// stoa plugin as its child) as NDJSON over HTTP, and compares the rate with
// an in-process arrow-go decode of the same Parquet files. It also reports
// the peak RSS of host + plugin, for the data and for twice the data.
//
//	stoa-bench [--host bin/connector-host] [--plugin bin/plugins/connector-stoa]
//	           [--objects 20] [--rows-per-object 50000] [--row-group-rows 8192] [--runs 3] [--out FILE]
//	           [--plugin-env K=V]...
//
// STOA_BENCH_OBJECTS and STOA_BENCH_ROWS_PER_OBJECT set the shape when the
// flags are not given. Linux only (RSS from /proc).
package main

import (
	"bufio"
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
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet/file"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"

	"github.com/connector-host/connector-host/testkit/benchkit"
	stoaemu "github.com/connector-host/connector-host/testkit/emulators/stoa"
)

type options struct {
	host, plugin                        string
	objects, rowsPerObject, rowGroupRow int
	runs                                int
	out                                 string
	pluginEnv                           benchkit.EnvFlag
}

func main() {
	var o options
	flag.StringVar(&o.host, "host", "bin/connector-host", "connector-host binary")
	flag.StringVar(&o.plugin, "plugin", "bin/plugins/connector-stoa", "stoa plugin binary")
	flag.IntVar(&o.objects, "objects", envInt("STOA_BENCH_OBJECTS", 20), "Parquet objects (env STOA_BENCH_OBJECTS)")
	flag.IntVar(&o.rowsPerObject, "rows-per-object", envInt("STOA_BENCH_ROWS_PER_OBJECT", 50_000), "rows per object (env STOA_BENCH_ROWS_PER_OBJECT)")
	flag.IntVar(&o.rowGroupRow, "row-group-rows", 8192, "rows per Parquet row group")
	flag.IntVar(&o.runs, "runs", 3, "fetches (and baseline decodes) per size; the median is reported")
	flag.StringVar(&o.out, "out", "", "also write the report (markdown) to this file")
	o.pluginEnv = benchkit.EnvFlag{}
	flag.Var(o.pluginEnv, "plugin-env", "K=V added to the plugin's environment (repeatable; e.g. STOA_CPUPROFILE with a -tags stoaprofile build)")
	flag.Parse()
	report, err := run(o)
	benchkit.Finish("stoa-bench", report, o.out, err)
}

func envInt(name string, def int) int {
	if s := os.Getenv(name); s != "" {
		if n, err := strconv.Atoi(s); err == nil && n > 0 {
			return n
		}
		fmt.Fprintf(os.Stderr, "stoa-bench: %s=%q is not a positive integer; using %d\n", name, s, def)
	}
	return def
}

// sizeResult is one data size fetched through a fresh host.
type sizeResult struct {
	objects            int
	rows               int64
	parquetBytes       int64
	ndjsonBytes        int64
	fetch, decode      []float64 // rows/s per run
	hostHWM, pluginHWM int64     // bytes
	peakSum            int64     // sampled peak of host + plugin RSS
	// CPU seconds of all runs: host, plugin, this process (the HTTP
	// client reading the answer and the emulator serving the objects),
	// and the baseline decodes.
	hostCPU, pluginCPU, selfCPU, decodeCPU float64
	wall                                   float64 // seconds of all fetches
}

func run(o options) (string, error) {
	if o.objects < 1 || o.rowsPerObject < 1 || o.rowGroupRow < 1 || o.runs < 1 {
		return "", errors.New("--objects, --rows-per-object, --row-group-rows and --runs must be positive")
	}
	for _, p := range []string{o.host, o.plugin} {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("%w (run `make build` first)", err)
		}
	}
	srv := stoaemu.New(stoaemu.Options{Products: []stoaemu.Product{{
		GroupName: "bench", Name: "rows", Workspace: "apps", OwnerID: "bench",
		Objects: 2 * o.objects, RowsPerObject: o.rowsPerObject, RowGroupRows: o.rowGroupRow,
	}}})
	if err := srv.Start(); err != nil {
		return "", err
	}
	defer srv.Close()
	ids := srv.Keys(0)
	begin := time.Now()
	objs, err := generate(srv, ids)
	if err != nil {
		return "", err
	}
	fmt.Fprintf(os.Stderr, "stoa-bench: generated %d objects of %d rows in %v\n", len(ids), o.rowsPerObject, time.Since(begin).Round(time.Millisecond))

	var results []sizeResult
	for _, n := range []int{o.objects, 2 * o.objects} {
		r, err := measure(o, srv, ids[:n], objs[:n])
		if err != nil {
			return "", fmt.Errorf("%d objects: %w", n, err)
		}
		results = append(results, r)
	}
	return format(o, results), nil
}

// generate makes the emulator build (and cache) every object, two at a time.
func generate(srv *stoaemu.Server, ids []string) ([][]byte, error) {
	objs := make([][]byte, len(ids))
	errs := make([]error, len(ids))
	var wg sync.WaitGroup
	sem := make(chan struct{}, max(1, runtime.NumCPU()))
	for i, id := range ids {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			objs[i], errs[i] = srv.Object(id)
		})
	}
	wg.Wait()
	return objs, errors.Join(errs...)
}

// measure starts a host, fetches ids runs times, and reads the peak RSS.
func measure(o options, srv *stoaemu.Server, ids []string, objs [][]byte) (sizeResult, error) {
	r := sizeResult{objects: len(ids)}
	for _, b := range objs {
		r.parquetBytes += int64(len(b))
	}
	h, err := benchkit.StartServe(benchkit.ServeOptions{
		Host:    o.host,
		Plugins: map[string]string{"stoa": o.plugin},
		Connectors: map[string]any{"stoa": map[string]any{
			"timeout":  "30m",
			"env":      o.pluginEnv,
			"settings": map[string]any{"auth_base_url": srv.AuthURL(), "api_base_url": srv.APIURL()},
		}},
	})
	if err != nil {
		return r, err
	}
	defer h.Stop()
	body, err := json.Marshal(map[string]any{
		"request": map[string]any{"order_ids": ids},
		"auth":    map[string]any{"basic": map[string]any{"username": stoaemu.DefaultEmail, "password": stoaemu.DefaultPassword}},
	})
	if err != nil {
		return r, err
	}
	plugin, err := h.PluginPID("stoa")
	if err != nil {
		return r, err
	}
	sampler := newSampler(h.PID())
	defer sampler.stop()
	for i := range o.runs {
		// The baseline runs next to each fetch so that the ratio holds on
		// a machine whose load changes.
		self0 := selfCPU()
		begin := time.Now()
		rows, err := decodeAll(objs)
		if err != nil {
			return r, fmt.Errorf("baseline decode: %w", err)
		}
		r.decode = append(r.decode, float64(rows)/time.Since(begin).Seconds())
		r.decodeCPU += selfCPU() - self0
		host0, plugin0, self0 := procCPU(h.PID()), procCPU(plugin), selfCPU()
		begin = time.Now()
		got, n, err := fetch(h.URL, body)
		if err != nil {
			return r, fmt.Errorf("fetch run %d: %w", i+1, err)
		}
		wall := time.Since(begin).Seconds()
		r.wall += wall
		r.fetch = append(r.fetch, float64(got)/wall)
		r.hostCPU += procCPU(h.PID()) - host0
		r.pluginCPU += procCPU(plugin) - plugin0
		r.selfCPU += selfCPU() - self0
		if got != rows {
			return r, fmt.Errorf("fetch run %d: %d rows through the host, the files hold %d", i+1, got, rows)
		}
		r.rows, r.ndjsonBytes = rows, n
	}
	r.peakSum = sampler.stop()
	r.hostHWM, err = benchkit.StatusBytes(h.PID(), "VmHWM")
	if err != nil {
		return r, err
	}
	r.pluginHWM, err = benchkit.StatusBytes(plugin, "VmHWM")
	return r, err
}

// procCPU is the user + system CPU seconds of a process so far.
func procCPU(pid int) float64 { return benchkit.CPU(pid).Seconds() }

// selfCPU is the user + system CPU seconds of this process so far.
func selfCPU() float64 { return benchkit.SelfCPU().Seconds() }

// decodeAll decodes every object with arrow-go alone (no JSON), as an
// application reading the files in-process would.
func decodeAll(objs [][]byte) (int64, error) {
	var rows int64
	for _, data := range objs {
		pf, err := file.NewParquetReader(bytes.NewReader(data))
		if err != nil {
			return 0, err
		}
		fr, err := pqarrow.NewFileReader(pf, pqarrow.ArrowReadProperties{BatchSize: 4096}, memory.DefaultAllocator)
		if err != nil {
			return 0, err
		}
		rr, err := fr.GetRecordReader(context.Background(), nil, nil)
		if err != nil {
			return 0, err
		}
		for rr.Next() {
			rows += rr.RecordBatch().NumRows()
		}
		err = rr.Err()
		rr.Release()
		if err != nil && !errors.Is(err, io.EOF) {
			return 0, err
		}
	}
	return rows, nil
}

// fetch posts the fetch request and reads the NDJSON answer: it returns
// the rows (every line but the last) and the bytes read, and checks that the
// stream ended with a page line, not an error.
func fetch(url string, body []byte) (rows, n int64, err error) {
	resp, err := http.Post(url+"/v1/connectors/stoa/fetch", "application/json", bytes.NewReader(body))
	if err != nil {
		return 0, 0, err
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/x-ndjson") {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return 0, 0, fmt.Errorf("HTTP %d %s: %s", resp.StatusCode, resp.Header.Get("Content-Type"), b)
	}
	// Rows are objects whose first member is the emulator's first column
	// ("id"); the final line starts with "page" or "error".
	br := bufio.NewReaderSize(resp.Body, 1<<20)
	var last []byte
	var lines int64
	for {
		line, err := br.ReadSlice('\n')
		n += int64(len(line))
		switch {
		case err == nil:
			lines++
			if last != nil {
				return 0, n, fmt.Errorf("a line after the final line %.300q", last)
			}
			if bytes.HasPrefix(line, []byte(`{"page"`)) || bytes.HasPrefix(line, []byte(`{"error"`)) {
				last = bytes.Clone(line)
			}
			continue
		case errors.Is(err, bufio.ErrBufferFull):
			return 0, n, errors.New("a line longer than 1 MiB")
		case errors.Is(err, io.EOF):
			if len(line) > 0 {
				return 0, n, fmt.Errorf("the stream ends without a newline: %.200q", line)
			}
		default:
			return 0, n, err
		}
		break
	}
	var final struct {
		Error json.RawMessage `json:"error"`
	}
	if !bytes.HasPrefix(last, []byte(`{"page"`)) || json.Unmarshal(last, &final) != nil || len(final.Error) > 0 {
		return 0, n, fmt.Errorf("the stream did not end with a page line: %.300q", last)
	}
	return lines - 1, n, nil
}

// sampler polls the RSS of a process and its children every 10 ms and
// keeps the largest sum.
type sampler struct {
	quit chan struct{}
	peak chan int64
	once sync.Once
	last int64
}

func newSampler(pid int) *sampler {
	s := &sampler{quit: make(chan struct{}), peak: make(chan int64, 1)}
	go func() {
		var peak int64
		t := time.NewTicker(10 * time.Millisecond)
		defer t.Stop()
		for {
			sum, _ := benchkit.StatusBytes(pid, "VmRSS")
			for _, c := range benchkit.Children(pid) {
				v, _ := benchkit.StatusBytes(c, "VmRSS")
				sum += v
			}
			peak = max(peak, sum)
			select {
			case <-s.quit:
				s.peak <- peak
				return
			case <-t.C:
			}
		}
	}()
	return s
}

func (s *sampler) stop() int64 {
	s.once.Do(func() {
		close(s.quit)
		s.last = <-s.peak
	})
	return s.last
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}

func format(o options, rs []sizeResult) string {
	var b strings.Builder
	fmt.Fprintf(&b, "\n## Stoa fetch through connector-host serve (NDJSON)\n\nMachine: %s.\n\n", benchkit.Machine())
	fmt.Fprintf(&b, "%d runs per size, median; rows of %d objects × %d rows (row groups of %d), every column type of the emulator.\n\n",
		o.runs, o.objects, o.rowsPerObject, o.rowGroupRow)
	b.WriteString("| objects | rows | Parquet | NDJSON | host fetch rows/s | arrow-go decode rows/s | ratio (target ≥ 0.5) | peak RSS host + plugin (VmHWM) | sampled peak of the sum |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|---|\n")
	for _, r := range rs {
		f, d := median(r.fetch), median(r.decode)
		fmt.Fprintf(&b, "| %d | %d | %s | %s | %.0f | %.0f | **%.2f×** | %s + %s = **%s** | %s |\n",
			r.objects, r.rows, benchkit.MiB(r.parquetBytes), benchkit.MiB(r.ndjsonBytes), f, d, f/d,
			benchkit.MiB(r.hostHWM), benchkit.MiB(r.pluginHWM), benchkit.MiB(r.hostHWM+r.pluginHWM), benchkit.MiB(r.peakSum))
	}
	b.WriteString("\nCPU seconds per million rows (user + system, all runs; the baseline is one goroutine):\n\n")
	b.WriteString("| objects | plugin | host | bench client + emulator | total | arrow-go decode | fetch wall clock per 1M rows |\n|---|---|---|---|---|---|---|\n")
	for _, r := range rs {
		per := float64(o.runs) * float64(r.rows) / 1e6
		fmt.Fprintf(&b, "| %d | %.2f | %.2f | %.2f | %.2f | %.2f | %.2f s |\n", r.objects, r.pluginCPU/per, r.hostCPU/per, r.selfCPU/per,
			(r.pluginCPU+r.hostCPU+r.selfCPU)/per, r.decodeCPU/per, r.wall/per)
	}
	if len(rs) == 2 {
		a, c := rs[0].hostHWM+rs[0].pluginHWM, rs[1].hostHWM+rs[1].pluginHWM
		fmt.Fprintf(&b, "\nDoubling the data: peak RSS %s → %s (**%+.1f%%**, target ≤ +20%%); target ≤ 150 MiB: %s.\n",
			benchkit.MiB(a), benchkit.MiB(c), 100*float64(c-a)/float64(a), verdict(max(a, c) <= 150<<20))
		fmt.Fprintf(&b, "Rate ratio target ≥ 0.5×: %s.\n", verdict(median(rs[0].fetch)/median(rs[0].decode) >= 0.5))
	}
	return b.String()
}

func verdict(ok bool) string {
	if ok {
		return "met"
	}
	return "**missed**"
}
