package rows

import (
	"encoding/json"
	"math"
	"math/big"
	"strconv"
	"testing"
)

func TestAppendString(t *testing.T) {
	t.Parallel()
	tests := map[string]string{
		"":                   `""`,
		"plain":              `"plain"`,
		`"\`:                 `"\"\\"`,
		"\x00\x1f\x7f":       `"\u0000\u001f` + "\x7f" + `"`,
		"\b\f\n\r\t":         `"\u0008\u000c\n\r\t"`,
		"é日😀":                `"é日😀"`,
		"\u2028\u2029":       `"\u2028\u2029"`,
		"bad \xff utf8 \xc3": `"bad \ufffd utf8 \ufffd"`,
		"<script>&":          `"<script>&"`,
	}
	for in, want := range tests {
		if got := string(appendString(nil, in)); got != want {
			t.Errorf("appendString(%q) = %s, want %s", in, got, want)
		}
	}
}

func FuzzAppendString(f *testing.F) {
	for _, s := range []string{"", "a\"b", "\x00\xff", "\u2028", "日本", "\xed\xa0\x80"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		out := appendString([]byte("x"), s)[1:]
		if !json.Valid(out) {
			t.Fatalf("invalid JSON %q for %q", out, s)
		}
		var got, want string
		if err := json.Unmarshal(out, &got); err != nil {
			t.Fatal(err)
		}
		ref, _ := json.Marshal(s)
		_ = json.Unmarshal(ref, &want)
		if got != want {
			t.Fatalf("decoded %q, encoding/json round trip gives %q", got, want)
		}
	})
}

func TestAppendInt(t *testing.T) {
	t.Parallel()
	for v, want := range map[int64]string{
		0: "0", -1: "-1", 1<<53 - 1: "9007199254740991", -(1<<53 - 1): "-9007199254740991",
		1 << 53: `"9007199254740992"`, -(1 << 53): `"-9007199254740992"`,
		math.MaxInt64: `"9223372036854775807"`, math.MinInt64: `"-9223372036854775808"`,
	} {
		if got := string(appendInt(nil, v)); got != want {
			t.Errorf("appendInt(%d) = %s, want %s", v, got, want)
		}
	}
	for v, want := range map[uint64]string{0: "0", 1<<53 - 1: "9007199254740991", 1 << 53: `"9007199254740992"`, math.MaxUint64: `"18446744073709551615"`} {
		if got := string(appendUint(nil, v)); got != want {
			t.Errorf("appendUint(%d) = %s, want %s", v, got, want)
		}
	}
}

func TestAppendFloatMatchesEncodingJSON(t *testing.T) {
	t.Parallel()
	for _, f := range []float64{0, 1, -1.5, 0.1, 1e20, 1e21, 1e-6, 1e-7, 123456789e-20, math.MaxFloat64, math.SmallestNonzeroFloat64, 5e-324} {
		want, _ := json.Marshal(f)
		if got := string(appendFloat(nil, f, 64)); got != string(want) {
			t.Errorf("appendFloat(%v, 64) = %s, encoding/json %s", f, got, want)
		}
		f32 := float32(f)
		if math.IsInf(float64(f32), 0) {
			continue
		}
		want, _ = json.Marshal(f32)
		if got := string(appendFloat(nil, float64(f32), 32)); got != string(want) {
			t.Errorf("appendFloat(%v, 32) = %s, encoding/json %s", f32, got, want)
		}
	}
	for f, want := range map[float64]string{math.Inf(1): `"Infinity"`, math.Inf(-1): `"-Infinity"`, math.Copysign(0, -1): "-0"} {
		if got := string(appendFloat(nil, f, 64)); got != want {
			t.Errorf("appendFloat(%v) = %s, want %s", f, got, want)
		}
	}
	if got := string(appendFloat(nil, math.NaN(), 64)); got != `"NaN"` {
		t.Errorf("NaN: %s", got)
	}
}

func FuzzAppendFloat(f *testing.F) {
	for _, v := range []float64{0, 1e21, 1e-7, math.NaN(), math.Copysign(0, -1), math.MaxFloat32} {
		f.Add(v)
	}
	f.Fuzz(func(t *testing.T, v float64) {
		for _, bits := range []int{32, 64} {
			x := v
			if bits == 32 {
				x = float64(float32(v))
			}
			out := appendFloat(nil, x, bits)
			if !json.Valid(out) {
				t.Fatalf("invalid JSON %s for %v", out, x)
			}
			if math.IsNaN(x) || math.IsInf(x, 0) {
				continue
			}
			back, err := strconv.ParseFloat(string(out), bits)
			if err != nil || back != x {
				t.Fatalf("%s parses back as %v (%v), want %v", out, back, err, x)
			}
		}
	})
}

func TestAppendDecimal(t *testing.T) {
	t.Parallel()
	tests := []struct {
		v     string
		scale int32
		want  string
	}{
		{"0", 0, `"0"`}, {"0", 2, `"0.00"`}, {"0", -3, `"0"`}, {"5", 3, `"0.005"`}, {"-5", 3, `"-0.005"`},
		{"12345", 2, `"123.45"`}, {"-12345", 5, `"-0.12345"`}, {"12", -2, `"1200"`},
		{"7", 200, `"7E-200"`}, {"7", -200, `"7E200"`},
		{"99999999999999999999999999999999999999", 38, `"0.99999999999999999999999999999999999999"`},
	}
	for _, tc := range tests {
		v, _ := new(big.Int).SetString(tc.v, 10)
		if got := string(appendDecimal(nil, v, tc.scale)); got != tc.want {
			t.Errorf("appendDecimal(%s, %d) = %s, want %s", tc.v, tc.scale, got, tc.want)
		}
	}
}
