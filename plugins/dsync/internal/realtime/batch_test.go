package realtime

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/connector-host/connector-host/sdk"
	dsyncemu "github.com/connector-host/connector-host/testkit/emulators/dsync"
)

// skuOf is an IDFunc reading the "sku" attribute.
func skuOf(_ string, data json.RawMessage) string {
	var r struct {
		SKU string `json:"sku"`
	}
	_ = json.Unmarshal(data, &r)
	return r.SKU
}

func TestBatchKeepsOrderPerRecord(t *testing.T) {
	t.Parallel()
	e := startEmu(t)
	// Random small delays make unordered execution visible.
	e.SetFaultFunc(func(*http.Request, int64) *dsyncemu.Fault {
		return &dsyncemu.Fault{Delay: time.Duration(rand.IntN(3)) * time.Millisecond}
	})
	c := newClient(t, e, func(cfg *Config) { cfg.IDFunc = skuOf })
	var ops []Op
	const records = 20
	for v := range 4 {
		for k := range records {
			sku := fmt.Sprintf("p%02d", k)
			switch v {
			case 0:
				ops = append(ops, Op{Op: OpCreate, EntityToken: "product-tok", Data: json.RawMessage(fmt.Sprintf(`{"sku":%q,"v":0}`, sku))})
			case 3:
				if k%2 == 0 {
					ops = append(ops, Op{Op: OpDelete, EntityToken: "product-tok", EntityID: sku})
					continue
				}
				fallthrough
			default:
				ops = append(ops, Op{Op: OpUpdate, EntityToken: "product-tok", Data: json.RawMessage(fmt.Sprintf(`{"sku":%q,"v":%d}`, sku, v))})
			}
		}
	}
	res := c.Batch(context.Background(), ops, 8)
	if len(res) != len(ops) {
		t.Fatalf("%d results", len(res))
	}
	for i, r := range res {
		if r.Index != i || r.Err != nil || r.Result.Status != 200 {
			t.Fatalf("result %d: %+v", i, r)
		}
	}
	// Per record, the platform saw the operations in input order.
	seen := map[string][]string{}
	for _, call := range e.Calls() {
		seen[call.EntityID] = append(seen[call.EntityID], call.Method+":"+string(call.Body))
	}
	for k := range records {
		sku := fmt.Sprintf("p%02d", k)
		var want []string
		for _, op := range ops {
			if op.EntityID == sku || skuOf("", op.Data) == sku {
				want = append(want, map[Kind]string{OpCreate: "POST", OpUpdate: "PUT", OpDelete: "DELETE"}[op.Op]+":"+string(op.Data))
			}
		}
		if !slices.Equal(seen[sku], want) {
			t.Fatalf("record %s order\ngot  %v\nwant %v", sku, seen[sku], want)
		}
	}
	if n := len(e.Records("product-tok")); n != records/2 {
		t.Fatalf("%d records left, want %d", n, records/2)
	}
}

func TestBatchBoundsConcurrency(t *testing.T) {
	t.Parallel()
	e, err := dsyncemu.New(dsyncemu.Config{APIKey: apiKey})
	if err != nil {
		t.Fatal(err)
	}
	var inFlight, peak atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := inFlight.Add(1)
		defer inFlight.Add(-1)
		for {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				break
			}
		}
		time.Sleep(2 * time.Millisecond) // hold the slot so that overlaps happen
		e.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	c, err := New(Config{Endpoint: srv.URL + "/api/realtime", APIKey: apiKey})
	if err != nil {
		t.Fatal(err)
	}
	ops := make([]Op, 60)
	for i := range ops {
		ops[i] = Op{Op: OpCreate, EntityToken: "t", Data: json.RawMessage(fmt.Sprintf(`{"id":"%d"}`, i))}
	}
	for _, conc := range []int{1, 4} {
		peak.Store(0)
		ops := slices.Clone(ops)
		for i := range ops {
			ops[i].EntityToken = fmt.Sprintf("t%d", conc)
		}
		for _, r := range c.Batch(context.Background(), ops, conc) {
			if r.Err != nil {
				t.Fatal(r.Err)
			}
		}
		if p := peak.Load(); p > int32(conc) || (conc > 1 && p < 2) {
			t.Fatalf("concurrency %d: peak in flight %d", conc, p)
		}
	}
}

func TestBatchPerOperationResults(t *testing.T) {
	t.Parallel()
	e := startEmu(t)
	c := newClient(t, e, nil)
	ops := []Op{
		{Op: OpCreate, EntityToken: "product-tok", Data: json.RawMessage(`{"sku":"a"}`), EntityID: "a"},
		{Op: "merge", EntityToken: "product-tok", Data: json.RawMessage(`{"sku":"a"}`)},
		{Op: OpDelete, EntityToken: "product-tok", EntityID: "zz"},
		{Op: OpUpdate, EntityToken: "product-tok", Data: json.RawMessage(`{"sku":"a","x":1}`), EntityID: "a"},
	}
	res := c.Batch(context.Background(), ops, 0)
	codes := make([]sdk.Code, len(res))
	for i, r := range res {
		var se *sdk.Error
		if errors.As(r.Err, &se) {
			codes[i] = se.Code
		} else if r.Err != nil {
			t.Fatalf("operation %d: %T %v, want *sdk.Error", i, r.Err, r.Err)
		}
	}
	if !slices.Equal(codes, []sdk.Code{"", sdk.BadRequest, sdk.NotFound, ""}) {
		t.Fatalf("codes %v", codes)
	}
	if got := c.Batch(context.Background(), nil, 4); len(got) != 0 {
		t.Fatal("empty batch")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for _, r := range c.Batch(ctx, ops[:1], 1) {
		var se *sdk.Error
		if !errors.As(r.Err, &se) || se.Code != sdk.RequestTimeout {
			t.Fatalf("canceled batch: %v", r.Err)
		}
	}
}

// benchOps returns n creates with distinct ids for entity token tok.
func benchOps(tok string, n int) []Op {
	ops := make([]Op, n)
	for i := range ops {
		ops[i] = Op{Op: OpCreate, EntityToken: tok, Data: json.RawMessage(fmt.Sprintf(`{"id":"%d","name":"product %d","price":%d}`, i, i, i))}
	}
	return ops
}

// plainBatch sends the same requests with a plain http.Client and the same
// concurrency: the baseline of BenchmarkBatchCreates.
func plainBatch(b *testing.B, hc *http.Client, url string, ops []Op, conc int) {
	var wg sync.WaitGroup
	work := make(chan Op)
	var failed atomic.Int64
	for range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for op := range work {
				req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(op.Data))
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set("Auth-Token", apiKey)
				req.Header.Set("Entity-Token", op.EntityToken)
				resp, err := hc.Do(req)
				if err != nil {
					failed.Add(1)
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					failed.Add(1)
				}
			}
		}()
	}
	for _, op := range ops {
		work <- op
	}
	close(work)
	wg.Wait()
	if failed.Load() > 0 {
		b.Fatalf("plain client: %d failures", failed.Load())
	}
}

// BenchmarkBatchCreates runs 10,000 creates through Batch and through a
// plain http.Client with the same concurrency and transport settings
// against the emulator, and reports both rates and their ratio
// (batch_vs_plain; the target is >= 0.8).
func BenchmarkBatchCreates(b *testing.B) {
	const n, conc = 10000, 32
	e := startEmu(b)
	c := newClient(b, e, func(cfg *Config) { cfg.HTTPClient = NewHTTPClient(conc) })
	plain := NewHTTPClient(conc)
	var batchDur, plainDur time.Duration
	round := 0
	for b.Loop() {
		round++
		ops := benchOps(fmt.Sprintf("bench-%d", round), n)
		t0 := time.Now()
		for _, r := range c.Batch(context.Background(), ops, conc) {
			if r.Err != nil {
				b.Fatal(r.Err)
			}
		}
		batchDur += time.Since(t0)

		ops = benchOps(fmt.Sprintf("plain-%d", round), n)
		t0 = time.Now()
		plainBatch(b, plain, e.RealtimeURL(), ops, conc)
		plainDur += time.Since(t0)
	}
	batchRate := float64(n*round) / batchDur.Seconds()
	plainRate := float64(n*round) / plainDur.Seconds()
	b.ReportMetric(batchRate, "batch_ops/s")
	b.ReportMetric(plainRate, "plain_ops/s")
	b.ReportMetric(batchRate/plainRate, "batch_vs_plain")
}

// BenchmarkCreate compares one create of the client (Do) with the same
// POST by a plain http.Client, against a minimal local server answering
// like the platform: ns/op and allocs/op of the client side (plus the
// server's, the same for both).
func BenchmarkCreate(b *testing.B) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"status":200,"message":"OK"}`))
	}))
	b.Cleanup(srv.Close)
	body := json.RawMessage(`{"id":"1","name":"product 1","price":1}`)
	b.Run("client", func(b *testing.B) {
		c, err := New(Config{Endpoint: srv.URL, APIKey: apiKey, HTTPClient: NewHTTPClient(8)})
		if err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		b.SetParallelism(4)
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := c.Do(context.Background(), Op{Op: OpCreate, EntityToken: "product-tok", Data: body}); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
	b.Run("plain", func(b *testing.B) {
		hc := NewHTTPClient(8)
		b.ReportAllocs()
		b.SetParallelism(4)
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				req, _ := http.NewRequest(http.MethodPost, srv.URL, bytes.NewReader(body))
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set("Auth-Token", apiKey)
				req.Header.Set("Entity-Token", "product-tok")
				resp, err := hc.Do(req)
				if err != nil {
					b.Error(err)
					return
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				_ = resp.Body.Close()
			}
		})
	})
}
