package rows

import (
	"bytes"
	"context"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
)

// benchObject is one emulator object of 20,000 rows (every column type).
func benchObject(b *testing.B) []byte {
	b.Helper()
	srv := smallServer(20_000, 8192)
	data, err := srv.Object(srv.Keys(0)[0])
	if err != nil {
		b.Fatal(err)
	}
	return data
}

// BenchmarkRead measures decoding (arrow-go and the batch checks) alone.
func BenchmarkRead(b *testing.B) {
	data := benchObject(b)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	var rows int64
	for b.Loop() {
		obj, err := Open(bytes.NewReader(data))
		if err != nil {
			b.Fatal(err)
		}
		p, err := obj.Project(nil)
		if err != nil {
			b.Fatal(err)
		}
		if err := obj.Read(context.Background(), p, ReadOptions{}, func(rec arrow.RecordBatch) error {
			rows += rec.NumRows()
			return nil
		}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(rows), "ns/row")
}

// BenchmarkEncode measures the JSON encoding of decoded batches alone.
func BenchmarkEncode(b *testing.B) {
	data := benchObject(b)
	obj, err := Open(bytes.NewReader(data))
	if err != nil {
		b.Fatal(err)
	}
	p, err := obj.Project(nil)
	if err != nil {
		b.Fatal(err)
	}
	var recs []arrow.RecordBatch
	if err := obj.Read(context.Background(), p, ReadOptions{}, func(rec arrow.RecordBatch) error {
		rec.Retain()
		recs = append(recs, rec)
		return nil
	}); err != nil {
		b.Fatal(err)
	}
	defer func() {
		for _, r := range recs {
			r.Release()
		}
	}()
	enc, err := NewEncoder(p.Schema())
	if err != nil {
		b.Fatal(err)
	}
	buf := make([]byte, 0, 1<<20)
	var rows, out int64
	b.ReportAllocs()
	for b.Loop() {
		for _, rec := range recs {
			bt, err := enc.Bind(rec)
			if err != nil {
				b.Fatal(err)
			}
			for i := range bt.Len() {
				buf = bt.AppendRow(buf[:0], i)
				out += int64(len(buf))
			}
			rows += int64(bt.Len())
		}
	}
	b.SetBytes(out / max(int64(b.N), 1))
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(rows), "ns/row")
}
