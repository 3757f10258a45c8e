package envelope

import (
	"encoding/json"
	"slices"
	"strconv"

	"github.com/connector-host/connector-host/internal/wire"
)

// parseSimple decodes the common shape of a request envelope without
// encoding/json's reflection: an object (already known to start with '{')
// whose members are the envelope's fields spelled exactly, each at most
// once, with a credential_id and a page token free of escapes and
// non-ASCII, and a page of at most token and size (an integer). It gives
// exactly what json.Decoder with DisallowUnknownFields gives for such a
// body (the raw members are the bytes of the body, copied). For anything
// else — invalid JSON, another member, a type mismatch, a repeated member,
// escapes — ok is false and Parse decodes the body the general way, which
// also produces the error that names the field at fault.
func parseSimple(body []byte) (req *Request, ok bool) {
	if !json.Valid(body) {
		return nil, false
	}
	// Valid JSON from here on: every string is closed, every bracket
	// matched, every literal well formed, and nothing follows the object.
	data := append([]byte(nil), body...)
	req = &Request{}
	ok = eachMember(data, envelopeFields, func(field int, val []byte) bool {
		switch envelopeFields[field] {
		case "request":
			req.Request = val
		case "settings":
			req.Settings = val
		case "auth":
			req.Auth = val
		case "credential_id":
			if !isNull(val) {
				s, _, ok := simpleString(val, 0)
				if !ok {
					return false
				}
				req.CredentialID = string(s)
			}
		case "page":
			if !isNull(val) {
				var ok bool
				if req.Page, ok = simplePage(val); !ok {
					return false
				}
			}
		case "include_raw_data":
			switch string(val) {
			case "true":
				req.IncludeRawData = true
			case "false", "null":
			default:
				return false
			}
		}
		return true
	})
	if !ok {
		return nil, false
	}
	return req, true
}

// The members parseSimple and simplePage take, spelled as encoding/json
// matches them exactly.
var (
	envelopeFields = []string{"request", "settings", "auth", "credential_id", "page", "include_raw_data"}
	pageFields     = []string{"token", "size"}
)

// simplePage decodes {"token": "...", "size": n} (either member optional,
// null allowed) from valid JSON; ok is false for any other shape.
func simplePage(data []byte) (p *wire.Page, ok bool) {
	p = &wire.Page{}
	ok = eachMember(data, pageFields, func(field int, val []byte) bool {
		if isNull(val) {
			return true
		}
		if pageFields[field] == "token" {
			s, _, ok := simpleString(val, 0)
			p.Token = string(s)
			return ok
		}
		n, ok := simpleInt(val)
		p.Size = n
		return ok
	})
	if !ok {
		return nil, false
	}
	return p, true
}

// eachMember calls fn with the index in fields of each member of the JSON
// object data (valid JSON) and the member's raw value (its capacity ends
// with it, as a json.RawMessage copy would). It reports false, at once,
// when data is not an object, a key is not one of fields spelled exactly
// (or has escapes), a key repeats, or fn returns false. At most 8 fields.
func eachMember(data []byte, fields []string, fn func(field int, val []byte) bool) bool {
	if data[0] != '{' {
		return false
	}
	var seen uint8
	i := skipSpace(data, 1)
	if data[i] == '}' {
		return true
	}
	for {
		key, next, ok := simpleString(data, i)
		if !ok {
			return false
		}
		field := slices.Index(fields, string(key))
		if field < 0 || seen&(1<<field) != 0 {
			return false
		}
		seen |= 1 << field
		i = skipSpace(data, next)
		i = skipSpace(data, i+1) // ':'
		end := valueEnd(data, i)
		if !fn(field, data[i:end:end]) {
			return false
		}
		i = skipSpace(data, end)
		if data[i] == '}' {
			return true
		}
		i = skipSpace(data, i+1) // ','
	}
}

// simpleString returns the contents of the JSON string starting at
// data[i] and the index after it, when it is a string of printable ASCII
// without escapes (its decoded value is then its bytes).
func simpleString(data []byte, i int) (s []byte, next int, ok bool) {
	if data[i] != '"' {
		return nil, 0, false
	}
	for j := i + 1; j < len(data); j++ {
		switch c := data[j]; {
		case c == '"':
			return data[i+1 : j], j + 1, true
		case c == '\\' || c >= 0x80:
			return nil, 0, false
		}
	}
	return nil, 0, false
}

// simpleInt parses a JSON integer (no fraction or exponent) that fits in
// an int, as encoding/json would.
func simpleInt(val []byte) (int, bool) {
	for _, c := range val {
		if (c < '0' || c > '9') && c != '-' {
			return 0, false
		}
	}
	n, err := strconv.ParseInt(string(val), 10, strconv.IntSize)
	if err != nil {
		return 0, false
	}
	return int(n), true
}

func isNull(val []byte) bool { return string(val) == "null" }

func skipSpace(data []byte, i int) int {
	for i < len(data) {
		switch data[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}

// valueEnd returns the index just after the JSON value starting at
// data[i], which is valid JSON.
func valueEnd(data []byte, i int) int {
	switch data[i] {
	case '"':
		return stringEnd(data, i)
	case '{', '[':
		depth := 0
		for j := i; j < len(data); j++ {
			switch data[j] {
			case '"':
				j = stringEnd(data, j) - 1
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return j + 1
				}
			}
		}
		return len(data)
	}
	for j := i; j < len(data); j++ {
		switch data[j] {
		case ',', '}', ']', ' ', '\t', '\n', '\r':
			return j
		}
	}
	return len(data)
}

// stringEnd returns the index just after the JSON string starting at
// data[i].
func stringEnd(data []byte, i int) int {
	for j := i + 1; j < len(data); j++ {
		switch data[j] {
		case '\\':
			j++
		case '"':
			return j + 1
		}
	}
	return len(data)
}
