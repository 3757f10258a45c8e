package payload

import (
	"bytes"
	"math"
	"strings"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// encodeScalar writes the very bytes of bson.Marshal, for every scalar
// type, edge values and with or without a timestamp.
func TestEncodeScalarMatchesDriver(t *testing.T) {
	t.Parallel()
	at := time.Date(2025, 6, 17, 10, 20, 30, 456789123, time.FixedZone("x", -3600))
	old := time.Date(1969, 12, 31, 23, 59, 59, 999500000, time.UTC)
	values := []any{0.0, math.Copysign(0, -1), -2.25, math.MaxFloat64, math.SmallestNonzeroFloat64, math.NaN(), math.Inf(1),
		int32(0), int32(math.MinInt32), int32(math.MaxInt32), int64(0), int64(math.MinInt64), int64(math.MaxInt64),
		true, false, "", "héllo", "nul\x00inside", strings.Repeat("x", 70000), "\xff\xfe",
		[]byte{}, []byte{0, 1, 255}, bytes.Repeat([]byte{7}, 70000),
		at, old, time.Unix(0, 0), time.Time{}}
	for _, v := range values {
		for _, ts := range []*time.Time{nil, &at, &old} {
			got, ok := encodeScalar(v, ts)
			if !ok {
				t.Fatalf("%T %v: not encoded", v, v)
			}
			doc := bson.D{{Key: "v", Value: v}}
			if ts != nil {
				doc = append(doc, bson.E{Key: "t", Value: bson.NewDateTimeFromTime(*ts)})
			}
			want, err := bson.Marshal(doc)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("%T %.40v ts %v:\n got %x\nwant %x", v, v, ts, got, want)
			}
		}
	}
	for _, v := range []any{[]byte(nil), []float64{1}, nil, 1, float32(1)} {
		if _, ok := encodeScalar(v, nil); ok {
			t.Fatalf("%T encoded as a scalar", v)
		}
	}
}

func BenchmarkEncode(b *testing.B) {
	ts := time.Now()
	b.Run("scalar", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := Encode(1.5, &ts); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("driver", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := bson.Marshal(bson.D{{Key: "v", Value: 1.5}, {Key: "t", Value: bson.NewDateTimeFromTime(ts)}}); err != nil {
				b.Fatal(err)
			}
		}
	})
}
