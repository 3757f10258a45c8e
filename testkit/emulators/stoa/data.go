package stoaemu

import (
	"fmt"
	"io"
	"math"
	"math/big"
	"math/rand/v2"
	"strconv"
	"strings"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/decimal128"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet"
	"github.com/apache/arrow-go/v18/parquet/compress"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"
)

// Column types of the generated objects. Every object of the catalog has this
// schema; together the columns cover the common Parquet/Arrow types, nulls at
// every nesting level, and edge values (int64 beyond 2^53, NaN, infinities,
// pre-1970 timestamps, control characters in strings).
var (
	eventType = arrow.StructOf(
		arrow.Field{Name: "at", Type: &arrow.TimestampType{Unit: arrow.Millisecond, TimeZone: "UTC"}, Nullable: true},
		arrow.Field{Name: "kind", Type: arrow.BinaryTypes.String, Nullable: true},
		arrow.Field{Name: "value", Type: arrow.PrimitiveTypes.Int64, Nullable: true},
	)
	pointType = arrow.StructOf(
		arrow.Field{Name: "x", Type: arrow.PrimitiveTypes.Float64, Nullable: true},
		arrow.Field{Name: "y", Type: arrow.PrimitiveTypes.Float64, Nullable: true},
		arrow.Field{Name: "label", Type: arrow.BinaryTypes.String, Nullable: true},
	)
	objectSchema = arrow.NewSchema([]arrow.Field{
		{Name: "id", Type: arrow.PrimitiveTypes.Int64},
		{Name: "flag", Type: arrow.FixedWidthTypes.Boolean, Nullable: true},
		{Name: "i8", Type: arrow.PrimitiveTypes.Int8, Nullable: true},
		{Name: "i16", Type: arrow.PrimitiveTypes.Int16, Nullable: true},
		{Name: "i32", Type: arrow.PrimitiveTypes.Int32, Nullable: true},
		{Name: "i64", Type: arrow.PrimitiveTypes.Int64, Nullable: true},
		{Name: "u8", Type: arrow.PrimitiveTypes.Uint8, Nullable: true},
		{Name: "u16", Type: arrow.PrimitiveTypes.Uint16, Nullable: true},
		{Name: "u32", Type: arrow.PrimitiveTypes.Uint32, Nullable: true},
		{Name: "u64", Type: arrow.PrimitiveTypes.Uint64, Nullable: true},
		{Name: "f32", Type: arrow.PrimitiveTypes.Float32, Nullable: true},
		{Name: "f64", Type: arrow.PrimitiveTypes.Float64, Nullable: true},
		{Name: "name", Type: arrow.BinaryTypes.String, Nullable: true},
		{Name: "text", Type: arrow.BinaryTypes.LargeString, Nullable: true},
		{Name: "blob", Type: arrow.BinaryTypes.Binary, Nullable: true},
		{Name: "uuid", Type: &arrow.FixedSizeBinaryType{ByteWidth: 16}, Nullable: true},
		{Name: "day", Type: arrow.FixedWidthTypes.Date32, Nullable: true},
		{Name: "tod", Type: arrow.FixedWidthTypes.Time32ms, Nullable: true},
		{Name: "ts_ms", Type: &arrow.TimestampType{Unit: arrow.Millisecond, TimeZone: "UTC"}, Nullable: true},
		{Name: "ts_us", Type: &arrow.TimestampType{Unit: arrow.Microsecond, TimeZone: "Europe/Paris"}, Nullable: true},
		{Name: "ts_local", Type: &arrow.TimestampType{Unit: arrow.Microsecond}, Nullable: true},
		{Name: "amount", Type: &arrow.Decimal128Type{Precision: 18, Scale: 4}, Nullable: true},
		{Name: "big", Type: &arrow.Decimal128Type{Precision: 38, Scale: 10}, Nullable: true},
		{Name: "tags", Type: arrow.ListOf(arrow.PrimitiveTypes.Int32), Nullable: true},
		{Name: "labels", Type: arrow.ListOf(arrow.BinaryTypes.String), Nullable: true},
		{Name: "point", Type: pointType, Nullable: true},
		{Name: "events", Type: arrow.ListOf(eventType), Nullable: true},
		{Name: "attrs", Type: arrow.MapOf(arrow.BinaryTypes.String, arrow.PrimitiveTypes.Int32), Nullable: true},
	}, nil)
)

// Schema returns the Arrow schema of every generated object, in column order.
func Schema() *arrow.Schema { return objectSchema }

// trickyStrings exercise JSON escaping and UTF-8 handling.
var trickyStrings = []string{
	"", "plain", "héllo wörld", "日本語テキスト", "emoji 😀🚀", `quote " and backslash \`,
	"ctrl \x01\x1f tab\t newline\n cr\r", "</script><b>&amp;</b>", "line sep \u2028 para \u2029",
	"nul \x00 inside", strings.Repeat("long ", 40),
}

// maxDecimal38 is 10^38 - 1, the largest magnitude of a decimal(38, s).
var maxDecimal38 = new(big.Int).Sub(new(big.Int).Exp(big.NewInt(10), big.NewInt(38), nil), big.NewInt(1))

// generator produces the deterministic values of one object.
type generator struct {
	rng    *rand.Rand
	bldr   *array.RecordBuilder
	nextID int64
}

// writeObject writes a Parquet file of rows rows in row groups of
// rowGroupRows to w. Rows get ids firstID, firstID+1, ...; seed determines
// every other value.
func writeObject(w io.Writer, seed uint64, firstID int64, rows, rowGroupRows int) error {
	if rows < 0 || rowGroupRows < 1 {
		return fmt.Errorf("stoaemu: invalid object shape rows=%d row_group_rows=%d", rows, rowGroupRows)
	}
	props := parquet.NewWriterProperties(
		parquet.WithCompression(compress.Codecs.Snappy),
		parquet.WithMaxRowGroupLength(int64(rowGroupRows)),
		parquet.WithDictionaryDefault(true),
	)
	fw, err := pqarrow.NewFileWriter(objectSchema, w, props, pqarrow.NewArrowWriterProperties(pqarrow.WithStoreSchema()))
	if err != nil {
		return fmt.Errorf("stoaemu: parquet writer: %w", err)
	}
	g := &generator{
		rng:    rand.New(rand.NewPCG(seed, uint64(firstID))), //nolint:gosec // deterministic test data, not a secret
		bldr:   array.NewRecordBuilder(memory.DefaultAllocator, objectSchema),
		nextID: firstID,
	}
	defer g.bldr.Release()
	for done := 0; done < rows; {
		n := min(rowGroupRows, rows-done)
		for range n {
			g.appendRow()
		}
		rec := g.bldr.NewRecordBatch()
		err := fw.Write(rec)
		rec.Release()
		if err != nil {
			_ = fw.Close()
			return fmt.Errorf("stoaemu: write row group: %w", err)
		}
		done += n
	}
	if err := fw.Close(); err != nil {
		return fmt.Errorf("stoaemu: close parquet writer: %w", err)
	}
	return nil
}

// null reports, with probability 1/n, that the next value is null.
func (g *generator) null(n int) bool { return g.rng.IntN(n) == 0 }

func (g *generator) appendRow() {
	id := g.nextID
	g.nextID++
	f := g.bldr.Fields()
	col := 0
	next := func() array.Builder { b := f[col]; col++; return b }

	next().(*array.Int64Builder).Append(id)

	if b := next().(*array.BooleanBuilder); g.null(9) {
		b.AppendNull()
	} else {
		b.Append(g.rng.IntN(2) == 1)
	}
	if b := next().(*array.Int8Builder); g.null(8) {
		b.AppendNull()
	} else {
		b.Append(pick(g, int8(math.MinInt8), int8(math.MaxInt8), int8(g.rng.Uint32()))) //nolint:gosec // random bits truncated on purpose
	}
	if b := next().(*array.Int16Builder); g.null(8) {
		b.AppendNull()
	} else {
		b.Append(pick(g, int16(math.MinInt16), int16(math.MaxInt16), int16(g.rng.Uint32()))) //nolint:gosec // random bits truncated on purpose
	}
	if b := next().(*array.Int32Builder); g.null(8) {
		b.AppendNull()
	} else {
		b.Append(pick(g, int32(math.MinInt32), int32(math.MaxInt32), int32(g.rng.Uint32()))) //nolint:gosec // random bits truncated on purpose
	}
	if b := next().(*array.Int64Builder); g.null(8) {
		b.AppendNull()
	} else {
		b.Append(g.int64Value())
	}
	if b := next().(*array.Uint8Builder); g.null(8) {
		b.AppendNull()
	} else {
		b.Append(pick(g, 0, math.MaxUint8, uint8(g.rng.Uint32()))) //nolint:gosec // random bits truncated on purpose
	}
	if b := next().(*array.Uint16Builder); g.null(8) {
		b.AppendNull()
	} else {
		b.Append(pick(g, 0, math.MaxUint16, uint16(g.rng.Uint32()))) //nolint:gosec // random bits truncated on purpose
	}
	if b := next().(*array.Uint32Builder); g.null(8) {
		b.AppendNull()
	} else {
		b.Append(pick(g, 0, math.MaxUint32, g.rng.Uint32()))
	}
	if b := next().(*array.Uint64Builder); g.null(8) {
		b.AppendNull()
	} else {
		b.Append(g.uint64Value())
	}
	if b := next().(*array.Float32Builder); g.null(8) {
		b.AppendNull()
	} else {
		b.Append(float32(g.floatValue(true)))
	}
	if b := next().(*array.Float64Builder); g.null(8) {
		b.AppendNull()
	} else {
		b.Append(g.floatValue(false))
	}
	if b := next().(*array.StringBuilder); g.null(10) {
		b.AppendNull()
	} else {
		b.Append(g.stringValue(id))
	}
	if b := next().(*array.LargeStringBuilder); g.null(10) {
		b.AppendNull()
	} else {
		b.Append(g.textValue())
	}
	if b := next().(*array.BinaryBuilder); g.null(10) {
		b.AppendNull()
	} else {
		b.Append(g.bytes(g.rng.IntN(33)))
	}
	if b := next().(*array.FixedSizeBinaryBuilder); g.null(10) {
		b.AppendNull()
	} else {
		b.Append(g.bytes(16))
	}
	if b := next().(*array.Date32Builder); g.null(10) {
		b.AppendNull()
	} else {
		// 1700-01-01 .. 2199-12-31, both sides of the epoch.
		b.Append(arrow.Date32(g.rng.IntN(182_622) - 98_627)) //nolint:gosec // in range
	}
	if b := next().(*array.Time32Builder); g.null(10) {
		b.AppendNull()
	} else {
		b.Append(arrow.Time32(g.rng.IntN(86_400_000))) //nolint:gosec // below 86,400,000
	}
	if b := next().(*array.TimestampBuilder); g.null(10) {
		b.AppendNull()
	} else {
		b.Append(arrow.Timestamp(g.rng.Int64N(8_000_000_000_000) - 2_000_000_000_000)) // ms, 1906..2223
	}
	if b := next().(*array.TimestampBuilder); g.null(10) {
		b.AppendNull()
	} else {
		b.Append(arrow.Timestamp(g.rng.Int64N(4_000_000_000_000_000) - 1_000_000_000_000_000)) // µs
	}
	if b := next().(*array.TimestampBuilder); g.null(10) {
		b.AppendNull()
	} else {
		b.Append(arrow.Timestamp(g.rng.Int64N(4_000_000_000_000_000))) // µs, naive
	}
	if b := next().(*array.Decimal128Builder); g.null(10) {
		b.AppendNull()
	} else {
		b.Append(decimal128.FromI64(g.rng.Int64N(2*999_999_999_999_999_999) - 999_999_999_999_999_999))
	}
	if b := next().(*array.Decimal128Builder); g.null(10) {
		b.AppendNull()
	} else {
		b.Append(g.bigDecimal())
	}
	g.appendTags(next().(*array.ListBuilder))
	g.appendLabels(next().(*array.ListBuilder))
	g.appendPoint(next().(*array.StructBuilder))
	g.appendEvents(next().(*array.ListBuilder))
	g.appendAttrs(next().(*array.MapBuilder))
}

// pick returns lo or hi now and then, else v: edge values appear in every
// object.
func pick[T any](g *generator, lo, hi, v T) T {
	switch g.rng.IntN(20) {
	case 0:
		return lo
	case 1:
		return hi
	}
	return v
}

func (g *generator) int64Value() int64 {
	const safe = 1<<53 - 1
	switch g.rng.IntN(12) {
	case 0:
		return safe
	case 1:
		return -safe
	case 2:
		return safe + 1
	case 3:
		return -safe - 1
	case 4:
		return math.MaxInt64
	case 5:
		return math.MinInt64
	case 6, 7, 8:
		return g.rng.Int64N(2_000_000) - 1_000_000
	}
	return int64(g.rng.Uint64()) //nolint:gosec // random bits reinterpreted on purpose
}

func (g *generator) uint64Value() uint64 {
	switch g.rng.IntN(8) {
	case 0:
		return 1<<53 - 1
	case 1:
		return 1 << 53
	case 2:
		return math.MaxUint64
	case 3, 4:
		return g.rng.Uint64N(1_000_000)
	}
	return g.rng.Uint64()
}

func (g *generator) floatValue(single bool) float64 {
	switch g.rng.IntN(24) {
	case 0:
		return math.NaN()
	case 1:
		return math.Inf(1)
	case 2:
		return math.Inf(-1)
	case 3:
		return math.Copysign(0, -1)
	case 4:
		if single {
			return math.SmallestNonzeroFloat32
		}
		return math.SmallestNonzeroFloat64
	case 5:
		if single {
			return math.MaxFloat32
		}
		return 1e300
	case 6:
		return 1e21
	case 7:
		return 1e-7
	}
	return (g.rng.Float64() - 0.5) * math.Pow(10, float64(g.rng.IntN(12)))
}

func (g *generator) stringValue(id int64) string {
	if g.rng.IntN(3) == 0 {
		return trickyStrings[g.rng.IntN(len(trickyStrings))]
	}
	return "name-" + strconv.FormatInt(id, 10)
}

var words = []string{"stoa", "parquet", "row", "group", "arrow", "ünïcödé", "данные", "数据", "🙂", "\"q\"", "a\\b"}

func (g *generator) textValue() string {
	n := g.rng.IntN(40)
	var sb strings.Builder
	for i := range n {
		if i > 0 {
			sb.WriteByte(' ')
		}
		sb.WriteString(words[g.rng.IntN(len(words))])
	}
	return sb.String()
}

func (g *generator) bytes(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(g.rng.Uint32()) //nolint:gosec // random bits truncated on purpose
	}
	return b
}

func (g *generator) bigDecimal() decimal128.Num {
	switch g.rng.IntN(10) {
	case 0:
		return decimal128.FromBigInt(maxDecimal38)
	case 1:
		return decimal128.FromBigInt(new(big.Int).Neg(maxDecimal38))
	}
	hi := new(big.Int).SetUint64(g.rng.Uint64())
	v := hi.Lsh(hi, 64).Or(hi, new(big.Int).SetUint64(g.rng.Uint64()))
	v.Mod(v, maxDecimal38)
	if g.rng.IntN(2) == 0 {
		v.Neg(v)
	}
	return decimal128.FromBigInt(v)
}

func (g *generator) appendTags(b *array.ListBuilder) {
	if g.null(10) {
		b.AppendNull()
		return
	}
	b.Append(true)
	vb := b.ValueBuilder().(*array.Int32Builder)
	for range g.rng.IntN(6) {
		if g.null(7) {
			vb.AppendNull()
		} else {
			vb.Append(int32(g.rng.Uint32())) //nolint:gosec // random bits truncated on purpose
		}
	}
}

func (g *generator) appendLabels(b *array.ListBuilder) {
	if g.null(10) {
		b.AppendNull()
		return
	}
	b.Append(true)
	vb := b.ValueBuilder().(*array.StringBuilder)
	for range g.rng.IntN(4) {
		if g.null(7) {
			vb.AppendNull()
		} else {
			vb.Append(trickyStrings[g.rng.IntN(len(trickyStrings))])
		}
	}
}

func (g *generator) appendPoint(b *array.StructBuilder) {
	if g.null(10) {
		b.AppendNull()
		return
	}
	b.Append(true)
	x := b.FieldBuilder(0).(*array.Float64Builder)
	y := b.FieldBuilder(1).(*array.Float64Builder)
	label := b.FieldBuilder(2).(*array.StringBuilder)
	x.Append(g.floatValue(false))
	if g.null(6) {
		y.AppendNull()
	} else {
		y.Append(g.floatValue(false))
	}
	if g.null(4) {
		label.AppendNull()
	} else {
		label.Append(trickyStrings[g.rng.IntN(len(trickyStrings))])
	}
}

func (g *generator) appendEvents(b *array.ListBuilder) {
	if g.null(10) {
		b.AppendNull()
		return
	}
	b.Append(true)
	sb := b.ValueBuilder().(*array.StructBuilder)
	at := sb.FieldBuilder(0).(*array.TimestampBuilder)
	kind := sb.FieldBuilder(1).(*array.StringBuilder)
	value := sb.FieldBuilder(2).(*array.Int64Builder)
	for range g.rng.IntN(4) {
		if g.null(8) {
			sb.AppendNull()
			continue
		}
		sb.Append(true)
		at.Append(arrow.Timestamp(g.rng.Int64N(4_000_000_000_000)))
		if g.null(5) {
			kind.AppendNull()
		} else {
			kind.Append([]string{"create", "update", "delete", "ärger"}[g.rng.IntN(4)])
		}
		if g.null(5) {
			value.AppendNull()
		} else {
			value.Append(g.int64Value())
		}
	}
}

func (g *generator) appendAttrs(b *array.MapBuilder) {
	if g.null(10) {
		b.AppendNull()
		return
	}
	b.Append(true)
	kb := b.KeyBuilder().(*array.StringBuilder)
	ib := b.ItemBuilder().(*array.Int32Builder)
	for i := range g.rng.IntN(4) {
		kb.Append("k" + strconv.Itoa(i))
		if g.null(6) {
			ib.AppendNull()
		} else {
			ib.Append(int32(g.rng.Uint32())) //nolint:gosec // random bits truncated on purpose
		}
	}
}
