package rows

import (
	"math"
	"math/big"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/decimal128"
)

// slowTimestamp is the reference: package time.
func slowTimestamp(v int64, u arrow.TimeUnit, zoned bool) string {
	layout := "2006-01-02T15:04:05" + fraction(u)
	if zoned {
		layout += "Z"
	}
	return string(appendTime(nil, instant(v, u), layout))
}

func checkTemporal(t *testing.T, v int64) {
	t.Helper()
	for _, u := range []arrow.TimeUnit{arrow.Second, arrow.Millisecond, arrow.Microsecond, arrow.Nanosecond} {
		for _, zoned := range []bool{false, true} {
			if got, want := string(appendTimestamp(nil, v, u, zoned)), slowTimestamp(v, u, zoned); got != want {
				t.Fatalf("appendTimestamp(%d, %s, %v) = %s, package time %s", v, u, zoned, got, want)
			}
		}
		if got, want := string(appendTimeOfDay(nil, v, u)), string(appendTime(nil, instant(v, u), "15:04:05"+fraction(u))); got != want {
			t.Fatalf("appendTimeOfDay(%d, %s) = %s, package time %s", v, u, got, want)
		}
	}
	if v > -1<<40 && v < 1<<40 {
		if got, want := string(appendDate(nil, v)), string(appendTime(nil, time.Unix(v*86400, 0), "2006-01-02")); got != want {
			t.Fatalf("appendDate(%d) = %s, package time %s", v, got, want)
		}
	}
}

func TestTemporalMatchesPackageTime(t *testing.T) {
	t.Parallel()
	for _, v := range []int64{0, 1, -1, 59, 86399, 86400, -86400, 951782400, 11016, -719528, -719529, 2932896, 2932897,
		253402300799, 253402300800, -62167219200, -62167219201, 1709164800123, math.MaxInt64, math.MinInt64, 1 << 40, -(1 << 40)} {
		checkTemporal(t, v)
	}
	for v := int64(-800_000); v <= 800_000; v += 997 {
		checkTemporal(t, v)
	}
}

func FuzzTemporal(f *testing.F) {
	for _, v := range []int64{0, -1, 253402300800, math.MinInt64, 1709164800123456} {
		f.Add(v)
	}
	f.Fuzz(func(t *testing.T, v int64) { checkTemporal(t, v) })
}

func checkDecimal128(t *testing.T, hi int64, lo uint64, scale int32) {
	t.Helper()
	n := decimal128.New(hi, lo)
	if got, want := string(appendDecimal128(nil, n, scale)), string(appendDecimal(nil, n.BigInt(), scale)); got != want {
		t.Fatalf("appendDecimal128(%d:%d, %d) = %s, big.Int %s", hi, lo, scale, got, want)
	}
}

func TestDecimal128MatchesBigInt(t *testing.T) {
	t.Parallel()
	max38 := new(big.Int).Sub(new(big.Int).Exp(big.NewInt(10), big.NewInt(38), nil), big.NewInt(1))
	for _, n := range []decimal128.Num{
		decimal128.FromI64(0), decimal128.FromI64(-1), decimal128.FromI64(math.MinInt64), decimal128.FromU64(math.MaxUint64),
		decimal128.FromBigInt(max38), decimal128.FromBigInt(new(big.Int).Neg(max38)), decimal128.New(math.MinInt64, 0),
		decimal128.New(math.MaxInt64, math.MaxUint64), decimal128.New(0, 10_000_000_000_000_000_000), decimal128.New(1, 0),
	} {
		for _, scale := range []int32{0, 2, 10, 38, 40, -3} {
			checkDecimal128(t, n.HighBits(), n.LowBits(), scale)
		}
	}
	for _, v := range []int64{0, 5, -5, math.MinInt64, math.MaxInt64} {
		for _, scale := range []int32{0, 3, -2, 19} {
			if got, want := string(appendDecimalInt(nil, v, scale)), string(appendDecimal(nil, big.NewInt(v), scale)); got != want {
				t.Errorf("appendDecimalInt(%d, %d) = %s, want %s", v, scale, got, want)
			}
		}
	}
}

func FuzzDecimal128(f *testing.F) {
	f.Add(int64(0), uint64(0), int32(0))
	f.Add(int64(-1), uint64(1), int32(5))
	f.Add(int64(math.MinInt64), uint64(0), int32(38))
	f.Fuzz(func(t *testing.T, hi int64, lo uint64, scale int32) { checkDecimal128(t, hi, lo, scale) })
}
