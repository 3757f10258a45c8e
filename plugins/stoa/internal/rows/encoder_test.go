package rows

import (
	"encoding/json"
	"math"
	"strings"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/decimal256"
	"github.com/apache/arrow-go/v18/arrow/extensions"
	"github.com/apache/arrow-go/v18/arrow/float16"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/google/uuid"
)

var mem = memory.DefaultAllocator

func fromJSON(t *testing.T, dt arrow.DataType, js string) arrow.Array {
	t.Helper()
	arr, _, err := array.FromJSON(mem, dt, strings.NewReader(js))
	if err != nil {
		t.Fatalf("FromJSON(%s, %s): %v", dt, js, err)
	}
	return arr
}

// encodeColumn encodes each element of arr as the row {"c": value} and
// returns the value parts.
func encodeColumn(t *testing.T, arr arrow.Array) []string {
	t.Helper()
	schema := arrow.NewSchema([]arrow.Field{{Name: "c", Type: arr.DataType(), Nullable: true}}, nil)
	rec := array.NewRecordBatch(schema, []arrow.Array{arr}, int64(arr.Len()))
	defer rec.Release()
	enc, err := NewEncoder(schema)
	if err != nil {
		t.Fatalf("NewEncoder(%s): %v", arr.DataType(), err)
	}
	b, err := enc.Bind(rec)
	if err != nil {
		t.Fatalf("Bind: %v", err)
	}
	out := make([]string, b.Len())
	for i := range out {
		row := b.AppendRow(nil, i)
		if !json.Valid(row) {
			t.Fatalf("%s row %d is not valid JSON: %s", arr.DataType(), i, row)
		}
		s := string(row)
		if !strings.HasPrefix(s, `{"c":`) || !strings.HasSuffix(s, "}") {
			t.Fatalf("row %s", s)
		}
		out[i] = s[len(`{"c":`) : len(s)-1]
	}
	return out
}

func TestEncodeTypes(t *testing.T) {
	t.Parallel()
	floats := array.NewFloat64Builder(mem)
	floats.AppendValues([]float64{1.5, 1e21, 1e20, 1e-7, 0.1, math.Copysign(0, -1), math.NaN(), math.Inf(1), math.Inf(-1), 123456789.125}, nil)
	floats.AppendNull()
	f32 := array.NewFloat32Builder(mem)
	f32.AppendValues([]float32{0.1, 16777216, 3.4028235e38, 1e-7}, nil)
	f16 := array.NewFloat16Builder(mem)
	f16.Append(float16.New(1.5))
	bin := array.NewBinaryBuilder(mem, arrow.BinaryTypes.Binary)
	bin.AppendValues([][]byte{{0xff, 0x00, 'a'}, {}}, nil)
	bin.AppendNull()
	lbin := array.NewBinaryBuilder(mem, arrow.BinaryTypes.LargeBinary)
	lbin.Append([]byte("hi"))
	fsb := array.NewFixedSizeBinaryBuilder(mem, &arrow.FixedSizeBinaryType{ByteWidth: 2})
	fsb.Append([]byte{1, 2})
	sv := array.NewStringViewBuilder(mem)
	sv.Append("a view string longer than twelve bytes")
	bv := array.NewBinaryViewBuilder(mem)
	bv.Append([]byte{1})
	d256 := array.NewDecimal256Builder(mem, &arrow.Decimal256Type{Precision: 40, Scale: -2})
	d256.Append(decimal256.FromI64(12))
	d256.Append(decimal256.FromI64(0))
	dict := array.NewDictionaryBuilder(mem, &arrow.DictionaryType{IndexType: arrow.PrimitiveTypes.Int8, ValueType: arrow.BinaryTypes.String}).(*array.BinaryDictionaryBuilder)
	_ = dict.AppendString("x")
	_ = dict.AppendString("y")
	_ = dict.AppendString("x")
	dict.AppendNull()
	ub := extensions.NewUUIDBuilder(mem)
	ub.Append(uuid.MustParse("0193a5b0-7e4c-7a3b-9c1d-2e3f4a5b6c7d"))
	ub.AppendNull()
	mi := array.NewMonthIntervalBuilder(mem)
	mi.Append(arrow.MonthInterval(-3))
	dti := array.NewDayTimeIntervalBuilder(mem)
	dti.Append(arrow.DayTimeInterval{Days: 2, Milliseconds: -5})
	mdn := array.NewMonthDayNanoIntervalBuilder(mem)
	mdn.Append(arrow.MonthDayNanoInterval{Months: 1, Days: 2, Nanoseconds: 1 << 60})
	nulls := array.NewNull(2)

	tests := []struct {
		name string
		arr  arrow.Array
		want []string
	}{
		{"null", nulls, []string{"null", "null"}},
		{"bool", fromJSON(t, arrow.FixedWidthTypes.Boolean, `[true,false,null]`), []string{"true", "false", "null"}},
		{"int8", fromJSON(t, arrow.PrimitiveTypes.Int8, `[-128,127,null]`), []string{"-128", "127", "null"}},
		{"int16", fromJSON(t, arrow.PrimitiveTypes.Int16, `[-32768]`), []string{"-32768"}},
		{"int32", fromJSON(t, arrow.PrimitiveTypes.Int32, `[2147483647]`), []string{"2147483647"}},
		{"int64", fromJSON(t, arrow.PrimitiveTypes.Int64, `[9007199254740991,-9007199254740991,9007199254740992,-9007199254740992,-9223372036854775808,0]`),
			[]string{"9007199254740991", "-9007199254740991", `"9007199254740992"`, `"-9007199254740992"`, `"-9223372036854775808"`, "0"}},
		{"uint8", fromJSON(t, arrow.PrimitiveTypes.Uint8, `[255]`), []string{"255"}},
		{"uint16", fromJSON(t, arrow.PrimitiveTypes.Uint16, `[65535]`), []string{"65535"}},
		{"uint32", fromJSON(t, arrow.PrimitiveTypes.Uint32, `[4294967295]`), []string{"4294967295"}},
		{"uint64", fromJSON(t, arrow.PrimitiveTypes.Uint64, `[9007199254740991,9007199254740992,18446744073709551615]`),
			[]string{"9007199254740991", `"9007199254740992"`, `"18446744073709551615"`}},
		{"float64", floats.NewArray(), []string{"1.5", "1e+21", "100000000000000000000", "1e-7", "0.1", "-0", `"NaN"`, `"Infinity"`, `"-Infinity"`, "123456789.125", "null"}},
		{"float32", f32.NewArray(), []string{"0.1", "16777216", "3.4028235e+38", "1e-7"}},
		{"float16", f16.NewArray(), []string{"1.5"}},
		{"string", fromJSON(t, arrow.BinaryTypes.String, `["a\"b\\c", "\u0001\n\t", "é日😀", "\u2028", "", null]`),
			[]string{`"a\"b\\c"`, `"\u0001\n\t"`, `"é日😀"`, `"\u2028"`, `""`, "null"}},
		{"large_string", fromJSON(t, arrow.BinaryTypes.LargeString, `["<&>"]`), []string{`"<&>"`}},
		{"string_view", sv.NewArray(), []string{`"a view string longer than twelve bytes"`}},
		{"binary", bin.NewArray(), []string{`"/wBh"`, `""`, "null"}},
		{"large_binary", lbin.NewArray(), []string{`"aGk="`}},
		{"binary_view", bv.NewArray(), []string{`"AQ=="`}},
		{"fixed_size_binary", fsb.NewArray(), []string{`"AQI="`}},
		{"date32", fromJSON(t, arrow.FixedWidthTypes.Date32, `[0,-1,19782]`), []string{`"1970-01-01"`, `"1969-12-31"`, `"2024-02-29"`}},
		{"date64", fromJSON(t, arrow.FixedWidthTypes.Date64, `[86400000]`), []string{`"1970-01-02"`}},
		{"time32s", fromJSON(t, arrow.FixedWidthTypes.Time32s, `[3661]`), []string{`"01:01:01"`}},
		{"time32ms", fromJSON(t, arrow.FixedWidthTypes.Time32ms, `[1]`), []string{`"00:00:00.001"`}},
		{"time64us", fromJSON(t, arrow.FixedWidthTypes.Time64us, `[86399999999]`), []string{`"23:59:59.999999"`}},
		{"time64ns", fromJSON(t, arrow.FixedWidthTypes.Time64ns, `[1]`), []string{`"00:00:00.000000001"`}},
		{"timestamp_ms_utc", fromJSON(t, &arrow.TimestampType{Unit: arrow.Millisecond, TimeZone: "UTC"}, `[0,-1,1709164800123]`),
			[]string{`"1970-01-01T00:00:00.000Z"`, `"1969-12-31T23:59:59.999Z"`, `"2024-02-29T00:00:00.123Z"`}},
		{"timestamp_us_paris", fromJSON(t, &arrow.TimestampType{Unit: arrow.Microsecond, TimeZone: "Europe/Paris"}, `[1]`),
			[]string{`"1970-01-01T00:00:00.000001Z"`}},
		{"timestamp_ns_offset", fromJSON(t, &arrow.TimestampType{Unit: arrow.Nanosecond, TimeZone: "+05:30"}, `[1]`),
			[]string{`"1970-01-01T00:00:00.000000001Z"`}},
		{"timestamp_s_naive", fromJSON(t, &arrow.TimestampType{Unit: arrow.Second}, `[0]`), []string{`"1970-01-01T00:00:00"`}},
		{"duration", fromJSON(t, arrow.FixedWidthTypes.Duration_ms, `[5,9223372036854775807]`), []string{"5", `"9223372036854775807"`}},
		{"decimal128", fromJSON(t, &arrow.Decimal128Type{Precision: 5, Scale: 2}, `["-1.23","0.05","123.00",null]`),
			[]string{`"-1.23"`, `"0.05"`, `"123.00"`, "null"}},
		{"decimal128_38", fromJSON(t, &arrow.Decimal128Type{Precision: 38, Scale: 10}, `["-9999999999999999999999999999.9999999999"]`),
			[]string{`"-9999999999999999999999999999.9999999999"`}},
		{"decimal256_negative_scale", d256.NewArray(), []string{`"1200"`, `"0"`}},
		{"decimal32", fromJSON(t, &arrow.Decimal32Type{Precision: 5, Scale: 3}, `["-0.001"]`), []string{`"-0.001"`}},
		{"decimal64", fromJSON(t, &arrow.Decimal64Type{Precision: 12, Scale: 1}, `["12345678901.2"]`), []string{`"12345678901.2"`}},
		{"list", fromJSON(t, arrow.ListOf(arrow.PrimitiveTypes.Int64), `[[1,null,9007199254740993],[],null]`),
			[]string{`[1,null,"9007199254740993"]`, `[]`, "null"}},
		{"large_list", fromJSON(t, arrow.LargeListOf(arrow.BinaryTypes.String), `[["a",null]]`), []string{`["a",null]`}},
		{"fixed_size_list", fromJSON(t, arrow.FixedSizeListOf(2, arrow.PrimitiveTypes.Int32), `[[1,2],null,[3,null]]`),
			[]string{`[1,2]`, "null", `[3,null]`}},
		{"list_view", fromJSON(t, arrow.ListViewOf(arrow.PrimitiveTypes.Int32), `[[1],[2,3]]`), []string{`[1]`, `[2,3]`}},
		{"struct", fromJSON(t, arrow.StructOf(arrow.Field{Name: "a", Type: arrow.PrimitiveTypes.Int32, Nullable: true}, arrow.Field{Name: "b\"", Type: arrow.BinaryTypes.String, Nullable: true}),
			`[{"a":1,"b\"":"x"},null,{"a":null,"b\"":null}]`),
			[]string{`{"a":1,"b\"":"x"}`, "null", `{"a":null,"b\"":null}`}},
		{"empty_struct", fromJSON(t, arrow.StructOf(), `[{}]`), []string{`{}`}},
		{"list_of_struct", fromJSON(t, arrow.ListOf(arrow.StructOf(arrow.Field{Name: "t", Type: &arrow.TimestampType{Unit: arrow.Millisecond, TimeZone: "UTC"}, Nullable: true})),
			`[[{"t":1000},null]]`), []string{`[{"t":"1970-01-01T00:00:01.000Z"},null]`}},
		{"map", fromJSON(t, arrow.MapOf(arrow.BinaryTypes.String, arrow.PrimitiveTypes.Int32), `[[{"key":"a","value":1},{"key":"a","value":null}],null,[]]`),
			[]string{`[{"key":"a","value":1},{"key":"a","value":null}]`, "null", `[]`}},
		{"dictionary", dict.NewArray(), []string{`"x"`, `"y"`, `"x"`, "null"}},
		{"uuid", ub.NewArray(), []string{`"0193a5b0-7e4c-7a3b-9c1d-2e3f4a5b6c7d"`, "null"}},
		{"month_interval", mi.NewArray(), []string{"-3"}},
		{"day_time_interval", dti.NewArray(), []string{`{"days":2,"milliseconds":-5}`}},
		{"month_day_nano_interval", mdn.NewArray(), []string{`{"months":1,"days":2,"nanoseconds":"1152921504606846976"}`}},
	}
	for _, tc := range tests {
		got := encodeColumn(t, tc.arr)
		if strings.Join(got, "|") != strings.Join(tc.want, "|") {
			t.Errorf("%s:\n got  %v\n want %v", tc.name, got, tc.want)
		}
	}
}

func TestEncodeSlicedArrays(t *testing.T) {
	t.Parallel()
	st := fromJSON(t, arrow.StructOf(arrow.Field{Name: "a", Type: arrow.PrimitiveTypes.Int32, Nullable: true}),
		`[{"a":1},{"a":2},null,{"a":4}]`)
	ls := fromJSON(t, arrow.ListOf(arrow.PrimitiveTypes.Int32), `[[1],[2,3],null,[4]]`)
	mp := fromJSON(t, arrow.MapOf(arrow.BinaryTypes.String, arrow.PrimitiveTypes.Int32), `[[{"key":"a","value":1}],[{"key":"b","value":2}],null]`)
	if got := encodeColumn(t, array.NewSlice(st, 1, 4)); strings.Join(got, "|") != `{"a":2}|null|{"a":4}` {
		t.Errorf("sliced struct: %v", got)
	}
	if got := encodeColumn(t, array.NewSlice(ls, 1, 3)); strings.Join(got, "|") != `[2,3]|null` {
		t.Errorf("sliced list: %v", got)
	}
	if got := encodeColumn(t, array.NewSlice(mp, 1, 3)); strings.Join(got, "|") != `[{"key":"b","value":2}]|null` {
		t.Errorf("sliced map: %v", got)
	}
}

func TestEncodeRowAndText(t *testing.T) {
	t.Parallel()
	schema := arrow.NewSchema([]arrow.Field{
		{Name: "id", Type: arrow.PrimitiveTypes.Int64},
		{Name: "name", Type: arrow.BinaryTypes.String, Nullable: true},
		{Name: "ts", Type: &arrow.TimestampType{Unit: arrow.Millisecond, TimeZone: "UTC"}, Nullable: true},
		{Name: "tags", Type: arrow.ListOf(arrow.BinaryTypes.String), Nullable: true},
		{Name: "big", Type: arrow.PrimitiveTypes.Uint64, Nullable: true},
	}, nil)
	rec, _, err := array.RecordFromJSON(mem, schema, strings.NewReader(
		`[{"id":1,"name":"a \"q\"","ts":0,"tags":["x","y"],"big":18446744073709551615},{"id":2,"name":null,"ts":null,"tags":null,"big":null}]`))
	if err != nil {
		t.Fatal(err)
	}
	defer rec.Release()
	enc, err := NewEncoder(schema)
	if err != nil {
		t.Fatal(err)
	}
	if enc.Schema() != schema {
		t.Error("Schema() is not the encoder's schema")
	}
	b, err := enc.Bind(rec)
	if err != nil {
		t.Fatal(err)
	}
	rows := []string{string(b.AppendRow(nil, 0)), string(b.AppendRow(nil, 1))}
	want := []string{
		`{"id":1,"name":"a \"q\"","ts":"1970-01-01T00:00:00.000Z","tags":["x","y"],"big":"18446744073709551615"}`,
		`{"id":2,"name":null,"ts":null,"tags":null,"big":null}`,
	}
	for i := range rows {
		if rows[i] != want[i] {
			t.Errorf("row %d:\n got  %s\n want %s", i, rows[i], want[i])
		}
	}
	var texts []string
	for i := range 2 {
		for c := range 5 {
			texts = append(texts, string(b.AppendText(nil, c, i)))
		}
	}
	wantText := []string{"1", `a "q"`, "1970-01-01T00:00:00.000Z", `["x","y"]`, "18446744073709551615", "2", "", "", "", ""}
	if strings.Join(texts, "|") != strings.Join(wantText, "|") {
		t.Errorf("texts:\n got  %q\n want %q", texts, wantText)
	}
}

func TestEncoderErrors(t *testing.T) {
	t.Parallel()
	union := arrow.SparseUnionOf([]arrow.Field{{Name: "a", Type: arrow.PrimitiveTypes.Int32}}, []arrow.UnionTypeCode{0})
	for _, dt := range []arrow.DataType{
		union,
		arrow.ListOf(union),
		arrow.RunEndEncodedOf(arrow.PrimitiveTypes.Int32, arrow.PrimitiveTypes.Int64),
	} {
		schema := arrow.NewSchema([]arrow.Field{{Name: "ok", Type: arrow.PrimitiveTypes.Int8}, {Name: "odd", Type: dt}}, nil)
		if _, err := NewEncoder(schema); err == nil || !strings.Contains(err.Error(), `column "odd"`) {
			t.Errorf("NewEncoder(%s): %v, want an error naming the column", dt, err)
		}
	}
	schema := arrow.NewSchema([]arrow.Field{{Name: "a", Type: arrow.PrimitiveTypes.Int8}}, nil)
	enc, err := NewEncoder(schema)
	if err != nil {
		t.Fatal(err)
	}
	other := arrow.NewSchema([]arrow.Field{{Name: "a", Type: arrow.PrimitiveTypes.Int16}}, nil)
	rec := array.NewRecordBatch(other, []arrow.Array{fromJSON(t, arrow.PrimitiveTypes.Int16, `[1]`)}, 1)
	if _, err := enc.Bind(rec); err == nil {
		t.Error("Bind accepted a record of another type")
	}
	two := arrow.NewSchema([]arrow.Field{{Name: "a", Type: arrow.PrimitiveTypes.Int8}, {Name: "b", Type: arrow.PrimitiveTypes.Int8}}, nil)
	rec2 := array.NewRecordBatch(two, []arrow.Array{fromJSON(t, arrow.PrimitiveTypes.Int8, `[1]`), fromJSON(t, arrow.PrimitiveTypes.Int8, `[1]`)}, 1)
	if _, err := enc.Bind(rec2); err == nil {
		t.Error("Bind accepted a record with another column count")
	}
	empty, err := NewEncoder(arrow.NewSchema(nil, nil))
	if err != nil {
		t.Fatal(err)
	}
	eb, err := empty.Bind(array.NewRecordBatch(arrow.NewSchema(nil, nil), nil, 2))
	if err != nil || string(eb.AppendRow(nil, 1)) != "{}" {
		t.Errorf("empty schema row: %v", err)
	}
}
