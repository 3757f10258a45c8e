// Package rows turns Parquet objects into JSON rows: it opens a Parquet file
// with apache/arrow-go, reads it row group by row group in bounded batches
// with an optional column projection, and encodes each row as one JSON object
// whose keys are the column names in schema order.
//
// Type mapping (Arrow type of the column → JSON):
//   - null → null, at every nesting level
//   - bool → true/false
//   - int8..int32, uint8..uint32 → number
//   - int64, uint64, duration → number when |v| ≤ 2^53-1 (a "safe" integer),
//     else a string of the decimal digits
//   - float16/32/64 → number (shortest round-trip form); NaN, +Inf, -Inf →
//     the strings "NaN", "Infinity", "-Infinity"
//   - string, large_string, string_view → string
//   - binary, large_binary, binary_view, fixed_size_binary → base64 string
//     (standard alphabet, padded)
//   - date32, date64 → "YYYY-MM-DD"
//   - time32, time64 → "HH:MM:SS[.fff…]" (digits of the column's unit)
//   - timestamp with a time zone → RFC 3339 in UTC, "…Z", with the digits of
//     the column's unit; timestamp without a time zone (Parquet
//     isAdjustedToUTC=false, local semantics) → the same without the "Z",
//     because the data does not say which zone it is in
//   - decimal32/64/128/256 → string of the exact value ("-12.3400")
//   - list, large_list, list_view, fixed_size_list → array
//   - struct → object with the fields in order
//   - map → array of {"key": …, "value": …} (keys may repeat and need not be
//     strings, so an object would lose data)
//   - dictionary → the decoded value; extension → its storage, except
//     arrow.uuid → the canonical UUID string
//   - intervals → month: number; day_time: {"days","milliseconds"};
//     month_day_nano: {"months","days","nanoseconds"}
//
// Unions and run-end encoded arrays do not occur in Parquet files and are
// rejected by NewEncoder.
package rows

import (
	"encoding/base64"
	"fmt"
	"strconv"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
)

// Encoder encodes record batches of one schema as JSON rows.
type Encoder struct {
	schema *arrow.Schema
	keys   [][]byte // `{"name":` for the first column, `,"name":` for the others
}

// NewEncoder returns an encoder for schema, or an error naming the first
// column whose type has no JSON mapping.
func NewEncoder(schema *arrow.Schema) (*Encoder, error) {
	e := &Encoder{schema: schema}
	for i, f := range schema.Fields() {
		if err := checkType(f.Type); err != nil {
			return nil, fmt.Errorf("column %q: %w", f.Name, err)
		}
		k := []byte{','}
		if i == 0 {
			k[0] = '{'
		}
		k = appendString(k, f.Name)
		e.keys = append(e.keys, append(k, ':'))
	}
	return e, nil
}

// Schema is the schema the encoder was made for.
func (e *Encoder) Schema() *arrow.Schema { return e.schema }

// checkType reports an error for types without a JSON mapping.
func checkType(dt arrow.DataType) error {
	switch t := dt.(type) {
	case arrow.UnionType:
		return fmt.Errorf("unsupported type %s", dt)
	case *arrow.RunEndEncodedType:
		return fmt.Errorf("unsupported type %s", dt)
	case arrow.ExtensionType:
		return checkType(t.StorageType())
	case *arrow.DictionaryType:
		return checkType(t.ValueType)
	case arrow.NestedType:
		for _, f := range t.Fields() {
			if err := checkType(f.Type); err != nil {
				return err
			}
		}
	}
	return nil
}

// Batch is an encoder bound to one record batch.
type Batch struct {
	enc   *Encoder
	cols  []writeFn
	texts []writeFn
	nrows int
}

// writeFn appends the JSON of element i.
type writeFn func(dst []byte, i int) []byte

// Bind prepares rec for encoding. rec must have the encoder's column names
// and types, and structurally valid arrays (array.ValidateFull; batches from
// Object.Read are checked).
func (e *Encoder) Bind(rec arrow.RecordBatch) (*Batch, error) {
	if int(rec.NumCols()) != len(e.keys) {
		return nil, fmt.Errorf("record has %d columns, encoder %d", rec.NumCols(), len(e.keys))
	}
	b := &Batch{enc: e, nrows: int(rec.NumRows())}
	for i, col := range rec.Columns() {
		f := e.schema.Field(i)
		if col.Len() < b.nrows {
			return nil, fmt.Errorf("column %q has %d values for %d rows", f.Name, col.Len(), b.nrows)
		}
		if !arrow.TypeEqual(col.DataType(), f.Type) {
			return nil, fmt.Errorf("column %q: record type %s, encoder type %s", f.Name, col.DataType(), f.Type)
		}
		w, err := newWriter(col)
		if err != nil {
			return nil, fmt.Errorf("column %q: %w", f.Name, err)
		}
		b.cols = append(b.cols, w)
		b.texts = append(b.texts, newTextWriter(col, w))
	}
	return b, nil
}

// Len is the number of rows of the bound record.
func (b *Batch) Len() int { return b.nrows }

// AppendRow appends row i as one JSON object.
func (b *Batch) AppendRow(dst []byte, i int) []byte {
	if len(b.cols) == 0 {
		return append(dst, '{', '}')
	}
	for c, w := range b.cols {
		dst = append(dst, b.enc.keys[c]...)
		dst = w(dst, i)
	}
	return append(dst, '}')
}

// AppendText appends the plain-text form of column col of row i, for CSV: ""
// for null, the raw text of strings, the JSON of nested values, and the JSON
// of other scalars without surrounding quotes (timestamps, decimals, base64,
// unsafe integers).
func (b *Batch) AppendText(dst []byte, col, i int) []byte { return b.texts[col](dst, i) }

// newTextWriter derives the CSV text form from the JSON writer w.
func newTextWriter(arr arrow.Array, w writeFn) writeFn {
	if raw := rawStringWriter(arr); raw != nil {
		return raw
	}
	dt := arr.DataType()
	if ext, ok := dt.(arrow.ExtensionType); ok {
		dt = ext.StorageType()
	}
	_, nested := dt.(arrow.NestedType)
	return func(dst []byte, i int) []byte {
		if arr.IsNull(i) {
			return dst
		}
		n := len(dst)
		dst = w(dst, i)
		if !nested && len(dst) > n+1 && dst[n] == '"' {
			// Non-string scalars encode as JSON strings of characters that
			// need no escaping: dropping the quotes gives their text.
			copy(dst[n:], dst[n+1:len(dst)-1])
			dst = dst[:len(dst)-2]
		}
		return dst
	}
}

// rawStringWriter appends string values unquoted and unescaped, or returns
// nil when arr does not hold strings.
func rawStringWriter(arr arrow.Array) writeFn {
	type stringer interface {
		Value(int) string
		IsNull(int) bool
	}
	switch a := arr.(type) {
	case *array.String, *array.LargeString, *array.StringView:
		s := a.(stringer)
		return func(dst []byte, i int) []byte {
			if s.IsNull(i) {
				return dst
			}
			return append(dst, s.Value(i)...)
		}
	case *array.Dictionary:
		if inner := rawStringWriter(a.Dictionary()); inner != nil {
			return func(dst []byte, i int) []byte {
				if a.IsNull(i) {
					return dst
				}
				return inner(dst, a.GetValueIndex(i))
			}
		}
	case array.ExtensionArray:
		if a.ExtensionType().ExtensionName() != "arrow.uuid" {
			return rawStringWriter(a.Storage())
		}
	}
	return nil
}

// nullable wraps w with the null check of arr.
func nullable(arr arrow.Array, w writeFn) writeFn {
	if arr.NullN() == 0 {
		return w
	}
	return func(dst []byte, i int) []byte {
		if arr.IsNull(i) {
			return append(dst, "null"...)
		}
		return w(dst, i)
	}
}

// newWriter returns the JSON writer of the elements of arr.
func newWriter(arr arrow.Array) (writeFn, error) {
	if arr.DataType().ID() == arrow.NULL {
		return func(dst []byte, _ int) []byte { return append(dst, "null"...) }, nil
	}
	var w writeFn
	switch a := arr.(type) {
	case *array.Boolean:
		w = func(dst []byte, i int) []byte { return strconv.AppendBool(dst, a.Value(i)) }
	case *array.Int8:
		w = func(dst []byte, i int) []byte { return strconv.AppendInt(dst, int64(a.Value(i)), 10) }
	case *array.Int16:
		w = func(dst []byte, i int) []byte { return strconv.AppendInt(dst, int64(a.Value(i)), 10) }
	case *array.Int32:
		w = func(dst []byte, i int) []byte { return strconv.AppendInt(dst, int64(a.Value(i)), 10) }
	case *array.Int64:
		w = func(dst []byte, i int) []byte { return appendInt(dst, a.Value(i)) }
	case *array.Uint8:
		w = func(dst []byte, i int) []byte { return strconv.AppendUint(dst, uint64(a.Value(i)), 10) }
	case *array.Uint16:
		w = func(dst []byte, i int) []byte { return strconv.AppendUint(dst, uint64(a.Value(i)), 10) }
	case *array.Uint32:
		w = func(dst []byte, i int) []byte { return strconv.AppendUint(dst, uint64(a.Value(i)), 10) }
	case *array.Uint64:
		w = func(dst []byte, i int) []byte { return appendUint(dst, a.Value(i)) }
	case *array.Float16:
		w = func(dst []byte, i int) []byte { return appendFloat(dst, float64(a.Value(i).Float32()), 32) }
	case *array.Float32:
		w = func(dst []byte, i int) []byte { return appendFloat(dst, float64(a.Value(i)), 32) }
	case *array.Float64:
		w = func(dst []byte, i int) []byte { return appendFloat(dst, a.Value(i), 64) }
	case *array.String:
		w = func(dst []byte, i int) []byte { return appendString(dst, a.Value(i)) }
	case *array.LargeString:
		w = func(dst []byte, i int) []byte { return appendString(dst, a.Value(i)) }
	case *array.StringView:
		w = func(dst []byte, i int) []byte { return appendString(dst, a.Value(i)) }
	case *array.Binary:
		w = func(dst []byte, i int) []byte { return appendBase64(dst, a.Value(i)) }
	case *array.LargeBinary:
		w = func(dst []byte, i int) []byte { return appendBase64(dst, a.Value(i)) }
	case *array.BinaryView:
		w = func(dst []byte, i int) []byte { return appendBase64(dst, a.Value(i)) }
	case *array.FixedSizeBinary:
		w = func(dst []byte, i int) []byte { return appendBase64(dst, a.Value(i)) }
	case *array.Date32:
		w = func(dst []byte, i int) []byte {
			return appendDate(dst, int64(a.Value(i)))
		}
	case *array.Date64:
		w = func(dst []byte, i int) []byte {
			days, _ := floorDiv(int64(a.Value(i)), 86_400_000)
			return appendDate(dst, days)
		}
	case *array.Time32:
		unit := a.DataType().(*arrow.Time32Type).Unit
		w = func(dst []byte, i int) []byte { return appendTimeOfDay(dst, int64(a.Value(i)), unit) }
	case *array.Time64:
		unit := a.DataType().(*arrow.Time64Type).Unit
		w = func(dst []byte, i int) []byte { return appendTimeOfDay(dst, int64(a.Value(i)), unit) }
	case *array.Timestamp:
		tt := a.DataType().(*arrow.TimestampType)
		zoned := tt.TimeZone != ""
		w = func(dst []byte, i int) []byte { return appendTimestamp(dst, int64(a.Value(i)), tt.Unit, zoned) }
	case *array.Duration:
		w = func(dst []byte, i int) []byte { return appendInt(dst, int64(a.Value(i))) }
	case *array.Decimal32:
		scale := a.DataType().(*arrow.Decimal32Type).Scale
		w = func(dst []byte, i int) []byte { return appendDecimalInt(dst, int64(a.Value(i)), scale) }
	case *array.Decimal64:
		scale := a.DataType().(*arrow.Decimal64Type).Scale
		w = func(dst []byte, i int) []byte { return appendDecimalInt(dst, int64(a.Value(i)), scale) }
	case *array.Decimal128:
		scale := a.DataType().(*arrow.Decimal128Type).Scale
		w = func(dst []byte, i int) []byte { return appendDecimal128(dst, a.Value(i), scale) }
	case *array.Decimal256:
		scale := a.DataType().(*arrow.Decimal256Type).Scale
		w = func(dst []byte, i int) []byte { return appendDecimal(dst, a.Value(i).BigInt(), scale) }
	case *array.MonthInterval:
		w = func(dst []byte, i int) []byte { return strconv.AppendInt(dst, int64(a.Value(i)), 10) }
	case *array.DayTimeInterval:
		w = func(dst []byte, i int) []byte {
			v := a.Value(i)
			dst = strconv.AppendInt(append(dst, `{"days":`...), int64(v.Days), 10)
			dst = strconv.AppendInt(append(dst, `,"milliseconds":`...), int64(v.Milliseconds), 10)
			return append(dst, '}')
		}
	case *array.MonthDayNanoInterval:
		w = func(dst []byte, i int) []byte {
			v := a.Value(i)
			dst = strconv.AppendInt(append(dst, `{"months":`...), int64(v.Months), 10)
			dst = strconv.AppendInt(append(dst, `,"days":`...), int64(v.Days), 10)
			dst = appendInt(append(dst, `,"nanoseconds":`...), v.Nanoseconds)
			return append(dst, '}')
		}
	case *array.Map:
		keys, err := newWriter(a.Keys())
		if err != nil {
			return nil, err
		}
		items, err := newWriter(a.Items())
		if err != nil {
			return nil, err
		}
		w = func(dst []byte, i int) []byte {
			start, end := a.ValueOffsets(i)
			dst = append(dst, '[')
			for j := start; j < end; j++ {
				if j > start {
					dst = append(dst, ',')
				}
				dst = keys(append(dst, `{"key":`...), int(j))
				dst = items(append(dst, `,"value":`...), int(j))
				dst = append(dst, '}')
			}
			return append(dst, ']')
		}
	case array.ListLike:
		values, err := newWriter(a.ListValues())
		if err != nil {
			return nil, err
		}
		w = func(dst []byte, i int) []byte {
			start, end := a.ValueOffsets(i)
			dst = append(dst, '[')
			for j := start; j < end; j++ {
				if j > start {
					dst = append(dst, ',')
				}
				dst = values(dst, int(j))
			}
			return append(dst, ']')
		}
	case *array.Struct:
		st := a.DataType().(*arrow.StructType)
		fields := make([]writeFn, a.NumField())
		keys := make([][]byte, a.NumField())
		for k := range fields {
			fw, err := newWriter(a.Field(k))
			if err != nil {
				return nil, err
			}
			fields[k] = fw
			sep := byte(',')
			if k == 0 {
				sep = '{'
			}
			keys[k] = append(appendString([]byte{sep}, st.Field(k).Name), ':')
		}
		w = func(dst []byte, i int) []byte {
			if len(fields) == 0 {
				return append(dst, '{', '}')
			}
			for k, fw := range fields {
				dst = append(dst, keys[k]...)
				dst = fw(dst, i)
			}
			return append(dst, '}')
		}
	case *array.Dictionary:
		values, err := newWriter(a.Dictionary())
		if err != nil {
			return nil, err
		}
		w = func(dst []byte, i int) []byte { return values(dst, a.GetValueIndex(i)) }
	case array.ExtensionArray:
		if a.ExtensionType().ExtensionName() == "arrow.uuid" {
			w = func(dst []byte, i int) []byte { return appendString(dst, a.ValueStr(i)) }
			break
		}
		return newWriter(a.Storage())
	default:
		return nil, fmt.Errorf("unsupported type %s", arr.DataType())
	}
	return nullable(arr, w), nil
}

func appendBase64(dst, b []byte) []byte {
	dst = append(dst, '"')
	dst = base64.StdEncoding.AppendEncode(dst, b)
	return append(dst, '"')
}

func appendTime(dst []byte, t time.Time, layout string) []byte {
	dst = append(dst, '"')
	dst = t.UTC().AppendFormat(dst, layout)
	return append(dst, '"')
}

// fraction is the fractional-seconds layout of a time unit.
func fraction(u arrow.TimeUnit) string {
	switch u {
	case arrow.Millisecond:
		return ".000"
	case arrow.Microsecond:
		return ".000000"
	case arrow.Nanosecond:
		return ".000000000"
	}
	return ""
}

// instant converts v units since the epoch (or midnight) to a time.
func instant(v int64, u arrow.TimeUnit) time.Time {
	switch u {
	case arrow.Millisecond:
		return time.UnixMilli(v)
	case arrow.Microsecond:
		return time.UnixMicro(v)
	case arrow.Nanosecond:
		return time.Unix(0, v)
	}
	return time.Unix(v, 0)
}
