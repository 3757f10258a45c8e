package conformance

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	validator "github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/connector-host/connector-host/internal/wire"
)

func TestParseFixture(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, in string
		want     string // substring of the error; "" for success
	}{
		{"minimal", `{"capability":"echo","request":{}}`, ""},
		{"full unary", `{"name":"n","description":"d","capability":"echo","request":{"a":1},"settings":{},"auth":{"token":{"token":"x"}},"page":{"token":"p","size":2},"include_raw_data":true,"expect":{"response":{"a":1},"raw_data":null,"page":null}}`, ""},
		{"stream", `{"capability":"list","request":{},"expect":{"items":[{"i":0}],"item_count":1,"final":"page"}}`, ""},
		{"error", `{"capability":"echo","request":{},"expect":{"error_code":"acme.bad_request","message_contains":["request.x"]}}`, ""},
		{"slow", `{"capability":"sleep","request":{"ms":9000},"slow":true}`, ""},
		{"not JSON", `{"capability":`, "not valid JSON"},
		{"empty", ``, "not valid JSON"},
		{"unknown field", `{"capability":"echo","request":{},"expected":{}}`, `"expected" is not a fixture field`},
		{"trailing data", `{"capability":"echo","request":{}} {}`, "unexpected data after"},
		{"wrong type", `{"capability":5,"request":{}}`, "capability: must be string"},
		{"no capability", `{"request":{}}`, "capability: \"\" is not a capability name"},
		{"bad capability", `{"capability":"Echo","request":{}}`, "is not a capability name"},
		{"no request", `{"capability":"echo"}`, "request: is required"},
		{"request not object", `{"capability":"echo","request":[1]}`, "request: is required and must be a JSON object"},
		{"settings not object", `{"capability":"echo","request":{},"settings":"x"}`, "settings: must be a JSON object"},
		{"unknown code", `{"capability":"echo","request":{},"expect":{"error_code":"nope"}}`, `"nope" is not an error code`},
		{"code and response", `{"capability":"echo","request":{},"expect":{"error_code":"not_found","response":{}}}`, "cannot be combined"},
		{"message without code", `{"capability":"echo","request":{},"expect":{"message_contains":["x"]}}`, "needs expect.error_code"},
		{"bad final", `{"capability":"echo","request":{},"expect":{"final":"done"}}`, `"done" is not "page" or "error"`},
		{"final page with code", `{"capability":"echo","request":{},"expect":{"error_code":"not_found","final":"page"}}`, "contradicts"},
		{"negative count", `{"capability":"echo","request":{},"expect":{"item_count":-1}}`, "must not be negative"},
		{"count vs items", `{"capability":"echo","request":{},"expect":{"item_count":2,"items":[{}]}}`, "contradicts the 1 expect.items"},
		{"slow with expectation", `{"capability":"echo","request":{},"slow":true,"expect":{"response":{}}}`, "cannot have expectations"},
		{"negative page size", `{"capability":"echo","request":{},"page":{"token":"","size":-1}}`, "page.size"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			f, err := ParseFixture("dir/case.json", []byte(c.in))
			if c.want == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				if f.Name == "" {
					t.Fatal("no name")
				}
				return
			}
			if err == nil {
				t.Fatalf("no error, want one containing %q", c.want)
			}
			if !strings.Contains(err.Error(), c.want) || !strings.HasPrefix(err.Error(), "dir/case.json: ") {
				t.Fatalf("error %q: want it to name the file and contain %q", err, c.want)
			}
		})
	}
}

func TestParseFixtureDefaults(t *testing.T) {
	t.Parallel()
	f, err := ParseFixture("x/echo_hi.json", []byte(`{"capability":"echo","request":{"m":"hi"},"expect":{"error_code":"acme.not_found"}}`))
	if err != nil {
		t.Fatal(err)
	}
	if f.Name != "echo_hi" || f.expectedCode() != "not_found" {
		t.Fatalf("name %q code %q", f.Name, f.expectedCode())
	}
	if got := string(f.envelopeJSON()); got != `{"request":{"m":"hi"}}` {
		t.Fatalf("envelope %s", got)
	}
}

func FuzzParseFixture(f *testing.F) {
	seeds, _ := filepath.Glob(filepath.Join("..", "reference", "testdata", "conformance", "*.json"))
	for _, s := range seeds {
		if b, err := os.ReadFile(s); err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte(`{"capability":"echo","request":{},"expect":{"items":[{}],"item_count":1}}`))
	f.Add([]byte(`{"capability":"echo","request":{},"expect":{"error_code":"x.bad_request"}}`))
	f.Add([]byte(`{"capability":"e","request":{"a":[1,{"b":null}]},"page":{"token":"t","size":3},"slow":true}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		fx, err := ParseFixture("fuzz.json", data)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "fuzz.json: ") {
				t.Fatalf("error does not name the file: %v", err)
			}
			return
		}
		if !capabilityPattern.MatchString(fx.Capability) || !isObject(fx.Request) {
			t.Fatalf("accepted an invalid fixture: %q", data)
		}
		if !json.Valid(fx.envelopeJSON()) {
			t.Fatalf("envelope is not JSON: %s", fx.envelopeJSON())
		}
	})
}

func TestLoadFixtures(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write := func(name, body string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("b.json", `{"capability":"echo","request":{}}`)
	write("a.json", `{"capability":"echo","request":{},"name":"b"}`)
	write("c.json", `{"capability":"echo"}`)
	write("notes.txt", `ignored`)
	fs, err := LoadFixtures(dir)
	if err == nil {
		t.Fatal("no error for a duplicate name and a broken file")
	}
	for _, want := range []string{"c.json: request: is required", `b.json: name "b" is also used by`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not contain %q", err, want)
		}
	}
	if len(fs) != 1 || fs[0].Name != "b" || !strings.HasSuffix(fs[0].File, "a.json") {
		t.Fatalf("loaded %+v", fs)
	}
	if _, err := LoadFixtures(filepath.Join(dir, "missing")); err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Fatalf("missing dir: %v", err)
	}
	if fs, err := LoadFixtures(""); fs != nil || err != nil {
		t.Fatalf("no dir: %v %v", fs, err)
	}
}

func TestLooksSecret(t *testing.T) {
	t.Parallel()
	for name, want := range map[string]bool{
		"password": true, "Password": true, "db_password": true, "passwd": true, "passphrase": true,
		"secret": true, "client_secret": true, "clientSecret": true, "token": true, "access_token": true,
		"refreshToken": true, "api_key": true, "apiKey": true, "APIKey": true, "x-api-key": true, "apikey": true,
		"private_key": true, "privateKey": true, "secret_access_key": true, "signing_key": true, "credentials": true,
		"username": false, "key": false, "token_type": false, "token_url": false, "page_token": false,
		"nextPageToken": false, "max_tokens": false, "secret_name": false, "public_key": false, "key_id": false,
		"cursor": false, "": false, "password_policy": false, "continuation_token": false,
	} {
		if got := looksSecret(name); got != want {
			t.Errorf("looksSecret(%q) = %v, want %v", name, got, want)
		}
	}
}

func TestUnmarkedSecrets(t *testing.T) {
	t.Parallel()
	schema := `{"type":"object","properties":{
		"user":{"type":"string"},
		"password":{"type":"string"},
		"api_key":{"type":"string","x-secret":true},
		"entity_token":{"type":"string","x-secret":false},
		"has_password":{"type":"boolean"},
		"nested":{"type":"object","properties":{"client_secret":{"type":["string","null"]}}},
		"list":{"type":"array","items":{"type":"object","properties":{"token":{}}}},
		"ref":{"$ref":"#/$defs/creds"}},
		"$defs":{"creds":{"type":"object","properties":{"private_key":{"type":"string"}}}}}`
	got := unmarkedSecrets("settings", json.RawMessage(schema))
	want := []string{"settings#creds.private_key", "settings.list[].token", "settings.nested.client_secret", "settings.password"}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("got %v\nwant %v", got, want)
	}
	if got := secretProperties(json.RawMessage(schema)); strings.Join(got, ",") != "api_key" {
		t.Fatalf("secretProperties: %v", got)
	}
	if unmarkedSecrets("x", json.RawMessage(`not json`)) != nil {
		t.Fatal("bad JSON gave problems")
	}
}

func goodDescription() *wire.Description {
	return &wire.Description{
		AppID: "acme-crm", Version: "1.2.3-rc.1+b7",
		Info: wire.DescriptionData{Description: "Accounts of Acme."},
		Capabilities: []wire.Capability{
			{Name: "validate_credentials", RequestSchema: json.RawMessage(`{}`), ResponseSchema: json.RawMessage(`{}`)},
			{Name: "get_item2", RequestSchema: json.RawMessage(`{"type":"object","properties":{"id":{"type":"string"}}}`), ResponseSchema: json.RawMessage(`{}`)},
		},
		AuthModels:     []wire.AuthModel{{Kind: "token", Schema: json.RawMessage(`{"type":"object","properties":{"token":{"type":"string","x-secret":true}}}`)}},
		SettingsSchema: json.RawMessage(`{"type":"object","properties":{"base_url":{"type":"string"}}}`),
	}
}

func TestDescribeProblems(t *testing.T) {
	t.Parallel()
	if p := describeProblems(goodDescription()); len(p) != 0 {
		t.Fatalf("good description: %v", p)
	}
	cases := []struct {
		name   string
		change func(d *wire.Description)
		want   string
	}{
		{"app_id", func(d *wire.Description) { d.AppID = "Acme_CRM" }, `app_id "Acme_CRM"`},
		{"version", func(d *wire.Description) { d.Version = "v1" }, `version "v1"`},
		{"description", func(d *wire.Description) { d.Info.Description = "  " }, "description: must not be empty"},
		{"no capabilities", func(d *wire.Description) { d.Capabilities = nil }, "describes none"},
		{"capability name", func(d *wire.Description) { d.Capabilities[1].Name = "getItem" }, `capability "getItem"`},
		{"duplicate", func(d *wire.Description) { d.Capabilities[1].Name = "validate_credentials" }, "described twice"},
		{"auth kind", func(d *wire.Description) { d.AuthModels[0].Kind = "magic" }, `auth model "magic"`},
		{"auth secret", func(d *wire.Description) {
			d.AuthModels[0].Schema = json.RawMessage(`{"properties":{"token":{"type":"string"}}}`)
		}, "auth.token.token: looks like a secret"},
		{"settings secret", func(d *wire.Description) {
			d.SettingsSchema = json.RawMessage(`{"properties":{"password":{"type":"string"}}}`)
		}, "settings.password: looks like a secret"},
		{"request secret", func(d *wire.Description) {
			d.Capabilities[1].RequestSchema = json.RawMessage(`{"properties":{"api_key":{"type":"string"}}}`)
		}, "capability get_item2 request.api_key"},
		{"response secret", func(d *wire.Description) {
			d.Capabilities[1].ResponseSchema = json.RawMessage(`{"properties":{"access_token":{"type":"string"}}}`)
		}, "capability get_item2 response.access_token"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			d := goodDescription()
			c.change(d)
			p := describeProblems(d)
			if len(p) == 0 || !strings.Contains(strings.Join(p, "\n"), c.want) {
				t.Fatalf("problems %v, want one containing %q", p, c.want)
			}
		})
	}
}

func TestCompileSchema(t *testing.T) {
	t.Parallel()
	for _, c := range []struct{ raw, want string }{
		{`{"type":"object"}`, ""},
		{`{"$schema":"https://json-schema.org/draft/2020-12/schema","type":"object"}`, ""},
		{`{"$schema":"http://json-schema.org/draft-07/schema#"}`, "must be JSON Schema 2020-12"},
		{`{"type":5}`, "does not compile"},
		{`{"type":`, "is not JSON"},
		{``, "is empty"},
	} {
		_, err := compileSchema("t", json.RawMessage(c.raw))
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%s: %v", c.raw, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%s: error %v, want %q", c.raw, err, c.want)
		}
	}
}

func TestBadRequestProbes(t *testing.T) {
	t.Parallel()
	raw := json.RawMessage(`{"type":"object","properties":{"count":{"type":"integer","minimum":0},"name":{"type":"string"}},"required":["name"],"additionalProperties":false}`)
	s, err := compileSchema("p", raw)
	if err != nil {
		t.Fatal(err)
	}
	probes := badRequestProbes(s, raw, json.RawMessage(`{"name":"ada"}`))
	if len(probes) != 2 {
		t.Fatalf("probes %+v", probes)
	}
	if !strings.Contains(probes[0].Label, "request.count") || strings.Join(probes[0].Fields, ",") != "request.count" {
		t.Fatalf("first probe %+v", probes[0])
	}
	if strings.Join(probes[1].Fields, ",") != "request.conformance_unknown_field" {
		t.Fatalf("second probe %+v", probes[1])
	}
	for _, p := range probes {
		if fields, _ := invalidFields(s, "request", p.Request); len(fields) == 0 {
			t.Fatalf("probe %s is valid", p.Request)
		}
	}
	open := json.RawMessage(`{"type":"object"}`)
	so, _ := compileSchema("o", open)
	if p := badRequestProbes(so, open, nil); len(p) != 0 {
		t.Fatalf("a schema that accepts anything gave probes %+v", p)
	}
	// A missing required member is reported by name.
	if f, _ := invalidFields(s, "request", json.RawMessage(`{}`)); strings.Join(f, ",") != "request.name" {
		t.Fatalf("required: %v", f)
	}
}

func TestNamesField(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		msg    string
		fields []string
		want   bool
	}{
		{"request.count: must be >= 0", []string{"request.count"}, true},
		{"field 'count' is invalid", []string{"request.count"}, true},
		{"invalid input", []string{"request.count"}, false},
		{"accountant: bad", []string{"request.count"}, false},
		{"request: not valid JSON", []string{"request"}, true},
		{"items[2]: bad", []string{"request.items[2]"}, true},
	} {
		if got := namesField(c.msg, c.fields); got != c.want {
			t.Errorf("namesField(%q, %v) = %v", c.msg, c.fields, got)
		}
	}
}

func TestMatchSubset(t *testing.T) {
	t.Parallel()
	dec := func(s string) any {
		v, err := decodeNumbers(json.RawMessage(s))
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	for _, c := range []struct {
		want, got string
		ok        bool
		why       string
	}{
		{`{"a":1}`, `{"a":1.0,"b":2}`, true, ""},
		{`{"a":{"b":[1,{"c":"x"}]}}`, `{"a":{"b":[1,{"c":"x","d":0}]}}`, true, ""},
		{`{}`, `{"x":1}`, true, ""},
		{`null`, `null`, true, ""},
		{`{"a":1}`, `{"b":1}`, false, "r.a: missing"},
		{`{"a":[1,2]}`, `{"a":[1]}`, false, "r.a: want 2 elements, got 1"},
		{`{"a":"x"}`, `{"a":"y"}`, false, `r.a: want "x", got "y"`},
		{`{"a":{}}`, `{"a":[]}`, false, "want an object"},
		{`[1]`, `{"a":1}`, false, "want an array"},
		{`1`, `"1"`, false, "want 1"},
	} {
		ok, why := matchSubset("r", dec(c.want), dec(c.got))
		if ok != c.ok || !strings.Contains(why, c.why) {
			t.Errorf("matchSubset(%s, %s) = %v %q", c.want, c.got, ok, why)
		}
	}
}

func TestEnvelopeProblems(t *testing.T) {
	t.Parallel()
	good := `{"is_error":true,"response":null,"error":{"message":"m","status_code":400,"error_code":"acme.bad_request","app_id":"acme","raised_by":"sdk.Error","raised_in":"sdk.validate"}}`
	if p, host := envelopeProblems(seenError{Status: 400, Raw: json.RawMessage(good)}, "acme"); len(p) != 0 || host {
		t.Fatalf("good envelope: %v", p)
	}
	line := `{"error":{"message":"m","status_code":502,"error_code":"acme.connection_closed","app_id":"acme","raised_by":"host","raised_in":"router.Invoke"}}`
	if p, host := envelopeProblems(seenError{Status: 200, InStream: true, Raw: json.RawMessage(line)}, "acme"); len(p) != 0 || !host {
		t.Fatalf("good stream line: %v %v", p, host)
	}
	for _, c := range []struct{ raw, want string }{
		{strings.Replace(good, `"raised_in":"sdk.validate"`, `"raised_in":""`, 1), "raised_in is empty"},
		{strings.Replace(good, `,"raised_by":"sdk.Error"`, ``, 1), "raised_by is missing"},
		{strings.Replace(good, `"status_code":400`, `"status_code":500`, 1), "is not the status of bad_request"},
		{strings.Replace(good, `acme.bad_request`, `bad_request`, 1), "is not <app_id>.<code>"},
		{strings.Replace(good, `acme.bad_request`, `acme.oops`, 1), `"oops" is not a code`},
		{strings.Replace(good, `"app_id":"acme"`, `"app_id":"other"`, 1), `error.app_id is "other"`},
		{strings.Replace(good, `"is_error":true`, `"is_error":false`, 1), "is_error is not true"},
		{strings.Replace(good, `"response":null`, `"response":{}`, 1), "response is not null"},
		{strings.Replace(good, `"message":"m"`, `"message":""`, 1), "message is empty"},
		{`{"is_error":true,"response":null}`, "no error object"},
		{`[`, "not a JSON object"},
	} {
		p, _ := envelopeProblems(seenError{Status: 400, Raw: json.RawMessage(c.raw)}, "acme")
		if !strings.Contains(strings.Join(p, "\n"), c.want) {
			t.Errorf("%s: problems %v, want %q", c.raw, p, c.want)
		}
	}
	if p, _ := envelopeProblems(seenError{Status: 404, Raw: json.RawMessage(good)}, "acme"); !strings.Contains(strings.Join(p, ","), "differs from the HTTP status 404") {
		t.Errorf("status mismatch not found: %v", p)
	}
	if p := wireErrorProblems(&wire.Error{Code: "bad_request", Message: "m", RaisedBy: "x", RaisedIn: "y"}); len(p) != 0 {
		t.Fatalf("good wire error: %v", p)
	}
	if p := wireErrorProblems(&wire.Error{Code: "nope"}); len(p) != 4 {
		t.Fatalf("bad wire error: %v", p)
	}
}

func TestPluginLines(t *testing.T) {
	t.Parallel()
	c := newLogCapture()
	l := c.logger().Named("acme").Named("connector-acme")
	l.Info("hello", "@module", "acme", "request_id", "r1", "timestamp", "2026-01-01T00:00:00.000Z")
	l.Debug("plain text line")
	l.Debug(`{"@level":"info","@message":"slog line","@timestamp":"2026-01-01T00:00:00.123Z","k":"v"}`)
	l.Debug(`{"@level":"loud","@message":"not hclog"}`)
	c.logger().Named("acme").Info("host line")
	lines := c.pluginLines("connector-acme")
	if len(lines) != 4 {
		t.Fatalf("lines %+v", lines)
	}
	if !lines[0].JSON || lines[0].Unparsed || lines[0].Fields["request_id"] != "r1" || lines[0].Fields["@module"] != nil || !lines[0].contains("r1") {
		t.Fatalf("JSON line %+v", lines[0])
	}
	if lines[1].JSON || lines[1].Text != "plain text line" {
		t.Fatalf("text line %+v", lines[1])
	}
	if !lines[2].JSON || !lines[2].Unparsed || lines[2].Message != "slog line" || lines[2].Fields["k"] != "v" {
		t.Fatalf("hclog-shaped line %+v", lines[2])
	}
	if lines[3].JSON {
		t.Fatalf("a JSON line with an unknown level counted as hclog: %+v", lines[3])
	}
	if _, ok := c.waitFor(10*time.Millisecond, func(r record) bool { return r.Message == "host line" }); !ok {
		t.Fatal("waitFor missed a record")
	}
	if _, ok := c.waitFor(10*time.Millisecond, func(r record) bool { return r.Message == "never" }); ok {
		t.Fatal("waitFor found a record that was never logged")
	}
}

func TestReportOutput(t *testing.T) {
	t.Parallel()
	rep := &Report{Binary: "bin/connector-acme", AppID: "acme", Version: "1.0.0", Duration: 1500 * time.Millisecond, Results: []Result{
		{Check: CheckHandshake, Status: Pass, Reason: "ok", Duration: time.Millisecond},
		{Check: CheckLogs, Status: Fail, Reason: "bad", Details: []string{"line 1"}},
		{Check: CheckCancellation, Status: Skip, Reason: "no slow case"},
	}, PluginLog: "[info] hi\n"}
	if rep.OK() || rep.Passed() != 1 || rep.Failed() != 1 || rep.Skipped() != 1 || rep.Result(CheckLogs).Reason != "bad" || rep.Result("x") != nil {
		t.Fatalf("counts wrong: %+v", rep)
	}
	var b bytes.Buffer
	if err := rep.WriteText(&b); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"PASS  handshake     ok", "FAIL  logs          bad\n      line 1", "SKIP  cancellation  no slow case", "3 checks, 1 PASS, 1 FAIL, 1 SKIP", "fixtures: none", "plugin stderr"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("text report lacks %q:\n%s", want, b.String())
		}
	}
	js, err := json.Marshal(rep)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		OK      bool `json:"ok"`
		Summary struct{ Pass, Fail, Skip int }
		Checks  []struct {
			Name, Status, Reason string
			Details              []string
		}
	}
	if err := json.Unmarshal(js, &doc); err != nil {
		t.Fatal(err)
	}
	if doc.OK || doc.Summary.Fail != 1 || len(doc.Checks) != 3 || doc.Checks[1].Status != "FAIL" || doc.Checks[0].Details == nil {
		t.Fatalf("json report %s", js)
	}
}

// TestContextFixture: the probes' settings and auth come from a case that
// expects success, else from one whose expected error is not about the
// credentials or the settings, else from no case at all; never from a case
// that expects an auth or settings error, even when it sorts first.
func TestContextFixture(t *testing.T) {
	t.Parallel()
	s := &session{authCompiled: map[string]*validator.Schema{}}
	var err error
	if s.settings, err = compileSchema("settings", json.RawMessage(`{"type":"object","properties":{"region":{"type":"string","enum":["eu","us"]}},"additionalProperties":false}`)); err != nil {
		t.Fatal(err)
	}
	if s.authCompiled["token"], err = compileSchema("auth.token", json.RawMessage(`{"type":"object","properties":{"token":{"type":"string","minLength":1}},"required":["token"]}`)); err != nil {
		t.Fatal(err)
	}
	fx := func(name, capability, settings, auth, expect string) *Fixture {
		t.Helper()
		doc := `{"name":"` + name + `","capability":"` + capability + `","request":{}`
		if settings != "" {
			doc += `,"settings":` + settings
		}
		if auth != "" {
			doc += `,"auth":` + auth
		}
		if expect != "" {
			doc += `,"expect":` + expect
		}
		f, err := ParseFixture(name+".json", []byte(doc+"}"))
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	var (
		unaccepted   = fx("a_unaccepted_kind", "get", "", `{"basic":{"username":"u","password":"p"}}`, `{"error_code":"bad_request","message_contains":["auth.basic"]}`)
		noKey        = fx("b_no_key", "get", `{"region":"eu"}`, "", `{"error_code":"unauthenticated"}`)
		badSetting   = fx("c_bad_setting", "get", `{"region":"mars"}`, `{"token":{"token":"t"}}`, `{"error_code":"bad_request"}`)
		emptyToken   = fx("d_empty_token", "get", "", `{"token":{"token":""}}`, `{"error_code":"bad_request"}`)
		namesAuth    = fx("e_names_auth", "get", "", `{"token":{"token":"t"}}`, `{"error_code":"invalid_value","message_contains":["auth.token"]}`)
		notFound     = fx("f_not_found", "get", `{"region":"eu"}`, `{"token":{"token":"t"}}`, `{"error_code":"not_found"}`)
		success      = fx("g_success", "get", `{"region":"us"}`, `{"token":{"token":"t"}}`, "")
		slowSuccess  = fx("h_slow", "wait", "", `{"token":{"token":"t"}}`, "")
		otherSuccess = fx("i_other_success", "list", `{"region":"us"}`, `{"token":{"token":"t"}}`, "")
	)
	slowSuccess.Slow = true
	for _, c := range []struct {
		name     string
		fixtures []*Fixture
		capa     string
		want     *Fixture
	}{
		{"success first", []*Fixture{unaccepted, noKey, badSetting, emptyToken, namesAuth, notFound, success}, "get", success},
		{"else a neutral error", []*Fixture{unaccepted, noKey, badSetting, emptyToken, namesAuth, notFound}, "get", notFound},
		{"else another capability's success", []*Fixture{unaccepted, noKey, badSetting, emptyToken, namesAuth, otherSuccess}, "get", otherSuccess},
		{"else none", []*Fixture{unaccepted, noKey, badSetting, emptyToken, namesAuth, slowSuccess}, "get", nil},
		{"never a slow case", []*Fixture{slowSuccess}, "wait", nil},
		{"a neutral error of another capability", []*Fixture{unaccepted, notFound}, "list", notFound},
	} {
		s.fixtures = c.fixtures
		got := s.contextFixture(c.capa)
		if got != c.want {
			name := func(f *Fixture) string {
				if f == nil {
					return "none"
				}
				return f.Name
			}
			t.Errorf("%s: context from %s, want %s", c.name, name(got), name(c.want))
		}
	}
	// The probes' settings and auth follow.
	s.fixtures = []*Fixture{unaccepted, success}
	settings, auth, _, ctxFields := s.probeContext("get")
	if string(settings) != `{"region":"us"}` || string(auth) != `{"token":{"token":"t"}}` || len(ctxFields) != 0 {
		t.Fatalf("probe context: settings %s auth %s fields %v", settings, auth, ctxFields)
	}
}

// TestPlantCanaries: canaries go into every string field a request schema
// marks x-secret, at any depth (properties, $refs, map members, array
// elements); present fields are replaced, and with add the missing ones are
// added.
func TestPlantCanaries(t *testing.T) {
	t.Parallel()
	raw := json.RawMessage(`{"type":"object","properties":{
		"name":{"type":"string"},
		"password":{"type":"string","x-secret":true},
		"pin":{"type":"integer","x-secret":true},
		"login":{"$ref":"#/$defs/Login"},
		"headers":{"type":"object","additionalProperties":{"x-secret":true}},
		"keys":{"type":"array","items":{"type":"object","properties":{"id":{"type":"string"},"secret":{"type":"string","x-secret":true}}}}
	},"$defs":{"Login":{"type":"object","properties":{"user":{"type":"string"},"client_secret":{"type":"string","x-secret":true}}}}}`)
	w := newSchemaWalker(raw)
	if w == nil || !w.hasSecret(w.root, 0) {
		t.Fatal("the schema has secrets")
	}
	n := 0
	next := func() string { n++; return fmt.Sprintf("CANARY%d", n) }
	var doc any
	_ = json.Unmarshal([]byte(`{"name":"ada","password":"pw","login":{"user":"u"},"keys":[{"id":"a","secret":"s1"},{"id":"b"}],"headers":{"Authorization":"Bearer x"}}`), &doc)
	fed := map[string]bool{}
	got, _ := json.Marshal(w.plant(w.root, doc, "request", false, next, fed, 0))
	want := `{"headers":{"Authorization":"CANARY1"},"keys":[{"id":"a","secret":"CANARY2"},{"id":"b"}],"login":{"user":"u"},"name":"ada","password":"CANARY3"}`
	if string(got) != want {
		t.Fatalf("replace:\n got %s\nwant %s", got, want)
	}
	if strings.Join(sortedKeys(fed), ",") != "request.headers.*,request.keys.*.secret,request.password" {
		t.Fatalf("fed %v", sortedKeys(fed))
	}
	n, fed = 0, map[string]bool{}
	got, _ = json.Marshal(w.plant(w.root, map[string]any{"name": "ada"}, "request", true, next, fed, 0))
	want = `{"headers":{"conformance_secret":"CANARY1"},"keys":[{"secret":"CANARY2"}],"login":{"client_secret":"CANARY3"},"name":"ada","password":"CANARY4"}`
	if string(got) != want {
		t.Fatalf("add:\n got %s\nwant %s", got, want)
	}
	if strings.Join(sortedKeys(fed), ",") != "request.headers.*,request.keys.*.secret,request.login.client_secret,request.password" {
		t.Fatalf("fed %v", sortedKeys(fed))
	}
	// A value of another type than the schema's is left alone.
	fed = map[string]bool{}
	got, _ = json.Marshal(w.plant(w.root, map[string]any{"headers": "x", "login": 5}, "request", true, next, fed, 0))
	if strings.Contains(string(got), `"headers":{`) || strings.Contains(string(got), `"login":{`) {
		t.Fatalf("wrong-typed values replaced: %s", got)
	}
	// Masking hides the declared secret outputs only.
	var resp any
	_ = json.Unmarshal([]byte(`{"name":"CANARY9","password":"CANARY8","login":{"client_secret":"CANARY7","user":"CANARY6"},"headers":{"h":"CANARY5"}}`), &resp)
	masked, _ := json.Marshal(w.mask(w.root, resp, 0))
	want = `{"headers":{"h":"[x-secret]"},"login":{"client_secret":"[x-secret]","user":"CANARY6"},"name":"CANARY9","password":"[x-secret]"}`
	if string(masked) != want {
		t.Fatalf("mask:\n got %s\nwant %s", masked, want)
	}
}

// TestRequestBase: a canary request is built from a repeatable case of the
// capability, preferring one that takes every secret field and reaches the
// handler.
func TestRequestBase(t *testing.T) {
	t.Parallel()
	schema := json.RawMessage(`{"type":"object","properties":{"url":{"type":"string"},"auth":{"type":"object","additionalProperties":{"x-secret":true}}}}`)
	s := &session{desc: &wire.Description{Capabilities: []wire.Capability{{Name: "send", RequestSchema: schema}, {Name: "other", RequestSchema: schema}}}, authCompiled: map[string]*validator.Schema{}}
	fx := func(name, request, expect string, once bool) *Fixture {
		t.Helper()
		f, err := ParseFixture(name+".json", []byte(`{"capability":"send","request":`+request+`,"expect":`+expect+`}`))
		if err != nil {
			t.Fatal(err)
		}
		f.Once = once
		return f
	}
	authString := fx("a_auth_string", `{"auth":"tok"}`, `{"error_code":"bad_request"}`, false)
	badURL := fx("b_bad_url", `{"url":5}`, `{"error_code":"bad_request"}`, false)
	unreachable := fx("c_unreachable", `{"url":"http://127.0.0.1:1"}`, `{"error_code":"bad_gateway"}`, false)
	created := fx("d_created", `{"url":"http://127.0.0.1:1"}`, `{}`, true)
	for _, c := range []struct {
		name     string
		fixtures []*Fixture
		want     *Fixture
	}{
		{"reaches the handler", []*Fixture{authString, badURL, unreachable, created}, unreachable},
		{"takes the secrets", []*Fixture{authString, badURL}, badURL},
		{"the most it can", []*Fixture{authString}, authString},
		{"not a once case", []*Fixture{created}, nil},
	} {
		s.fixtures = c.fixtures
		if got := s.requestBase("send"); got != c.want {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
	}
	s.fixtures = []*Fixture{unreachable}
	req, fed := s.requestWithCanaries("send", unreachable.Request, true)
	if len(fed) != 1 || fed[0] != "request.auth.*" || !strings.Contains(string(req), `"auth":{"conformance_secret":"cnry`) || len(s.canaries) != 1 {
		t.Fatalf("request %s fed %v canaries %v", req, fed, s.canaries)
	}
	if p := s.requestSecretPaths("send"); len(p) != 1 || p[0] != "request.auth.*" {
		t.Fatalf("paths %v", p)
	}
}
