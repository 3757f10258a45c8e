package envelope

import (
	"encoding/json"
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
	var seen uint8
	i := skipSpace(data, 1)
	if data[i] == '}' {
		return req, true
	}
	for {
		key, next, ok := simpleString(data, i)
		if !ok {
			return nil, false
		}
		i = skipSpace(data, next)
		i = skipSpace(data, i+1) // ':'
		end := valueEnd(data, i)
		val := data[i:end:end]
		var bit uint8
		switch string(key) {
		case "request":
			bit, req.Request = 1<<0, val
		case "settings":
			bit, req.Settings = 1<<1, val
		case "auth":
			bit, req.Auth = 1<<2, val
		case "credential_id":
			bit = 1 << 3
			if !isNull(val) {
				s, _, ok := simpleString(val, 0)
				if !ok {
					return nil, false
				}
				req.CredentialID = string(s)
			}
		case "page":
			bit = 1 << 4
			if !isNull(val) {
				if req.Page, ok = simplePage(val); !ok {
					return nil, false
				}
			}
		case "include_raw_data":
			bit = 1 << 5
			switch string(val) {
			case "true":
				req.IncludeRawData = true
			case "false", "null":
			default:
				return nil, false
			}
		default:
			return nil, false
		}
		if seen&bit != 0 {
			return nil, false
		}
		seen |= bit
		i = skipSpace(data, end)
		if data[i] == '}' {
			return req, true
		}
		i = skipSpace(data, i+1) // ','
	}
}

// simplePage decodes {"token": "...", "size": n} (either member optional,
// null allowed) from valid JSON; ok is false for any other shape.
func simplePage(data []byte) (p *wire.Page, ok bool) {
	if data[0] != '{' {
		return nil, false
	}
	p = &wire.Page{}
	var seen uint8
	i := skipSpace(data, 1)
	if data[i] == '}' {
		return p, true
	}
	for {
		key, next, ok := simpleString(data, i)
		if !ok {
			return nil, false
		}
		i = skipSpace(data, next)
		i = skipSpace(data, i+1) // ':'
		end := valueEnd(data, i)
		val := data[i:end]
		var bit uint8
		switch string(key) {
		case "token":
			bit = 1 << 0
			if !isNull(val) {
				s, _, ok := simpleString(val, 0)
				if !ok {
					return nil, false
				}
				p.Token = string(s)
			}
		case "size":
			bit = 1 << 1
			if !isNull(val) {
				n, ok := simpleInt(val)
				if !ok {
					return nil, false
				}
				p.Size = n
			}
		default:
			return nil, false
		}
		if seen&bit != 0 {
			return nil, false
		}
		seen |= bit
		i = skipSpace(data, end)
		if data[i] == '}' {
			return p, true
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
