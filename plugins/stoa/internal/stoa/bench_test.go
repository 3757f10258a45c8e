package stoa

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet/file"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"

	stoaemu "github.com/connector-host/connector-host/testkit/emulators/stoa"
)

// benchShape is the data of the fetch benchmark: STOA_BENCH_OBJECTS objects
// (default 20) of STOA_BENCH_ROWS_PER_OBJECT rows (default 10000).
func benchShape(b *testing.B) (objects, rowsPerObject int) {
	objects, rowsPerObject = 20, 10_000
	for env, v := range map[string]*int{"STOA_BENCH_OBJECTS": &objects, "STOA_BENCH_ROWS_PER_OBJECT": &rowsPerObject} {
		if s := os.Getenv(env); s != "" {
			n, err := strconv.Atoi(s)
			if err != nil || n < 1 {
				b.Fatalf("%s=%q: want a positive integer", env, s)
			}
			*v = n
		}
	}
	return objects, rowsPerObject
}

// decodeAll decodes every object with arrow-go alone (no JSON) and returns
// the rows: the in-process baseline.
func decodeAll(b *testing.B, objs [][]byte) int64 {
	var rows int64
	for _, data := range objs {
		pf, err := file.NewParquetReader(bytes.NewReader(data))
		if err != nil {
			b.Fatal(err)
		}
		fr, err := pqarrow.NewFileReader(pf, pqarrow.ArrowReadProperties{BatchSize: 4096}, memory.DefaultAllocator)
		if err != nil {
			b.Fatal(err)
		}
		rr, err := fr.GetRecordReader(context.Background(), nil, nil)
		if err != nil {
			b.Fatal(err)
		}
		for rr.Next() {
			rows += rr.RecordBatch().NumRows()
		}
		if err := rr.Err(); err != nil {
			b.Fatal(err)
		}
		rr.Release()
	}
	return rows
}

// BenchmarkFetch measures the fetch engine end to end against the emulator
// (sign, download, decode, JSON rows) and reports rows/s and the ratio to an
// in-process arrow-go decode of the same files (decode_ratio, target ≥ 0.5
// through the host).
func BenchmarkFetch(b *testing.B) {
	objects, perObject := benchShape(b)
	srv := startEmu(b, stoaemu.Options{Products: []stoaemu.Product{{
		GroupName: "bench", Name: "rows", Workspace: "apps", OwnerID: "o", Objects: objects,
		RowsPerObject: perObject, RowGroupRows: 8192,
	}}})
	ids := srv.Keys(0)
	objs := make([][]byte, len(ids))
	var size int64
	for i, id := range ids {
		var err error
		if objs[i], err = srv.Object(id); err != nil {
			b.Fatal(err)
		}
		size += int64(len(objs[i]))
	}
	c := newClient(b, srv, restCreds, Options{BatchRows: benchBatch(b)}, nil)
	ctx := context.Background()
	var rows, bytesOut, baseRows int64
	var baseTime, fetchTime, fetchCPU time.Duration
	b.SetBytes(size)
	b.ResetTimer()
	for range b.N {
		// The baseline runs in every iteration, next to the fetch, so that
		// the ratio holds on a machine whose load changes.
		b.StopTimer()
		begin := time.Now()
		baseRows += decodeAll(b, objs)
		baseTime += time.Since(begin)
		b.StartTimer()
		begin = time.Now()
		cpu0 := processCPU()
		res, err := c.Fetch(ctx, FetchRequest{OrderIDs: ids}, func(row json.RawMessage) error {
			bytesOut += int64(len(row)) + 1
			return nil
		})
		fetchTime += time.Since(begin)
		fetchCPU += processCPU() - cpu0
		if err != nil {
			b.Fatal(err)
		}
		rows += res.Rows
	}
	b.StopTimer()
	rate := float64(rows) / fetchTime.Seconds()
	baseRate := float64(baseRows) / baseTime.Seconds()
	b.ReportMetric(rate, "rows/s")
	b.ReportMetric(baseRate, "decode_rows/s")
	b.ReportMetric(rate/baseRate, "decode_ratio")
	b.ReportMetric(float64(bytesOut)/float64(rows), "json_bytes/row")
	// CPU of the whole process during the fetches (the emulator serving the
	// objects included), per million rows.
	b.ReportMetric(fetchCPU.Seconds()/(float64(rows)/1e6), "cpu_s/Mrow")
}

// processCPU is the user + system CPU time of this process so far.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// benchBatch is STOA_BENCH_BATCH_ROWS (default: the client's default).
func benchBatch(b *testing.B) int {
	s := os.Getenv("STOA_BENCH_BATCH_ROWS")
	if s == "" {
		return 0
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 {
		b.Fatalf("STOA_BENCH_BATCH_ROWS=%q: want a positive integer", s)
	}
	return n
}
