package connector

import (
	"bytes"
	"encoding/json"
	"errors"
	"time"
	"unicode/utf8"
)

// sendBatchRequestJSON is SendBatchRequest without its UnmarshalJSON: the
// encoding/json decoding.
type sendBatchRequestJSON SendBatchRequest

// UnmarshalJSON decodes a send_batch request. The common shape (device_id
// and messages of interface, path, a number or plain string value and an
// optional timestamp, no escapes, no duplicate members) is read by hand
// into exactly what encoding/json would produce (TestBatchDecodeFast);
// anything else is left to encoding/json.
func (r *SendBatchRequest) UnmarshalJSON(b []byte) error {
	if r.DeviceID == "" && r.Messages == nil {
		c := batchCursor{b: b}
		if req, ok := c.request(); ok && c.end() {
			*r = req
			return nil
		}
	}
	err := json.Unmarshal(b, (*sendBatchRequestJSON)(r))
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) && te.Struct == "sendBatchRequestJSON" {
		te.Struct = "SendBatchRequest" // as without this method
	}
	return err
}

// batchCursor reads JSON that encoding/json has already checked (it
// validates the whole input before calling UnmarshalJSON). Every method
// returns false for what it does not handle.
type batchCursor struct {
	b []byte
	i int
	// names interns interface names and paths (a batch repeats a few).
	names map[string]string
	// values are the messages' values, allocated together.
	values []jsonValue
}

// maxInterned bounds names.
const maxInterned = 1024

// name is str, interned.
func (c *batchCursor) name() (string, bool) {
	tok, ok := c.token()
	if !ok {
		return "", false
	}
	raw := tok[1 : len(tok)-1]
	if s, ok := c.names[string(raw)]; ok {
		return s, true
	}
	s := string(raw)
	if c.names == nil {
		c.names = map[string]string{}
	}
	if len(c.names) < maxInterned {
		c.names[s] = s
	}
	return s, true
}

// newValue returns a jsonValue of the batch.
func (c *batchCursor) newValue(v any) *jsonValue {
	if len(c.values) == cap(c.values) {
		c.values = make([]jsonValue, 0, 256)
	}
	c.values = append(c.values, jsonValue{v: v})
	return &c.values[len(c.values)-1]
}

func (c *batchCursor) ws() {
	for c.i < len(c.b) && (c.b[c.i] == ' ' || c.b[c.i] == '\t' || c.b[c.i] == '\n' || c.b[c.i] == '\r') {
		c.i++
	}
}

func (c *batchCursor) end() bool {
	c.ws()
	return c.i == len(c.b)
}

// next skips spaces and reports whether the next byte is ch (consuming it).
func (c *batchCursor) next(ch byte) bool {
	c.ws()
	if c.i < len(c.b) && c.b[c.i] == ch {
		c.i++
		return true
	}
	return false
}

// token returns the next string token, quotes included, when it has no
// escapes and is valid UTF-8 (encoding/json then decodes it to exactly its
// bytes).
func (c *batchCursor) token() ([]byte, bool) {
	c.ws()
	if c.i >= len(c.b) || c.b[c.i] != '"' {
		return nil, false
	}
	end := bytes.IndexByte(c.b[c.i+1:], '"')
	if end < 0 {
		return nil, false
	}
	tok := c.b[c.i : c.i+end+2]
	if bytes.IndexByte(tok, '\\') >= 0 || !utf8.Valid(tok) {
		return nil, false
	}
	c.i += end + 2
	return tok, true
}

func (c *batchCursor) str() (string, bool) {
	tok, ok := c.token()
	if !ok {
		return "", false
	}
	return string(tok[1 : len(tok)-1]), true
}

// member reads the next member name of an object (after its '{') and the
// colon; done at the closing brace.
func (c *batchCursor) member(first bool) (name []byte, done, ok bool) {
	if c.next('}') {
		return nil, true, true
	}
	if !first && !c.next(',') {
		return nil, false, false
	}
	tok, ok := c.token()
	if !ok || !c.next(':') {
		return nil, false, false
	}
	return tok[1 : len(tok)-1], false, true
}

// once marks member idx seen: false for a duplicate.
func once(seen *uint8, idx int) bool {
	if *seen&(1<<idx) != 0 {
		return false
	}
	*seen |= 1 << idx
	return true
}

func (c *batchCursor) request() (SendBatchRequest, bool) {
	var r SendBatchRequest
	var seen uint8
	if !c.next('{') {
		return r, false
	}
	for first := true; ; first = false {
		name, done, ok := c.member(first)
		switch {
		case !ok:
			return r, false
		case done:
			return r, true
		}
		switch string(name) {
		case "device_id":
			ok = once(&seen, 0)
			if ok {
				r.DeviceID, ok = c.str()
			}
		case "messages":
			ok = once(&seen, 1)
			if ok {
				r.Messages, ok = c.messages()
			}
		default:
			ok = false
		}
		if !ok {
			return r, false
		}
	}
}

func (c *batchCursor) messages() ([]BatchMessage, bool) {
	if !c.next('[') {
		return nil, false
	}
	// A first guess of the count: one "interface" member per message.
	out := make([]BatchMessage, 0, bytes.Count(c.b[c.i:], []byte(`"interface"`)))
	if c.next(']') {
		return out, true
	}
	for {
		if !c.next('{') {
			return nil, false
		}
		var m BatchMessage
		var seen uint8
		for first := true; ; first = false {
			name, done, ok := c.member(first)
			if !ok {
				return nil, false
			}
			if done {
				break
			}
			switch string(name) {
			case "interface":
				if ok = once(&seen, 0); ok {
					m.Interface, ok = c.name()
				}
			case "path":
				if ok = once(&seen, 1); ok {
					m.Path, ok = c.name()
				}
			case "value":
				if ok = once(&seen, 2); ok {
					m.Value, ok = c.value()
				}
			case "timestamp":
				if ok = once(&seen, 3); ok {
					m.Timestamp, ok = c.timestamp()
				}
			default:
				ok = false
			}
			if !ok {
				return nil, false
			}
		}
		out = append(out, m)
		if c.next(']') {
			return out, true
		}
		if !c.next(',') {
			return nil, false
		}
	}
}

// value reads a number or a plain string as jsonValue.UnmarshalJSON does.
func (c *batchCursor) value() (*jsonValue, bool) {
	c.ws()
	if c.i >= len(c.b) {
		return nil, false
	}
	if ch := c.b[c.i]; ch == '-' || ch >= '0' && ch <= '9' {
		start := c.i
		for c.i < len(c.b) && isNumberByte(c.b[c.i]) {
			c.i++
		}
		return c.newValue(json.Number(c.b[start:c.i])), true
	}
	tok, ok := c.token()
	if !ok || len(tok) < 2 {
		return nil, false
	}
	return c.newValue(string(tok[1 : len(tok)-1])), true
}

// timestamp reads a timestamp string as encoding/json does (with
// time.Time's UnmarshalJSON); an invalid one is left to encoding/json,
// which words the error.
func (c *batchCursor) timestamp() (*time.Time, bool) {
	tok, ok := c.token()
	if !ok {
		return nil, false
	}
	t := new(time.Time)
	if err := t.UnmarshalJSON(tok); err != nil {
		return nil, false
	}
	return t, true
}

func isNumberByte(ch byte) bool {
	return ch >= '0' && ch <= '9' || ch == '-' || ch == '+' || ch == '.' || ch == 'e' || ch == 'E'
}
