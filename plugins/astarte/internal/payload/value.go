// Package payload converts Astarte values between Go, JSON-decoded input and
// the BSON wire form of the Astarte MQTT v1 protocol ({"v": value, "t":
// datetime}), and encodes the zlib-compressed property lists of the control
// topics.
//
// Canonical Go values per Astarte type: double float64, integer int32,
// boolean bool, longinteger int64, string string, binaryblob []byte,
// datetime time.Time (UTC, millisecond precision), and slices of those for
// the array types ([]float64, []int32, []bool, []int64, []string, [][]byte,
// []time.Time).
package payload

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math"
	"reflect"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/connector-host/connector-host/plugins/astarte/internal/interfaces"
)

// maxSafeFloatInt is the largest integer a float64 holds exactly (2^53).
const maxSafeFloatInt = 1 << 53

// Normalize checks v against the Astarte type t and returns it in canonical
// Go form. It accepts canonical values and what encoding/json produces:
// numbers as float64 or json.Number, longinteger also as a decimal string,
// binaryblob as base64 text, datetime as RFC 3339 text or milliseconds since
// the epoch, arrays as []any. Limits: integer within int32, finite doubles,
// strings and blobs at most 65536 bytes, arrays at most 1024 items.
func Normalize(t interfaces.MappingType, v any) (any, error) {
	if !t.Valid() {
		return nil, fmt.Errorf("unknown type %q", t)
	}
	if v == nil {
		return nil, fmt.Errorf("value is missing (null) for type %s", t)
	}
	if !t.IsArray() {
		return scalar(t, v)
	}
	items, err := asItems(v)
	if err != nil {
		return nil, fmt.Errorf("type %s wants an array: %w", t, err)
	}
	if len(items) > interfaces.MaxArrayItems {
		return nil, fmt.Errorf("array has %d items, more than %d", len(items), interfaces.MaxArrayItems)
	}
	el := t.Element()
	var out any
	switch el {
	case interfaces.Double:
		out = make([]float64, len(items))
	case interfaces.Integer:
		out = make([]int32, len(items))
	case interfaces.Boolean:
		out = make([]bool, len(items))
	case interfaces.LongInteger:
		out = make([]int64, len(items))
	case interfaces.String:
		out = make([]string, len(items))
	case interfaces.BinaryBlob:
		out = make([][]byte, len(items))
	case interfaces.DateTime:
		out = make([]time.Time, len(items))
	}
	rv := reflect.ValueOf(out)
	for k, it := range items {
		if it == nil {
			return nil, fmt.Errorf("item %d: value is missing (null) for type %s", k, el)
		}
		n, err := scalar(el, it)
		if err != nil {
			return nil, fmt.Errorf("item %d: %w", k, err)
		}
		rv.Index(k).Set(reflect.ValueOf(n))
	}
	return out, nil
}

// asItems turns any slice (but not []byte or a string) into []any.
func asItems(v any) ([]any, error) {
	if items, ok := v.([]any); ok {
		return items, nil
	}
	rv := reflect.ValueOf(v)
	if rv.Kind() != reflect.Slice && rv.Kind() != reflect.Array {
		return nil, fmt.Errorf("got %s", describe(v))
	}
	if _, isBytes := v.([]byte); isBytes {
		return nil, fmt.Errorf("got %s", describe(v))
	}
	items := make([]any, rv.Len())
	for k := range items {
		items[k] = rv.Index(k).Interface()
	}
	return items, nil
}

func scalar(t interfaces.MappingType, v any) (any, error) {
	switch t {
	case interfaces.Double:
		f, ok := toFloat(v)
		if !ok {
			return nil, fmt.Errorf("type double wants a number, got %s", describe(v))
		}
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return nil, fmt.Errorf("type double does not accept NaN or infinity")
		}
		return f, nil
	case interfaces.Integer:
		n, ok, exact := toInt(v)
		if !ok {
			return nil, fmt.Errorf("type integer wants a whole number, got %s", describe(v))
		}
		if !exact || n < math.MinInt32 || n > math.MaxInt32 {
			return nil, fmt.Errorf("type integer: %s is outside the 32-bit range", describe(v))
		}
		return int32(n), nil
	case interfaces.Boolean:
		b, ok := v.(bool)
		if !ok {
			return nil, fmt.Errorf("type boolean wants true or false, got %s", describe(v))
		}
		return b, nil
	case interfaces.LongInteger:
		if s, ok := v.(string); ok {
			n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
			if err != nil {
				return nil, fmt.Errorf("type longinteger: %q is not a 64-bit integer", truncate(s))
			}
			return n, nil
		}
		n, ok, exact := toInt(v)
		if !ok {
			return nil, fmt.Errorf("type longinteger wants a whole number, got %s", describe(v))
		}
		if !exact {
			return nil, fmt.Errorf("type longinteger: %s is outside the 64-bit range or not exact; send it as a string", describe(v))
		}
		return n, nil
	case interfaces.String:
		s, ok := v.(string)
		if !ok {
			return nil, fmt.Errorf("type string wants a string, got %s", describe(v))
		}
		if len(s) > interfaces.MaxBytes {
			return nil, fmt.Errorf("type string: %d bytes, more than %d", len(s), interfaces.MaxBytes)
		}
		if !utf8.ValidString(s) {
			return nil, fmt.Errorf("type string: not valid UTF-8")
		}
		return s, nil
	case interfaces.BinaryBlob:
		var b []byte
		switch x := v.(type) {
		case []byte:
			b = append([]byte{}, x...)
		case string:
			if len(x) > base64.StdEncoding.EncodedLen(interfaces.MaxBytes)+4 {
				return nil, fmt.Errorf("type binaryblob: more than %d bytes", interfaces.MaxBytes)
			}
			var err error
			if b, err = decodeBase64(x); err != nil {
				return nil, fmt.Errorf("type binaryblob wants base64 text: %w", err)
			}
		default:
			return nil, fmt.Errorf("type binaryblob wants bytes or base64 text, got %s", describe(v))
		}
		if len(b) > interfaces.MaxBytes {
			return nil, fmt.Errorf("type binaryblob: %d bytes, more than %d", len(b), interfaces.MaxBytes)
		}
		return b, nil
	case interfaces.DateTime:
		switch x := v.(type) {
		case time.Time:
			return Millis(x), nil
		case string:
			tm, err := time.Parse(time.RFC3339Nano, x)
			if err != nil {
				return nil, fmt.Errorf("type datetime wants RFC 3339 text such as 2024-01-02T03:04:05.678Z: %q", truncate(x))
			}
			return Millis(tm), nil
		}
		n, ok, exact := toInt(v)
		if !ok || !exact {
			return nil, fmt.Errorf("type datetime wants RFC 3339 text or milliseconds since the epoch, got %s", describe(v))
		}
		return time.UnixMilli(n).UTC(), nil
	}
	return nil, fmt.Errorf("unknown type %q", t)
}

// Millis returns t in UTC truncated to the millisecond (BSON datetime
// precision).
func Millis(t time.Time) time.Time {
	return time.UnixMilli(t.UnixMilli()).UTC()
}

func decodeBase64(s string) ([]byte, error) {
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if b, err := enc.DecodeString(s); err == nil {
			return b, nil
		}
	}
	return nil, fmt.Errorf("%q is not base64", truncate(s))
}

func toFloat(v any) (float64, bool) {
	switch x := v.(type) {
	case float64:
		return x, true
	case float32:
		return float64(x), true
	case uint:
		return float64(x), true
	case uint64:
		return float64(x), true
	case json.Number:
		f, err := x.Float64()
		return f, err == nil
	}
	if n, ok, _ := toInt(v); ok {
		return float64(n), true
	}
	return 0, false
}

// toInt converts integer-valued input; exact is false when the value does not
// fit an int64 or is a float that is not exactly an integer.
func toInt(v any) (n int64, ok, exact bool) {
	switch x := v.(type) {
	case int:
		return int64(x), true, true
	case int8:
		return int64(x), true, true
	case int16:
		return int64(x), true, true
	case int32:
		return int64(x), true, true
	case int64:
		return x, true, true
	case uint8:
		return int64(x), true, true
	case uint16:
		return int64(x), true, true
	case uint32:
		return int64(x), true, true
	case uint:
		return toInt(uint64(x))
	case uint64:
		if x > math.MaxInt64 {
			return 0, true, false // beyond int64
		}
		return int64(x), true, true
	case float64:
		if x != math.Trunc(x) || math.IsInf(x, 0) || math.IsNaN(x) {
			return 0, false, false
		}
		// Beyond 2^53 a float64 no longer holds every integer: the value
		// may already have been rounded while decoding JSON.
		return int64(x), true, x > -maxSafeFloatInt && x < maxSafeFloatInt
	case float32:
		return toInt(float64(x))
	case json.Number:
		if i, err := x.Int64(); err == nil {
			return i, true, true
		}
		if _, err := strconv.ParseFloat(string(x), 64); err == nil {
			if strings.ContainsAny(string(x), ".eE") {
				f, _ := x.Float64()
				return toInt(f)
			}
			return 0, true, false // integer out of int64 range
		}
	}
	return 0, false, false
}

func describe(v any) string {
	switch x := v.(type) {
	case string:
		return fmt.Sprintf("string %q", truncate(x))
	case float64, float32, json.Number, int, int8, int16, int32, int64, uint, uint8, uint16, uint32, uint64:
		return fmt.Sprintf("number %v", x)
	case bool:
		return fmt.Sprintf("boolean %v", x)
	case []byte:
		return fmt.Sprintf("%d bytes", len(x))
	case map[string]any:
		return "an object"
	case []any:
		return "an array"
	}
	return fmt.Sprintf("%T", v)
}

func truncate(s string) string {
	if len(s) > 40 {
		return s[:40] + "..."
	}
	return s
}
