package conformance

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	validator "github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/connector-host/connector-host/host"
	"github.com/connector-host/connector-host/host/config"
	"github.com/connector-host/connector-host/host/supervisor"
	"github.com/connector-host/connector-host/internal/wire"
	"github.com/connector-host/connector-host/sdk"
)

// session is one conformance run: the plugin under test running in a real
// host (supervisor, router, HTTP API on 127.0.0.1), the log capture, and
// what the checks learnt along the way.
type session struct {
	ctx    context.Context
	opts   Options
	binary string // absolute path
	base   string // file name: go-plugin tags the plugin's stderr lines with it
	bin    supervisor.Binary
	appID  string
	desc   *wire.Description

	logs    *logCapture
	tmp     string
	hostNum int
	h       *host.Host
	srv     *httptest.Server
	client  *http.Client

	// binaryNote is set when the binary's name is not connector-<app_id>.
	binaryNote string

	fixtures   []*Fixture
	fixtureErr error

	reqSchemas  map[string]*validator.Schema
	respSchemas map[string]*validator.Schema
	settings    *validator.Schema
	authSchemas map[string]json.RawMessage
	// authCompiled are the compiled schemas of the accepted credential
	// kinds.
	authCompiled map[string]*validator.Schema

	mu         sync.Mutex
	httpErrors []seenError
	wireErrors []seenWireError
	baselines  map[string]*outcome // fixture name → its sequential outcome
	probes     []badProbe          // schema-invalid requests that worked as probes

	canaries      []string
	canaryFed     []string // where canaries went, for the report
	canaryCalls   int
	canaryAnswers []string      // error messages answered to canary calls
	canaryReplies []canaryReply // everything answered to canary calls
	canaryUnfed   []string      // capabilities with x-secret request fields no canary reached
	canaryBuilt   []string      // canary requests built from a fixture, for the report
}

// seenError is an error envelope (or a stream's final error line) the host
// answered with during the run.
type seenError struct {
	Where    string
	Status   int // HTTP status; 200 for a stream's error line
	InStream bool
	Raw      json.RawMessage
}

// seenWireError is an in-band error the plugin answered a direct call with.
type seenWireError struct {
	Where string
	Err   *wire.Error
}

// badProbe is a request the bad_request check found to be refused, reused
// by the concurrency and secrets checks when there are no fixtures.
type badProbe struct {
	Capability string
	Envelope   []byte
}

func newSession(ctx context.Context, binary string, opts Options) (*session, error) {
	abs, err := filepath.Abs(binary)
	if err != nil {
		return nil, err
	}
	tmp, err := os.MkdirTemp("", "connector-conformance-")
	if err != nil {
		return nil, fmt.Errorf("temporary directory: %w", err)
	}
	s := &session{
		ctx: ctx, opts: opts, binary: abs, base: filepath.Base(abs),
		logs: newLogCapture(), tmp: tmp,
		client:       &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: ConcurrentCalls * 2, DisableCompression: true}},
		reqSchemas:   map[string]*validator.Schema{},
		respSchemas:  map[string]*validator.Schema{},
		authSchemas:  map[string]json.RawMessage{},
		authCompiled: map[string]*validator.Schema{},
		baselines:    map[string]*outcome{},
	}
	s.fixtures, s.fixtureErr = LoadFixtures(opts.Fixtures)
	return s, nil
}

// close stops everything and removes the temporary directory.
func (s *session) close() {
	s.stopAll()
	if tr, ok := s.client.Transport.(*http.Transport); ok {
		tr.CloseIdleConnections()
	}
	_ = os.RemoveAll(s.tmp)
}

// stopAll stops the HTTP server and the host (and with it the plugin).
// After it every plugin log line has been captured.
func (s *session) stopAll() {
	if s.srv != nil {
		s.srv.CloseClientConnections()
		s.srv.Close()
		s.srv = nil
	}
	if s.h != nil {
		s.h.Close()
		s.h = nil
	}
}

func (s *session) version() string {
	if s.desc == nil {
		return ""
	}
	return s.desc.Version
}

// pluginEnv is the extra environment of the plugin.
func (s *session) pluginEnv() map[string]string {
	env := map[string]string{}
	for _, kv := range s.opts.Env {
		if k, v, ok := strings.Cut(kv, "="); ok && k != "" {
			env[k] = v
		}
	}
	return env
}

// learnAppID launches the binary once with a bare supervisor to learn its
// app_id, for a binary not named connector-<app_id>.
func (s *session) learnAppID() (*wire.Description, error) {
	env := append(supervisor.HostEnv(), sdk.EnvDataDir+"="+filepath.Join(s.tmp, "probe-data"), "CONNECTOR_LOG_LEVEL=trace")
	for k, v := range s.pluginEnv() {
		env = append(env, k+"="+v)
	}
	sup := supervisor.New(supervisor.Options{
		Binary:       supervisor.Binary{Path: s.binary},
		Env:          env,
		Logger:       s.logs.logger().Named("probe"),
		StartTimeout: s.opts.StartTimeout,
		FailAfter:    1,
	})
	defer sup.Stop()
	ctx, cancel := context.WithTimeout(s.ctx, s.opts.StartTimeout+time.Second)
	defer cancel()
	if err := sup.Start(ctx); err != nil {
		return nil, err
	}
	d := sup.Description()
	if d == nil {
		return nil, errors.New("the plugin did not describe itself")
	}
	return d, nil
}

// startHost starts a host (in a fresh data directory) with the plugin and
// serves its HTTP API on 127.0.0.1. It returns the time the plugin took to
// be ready, or the launch error.
func (s *session) startHost() (time.Duration, error) {
	s.hostNum++
	dataDir := filepath.Join(s.tmp, fmt.Sprintf("host-%d", s.hostNum))
	cfg := config.Default()
	cfg.DataDir = dataDir
	cfg.PluginsDir = filepath.Dir(s.binary)
	cfg.Listen = "127.0.0.1:0"
	cfg.LogLevel = "trace"
	cfg.LogFormat = "json"
	cfg.Defaults.Timeout = config.Duration(s.opts.CallTimeout)
	cfg.Defaults.MaxConcurrency = 4 * ConcurrentCalls
	cfg.Supervisor = config.Supervisor{
		InitialBackoff: config.Duration(20 * time.Millisecond),
		MaxBackoff:     config.Duration(500 * time.Millisecond),
		FailAfter:      10,
		StartTimeout:   config.Duration(s.opts.StartTimeout),
	}
	cc := cfg.Connectors[s.appID]
	cc.Env = s.pluginEnv()
	if cfg.Connectors == nil {
		cfg.Connectors = map[string]config.Connector{}
	}
	cfg.Connectors[s.appID] = cc
	h, err := host.New(cfg, host.WithLogger(s.logs.logger()), host.WithBinaries(s.bin))
	if err != nil {
		return 0, fmt.Errorf("host: %w", err)
	}
	ctx, cancel := context.WithTimeout(s.ctx, s.opts.StartTimeout+time.Second)
	defer cancel()
	t0 := time.Now()
	if err := h.Start(ctx); err != nil {
		h.Close()
		return 0, fmt.Errorf("starting the host: %w", err)
	}
	took := time.Since(t0)
	s.h = h
	s.srv = httptest.NewServer(h.Handler())
	sup := s.sup()
	if sup == nil || sup.Current() == nil {
		var lastErr error
		if sup != nil {
			lastErr = sup.LastError()
		}
		if lastErr == nil {
			lastErr = errors.New("the plugin is not running")
		}
		return took, lastErr
	}
	s.desc = sup.Current().Description
	return took, nil
}

// sup is the supervisor of the plugin in the current host.
func (s *session) sup() *supervisor.Supervisor {
	if s.h == nil {
		return nil
	}
	sup, _ := s.h.Router().Supervisor(s.appID)
	return sup
}

// generation is the process generation of the running plugin, 0 when none
// is running.
func (s *session) generation() int {
	sup := s.sup()
	if sup == nil {
		return 0
	}
	if cur := sup.Current(); cur != nil {
		return cur.Generation
	}
	return 0
}

// instance waits (up to the start timeout) for a running plugin process.
func (s *session) instance() (*supervisor.Instance, error) {
	sup := s.sup()
	if sup == nil {
		return nil, errors.New("no host is running")
	}
	ctx, cancel := context.WithTimeout(s.ctx, s.opts.StartTimeout)
	defer cancel()
	return sup.Acquire(ctx)
}

// waitUntil waits until cond holds, up to timeout. It re-checks whenever
// the host logs something (every state change of a plugin is logged) and
// at least every 20 ms.
func (s *session) waitUntil(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		_, changed := s.logs.snapshot()
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		select {
		case <-changed:
		case <-tick.C:
		case <-s.ctx.Done():
			return false
		}
	}
}

// newID returns a random id with a prefix.
func newID(prefix string) string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return prefix + hex.EncodeToString(b[:])
}

// outcome is one answer of the host's HTTP API, decoded.
type outcome struct {
	Status    int
	Stream    bool
	Response  json.RawMessage // unary success
	RawData   json.RawMessage
	Page      json.RawMessage
	Err       *errorInfo        // unary error, or a stream's final error line
	Items     []json.RawMessage // stream items
	Final     string            // "page" or "error" for a stream that ended properly
	Transport error             // the call itself failed
	Malformed string            // the answer was not an envelope
	Took      time.Duration
}

// errorInfo is the "error" object of an envelope.
type errorInfo struct {
	Message   string `json:"message"`
	Status    int    `json:"status_code"`
	ErrorCode string `json:"error_code"`
	AppID     string `json:"app_id"`
	RaisedBy  string `json:"raised_by"`
	RaisedIn  string `json:"raised_in"`
}

// code is the error's code without the app_id prefix.
func (e *errorInfo) code() string {
	if i := strings.LastIndexByte(e.ErrorCode, '.'); i >= 0 {
		return e.ErrorCode[i+1:]
	}
	return e.ErrorCode
}

// summary describes an outcome in a few words, for messages.
func (o *outcome) summary() string {
	switch {
	case o.Transport != nil:
		return "the call failed: " + o.Transport.Error()
	case o.Malformed != "":
		return "an answer that is not an envelope: " + o.Malformed
	case o.Err != nil && o.Stream:
		return fmt.Sprintf("a stream of %d items ending in error %s (%s)", len(o.Items), o.Err.ErrorCode, cut(o.Err.Message, 200))
	case o.Err != nil:
		return fmt.Sprintf("error %s, HTTP %d (%s)", o.Err.ErrorCode, o.Status, cut(o.Err.Message, 200))
	case o.Stream:
		return fmt.Sprintf("a stream of %d items ending with %q", len(o.Items), o.Final)
	}
	return "success " + cut(string(o.Response), 200)
}

func cut(s string, n int) string {
	s = strings.TrimSpace(s)
	if len(s) <= n {
		return s
	}
	return s[:n-3] + "..."
}

// call sends a request envelope to a capability through the host's HTTP
// API and decodes the answer. Every error envelope is recorded for the
// error_envelope check.
func (s *session) call(ctx context.Context, capability string, body []byte, requestID, where string) *outcome {
	if s.srv == nil {
		return &outcome{Transport: errors.New("no host is running")}
	}
	ctx, cancel := context.WithTimeout(ctx, s.opts.CallTimeout+2*time.Second)
	defer cancel()
	u := s.srv.URL + "/v1/connectors/" + url.PathEscape(s.appID) + "/" + url.PathEscape(capability)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		return &outcome{Transport: err}
	}
	req.Header.Set("Content-Type", "application/json")
	if requestID != "" {
		req.Header.Set("X-Request-Id", requestID)
	}
	t0 := time.Now()
	resp, err := s.client.Do(req)
	if err != nil {
		return &outcome{Transport: err, Took: time.Since(t0)}
	}
	defer func() { _ = resp.Body.Close() }()
	o := &outcome{Status: resp.StatusCode}
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "application/x-ndjson") {
		s.readStream(resp.Body, o, where)
	} else {
		b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
		if err != nil {
			o.Transport = err
		} else {
			s.decodeUnary(b, o, where)
		}
	}
	o.Took = time.Since(t0)
	return o
}

func (s *session) decodeUnary(b []byte, o *outcome, where string) {
	var env struct {
		IsError  bool            `json:"is_error"`
		Response json.RawMessage `json:"response"`
		RawData  json.RawMessage `json:"raw_data"`
		Page     json.RawMessage `json:"page"`
		Error    *errorInfo      `json:"error"`
	}
	if err := json.Unmarshal(b, &env); err != nil {
		o.Malformed = fmt.Sprintf("%v: %s", err, cut(string(b), 200))
		return
	}
	if env.IsError || env.Error != nil {
		if env.Error == nil {
			env.Error = &errorInfo{}
		}
		o.Err = env.Error
		s.recordHTTPError(seenError{Where: where, Status: o.Status, Raw: append(json.RawMessage(nil), bytes.TrimSpace(b)...)})
		return
	}
	o.Response, o.RawData, o.Page = env.Response, env.RawData, env.Page
}

func (s *session) readStream(r io.Reader, o *outcome, where string) {
	o.Stream = true
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 64<<20)
	var lines []json.RawMessage
	for sc.Scan() {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		lines = append(lines, append(json.RawMessage(nil), line...))
	}
	if err := sc.Err(); err != nil {
		o.Transport = fmt.Errorf("reading the stream: %w", err)
	}
	for i, l := range lines {
		if !json.Valid(l) {
			o.Malformed = fmt.Sprintf("stream line %d is not JSON: %s", i+1, cut(string(l), 200))
			return
		}
	}
	if len(lines) == 0 {
		return
	}
	last := lines[len(lines)-1]
	var final map[string]json.RawMessage
	if json.Unmarshal(last, &final) == nil && len(final) == 1 {
		if p, ok := final["page"]; ok {
			o.Final, o.Page = "page", p
			o.Items = lines[:len(lines)-1]
			return
		}
		if e, ok := final["error"]; ok {
			var info errorInfo
			if json.Unmarshal(e, &info) == nil {
				o.Final, o.Err = "error", &info
				o.Items = lines[:len(lines)-1]
				s.recordHTTPError(seenError{Where: where, Status: o.Status, InStream: true, Raw: last})
				return
			}
		}
	}
	o.Items = lines
}

func (s *session) recordHTTPError(e seenError) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.httpErrors = append(s.httpErrors, e)
}

func (s *session) recordWireError(where string, e *wire.Error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.wireErrors = append(s.wireErrors, seenWireError{Where: where, Err: e})
}

// wireInvoke calls the plugin process directly (not through the router),
// as the host's router does, and returns its in-band answer: either a
// result or the chunks of a stream.
func (s *session) wireInvoke(call *wire.Call, streaming bool, where string) (*wire.Result, []*wire.Chunk, error) {
	inst, err := s.instance()
	if err != nil {
		return nil, nil, err
	}
	ctx, cancel := context.WithTimeout(s.ctx, s.opts.CallTimeout)
	defer cancel()
	if call.RequestID == "" {
		call.RequestID = newID("conformance-")
	}
	if !streaming {
		res, err := inst.Conn.Invoke(ctx, call)
		if err == nil && res != nil && res.Err != nil {
			s.recordWireError(where, res.Err)
		}
		return res, nil, err
	}
	var chunks []*wire.Chunk
	err = inst.Conn.InvokeStream(ctx, call, func(c *wire.Chunk) error {
		chunks = append(chunks, c)
		if c.Err != nil {
			s.recordWireError(where, c.Err)
		}
		return nil
	})
	return nil, chunks, err
}

// fixtureFor returns the first fixture for capability that passes the
// filter, or nil.
func (s *session) fixtureFor(capability string, ok func(*Fixture) bool) *Fixture {
	for _, f := range s.fixtures {
		if f.Capability == capability && ok(f) {
			return f
		}
	}
	return nil
}

// contextFixture returns the fixture whose settings and auth make the
// context of a probe of capability (bad_request probes, canary calls,
// streams without a success case), or nil. A context is taken only from a
// fixture whose settings and auth the plugin accepts: in order, a case of
// capability that expects success, then one whose expected error is not
// about the credentials or the settings, then the same two for any other
// capability (settings and auth are the plugin's, shared by its
// capabilities). Never from a case that expects an auth or settings error
// (an unaccepted credential kind, a missing API key, a bad setting): the
// probes sent with that context would be refused for it, not for the field
// they break.
func (s *session) contextFixture(capability string) *Fixture {
	for _, sameCap := range []bool{true, false} {
		for _, ok := range []func(*Fixture) bool{isSuccessCase, s.isNeutralErrorCase} {
			for _, f := range s.fixtures {
				if (f.Capability == capability) == sameCap && ok(f) {
					return f
				}
			}
		}
	}
	return nil
}

// authSettingsCodes are the error codes that are about the credentials or
// the settings rather than the request.
var authSettingsCodes = map[string]bool{
	"unauthenticated": true, "unauthorized": true, "authentication_expired": true, "creds_revoked": true,
	"permission_denied": true, "integration_missing_parameter": true,
}

// isNeutralErrorCase reports whether a fixture expects an error that is not
// about its auth or settings: not slow, a code that is not about
// credentials, no expected message naming auth or settings, credentials of
// kinds the plugin accepts that validate against their schema, and
// settings that validate against the settings schema.
func (s *session) isNeutralErrorCase(f *Fixture) bool {
	if f.Slow || f.Expect.ErrorCode == "" || authSettingsCodes[f.expectedCode()] {
		return false
	}
	for _, m := range f.Expect.MessageContains {
		m = strings.TrimSpace(m)
		if strings.HasPrefix(m, "auth") || strings.HasPrefix(m, "settings") {
			return false
		}
	}
	return s.acceptsContext(f.Settings, f.Auth)
}

// acceptsContext reports whether settings and auth pass the plugin's
// settings schema and the schemas of the credential kinds it accepts.
func (s *session) acceptsContext(settings, auth json.RawMessage) bool {
	if s.settings != nil && len(settings) > 0 && string(settings) != "null" {
		if msg := validationMessage(s.settings, settings); msg != "" {
			return false
		}
	}
	if len(auth) == 0 || string(auth) == "null" {
		return true
	}
	var kinds map[string]json.RawMessage
	if json.Unmarshal(auth, &kinds) != nil {
		return false
	}
	for kind, obj := range kinds {
		sch, ok := s.authCompiled[kind]
		if !ok {
			return false
		}
		if msg := validationMessage(sch, obj); msg != "" {
			return false
		}
	}
	return true
}

// isSuccessCase reports whether a fixture expects a success.
func isSuccessCase(f *Fixture) bool { return !f.Slow && f.Expect.ErrorCode == "" }

// pluginLogTail returns the last n lines of the plugin's stderr.
func (s *session) pluginLogTail(n int) string {
	lines := s.logs.pluginLines(s.base)
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	var b strings.Builder
	for _, l := range lines {
		text := l.Text
		if l.JSON {
			text = "[" + l.Level + "] " + text
		}
		b.WriteString(cut(text, 400))
		b.WriteByte('\n')
	}
	return b.String()
}
