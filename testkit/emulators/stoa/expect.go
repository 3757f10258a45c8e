package stoaemu

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"reflect"
	"strconv"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"
)

// Expected is the content of an object as JSON rows should carry it, for
// cell-by-cell comparison with what a client produced.
type Expected struct {
	// Columns are the column names in schema (and projection) order.
	Columns []string
	// Rows hold one map per row: column → expected value (see CompareRow for
	// the value representation).
	Rows []map[string]any
}

// ExpectedRows decodes object key (all of it, in memory: for tests) and
// returns its rows in the JSON mapping of the connector-host Stoa plugin,
// restricted to columns (all when empty). It is an independent oracle: it
// uses arrow-go's table reader and the standard library's formatting, not the
// plugin's encoder.
//
// Values are: nil; bool; json.Number for integers that JSON numbers carry
// exactly (|v| ≤ 2^53-1); string for everything rendered as a JSON string
// (text, base64 binary, unsafe integers, decimals, dates and times, "NaN",
// "Infinity", "-Infinity"); float64 and float32 for finite floats of those
// widths; []any for lists; map[string]any for structs; []any of
// {"key","value"} maps for maps.
func (s *Server) ExpectedRows(key string, columns []string) (*Expected, error) {
	b, err := s.Object(key)
	if err != nil {
		return nil, err
	}
	return ExpectedFromParquet(b, columns)
}

// ExpectedFromParquet is ExpectedRows for any Parquet file's bytes.
func ExpectedFromParquet(b []byte, columns []string) (*Expected, error) {
	tbl, err := pqarrow.ReadTable(context.Background(), bytes.NewReader(b), nil, pqarrow.ArrowReadProperties{}, memory.DefaultAllocator)
	if err != nil {
		return nil, err
	}
	defer tbl.Release()
	return ExpectedFromTable(tbl, columns)
}

// ExpectedFromTable is ExpectedRows for an Arrow table (e.g. read back from
// an Arrow IPC file).
func ExpectedFromTable(tbl arrow.Table, columns []string) (*Expected, error) {
	cols := columns
	if len(cols) == 0 {
		for _, f := range tbl.Schema().Fields() {
			cols = append(cols, f.Name)
		}
	}
	exp := &Expected{Columns: cols, Rows: make([]map[string]any, tbl.NumRows())}
	for i := range exp.Rows {
		exp.Rows[i] = make(map[string]any, len(cols))
	}
	for _, name := range cols {
		idx := tbl.Schema().FieldIndices(name)
		if len(idx) == 0 {
			return nil, fmt.Errorf("stoaemu: no column %q", name)
		}
		row := 0
		for _, chunk := range tbl.Column(idx[0]).Data().Chunks() {
			for i := range chunk.Len() {
				v, err := expectValue(chunk, i)
				if err != nil {
					return nil, fmt.Errorf("stoaemu: column %q: %w", name, err)
				}
				exp.Rows[row][name] = v
				row++
			}
		}
	}
	return exp, nil
}

func expectInt(v int64) any {
	if v > 1<<53-1 || v < -(1<<53-1) {
		return strconv.FormatInt(v, 10)
	}
	return json.Number(strconv.FormatInt(v, 10))
}

func expectUint(v uint64) any {
	if v > 1<<53-1 {
		return strconv.FormatUint(v, 10)
	}
	return json.Number(strconv.FormatUint(v, 10))
}

func expectFloat(f float64, single bool) any {
	switch {
	case math.IsNaN(f):
		return "NaN"
	case math.IsInf(f, 1):
		return "Infinity"
	case math.IsInf(f, -1):
		return "-Infinity"
	case single:
		return float32(f)
	}
	return f
}

func unitTime(v int64, u arrow.TimeUnit) (time.Time, string) {
	switch u {
	case arrow.Millisecond:
		return time.UnixMilli(v).UTC(), ".000"
	case arrow.Microsecond:
		return time.UnixMicro(v).UTC(), ".000000"
	case arrow.Nanosecond:
		return time.Unix(0, v).UTC(), ".000000000"
	}
	return time.Unix(v, 0).UTC(), ""
}

func expectValue(arr arrow.Array, i int) (any, error) {
	if arr.IsNull(i) {
		return nil, nil
	}
	switch a := arr.(type) {
	case *array.Boolean:
		return a.Value(i), nil
	case *array.Int8:
		return expectInt(int64(a.Value(i))), nil
	case *array.Int16:
		return expectInt(int64(a.Value(i))), nil
	case *array.Int32:
		return expectInt(int64(a.Value(i))), nil
	case *array.Int64:
		return expectInt(a.Value(i)), nil
	case *array.Uint8:
		return expectUint(uint64(a.Value(i))), nil
	case *array.Uint16:
		return expectUint(uint64(a.Value(i))), nil
	case *array.Uint32:
		return expectUint(uint64(a.Value(i))), nil
	case *array.Uint64:
		return expectUint(a.Value(i)), nil
	case *array.Float32:
		return expectFloat(float64(a.Value(i)), true), nil
	case *array.Float64:
		return expectFloat(a.Value(i), false), nil
	case *array.String:
		return a.Value(i), nil
	case *array.LargeString:
		return a.Value(i), nil
	case *array.Binary:
		return base64.StdEncoding.EncodeToString(a.Value(i)), nil
	case *array.FixedSizeBinary:
		return base64.StdEncoding.EncodeToString(a.Value(i)), nil
	case *array.Date32:
		return a.Value(i).ToTime().Format("2006-01-02"), nil
	case *array.Time32:
		t, frac := unitTime(int64(a.Value(i)), a.DataType().(*arrow.Time32Type).Unit)
		return t.Format("15:04:05" + frac), nil
	case *array.Timestamp:
		tt := a.DataType().(*arrow.TimestampType)
		t, frac := unitTime(int64(a.Value(i)), tt.Unit)
		layout := "2006-01-02T15:04:05" + frac
		if tt.TimeZone != "" {
			layout += "Z"
		}
		return t.Format(layout), nil
	case *array.Decimal128:
		return a.Value(i).ToString(a.DataType().(*arrow.Decimal128Type).Scale), nil
	case *array.Map:
		start, end := a.ValueOffsets(i)
		out := []any{}
		for j := start; j < end; j++ {
			k, err := expectValue(a.Keys(), int(j))
			if err != nil {
				return nil, err
			}
			v, err := expectValue(a.Items(), int(j))
			if err != nil {
				return nil, err
			}
			out = append(out, map[string]any{"key": k, "value": v})
		}
		return out, nil
	case *array.List:
		start, end := a.ValueOffsets(i)
		out := []any{}
		for j := start; j < end; j++ {
			v, err := expectValue(a.ListValues(), int(j))
			if err != nil {
				return nil, err
			}
			out = append(out, v)
		}
		return out, nil
	case *array.Struct:
		st := a.DataType().(*arrow.StructType)
		out := map[string]any{}
		for k := range a.NumField() {
			v, err := expectValue(a.Field(k), i)
			if err != nil {
				return nil, err
			}
			out[st.Field(k).Name] = v
		}
		return out, nil
	}
	return nil, fmt.Errorf("oracle has no mapping for %s", arr.DataType())
}

// CompareRow checks that the JSON object row carries exactly want, with its
// keys in the order columns. Numbers are compared by value at the width of
// the expected value (float32 cells parse as float32), so any correct JSON
// number formatting passes. The error names the first differing column
// path.
func CompareRow(row []byte, columns []string, want map[string]any) error {
	dec := json.NewDecoder(bytes.NewReader(row))
	dec.UseNumber()
	tok, err := dec.Token()
	if err != nil || tok != json.Delim('{') {
		return fmt.Errorf("row is not a JSON object: %.80s", row)
	}
	var keys []string
	for dec.More() {
		k, err := dec.Token()
		if err != nil {
			return fmt.Errorf("row: %w", err)
		}
		keys = append(keys, k.(string))
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return fmt.Errorf("row: %w", err)
		}
	}
	if !reflect.DeepEqual(keys, columns) {
		return fmt.Errorf("row keys %v, want %v", keys, columns)
	}
	var got map[string]any
	dec = json.NewDecoder(bytes.NewReader(row))
	dec.UseNumber()
	if err := dec.Decode(&got); err != nil {
		return err
	}
	for _, c := range columns {
		if err := compareValue(c, got[c], want[c]); err != nil {
			return err
		}
	}
	return nil
}

var errMismatch = errors.New("mismatch")

func compareValue(path string, got, want any) error {
	fail := func() error { return fmt.Errorf("%s: got %#v, want %#v: %w", path, got, want, errMismatch) }
	switch w := want.(type) {
	case nil, bool, string, json.Number:
		if got != want {
			return fail()
		}
	case float64:
		n, ok := got.(json.Number)
		f, err := strconv.ParseFloat(string(n), 64)
		if !ok || err != nil || f != w || math.Signbit(f) != math.Signbit(w) {
			return fail()
		}
	case float32:
		n, ok := got.(json.Number)
		f, err := strconv.ParseFloat(string(n), 32)
		if !ok || err != nil || float32(f) != w || math.Signbit(f) != math.Signbit(float64(w)) {
			return fail()
		}
	case []any:
		g, ok := got.([]any)
		if !ok || len(g) != len(w) {
			return fail()
		}
		for i := range w {
			if err := compareValue(fmt.Sprintf("%s[%d]", path, i), g[i], w[i]); err != nil {
				return err
			}
		}
	case map[string]any:
		g, ok := got.(map[string]any)
		if !ok || len(g) != len(w) {
			return fail()
		}
		for k := range w {
			if err := compareValue(path+"."+k, g[k], w[k]); err != nil {
				return err
			}
		}
	default:
		return fmt.Errorf("%s: unexpected expected value %T", path, want)
	}
	return nil
}
