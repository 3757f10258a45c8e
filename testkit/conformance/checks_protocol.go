package conformance

import (
	"encoding/json"
	"fmt"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/connector-host/connector-host/host/supervisor"
	"github.com/connector-host/connector-host/internal/wire"
	"github.com/connector-host/connector-host/sdk"
)

var (
	appIDPattern  = regexp.MustCompile(`^[a-z][a-z0-9]*(-[a-z0-9]+)*$`)
	semverPattern = regexp.MustCompile(`^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$`)
)

// knownAuthKinds are the credential kinds of the contract.
var knownAuthKinds = map[string]bool{"basic": true, "token": true, "oauth": true, "oauth_client_credentials": true, "jwt": true}

// checkHandshake launches the plugin in a host: go-plugin handshake,
// protocol version negotiation and Describe.
func (s *session) checkHandshake() Result {
	bin, err := supervisor.FromPath(s.binary)
	if err != nil {
		return Result{Status: Fail, Reason: err.Error()}
	}
	if bin.AppID == "" {
		d, err := s.learnAppID()
		if err != nil {
			return Result{Status: Fail, Reason: "launching the plugin failed: " + err.Error()}
		}
		bin.AppID = d.AppID
		if bin.AppID == "" {
			bin.AppID = "plugin"
		}
		s.binaryNote = fmt.Sprintf("the binary is named %s, not connector-%s: connector-host loads only connector-<app_id> files from its plugin directory", s.base, d.AppID)
	}
	s.bin, s.appID = bin, bin.AppID
	took, err := s.startHost()
	if err != nil {
		return Result{Status: Fail, Reason: "launching the plugin failed: " + err.Error()}
	}
	proto := "1"
	for _, r := range s.recordsOf(rootLogger+"."+s.appID, "plugin ready") {
		if v, ok := r.Fields["protocol"]; ok {
			proto = fmt.Sprint(v)
		}
	}
	if proto != fmt.Sprint(wire.ProtocolVersion) {
		return Result{Status: Fail, Reason: fmt.Sprintf("negotiated protocol version %s; this host speaks version %d", proto, wire.ProtocolVersion)}
	}
	return pass("go-plugin handshake, protocol version %s and Describe in %v", proto, took.Round(time.Millisecond))
}

// recordsOf returns the host's log records of a module with a message.
func (s *session) recordsOf(module, message string) []record {
	recs, _ := s.logs.snapshot()
	var out []record
	for _, r := range recs {
		if r.Module == module && r.Message == message {
			out = append(out, r)
		}
	}
	return out
}

// checkDescribe validates the plugin's description and compiles its
// schemas for the other checks.
func (s *session) checkDescribe() Result {
	problems, n := s.compileDescription()
	if len(problems) > 0 {
		r := failWith("problems in the description", problems)
		if s.binaryNote != "" {
			r.Details = append(r.Details, "note: "+s.binaryNote)
		}
		return r
	}
	r := pass("app_id %s, version %s, %d capabilities; %d schemas compile as JSON Schema 2020-12; secret-looking fields are marked x-secret",
		s.desc.AppID, s.desc.Version, len(s.desc.Capabilities), n)
	if s.binaryNote != "" {
		r.Details = []string{"note: " + s.binaryNote}
	}
	return r
}

// compileDescription checks the description, keeps the compiled schemas
// and returns every problem and the number of schemas compiled.
func (s *session) compileDescription() ([]string, int) {
	d := s.desc
	problems := describeProblems(d)
	n := 0
	add := func(where string, raw json.RawMessage, required bool) bool {
		if len(strings.TrimSpace(string(raw))) == 0 {
			if required {
				problems = append(problems, where+": no JSON Schema")
			}
			return false
		}
		return true
	}
	for _, c := range d.Capabilities {
		if add("capability "+c.Name+" request schema", c.RequestSchema, true) {
			if sch, err := compileSchema(c.Name+".request", c.RequestSchema); err != nil {
				problems = append(problems, fmt.Sprintf("capability %s request schema %v", c.Name, err))
			} else {
				s.reqSchemas[c.Name] = sch
				n++
			}
		}
		if add("capability "+c.Name+" response schema", c.ResponseSchema, true) {
			if sch, err := compileSchema(c.Name+".response", c.ResponseSchema); err != nil {
				problems = append(problems, fmt.Sprintf("capability %s response schema %v", c.Name, err))
			} else {
				s.respSchemas[c.Name] = sch
				n++
			}
		}
	}
	if add("settings schema", d.SettingsSchema, false) {
		if sch, err := compileSchema("settings", d.SettingsSchema); err != nil {
			problems = append(problems, "settings schema "+err.Error())
		} else {
			s.settings = sch
			n++
		}
	}
	for _, m := range d.AuthModels {
		if add("auth model "+m.Kind+" schema", m.Schema, true) {
			if sch, err := compileSchema("auth."+m.Kind, m.Schema); err != nil {
				problems = append(problems, fmt.Sprintf("auth model %s schema %v", m.Kind, err))
			} else {
				s.authSchemas[m.Kind] = m.Schema
				s.authCompiled[m.Kind] = sch
				n++
			}
		}
	}
	return problems, n
}

// describeProblems checks a description against the contract: app_id
// pattern, semantic version, a description, known capability names and
// auth kinds, and secret-looking fields marked x-secret. Schemas are
// compiled by the caller.
func describeProblems(d *wire.Description) []string {
	var problems []string
	if !appIDPattern.MatchString(d.AppID) {
		problems = append(problems, fmt.Sprintf("app_id %q: must be lowercase words joined by '-' (%s)", d.AppID, appIDPattern))
	}
	if !semverPattern.MatchString(d.Version) {
		problems = append(problems, fmt.Sprintf("version %q: must be a semantic version like 1.2.3", d.Version))
	}
	if strings.TrimSpace(d.Info.Description) == "" {
		problems = append(problems, "description: must not be empty")
	}
	if len(d.Capabilities) == 0 {
		problems = append(problems, "capabilities: the plugin describes none")
	}
	standard := map[string]bool{}
	for _, c := range sdk.StandardCapabilities() {
		standard[c] = true
	}
	seen := map[string]bool{}
	for _, c := range d.Capabilities {
		if !standard[c.Name] && !capabilityPattern.MatchString(c.Name) {
			problems = append(problems, fmt.Sprintf("capability %q: must be a standard name or snake_case ([a-z][a-z0-9_]*)", c.Name))
		}
		if seen[c.Name] {
			problems = append(problems, fmt.Sprintf("capability %q: described twice", c.Name))
		}
		seen[c.Name] = true
		for _, p := range unmarkedSecrets("capability "+c.Name+" request", c.RequestSchema) {
			problems = append(problems, p+unmarkedHint)
		}
		for _, p := range unmarkedSecrets("capability "+c.Name+" response", c.ResponseSchema) {
			problems = append(problems, p+unmarkedHint)
		}
	}
	for _, p := range unmarkedSecrets("settings", d.SettingsSchema) {
		problems = append(problems, p+unmarkedHint)
	}
	for _, m := range d.AuthModels {
		if !knownAuthKinds[m.Kind] {
			problems = append(problems, fmt.Sprintf("auth model %q: not a credential kind of the contract (basic, token, oauth, oauth_client_credentials, jwt)", m.Kind))
		}
		for _, p := range unmarkedSecrets("auth."+m.Kind, m.Schema) {
			problems = append(problems, p+unmarkedHint)
		}
	}
	return problems
}

// unmarkedHint ends the problem of a secret-looking field without
// "x-secret".
const unmarkedHint = ": looks like a secret but is not marked \"x-secret\": true (mark it; or, if it is not a secret, declare \"x-secret\": false)"

// unknownCapability is a capability name no plugin has.
const unknownCapability = "conformance_no_such_capability"

// checkUnknownCapability calls a capability the plugin does not have,
// through the host and directly.
func (s *session) checkUnknownCapability() Result {
	var problems []string
	o := s.call(s.ctx, unknownCapability, []byte(`{"request":{}}`), "", "unknown capability via HTTP")
	want := s.appID + ".not_implemented"
	if o.Err == nil || o.Err.ErrorCode != want || o.Status != 501 {
		problems = append(problems, fmt.Sprintf("HTTP: want 501 %s, got %s", want, o.summary()))
	}
	call := func() *wire.Call {
		return &wire.Call{Capability: unknownCapability, Request: json.RawMessage(`{}`)}
	}
	res, _, err := s.wireInvoke(call(), false, "unknown capability, unary, direct")
	switch {
	case err != nil:
		problems = append(problems, "direct unary call: the plugin failed the call instead of answering not_implemented in-band: "+err.Error())
	case res.Err == nil:
		problems = append(problems, "direct unary call: the plugin answered success for a capability it does not have")
	case res.Err.Code != string(sdk.NotImplemented):
		problems = append(problems, fmt.Sprintf("direct unary call: want not_implemented, got %s (%s)", res.Err.Code, cut(res.Err.Message, 200)))
	}
	_, chunks, err := s.wireInvoke(call(), true, "unknown capability, stream, direct")
	switch {
	case err != nil:
		problems = append(problems, "direct stream call: the plugin failed the call instead of answering not_implemented in-band: "+err.Error())
	case len(chunks) == 0 || chunks[len(chunks)-1].Err == nil:
		problems = append(problems, "direct stream call: the stream did not end with an error")
	case chunks[len(chunks)-1].Err.Code != string(sdk.NotImplemented):
		e := chunks[len(chunks)-1].Err
		problems = append(problems, fmt.Sprintf("direct stream call: want not_implemented, got %s (%s)", e.Code, cut(e.Message, 200)))
	}
	if len(problems) > 0 {
		return failWith("problems", problems)
	}
	return pass("%s answered 501 %s through the host, and not_implemented in-band to direct unary and stream calls", unknownCapability, want)
}

// namesField reports whether msg names one of the fields: the dotted path
// or its last segment as a word.
func namesField(msg string, fields []string) bool {
	for _, f := range fields {
		if strings.Contains(msg, f) {
			return true
		}
		leaf := f
		if i := strings.LastIndexAny(leaf, ".["); i >= 0 {
			leaf = strings.TrimRight(leaf[i+1:], "]")
		}
		if leaf != "" && regexp.MustCompile(`(^|[^A-Za-z0-9_])`+regexp.QuoteMeta(leaf)+`($|[^A-Za-z0-9_])`).MatchString(msg) {
			return true
		}
	}
	return false
}

// probeContext returns the settings and auth a probe of capability is sent
// with (from a fixture), the base request (a fixture's valid request) and
// the fields that are invalid in that context itself (e.g. settings a
// plugin requires that no fixture gives).
func (s *session) probeContext(capability string) (settings, auth, base json.RawMessage, contextFields []string) {
	base = json.RawMessage(`{}`)
	if f := s.contextFixture(capability); f != nil {
		settings, auth = f.Settings, f.Auth
	}
	if f := s.fixtureFor(capability, isSuccessCase); f != nil {
		base = f.Request
	}
	if s.settings != nil {
		if fields, err := invalidFields(s.settings, "settings", settings); err == nil {
			contextFields = fields
		}
	}
	return settings, auth, base, contextFields
}

func envelopeOf(request, settings, auth json.RawMessage) []byte {
	env := map[string]json.RawMessage{"request": request}
	if len(settings) > 0 && string(settings) != "null" {
		env["settings"] = settings
	}
	if len(auth) > 0 && string(auth) != "null" {
		env["auth"] = auth
	}
	b, _ := json.Marshal(env)
	return b
}

// checkBadRequest sends requests that are not JSON or fail the request
// schema, and expects bad_request naming the field at fault.
func (s *session) checkBadRequest() Result {
	var problems []string
	calls := 0
	if len(s.desc.Capabilities) > 0 {
		first := s.desc.Capabilities[0].Name
		o := s.call(s.ctx, first, []byte(`{"request": {`), "", "body that is not JSON")
		calls++
		if o.Err == nil || o.Err.code() != string(sdk.BadRequest) || !strings.Contains(o.Err.Message, "body") {
			problems = append(problems, "HTTP body that is not JSON: want bad_request naming the body, got "+o.summary())
		}
	}
	for _, c := range s.desc.Capabilities {
		settings, auth, base, ctxFields := s.probeContext(c.Name)
		// Directly: a request that is not JSON at all.
		where := "capability " + c.Name + ": a request that is not JSON (direct call)"
		res, chunks, err := s.wireInvoke(&wire.Call{Capability: c.Name, Request: json.RawMessage(`{"not json`), Settings: settings, Auth: auth}, c.Streaming, where)
		calls++
		var werr *wire.Error
		switch {
		case err != nil:
			problems = append(problems, where+": the call failed instead of an in-band bad_request: "+err.Error())
		case res != nil:
			werr = res.Err
		case len(chunks) > 0:
			if len(chunks[0].Lines()) > 0 {
				problems = append(problems, where+": the stream sent items before refusing the request")
			}
			werr = chunks[len(chunks)-1].Err
		}
		if err == nil {
			switch {
			case werr == nil:
				problems = append(problems, where+": the plugin answered success")
			case werr.Code != string(sdk.BadRequest):
				problems = append(problems, fmt.Sprintf("%s: want bad_request, got %s (%s)", where, werr.Code, cut(werr.Message, 200)))
			case !namesField(werr.Message, append([]string{"request"}, ctxFields...)):
				problems = append(problems, fmt.Sprintf("%s: the message does not name the field (request): %q", where, cut(werr.Message, 200)))
			}
		}
		// Through the host: requests that fail the request schema.
		sch := s.reqSchemas[c.Name]
		if sch == nil {
			continue
		}
		for _, p := range badRequestProbes(sch, c.RequestSchema, base) {
			where := fmt.Sprintf("capability %s: %s", c.Name, p.Label)
			body := envelopeOf(p.Request, settings, auth)
			o := s.call(s.ctx, c.Name, body, "", where)
			calls++
			fields := append(append([]string(nil), p.Fields...), ctxFields...)
			switch {
			case o.Err == nil:
				problems = append(problems, where+": want bad_request, got "+o.summary())
			case len(o.Items) > 0:
				problems = append(problems, where+": the stream sent items before refusing the request")
			case o.Err.code() != string(sdk.BadRequest):
				problems = append(problems, fmt.Sprintf("%s: want bad_request, got %s", where, o.summary()))
			case !namesField(o.Err.Message, fields):
				problems = append(problems, fmt.Sprintf("%s: the message does not name the field (%s): %q", where, strings.Join(p.Fields, ", "), cut(o.Err.Message, 200)))
			default:
				s.mu.Lock()
				s.probes = append(s.probes, badProbe{Capability: c.Name, Envelope: body})
				s.mu.Unlock()
			}
		}
	}
	if len(problems) > 0 {
		return failWith("problems", problems)
	}
	return pass("%d requests that are not JSON or fail the request schema were refused with bad_request naming the field", calls)
}

// checkErrorEnvelope checks every error envelope seen during the run.
func (s *session) checkErrorEnvelope() Result {
	s.mu.Lock()
	httpErrs := append([]seenError(nil), s.httpErrors...)
	wireErrs := append([]seenWireError(nil), s.wireErrors...)
	s.mu.Unlock()
	var problems []string
	byPlugin, byHost := 0, 0
	for _, e := range httpErrs {
		ps, host := envelopeProblems(e, s.appID)
		if host {
			byHost++
		} else {
			byPlugin++
		}
		for _, p := range ps {
			problems = append(problems, e.Where+": "+p)
		}
	}
	for _, e := range wireErrs {
		for _, p := range wireErrorProblems(e.Err) {
			problems = append(problems, e.Where+": "+p)
		}
	}
	if len(problems) > 0 {
		sort.Strings(problems)
		return failWith("incomplete error envelopes", problems)
	}
	if len(httpErrs)+len(wireErrs) == 0 {
		return skip("no error was answered during the run, so there was no envelope to check")
	}
	return pass("%d error envelopes complete (%d raised by the plugin, %d by the host) and %d in-band errors of direct calls", len(httpErrs), byPlugin, byHost, len(wireErrs))
}

// envelopeProblems checks one error envelope (or a stream's error line):
// is_error, response null, error_code <app_id>.<code> with a code of the
// contract, app_id, non-empty message, raised_by and raised_in, and a
// status that matches the code. host reports whether the host raised it.
func envelopeProblems(e seenError, appID string) (problems []string, host bool) {
	var doc map[string]any
	if err := json.Unmarshal(e.Raw, &doc); err != nil {
		return []string{"not a JSON object: " + err.Error()}, false
	}
	if !e.InStream {
		if doc["is_error"] != true {
			problems = append(problems, "is_error is not true")
		}
		if r, ok := doc["response"]; !ok || r != nil {
			problems = append(problems, "response is not null")
		}
	}
	errObj, ok := doc["error"].(map[string]any)
	if !ok {
		return append(problems, "no error object"), false
	}
	str := func(k string) string {
		v, ok := errObj[k]
		if !ok {
			problems = append(problems, "error."+k+" is missing")
			return ""
		}
		s, ok := v.(string)
		if !ok {
			problems = append(problems, "error."+k+" is not a string")
		}
		return s
	}
	msg, code, app, by, in := str("message"), str("error_code"), str("app_id"), str("raised_by"), str("raised_in")
	host = by == "host"
	if strings.TrimSpace(msg) == "" {
		problems = append(problems, "error.message is empty")
	}
	if by == "" {
		problems = append(problems, "error.raised_by is empty")
	}
	if in == "" {
		problems = append(problems, "error.raised_in is empty")
	}
	if app != appID && app != "host" {
		problems = append(problems, fmt.Sprintf("error.app_id is %q, not %q", app, appID))
	}
	prefix, c, found := strings.Cut(code, ".")
	switch {
	case !found || prefix != app:
		problems = append(problems, fmt.Sprintf("error.error_code %q is not <app_id>.<code> (%s.<code>)", code, app))
	case !sdk.Code(c).Valid():
		problems = append(problems, fmt.Sprintf("error.error_code %q: %q is not a code of the contract", code, c))
	}
	if strings.Contains(msg, "plugin returned unknown error code") {
		problems = append(problems, "the plugin answered with an error code that is not in the contract (the host replaced it by internal_error): "+cut(msg, 200))
	}
	status, ok := errObj["status_code"].(float64)
	switch {
	case !ok:
		problems = append(problems, "error.status_code is missing or not a number")
	case int(status) != sdk.Code(c).HTTPStatus():
		problems = append(problems, fmt.Sprintf("error.status_code %d is not the status of %s (%d)", int(status), c, sdk.Code(c).HTTPStatus()))
	case !e.InStream && int(status) != e.Status:
		problems = append(problems, fmt.Sprintf("error.status_code %d differs from the HTTP status %d", int(status), e.Status))
	}
	return problems, host
}

// wireErrorProblems checks an in-band error of a direct call.
func wireErrorProblems(e *wire.Error) []string {
	var problems []string
	if !sdk.Code(e.Code).Valid() {
		problems = append(problems, fmt.Sprintf("code %q is not a code of the contract", e.Code))
	}
	if strings.TrimSpace(e.Message) == "" {
		problems = append(problems, "the message is empty")
	}
	if e.RaisedBy == "" {
		problems = append(problems, "raised_by is empty")
	}
	if e.RaisedIn == "" {
		problems = append(problems, "raised_in is empty")
	}
	return problems
}
