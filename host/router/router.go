// Package router routes capability calls to plugins: it finds the
// connector, applies per-connector defaults (settings, deadline,
// concurrency limit), resolves stored credentials, calls the plugin
// through its supervisor, and maps every failure to the contract's codes.
package router

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/connector-host/connector-host/host/supervisor"
	"github.com/connector-host/connector-host/internal/envelope"
	"github.com/connector-host/connector-host/internal/redact"
	"github.com/connector-host/connector-host/internal/wire"
	"github.com/connector-host/connector-host/sdk"
)

// DefaultTimeout is a call's deadline unless configured per connector.
const DefaultTimeout = 60 * time.Second

// DefaultMaxConcurrency is how many calls run at once in one plugin unless
// configured; more wait their turn (within their deadline).
const DefaultMaxConcurrency = 256

// ConnectorOptions configure one connector in the router.
type ConnectorOptions struct {
	// Timeout is the deadline of each unary call (default DefaultTimeout).
	Timeout time.Duration
	// StreamTimeout is the deadline of each streaming call; zero means
	// none: a stream runs until it ends, its client goes away or the host
	// stops (a subscription or a large fetch outlives any unary deadline).
	StreamTimeout time.Duration
	// MaxConcurrency bounds calls in flight (default DefaultMaxConcurrency).
	MaxConcurrency int
	// Settings are default settings; a request's settings override them
	// key by key (top-level keys).
	Settings map[string]any
}

// Builtins provides capabilities the host implements for a connector (the
// OAuth flows). It is consulted before the plugin.
type Builtins interface {
	// Capabilities returns the capabilities the host adds to a connector
	// with this description (excluding ones the plugin implements).
	Capabilities(desc *wire.Description) []wire.Capability
	// Invoke runs a builtin capability; handled is false when name is not
	// one of them. credentialID is the envelope's credential_id, which the
	// router does not resolve for builtins (they may create it).
	Invoke(ctx context.Context, appID string, desc *wire.Description, name string, call *wire.Call, credentialID string) (res *wire.Result, handled bool)
}

// Credentials resolves stored credentials (credential_id) into the auth
// object a plugin receives.
type Credentials interface {
	// Auth returns the auth JSON for a stored credential of appID.
	Auth(ctx context.Context, appID string, desc *wire.Description, credentialID string) (json.RawMessage, *wire.Error)
	// Refresh is called once when the plugin rejected the credential
	// (unauthorized, authentication_expired): it returns fresh auth JSON,
	// or an error when the credential cannot be refreshed.
	Refresh(ctx context.Context, appID string, desc *wire.Description, credentialID string, rejected json.RawMessage) (json.RawMessage, *wire.Error)
}

// Observer is told about every finished call (for metrics).
type Observer interface {
	ObserveCall(appID, capability, code string, d time.Duration)
}

// Request is one capability call.
type Request struct {
	AppID      string
	Capability string
	Envelope   *envelope.Request
	RequestID  string
}

// Router routes calls to supervised plugins.
type Router struct {
	conns    map[string]*route
	order    []string
	builtins Builtins
	creds    Credentials
	observer Observer
	logger   hclog.Logger
	secrets  *redact.Set
	// deadlines ends unary calls at their deadline (ADR 0009).
	deadlines watcher
}

type route struct {
	appID    string
	sup      *supervisor.Supervisor
	timeout  time.Duration
	streamTO time.Duration
	sem      chan struct{}
	defaults map[string]any
	calls    expiry // in-flight unary calls, oldest first
}

// Option configures a Router.
type Option func(*Router)

// WithBuiltins sets the host-provided capabilities.
func WithBuiltins(b Builtins) Option { return func(r *Router) { r.builtins = b } }

// WithCredentials sets the stored-credential resolver.
func WithCredentials(c Credentials) Option { return func(r *Router) { r.creds = c } }

// WithObserver sets the call observer.
func WithObserver(o Observer) Option { return func(r *Router) { r.observer = o } }

// WithSecrets makes the router mask each call's credentials in the host's
// logs while the call is in flight (defence in depth: the plugin SDK
// already masks them in the plugin's own log lines).
func WithSecrets(s *redact.Set) Option { return func(r *Router) { r.secrets = s } }

// WithLogger sets the logger.
func WithLogger(l hclog.Logger) Option { return func(r *Router) { r.logger = l } }

// New returns an empty Router; add connectors with Add before serving.
func New(opts ...Option) *Router {
	r := &Router{conns: map[string]*route{}, logger: hclog.NewNullLogger()}
	for _, o := range opts {
		o(r)
	}
	return r
}

// Add routes appID to a supervised plugin. It is not safe to call
// concurrently with calls.
func (r *Router) Add(appID string, sup *supervisor.Supervisor, o ConnectorOptions) error {
	if _, dup := r.conns[appID]; dup {
		return fmt.Errorf("connector %q added twice", appID)
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.MaxConcurrency <= 0 {
		o.MaxConcurrency = DefaultMaxConcurrency
	}
	rt := &route{appID: appID, sup: sup, timeout: o.Timeout, streamTO: o.StreamTimeout, sem: make(chan struct{}, o.MaxConcurrency), defaults: o.Settings}
	r.conns[appID] = rt
	r.deadlines.register(&rt.calls)
	r.order = append(r.order, appID)
	sort.Strings(r.order)
	return nil
}

// AppIDs lists the routed connectors.
func (r *Router) AppIDs() []string { return append([]string(nil), r.order...) }

// Supervisor returns the supervisor of appID.
func (r *Router) Supervisor(appID string) (*supervisor.Supervisor, bool) {
	rt, ok := r.conns[appID]
	if !ok {
		return nil, false
	}
	return rt.sup, true
}

// Capabilities returns every capability of a connector: the plugin's own
// and the host's builtins for it.
func (r *Router) Capabilities(desc *wire.Description) []wire.Capability {
	caps := append([]wire.Capability(nil), desc.Capabilities...)
	if r.builtins != nil {
		caps = append(caps, r.builtins.Capabilities(desc)...)
	}
	return caps
}

// Describe returns the cached description of appID, waiting for the plugin
// to be up (within ctx).
func (r *Router) Describe(ctx context.Context, appID string) (*wire.Description, *Failure) {
	rt, ok := r.conns[appID]
	if !ok {
		return nil, hostFailure(HostAppID, sdk.NotFound, "router.Describe", "no connector %q is loaded", appID)
	}
	inst, err := rt.sup.Acquire(ctx)
	if err != nil {
		if d := rt.sup.Description(); d != nil {
			return d, nil
		}
		return nil, callFailure(appID, "describe", ctx, ctx, err)
	}
	return inst.Description, nil
}

// call is a routed call being prepared. It lives in its caller's frame
// (begin fills it in): a call costs no allocation of its own.
type call struct {
	release   func()
	rt        *route
	inst      *supervisor.Instance
	wc        wire.Call
	streaming bool
	builtin   bool
	ctx       context.Context
	stop      context.CancelFunc
	// label is the capability's metric label once begin has found the
	// capability ("unknown" when neither the plugin nor the builtins have
	// it); "" when begin failed before looking.
	label string
}

// begin resolves the route, waits for the plugin and a concurrency slot,
// and fills in c with the wire call. On success the caller must call
// c.end.
func (r *Router) begin(ctx context.Context, req *Request, stream bool, c *call) *Failure {
	rt, ok := r.conns[req.AppID]
	if !ok {
		return hostFailure(HostAppID, sdk.NotFound, "router.Invoke", "no connector %q is loaded", req.AppID)
	}
	var callCtx context.Context
	var cancel context.CancelFunc
	var deadline time.Time
	switch {
	case !stream:
		// No runtime timer per call (ADR 0009): the router's watcher
		// cancels the call, and the deadline travels as data.
		var tc *timedCall
		tc, cancel = r.deadlines.start(ctx, &rt.calls, rt.timeout)
		callCtx, deadline = tc, tc.deadline
	case rt.streamTO > 0:
		callCtx, cancel = context.WithTimeout(ctx, rt.streamTO)
	default:
		callCtx, cancel = context.WithCancel(ctx)
	}
	// Waiting for the plugin, a stored credential and a concurrency slot
	// is bounded by the unary deadline, streams included.
	waitCtx, waitDone := callCtx, context.CancelFunc(func() {})
	if stream {
		waitCtx, waitDone = context.WithTimeout(callCtx, rt.timeout)
	}
	defer waitDone()
	inst, err := rt.sup.Acquire(waitCtx)
	if err != nil {
		cancel()
		return callFailure(req.AppID, req.Capability, ctx, waitCtx, err)
	}
	c.rt, c.inst, c.ctx, c.stop = rt, inst, callCtx, cancel
	if capa, ok := inst.Description.Capability(req.Capability); ok {
		c.streaming = capa.Streaming
	} else if r.builtins != nil && hasCapability(r.builtins.Capabilities(inst.Description), req.Capability) {
		c.builtin = true
	} else {
		cancel()
		c.label = "unknown"
		return hostFailure(req.AppID, sdk.NotImplemented, "router.Invoke", "capability %q is not implemented by %s", req.Capability, req.AppID)
	}
	c.label = req.Capability
	env := req.Envelope
	settings, f := mergeSettings(req.AppID, rt.defaults, env.Settings)
	if f != nil {
		cancel()
		return f
	}
	c.wc = wire.Call{
		Capability:     req.Capability,
		Request:        env.Request,
		Settings:       settings,
		Auth:           env.Auth,
		Page:           env.Page,
		IncludeRawData: env.IncludeRawData,
		RequestID:      req.RequestID,
		Deadline:       deadline,
	}
	if env.CredentialID != "" && !c.builtin {
		if r.creds == nil {
			cancel()
			return hostFailure(req.AppID, sdk.BadRequest, "router.Invoke", "credential_id: this host keeps no stored credentials")
		}
		auth, werr := r.creds.Auth(waitCtx, req.AppID, inst.Description, env.CredentialID)
		if werr != nil {
			cancel()
			return &Failure{AppID: req.AppID, Err: werr}
		}
		c.wc.Auth = auth
	}
	select {
	case rt.sem <- struct{}{}:
	case <-waitCtx.Done():
		cancel()
		return callFailure(req.AppID, req.Capability, ctx, waitCtx, waitCtx.Err())
	}
	c.release = r.maskAuth(c.wc.Auth)
	return nil
}

// maskAuth registers the credential values of auth for masking.
func (r *Router) maskAuth(auth json.RawMessage) func() {
	if r.secrets == nil || len(auth) == 0 {
		return func() {}
	}
	var doc any
	if json.Unmarshal(auth, &doc) != nil {
		return func() {}
	}
	return r.secrets.Add(redact.StringsIn(doc)...)
}

func (c *call) end() {
	c.release()
	<-c.rt.sem
	c.stop()
}

func hasCapability(caps []wire.Capability, name string) bool {
	for _, c := range caps {
		if c.Name == name {
			return true
		}
	}
	return false
}

// Invoke runs a unary capability. Exactly one of the results is non-nil.
func (r *Router) Invoke(ctx context.Context, req *Request) (*wire.Result, *Failure) {
	start := time.Now()
	var c call
	res, f := r.invoke(ctx, req, &c)
	r.observe(req, c.label, f, start)
	return res, f
}

func (r *Router) invoke(ctx context.Context, req *Request, c *call) (*wire.Result, *Failure) {
	if f := r.begin(ctx, req, false, c); f != nil {
		return nil, f
	}
	defer c.end()
	if c.builtin {
		wc := c.wc // the builtin may keep it; c stays in the caller's frame
		if res, handled := r.builtins.Invoke(c.ctx, req.AppID, c.inst.Description, req.Capability, &wc, req.Envelope.CredentialID); handled {
			if res.Err != nil {
				return nil, pluginFailure(req.AppID, res.Err)
			}
			return res, nil
		}
	}
	if c.streaming {
		return nil, hostFailure(req.AppID, sdk.UnsupportedOperation, "router.Invoke", "capability %q is streaming; call it as a stream", req.Capability)
	}
	res, err := c.inst.Conn.Invoke(c.ctx, &c.wc)
	if err != nil {
		c.rt.sup.ReportBroken(c.inst)
		return nil, callFailure(req.AppID, req.Capability, ctx, c.ctx, err)
	}
	if res.Err != nil && req.Envelope.CredentialID != "" && r.creds != nil && rejectsCredential(res.Err) {
		// The plugin rejected a stored credential: refresh it once and
		// retry the call once.
		auth, werr := r.creds.Refresh(c.ctx, req.AppID, c.inst.Description, req.Envelope.CredentialID, c.wc.Auth)
		if werr != nil {
			return nil, &Failure{AppID: req.AppID, Err: werr}
		}
		c.wc.Auth = auth
		defer r.maskAuth(auth)()
		res, err = c.inst.Conn.Invoke(c.ctx, &c.wc)
		if err != nil {
			c.rt.sup.ReportBroken(c.inst)
			return nil, callFailure(req.AppID, req.Capability, ctx, c.ctx, err)
		}
	}
	if res.Err != nil {
		return nil, pluginFailure(req.AppID, res.Err)
	}
	return res, nil
}

func rejectsCredential(e *wire.Error) bool {
	switch sdk.Code(e.Code) {
	case sdk.Unauthorized, sdk.AuthenticationExpired, sdk.Unauthenticated:
		return true
	}
	return false
}

// IsStreaming reports whether appID's capability is streaming (false when
// unknown; Invoke then reports the problem).
func (r *Router) IsStreaming(ctx context.Context, appID, capability string) bool {
	rt, ok := r.conns[appID]
	if !ok {
		return false
	}
	d := rt.sup.Description()
	if d == nil {
		if inst, err := rt.sup.Acquire(ctx); err == nil {
			d = inst.Description
		} else {
			return false
		}
	}
	c, ok := d.Capability(capability)
	return ok && c.Streaming
}

// InvokeStream runs a streaming capability, handing chunks to emit. It
// always ends with a chunk for which End() is true, synthesised by the host
// when the plugin could not be called or broke off; a Failure returned
// before any chunk is emitted means nothing was sent.
func (r *Router) InvokeStream(ctx context.Context, req *Request, emit func(*wire.Chunk) error) *Failure {
	start := time.Now()
	code := ""
	var c call
	defer func() {
		if r.observer != nil {
			label := c.label
			if label == "" {
				label = r.capLabel(req)
			}
			r.observer.ObserveCall(req.AppID, label, code, time.Since(start))
		}
	}()
	if f := r.begin(ctx, req, true, &c); f != nil {
		code = f.Err.Code
		return f
	}
	defer c.end()
	if !c.streaming {
		f := hostFailure(req.AppID, sdk.UnsupportedOperation, "router.InvokeStream", "capability %q is not streaming", req.Capability)
		code = f.Err.Code
		return f
	}
	ended, emitted, retry := false, false, false
	// A stored credential the plugin rejects before its first item is
	// refreshed once and the stream started again, as for a unary call.
	mayRetry := req.Envelope.CredentialID != "" && r.creds != nil
	forward := func(ch *wire.Chunk) error {
		if mayRetry && !emitted && len(ch.NDJSON) == 0 && ch.Err != nil && rejectsCredential(ch.Err) {
			retry, ended = true, true
			return nil
		}
		if ch.Err != nil {
			ch.Err = pluginFailure(req.AppID, ch.Err).Err
			code = ch.Err.Code
		}
		emitted = true
		ended = ch.End()
		return emit(ch)
	}
	err := c.inst.Conn.InvokeStream(c.ctx, &c.wc, forward)
	if retry && err == nil {
		auth, werr := r.creds.Refresh(c.ctx, req.AppID, c.inst.Description, req.Envelope.CredentialID, c.wc.Auth)
		if werr != nil {
			code = werr.Code
			return &Failure{AppID: req.AppID, Err: werr}
		}
		c.wc.Auth = auth
		defer r.maskAuth(auth)()
		mayRetry, ended = false, false
		err = c.inst.Conn.InvokeStream(c.ctx, &c.wc, forward)
	}
	if err != nil && !ended {
		c.rt.sup.ReportBroken(c.inst)
		f := callFailure(req.AppID, req.Capability, ctx, c.ctx, err)
		code = f.Err.Code
		if ctx.Err() == nil {
			_ = emit(&wire.Chunk{Err: f.Err})
		}
	}
	return nil
}

// observe reports a finished call; label is the call's capability label
// when begin got as far as looking the capability up, else "".
func (r *Router) observe(req *Request, label string, f *Failure, start time.Time) {
	if r.observer == nil {
		return
	}
	code := ""
	if f != nil {
		code = f.Err.Code
	}
	if label == "" {
		label = r.capLabel(req)
	}
	r.observer.ObserveCall(req.AppID, label, code, time.Since(start))
}

// capLabel bounds metric label values: unknown connectors and capabilities
// are reported as "unknown".
func (r *Router) capLabel(req *Request) string {
	rt, ok := r.conns[req.AppID]
	if !ok {
		return "unknown"
	}
	if d := rt.sup.Description(); d != nil {
		if _, ok := d.Capability(req.Capability); ok {
			return req.Capability
		}
		if r.builtins != nil && hasCapability(r.builtins.Capabilities(d), req.Capability) {
			return req.Capability
		}
	}
	return "unknown"
}

// mergeSettings overlays the request's settings on the connector's
// defaults, key by key.
func mergeSettings(appID string, defaults map[string]any, req json.RawMessage) (json.RawMessage, *Failure) {
	if len(defaults) == 0 {
		return req, nil
	}
	merged := make(map[string]any, len(defaults))
	for k, v := range defaults {
		merged[k] = v
	}
	if len(req) > 0 && string(req) != "null" {
		var over map[string]any
		if err := json.Unmarshal(req, &over); err != nil {
			return nil, hostFailure(appID, sdk.BadRequest, "router.mergeSettings", "settings: must be a JSON object: %v", err)
		}
		for k, v := range over {
			merged[k] = v
		}
	}
	b, err := json.Marshal(merged)
	if err != nil {
		return nil, hostFailure(appID, sdk.InternalError, "router.mergeSettings", "settings: %v", err)
	}
	return b, nil
}

// HandleInbound forwards an HTTP request an upstream system sent to one of
// appID's declared inbound routes, within the connector's deadline and
// concurrency limit. req.Path is relative to /v1/inbound/{app_id}
// (escaped as received); req.Settings is filled with the connector's
// default settings. A path no route declares is host.not_found.
func (r *Router) HandleInbound(ctx context.Context, appID string, req *wire.InboundRequest, decodedPath string) (*wire.InboundResponse, *Failure) {
	rt, ok := r.conns[appID]
	if !ok {
		return nil, hostFailure(HostAppID, sdk.NotFound, "router.HandleInbound", "no connector %q is loaded", appID)
	}
	callCtx, cancel := context.WithTimeout(ctx, rt.timeout)
	defer cancel()
	inst, err := rt.sup.Acquire(callCtx)
	if err != nil {
		return nil, callFailure(appID, "inbound", ctx, callCtx, err)
	}
	if !inboundDeclared(inst.Description.InboundRoutes, req.Method, decodedPath) {
		if allowed := inboundMethods(inst.Description.InboundRoutes, decodedPath); len(allowed) > 0 {
			return &wire.InboundResponse{
				Status: 405,
				Header: map[string][]string{"Allow": {strings.Join(allowed, ", ")}, "Content-Type": {"application/json"}},
				Body:   []byte(`{"status":405,"message":"method not allowed","allow":"` + strings.Join(allowed, ", ") + `"}`),
			}, nil
		}
		return nil, hostFailure(appID, sdk.NotFound, "router.HandleInbound", "%s declares no inbound route %s %s", appID, req.Method, decodedPath)
	}
	settings, f := mergeSettings(appID, rt.defaults, nil)
	if f != nil {
		return nil, f
	}
	req.Settings = settings
	select {
	case rt.sem <- struct{}{}:
		defer func() { <-rt.sem }()
	case <-callCtx.Done():
		return nil, callFailure(appID, "inbound", ctx, callCtx, callCtx.Err())
	}
	res, err := inst.Conn.HandleInbound(callCtx, req)
	if err != nil {
		rt.sup.ReportBroken(inst)
		return nil, callFailure(appID, "inbound", ctx, callCtx, err)
	}
	return res, nil
}

// inboundMethods lists the methods declared for path (nil when a route
// accepts any method or none matches).
func inboundMethods(routes []wire.InboundRoute, path string) []string {
	var out []string
	for _, rt := range routes {
		if !inboundPathMatches(rt.Path, path) {
			continue
		}
		if rt.Method == "" {
			return nil
		}
		out = append(out, rt.Method)
	}
	sort.Strings(out)
	return out
}

// inboundDeclared reports whether a route matches: the method (or any when
// the route has none) and the path, where a route path ending in "/..."
// matches its whole subtree.
func inboundDeclared(routes []wire.InboundRoute, method, path string) bool {
	for _, rt := range routes {
		if (rt.Method == "" || rt.Method == method) && inboundPathMatches(rt.Path, path) {
			return true
		}
	}
	return false
}

// inboundPathMatches matches a route path; one ending in "/..." matches its
// whole subtree.
func inboundPathMatches(pattern, path string) bool {
	if prefix, ok := strings.CutSuffix(pattern, "/..."); ok {
		return prefix == "" || path == prefix || strings.HasPrefix(path, prefix+"/")
	}
	return path == pattern
}
