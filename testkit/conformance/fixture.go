package conformance

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	"github.com/connector-host/connector-host/sdk"
)

// Fixture is one conformance case a plugin ships: a request envelope for
// one capability and what must come back. Each case is one JSON file in the
// plugin's testdata/conformance/ directory; docs/conformance.md documents
// the format.
type Fixture struct {
	// Name identifies the case in reports; it defaults to the file name
	// without ".json".
	Name string `json:"name,omitempty"`
	// Description says what the case shows (optional).
	Description string `json:"description,omitempty"`
	// Capability is the capability to call.
	Capability string `json:"capability"`
	// Request, Settings, Auth, Page and IncludeRawData form the request
	// envelope, as in an HTTP call.
	Request        json.RawMessage `json:"request"`
	Settings       json.RawMessage `json:"settings,omitempty"`
	Auth           json.RawMessage `json:"auth,omitempty"`
	Page           *Page           `json:"page,omitempty"`
	IncludeRawData bool            `json:"include_raw_data,omitempty"`
	// Expect is what must come back. An empty Expect asks for a success
	// whose response validates against the output schema.
	Expect Expect `json:"expect"`
	// Slow marks a call that runs for several seconds unless cancelled;
	// the cancellation check uses it, and no other check runs it.
	Slow bool `json:"slow,omitempty"`
	// Once marks a case with side effects (it crashes the plugin, creates
	// something upstream, ...): only the fixtures check runs it, once; the
	// concurrency and secrets checks do not repeat it.
	Once bool `json:"once,omitempty"`

	// File is the path the case was read from.
	File string `json:"-"`
}

// Page is the request envelope's paging cursor.
type Page struct {
	Token string `json:"token"`
	Size  int    `json:"size,omitempty"`
}

// Expect is a fixture's expected outcome.
type Expect struct {
	// ErrorCode is the code the call must fail with, e.g. "bad_request"
	// (the "<app_id>." prefix is optional). Empty means the call must
	// succeed.
	ErrorCode string `json:"error_code,omitempty"`
	// MessageContains are substrings the error message must contain (with
	// ErrorCode), e.g. the name of the field at fault.
	MessageContains []string `json:"message_contains,omitempty"`
	// Response lists fields the unary response must have: objects match
	// when every given member matches, arrays element by element with the
	// same length, other values when equal.
	Response json.RawMessage `json:"response,omitempty"`
	// RawData and Page, when given, must match the envelope's raw_data and
	// page the same way.
	RawData json.RawMessage `json:"raw_data,omitempty"`
	Page    json.RawMessage `json:"page,omitempty"`
	// Items are the items a streaming capability must send, in order, each
	// matched like Response; the count must be equal.
	Items []json.RawMessage `json:"items,omitempty"`
	// ItemCount, when set, is the number of items a stream must send
	// (use it alone when the items themselves vary).
	ItemCount *int `json:"item_count,omitempty"`
	// Final is how a stream must end: "page" (the default for a success)
	// or "error" (the default with ErrorCode).
	Final string `json:"final,omitempty"`
}

// capabilityPattern is the pattern of a capability name.
var capabilityPattern = regexp.MustCompile(`^[a-z][a-z0-9_]*$`)

// maxFixtureBytes bounds one fixture file.
const maxFixtureBytes = 4 << 20

// ParseFixture decodes and checks one fixture. name is used in errors (the
// file name) and as the default case name.
func ParseFixture(name string, data []byte) (*Fixture, error) {
	if len(data) > maxFixtureBytes {
		return nil, fmt.Errorf("%s: larger than %d bytes", name, maxFixtureBytes)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var f Fixture
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("%s: %s", name, describeDecodeError(err))
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%s: unexpected data after the JSON object", name)
	}
	if f.Name == "" {
		f.Name = strings.TrimSuffix(filepath.Base(name), ".json")
	}
	if err := f.check(); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return &f, nil
}

func describeDecodeError(err error) string {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		return fmt.Sprintf("not valid JSON (at byte %d: %v)", syn.Offset, syn)
	case errors.As(err, &typ):
		field := typ.Field
		if field == "" {
			field = "the fixture"
		}
		return fmt.Sprintf("%s: must be %s, not %s", field, typ.Type.Kind(), typ.Value)
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "not valid JSON (empty or truncated)"
	}
	if msg, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		return fmt.Sprintf("%s is not a fixture field (see docs/conformance.md)", msg)
	}
	return err.Error()
}

func (f *Fixture) check() error {
	var errs []string
	if !capabilityPattern.MatchString(f.Capability) {
		errs = append(errs, fmt.Sprintf("capability: %q is not a capability name ([a-z][a-z0-9_]*)", f.Capability))
	}
	if !isObject(f.Request) {
		errs = append(errs, "request: is required and must be a JSON object (use {} for no arguments)")
	}
	for _, m := range []struct {
		name string
		raw  json.RawMessage
	}{{"settings", f.Settings}, {"auth", f.Auth}} {
		if len(m.raw) > 0 && string(m.raw) != "null" && !isObject(m.raw) {
			errs = append(errs, m.name+": must be a JSON object")
		}
	}
	e := &f.Expect
	if e.ErrorCode != "" {
		code := e.ErrorCode
		if i := strings.LastIndexByte(code, '.'); i >= 0 {
			code = code[i+1:]
		}
		if !sdk.Code(code).Valid() {
			errs = append(errs, fmt.Sprintf("expect.error_code: %q is not an error code of the contract", e.ErrorCode))
		}
		if len(e.Response) > 0 || len(e.Items) > 0 || e.ItemCount != nil || len(e.RawData) > 0 || len(e.Page) > 0 {
			errs = append(errs, "expect: error_code cannot be combined with response, raw_data, page, items or item_count")
		}
	} else if len(e.MessageContains) > 0 {
		errs = append(errs, "expect.message_contains: needs expect.error_code")
	}
	switch e.Final {
	case "", "page", "error":
	default:
		errs = append(errs, fmt.Sprintf("expect.final: %q is not \"page\" or \"error\"", e.Final))
	}
	if e.Final == "page" && e.ErrorCode != "" {
		errs = append(errs, "expect.final: \"page\" contradicts expect.error_code")
	}
	if e.ItemCount != nil && *e.ItemCount < 0 {
		errs = append(errs, "expect.item_count: must not be negative")
	}
	if e.ItemCount != nil && len(e.Items) > 0 && *e.ItemCount != len(e.Items) {
		errs = append(errs, fmt.Sprintf("expect.item_count: %d contradicts the %d expect.items", *e.ItemCount, len(e.Items)))
	}
	for name, raw := range map[string]json.RawMessage{"expect.response": e.Response, "expect.raw_data": e.RawData, "expect.page": e.Page} {
		if len(raw) > 0 && !json.Valid(raw) {
			errs = append(errs, name+": not valid JSON")
		}
	}
	if f.Slow && (e.ErrorCode != "" || len(e.Response) > 0 || len(e.Items) > 0) {
		errs = append(errs, "slow: a slow case is only started and cancelled; it cannot have expectations")
	}
	if f.Page != nil && f.Page.Size < 0 {
		errs = append(errs, "page.size: must not be negative")
	}
	if len(errs) > 0 {
		sort.Strings(errs)
		return errors.New(strings.Join(errs, "; "))
	}
	return nil
}

func isObject(raw json.RawMessage) bool {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || raw[0] != '{' {
		return false
	}
	return json.Valid(raw)
}

// envelopeJSON is the fixture's request envelope.
func (f *Fixture) envelopeJSON() []byte {
	env := map[string]any{"request": f.Request}
	if len(f.Settings) > 0 && string(f.Settings) != "null" {
		env["settings"] = f.Settings
	}
	if len(f.Auth) > 0 && string(f.Auth) != "null" {
		env["auth"] = f.Auth
	}
	if f.Page != nil {
		env["page"] = f.Page
	}
	if f.IncludeRawData {
		env["include_raw_data"] = true
	}
	b, _ := json.Marshal(env)
	return b
}

// expectsError reports the expected error code without the app_id prefix,
// or "".
func (f *Fixture) expectedCode() string {
	code := f.Expect.ErrorCode
	if i := strings.LastIndexByte(code, '.'); i >= 0 {
		code = code[i+1:]
	}
	return code
}

// LoadFixtures reads every *.json file of dir (not recursively), sorted by
// name. An empty dir string means no fixtures. Every problem found is
// returned, each naming its file.
func LoadFixtures(dir string) ([]*Fixture, error) {
	if dir == "" {
		return nil, nil
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("fixtures directory %s does not exist", dir)
		}
		return nil, fmt.Errorf("reading fixtures: %w", err)
	}
	var out []*Fixture
	var errs []error
	names := map[string]string{}
	for _, e := range entries {
		if e.IsDir() || !strings.HasSuffix(e.Name(), ".json") {
			continue
		}
		path := filepath.Join(dir, e.Name())
		data, err := os.ReadFile(path)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		f, err := ParseFixture(path, data)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if prev, dup := names[f.Name]; dup {
			errs = append(errs, fmt.Errorf("%s: name %q is also used by %s", path, f.Name, prev))
			continue
		}
		names[f.Name] = path
		f.File = path
		out = append(out, f)
	}
	if len(errs) > 0 {
		return out, errors.Join(errs...)
	}
	return out, nil
}
