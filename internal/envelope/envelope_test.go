package envelope

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/connector-host/connector-host/internal/wire"
)

func TestParse(t *testing.T) {
	t.Parallel()
	cases := []struct {
		body  string
		field string // "" = valid
	}{
		{`{"request":{}}`, ""},
		{`  {"request":{"a":1},"settings":{"s":true},"auth":{"token":{"token":"x"}},"page":{"token":"p","size":5},"include_raw_data":true}  `, ""},
		{`{"request":{},"credential_id":"c1"}`, ""},
		{``, "body"},
		{`   `, "body"},
		{`nope`, "body"},
		{`[1]`, "body"},
		{`"str"`, "body"},
		{`{"request":`, "body"},
		{`{"request":{}} {"x":1}`, "body"},
		{`{}`, "request"},
		{`{"request":null}`, "request"},
		{`{"request":[1]}`, "request"},
		{`{"request":{},"settings":5}`, "settings"},
		{`{"request":{},"auth":"x"}`, "auth"},
		{`{"request":{},"page":{"token":1}}`, "page.token"},
		{`{"request":{},"page":{"size":-1}}`, "page.size"},
		{`{"request":{},"include_raw_data":"yes"}`, "include_raw_data"},
		{`{"request":{},"credential_id":5}`, "credential_id"},
		{`{"request":{},"requests":{}}`, "requests"},
		{`{"request":{},"auth":{"token":{}},"credential_id":"c"}`, "credential_id"},
	}
	for _, tc := range cases {
		req, err := Parse([]byte(tc.body))
		if tc.field == "" {
			if err != nil || req == nil {
				t.Errorf("%q: unexpected error %v", tc.body, err)
			}
			continue
		}
		var fe *FieldError
		if !errors.As(err, &fe) {
			t.Errorf("%q: got %v, want a FieldError on %s", tc.body, err, tc.field)
			continue
		}
		if fe.Field != tc.field || fe.Reason == "" {
			t.Errorf("%q: field %q (%s), want %q", tc.body, fe.Field, fe.Reason, tc.field)
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{`{"request":{}}`, `{"request":{},"page":{"token":"a","size":1}}`, `{"request":1}`, `[`, `{"auth":{"x":1},"request":{}}`, "\xff"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		req, err := Parse(body)
		if err == nil {
			if len(req.Request) == 0 || req.Request[0] != '{' {
				t.Fatalf("accepted a request that is not an object: %q", body)
			}
			if !json.Valid(req.Request) {
				t.Fatalf("accepted invalid JSON: %q", body)
			}
			return
		}
		var fe *FieldError
		if !errors.As(err, &fe) || fe.Field == "" {
			t.Fatalf("error without a field: %v", err)
		}
	})
}

func TestEnvelopesAreValidJSON(t *testing.T) {
	t.Parallel()
	ok := AppendSuccess(nil, &wire.Result{Response: json.RawMessage(`{"a":1}`), Page: &wire.Page{Token: "n", Size: 2}})
	if string(ok) != `{"response":{"a":1},"raw_data":null,"page":{"token":"n","size":2}}` {
		t.Fatalf("success: %s", ok)
	}
	empty := AppendSuccess(nil, &wire.Result{})
	if string(empty) != `{"response":null,"raw_data":null,"page":null}` {
		t.Fatalf("empty: %s", empty)
	}
	e := MarshalError(NewErrorBody("stoa", &wire.Error{Code: "bad_request", Message: `quote " and \ `, RaisedBy: "host", RaisedIn: "x.y"}, 400))
	var v map[string]any
	if err := json.Unmarshal(e, &v); err != nil || v["is_error"] != true || v["response"] != nil {
		t.Fatalf("error envelope %s: %v", e, err)
	}
	if v["error"].(map[string]any)["error_code"] != "stoa.bad_request" {
		t.Fatalf("error_code: %s", e)
	}
	if !strings.HasPrefix(string(MarshalStreamError(ErrorBody{ErrorCode: "a.b"})), `{"error":{`) {
		t.Fatal("stream error line")
	}
	if got := string(AppendStreamEnd(nil, nil)); got != `{"page":null}` {
		t.Fatalf("stream end: %s", got)
	}
	status := func(string) int { return 429 }
	if got := string(AppendStreamLines(nil, &wire.Chunk{NDJSON: []byte("1\n"), Items: []json.RawMessage{json.RawMessage(`{"a":2}`)}}, "x", status)); got != "1\n{\"a\":2}\n" {
		t.Fatalf("items: %q", got)
	}
	if got := string(AppendStreamLines(nil, &wire.Chunk{NDJSON: []byte("1\n"), Done: true}, "x", status)); got != "1\n{\"page\":null}\n" {
		t.Fatalf("end: %q", got)
	}
	if got := string(AppendStreamLines(nil, &wire.Chunk{Err: &wire.Error{Code: "rate_limit"}}, "x", status)); !strings.Contains(got, `"error_code":"x.rate_limit"`) || !strings.Contains(got, `"status_code":429`) {
		t.Fatalf("error: %q", got)
	}
}

func TestInfo(t *testing.T) {
	t.Parallel()
	d := &wire.Description{AppID: "x", Version: "1.0.0", AuthModels: []wire.AuthModel{{Kind: "basic", Schema: json.RawMessage(`{"type":"object"}`)}}}
	info := NewInfo(d, []wire.Capability{{Name: "b"}, {Name: "a", Streaming: true}})
	if strings.Join(info.Capabilities, ",") != "a,b" || !info.CapabilitySchema["a"].Streaming || string(info.RequestSettingsSchema) != "{}" || info.Categories == nil {
		t.Fatalf("info: %+v", info)
	}
	if !strings.Contains(string(info.AuthenticationSchema), `"basic":{"type":"object"}`) {
		t.Fatalf("auth schema: %s", info.AuthenticationSchema)
	}
}

// FuzzParseSimpleMatchesDecoder checks the fast path against encoding/json:
// whatever parseSimple takes, the general decoder takes too and gives the
// same Request.
func FuzzParseSimpleMatchesDecoder(f *testing.F) {
	for _, s := range []string{
		`{"request":{}}`,
		`{ "request" : { "a" : [1, 2, {"b": null}] } , "page" : { "token" : "t1", "size" : 20 } }`,
		`{"request":{},"settings":{"x":"y"},"auth":{"basic":{"username":"u","password":"p"}},"credential_id":"c-1"}`,
		`{"request":{},"page":{"size":-0}}`,
		`{"request":{},"page":{"size":1e2}}`,
		`{"request":{},"page":{"token":"\u0041"}}`,
		`{"request":{},"request":{}}`,
		`{"Request":{}}`,
		`{"request":{},"page":null}`,
		`{"request":{},"credential_id":null}`,
		`{"request":"x"}`,
		`{}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		body = bytes.TrimSpace(body)
		if len(body) == 0 || body[0] != '{' {
			return
		}
		fast, ok := parseSimple(body)
		if !ok {
			return
		}
		slow, err := decodeGeneral(body)
		if err != nil {
			t.Fatalf("parseSimple took %q, the decoder refuses it: %v", body, err)
		}
		if !reflect.DeepEqual(normalize(fast), normalize(slow)) {
			t.Fatalf("%q:\nparseSimple %+v\ndecoder     %+v", body, fast, slow)
		}
	})
}

// normalize makes empty and nil raw members compare equal (both absent).
func normalize(r *Request) Request {
	out := *r
	for _, m := range []*json.RawMessage{&out.Request, &out.Settings, &out.Auth} {
		if len(*m) == 0 {
			*m = nil
		}
	}
	return out
}

// TestParseSimpleShapes pins which bodies take the fast path, so that the
// fuzz comparison above is not vacuous.
func TestParseSimpleShapes(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		body string
		fast bool
	}{
		{`{"request":{}}`, true},
		{`{}`, true},
		{` { "request" : {"a":[1,{"b":"}"}]} , "settings":{"s":1}, "auth":null } `, true},
		{`{"request":{},"credential_id":"c-1","page":{"token":"t","size":20},"include_raw_data":true}`, true},
		{`{"request":{},"page":{"size":null,"token":null}}`, true},
		{`{"request":{},"request":{}}`, false},             // repeated member
		{`{"Request":{}}`, false},                          // case-insensitive match: the decoder's job
		{`{"request":{},"x":1}`, false},                    // unknown member: the decoder names it
		{`{"request":{},"credential_id":"\u0041"}`, false}, // escapes
		{`{"request":{},"page":{"size":1.5}}`, false},
		{`{"request":{},"page":[]}`, false},
		{`{"request":{},"include_raw_data":1}`, false},
		{`{"request":{}`, false}, // invalid JSON
	} {
		body := []byte(strings.TrimSpace(c.body))
		req, ok := parseSimple(body)
		if ok != c.fast {
			t.Errorf("parseSimple(%s) ok = %v, want %v", c.body, ok, c.fast)
			continue
		}
		if !ok {
			continue
		}
		slow, err := decodeGeneral(body)
		if err != nil {
			t.Fatalf("%s: decoder: %v", c.body, err)
		}
		if !reflect.DeepEqual(normalize(req), normalize(slow)) {
			t.Errorf("%s:\nparseSimple %+v\ndecoder     %+v", c.body, req, slow)
		}
	}
}
