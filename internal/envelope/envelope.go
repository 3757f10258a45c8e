// Package envelope reads request envelopes and writes response envelopes in
// the JSON shapes of the contract (SPEC "Request envelope", "Response
// envelope"). The host's HTTP API, the CLI, a plugin run by hand and the
// events gateway all use it, so the shapes are defined once.
package envelope

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/connector-host/connector-host/internal/wire"
)

// Request is a decoded request envelope.
type Request struct {
	Request        json.RawMessage `json:"request"`
	Settings       json.RawMessage `json:"settings,omitempty"`
	Auth           json.RawMessage `json:"auth,omitempty"`
	CredentialID   string          `json:"credential_id,omitempty"`
	Page           *wire.Page      `json:"page,omitempty"`
	IncludeRawData bool            `json:"include_raw_data,omitempty"`
}

// FieldError is a problem with one field of an envelope.
type FieldError struct {
	Field  string
	Reason string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Reason }

// Parse decodes and checks a request envelope. Errors are *FieldError naming
// the envelope field at fault.
func Parse(body []byte) (*Request, error) {
	body = bytes.TrimSpace(body)
	if len(body) == 0 {
		return nil, &FieldError{Field: "body", Reason: "empty; expected a JSON request envelope {\"request\": {...}}"}
	}
	if body[0] != '{' {
		if !json.Valid(body) {
			return nil, &FieldError{Field: "body", Reason: "not valid JSON"}
		}
		return nil, &FieldError{Field: "body", Reason: "must be a JSON object (the request envelope)"}
	}
	req, ok := parseSimple(body)
	if !ok {
		var err error
		if req, err = decodeGeneral(body); err != nil {
			return nil, err
		}
	}
	if err := req.check(); err != nil {
		return nil, err
	}
	return req, nil
}

// decodeGeneral decodes any envelope with encoding/json (unknown members
// refused, nothing after the object) and names the field at fault in its
// errors; parseSimple must give the same Request for the bodies it takes.
func decodeGeneral(body []byte) (*Request, error) {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	var req Request
	if err := dec.Decode(&req); err != nil {
		return nil, decodeError(err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, &FieldError{Field: "body", Reason: "unexpected data after the JSON object"}
	}
	return &req, nil
}

func (r *Request) check() error {
	if len(r.Request) == 0 || string(r.Request) == "null" {
		return &FieldError{Field: "request", Reason: "is required (use {} for a capability without arguments)"}
	}
	for _, f := range []struct {
		name string
		raw  json.RawMessage
	}{{"request", r.Request}, {"settings", r.Settings}, {"auth", r.Auth}} {
		if len(f.raw) > 0 && string(f.raw) != "null" && f.raw[0] != '{' {
			return &FieldError{Field: f.name, Reason: "must be a JSON object"}
		}
	}
	if r.CredentialID != "" && len(r.Auth) > 0 && string(r.Auth) != "null" {
		return &FieldError{Field: "credential_id", Reason: "cannot be combined with auth: the host supplies the credential"}
	}
	if r.Page != nil && r.Page.Size < 0 {
		return &FieldError{Field: "page.size", Reason: "must not be negative"}
	}
	return nil
}

func decodeError(err error) error {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		return &FieldError{Field: "body", Reason: fmt.Sprintf("not valid JSON (at byte %d: %s)", syn.Offset, syn.Error())}
	case errors.As(err, &typ):
		field := typ.Field
		if field == "" {
			field = "body"
		}
		return &FieldError{Field: field, Reason: fmt.Sprintf("must be %s, not %s", jsonKind(typ.Type.Kind().String()), typ.Value)}
	case errors.Is(err, io.ErrUnexpectedEOF):
		return &FieldError{Field: "body", Reason: "not valid JSON (truncated)"}
	}
	const unknown = "json: unknown field "
	if msg := err.Error(); strings.HasPrefix(msg, unknown) {
		name := strings.Trim(strings.TrimPrefix(msg, unknown), `"`)
		if name == "" {
			return &FieldError{Field: "body", Reason: "a member with an empty name is not a field of the request envelope"}
		}
		return &FieldError{Field: name, Reason: "is not a field of the request envelope (request, settings, auth, credential_id, page, include_raw_data)"}
	}
	return &FieldError{Field: "body", Reason: err.Error()}
}

func jsonKind(goKind string) string {
	switch goKind {
	case "string":
		return "a string"
	case "bool":
		return "a boolean"
	case "int", "int32", "int64", "float64":
		return "a number"
	case "struct", "map":
		return "an object"
	case "slice":
		return "an array"
	}
	return goKind
}

// ErrorBody is the "error" object of an error envelope.
type ErrorBody struct {
	Message      string `json:"message"`
	StatusCode   int    `json:"status_code"`
	ErrorCode    string `json:"error_code"`
	AppID        string `json:"app_id"`
	AppErrorCode string `json:"app_error_code,omitempty"`
	RaisedBy     string `json:"raised_by"`
	RaisedIn     string `json:"raised_in"`
}

// NewErrorBody builds the error object for e, raised by appID ("host" for
// the host itself), answered with HTTP status.
func NewErrorBody(appID string, e *wire.Error, status int) ErrorBody {
	return ErrorBody{
		Message:      e.Message,
		StatusCode:   status,
		ErrorCode:    appID + "." + e.Code,
		AppID:        appID,
		AppErrorCode: e.AppErrorCode,
		RaisedBy:     e.RaisedBy,
		RaisedIn:     e.RaisedIn,
	}
}

type errorEnvelope struct {
	IsError  bool      `json:"is_error"`
	Response *struct{} `json:"response"`
	Error    ErrorBody `json:"error"`
}

// MarshalError returns the JSON error envelope for body.
func MarshalError(body ErrorBody) []byte {
	b, err := json.Marshal(errorEnvelope{IsError: true, Error: body})
	if err != nil { // cannot happen: all fields are plain strings and ints
		panic(err)
	}
	return b
}

// MarshalStreamError returns the final NDJSON line {"error":{...}} of a
// stream that failed (without the newline).
func MarshalStreamError(body ErrorBody) []byte {
	b, _ := json.Marshal(struct {
		Error ErrorBody `json:"error"`
	}{body})
	return b
}

// AppendSuccess appends the JSON success envelope of r to dst:
// {"response": ..., "raw_data": ..., "page": ...}. The plugin's JSON is
// copied as is, without re-encoding.
func AppendSuccess(dst []byte, r *wire.Result) []byte {
	dst = append(dst, `{"response":`...)
	dst = appendRaw(dst, r.Response)
	dst = append(dst, `,"raw_data":`...)
	dst = appendRaw(dst, r.RawData)
	dst = append(dst, `,"page":`...)
	dst = AppendPage(dst, r.Page)
	return append(dst, '}')
}

// AppendStreamEnd appends the final NDJSON line {"page": ...} of a stream
// that ended normally (without the newline).
func AppendStreamEnd(dst []byte, p *wire.Page) []byte {
	dst = append(dst, `{"page":`...)
	dst = AppendPage(dst, p)
	return append(dst, '}')
}

// AppendPage appends p as JSON, or null.
func AppendPage(dst []byte, p *wire.Page) []byte {
	if p == nil {
		return append(dst, "null"...)
	}
	b, _ := json.Marshal(p)
	return append(dst, b...)
}

func appendRaw(dst []byte, raw json.RawMessage) []byte {
	if len(raw) == 0 {
		return append(dst, "null"...)
	}
	return append(dst, raw...)
}

// AppendStreamLines appends what a chunk adds to an NDJSON answer: its
// items, then the final line when it ends the stream. appID and status
// describe an error line.
func AppendStreamLines(dst []byte, c *wire.Chunk, appID string, status func(code string) int) []byte {
	dst = append(dst, c.NDJSON...)
	for _, it := range c.Items {
		dst = append(append(dst, it...), '\n')
	}
	switch {
	case c.Err != nil:
		dst = append(dst, MarshalStreamError(NewErrorBody(appID, c.Err, status(c.Err.Code)))...)
		dst = append(dst, '\n')
	case c.End():
		dst = append(AppendStreamEnd(dst, c.FinalPage), '\n')
	}
	return dst
}
