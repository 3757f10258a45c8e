package sdk

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"runtime/debug"
	"sync"
	"time"

	"github.com/connector-host/connector-host/internal/redact"
	"github.com/connector-host/connector-host/internal/wire"
)

// connector serves an Integration as a wire.Connector: it validates each
// call, runs the handler, and maps the outcome to the contract.
type connector struct {
	integ *Integration
}

var (
	_ wire.Connector        = (*connector)(nil)
	_ wire.CallbackReceiver = (*connector)(nil)
)

func (c *connector) Describe(context.Context) (*wire.Description, error) {
	return c.integ.describe()
}

// SetCallback implements wire.CallbackReceiver.
func (c *connector) SetCallback(cb wire.Callback) { c.integ.callback.set(cb) }

// prepared is a validated call, ready for its handler.
type prepared struct {
	cap     *capability
	env     *Envelope
	release func()
}

// prepare validates a call against the capability's schemas and registers
// its credentials for redaction. The caller must call release.
func (c *connector) prepare(call *wire.Call, streaming bool) (*prepared, *Error) {
	i := c.integ
	capa := i.caps[call.Capability]
	if capa == nil || i.desc == nil {
		return nil, &Error{Code: NotImplemented, Message: fmt.Sprintf("capability %q is not implemented by %s", call.Capability, i.AppID), raisedIn: "sdk.dispatch"}
	}
	if capa.streaming != streaming {
		kind := "unary"
		if capa.streaming {
			kind = "streaming"
		}
		return nil, &Error{Code: UnsupportedOperation, Message: fmt.Sprintf("capability %q is %s", call.Capability, kind), raisedIn: "sdk.dispatch"}
	}
	// Credentials first, so that nothing below can log them.
	var secretVals []string
	authDoc, err := i.authSchema.validate("auth", call.Auth)
	if err != nil {
		return nil, asError(err)
	}
	secretVals = append(secretVals, redact.StringsIn(authDoc)...)
	var settingsDoc any
	if i.settings != nil {
		settingsDoc, err = i.settings.validate("settings", call.Settings)
		if err != nil {
			return nil, asError(err)
		}
		secretVals = append(secretVals, secretValues(settingsDoc, i.settings.secretPaths)...)
	}
	// The request document is needed only for its secrets: a large request
	// (a batch) proven valid by the quick check is not decoded twice.
	reqDoc, err := capa.reqSchema.validateLazy("request", call.Request)
	if err != nil {
		return nil, asError(err)
	}
	secretVals = append(secretVals, secretValues(reqDoc, capa.reqSchema.secretPaths)...)
	release := secrets.Add(secretVals...)

	env := &Envelope{
		Settings:       call.Settings,
		Page:           fromWirePage(call.Page),
		IncludeRawData: call.IncludeRawData,
		RequestID:      call.RequestID,
		integ:          i,
	}
	if len(call.Auth) > 0 {
		if err := json.Unmarshal(call.Auth, &env.Auth); err != nil {
			release()
			return nil, Errorf(BadRequest, "auth: %v", err)
		}
	}
	if len(i.authAllowed) > 0 || len(env.Auth.Kinds()) > 0 {
		for _, k := range env.Auth.Kinds() {
			if !i.authAllowed[k] {
				release()
				return nil, &Error{Code: BadRequest, Message: fmt.Sprintf("auth.%s: %s does not accept %s credentials (accepts: %v)", k, i.AppID, k, i.Auth), raisedIn: "sdk.dispatch"}
			}
		}
	}
	env.logger = i.logger().With("capability", call.Capability, "request_id", call.RequestID)
	return &prepared{cap: capa, env: env, release: release}, nil
}

func asError(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	return &Error{Code: BadRequest, Message: err.Error()}
}

// Invoke implements wire.Connector.
func (c *connector) Invoke(ctx context.Context, call *wire.Call) (*wire.Result, error) {
	p, e := c.prepare(call, false)
	if e != nil {
		return &wire.Result{Err: c.wireError(e, "")}, nil
	}
	defer p.release()
	start := time.Now()
	resp, err := c.runUnary(ctx, p, call)
	if err != nil {
		werr := c.wireError(c.integ.mapError(err), p.cap.funcName)
		p.env.logger.Debug("call finished", "outcome", werr.Code, "ms", time.Since(start).Milliseconds())
		return &wire.Result{Err: werr}, nil
	}
	p.env.logger.Debug("call finished", "outcome", "ok", "ms", time.Since(start).Milliseconds())
	body, err := json.Marshal(resp)
	if err != nil {
		return &wire.Result{Err: c.wireError(Errorf(InternalError, "encoding the response: %v", err), p.cap.funcName)}, nil
	}
	res := &wire.Result{Response: body, Page: toWirePage(p.env.nextPage)}
	if p.env.rawData != nil {
		if raw, err := json.Marshal(p.env.rawData); err == nil {
			res.RawData = raw
		}
	}
	return res, nil
}

// runUnary calls the handler, turning a panic into unexpected_error.
func (c *connector) runUnary(ctx context.Context, p *prepared, call *wire.Call) (resp any, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = c.recovered(p, r)
		}
	}()
	return p.cap.unary(ctx, call.Request, p.env)
}

// recovered logs a recovered panic with its stack and returns the error the
// caller sees.
func (c *connector) recovered(p *prepared, r any) error {
	p.env.logger.Error("capability panicked", "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
	return &Error{Code: UnexpectedError, Message: fmt.Sprintf("panic: %v", r), Err: panicError{value: r}, raisedIn: p.cap.funcName}
}

// panicError carries a recovered panic value.
type panicError struct{ value any }

func (p panicError) Error() string { return fmt.Sprint(p.value) }

// Stream batching: items are sent to the host as NDJSON chunks of up to
// maxChunkBytes; a partly filled chunk is flushed after flushDelay so that
// slow streams are not held back.
const (
	maxChunkBytes = 256 << 10
	flushDelay    = 5 * time.Millisecond
)

// InvokeStream implements wire.Connector.
func (c *connector) InvokeStream(ctx context.Context, call *wire.Call, emit func(*wire.Chunk) error) error {
	p, e := c.prepare(call, true)
	if e != nil {
		return emit(&wire.Chunk{Err: c.wireError(e, "")})
	}
	defer p.release()
	b := &batcher{emit: emit}
	start := time.Now()
	err := c.runStream(ctx, p, call, b)
	b.stop()
	final := &wire.Chunk{Done: true}
	switch {
	case err != nil:
		final = &wire.Chunk{Err: c.wireError(c.integ.mapError(err), p.cap.funcName)}
	case p.env.nextPage != nil:
		final = &wire.Chunk{FinalPage: toWirePage(p.env.nextPage)}
	}
	outcome := "ok"
	if final.Err != nil {
		outcome = final.Err.Code
	}
	p.env.logger.Debug("call finished", "outcome", outcome, "ms", time.Since(start).Milliseconds())
	return b.finish(final)
}

func (c *connector) runStream(ctx context.Context, p *prepared, call *wire.Call, out streamSink) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = c.recovered(p, r)
		}
	}()
	return p.cap.stream(ctx, call.Request, p.env, out)
}

// batcher collects stream items into an NDJSON buffer and sends it in
// chunks. The buffer is reused after each send (emit must not keep it).
type batcher struct {
	mu      sync.Mutex
	emit    func(*wire.Chunk) error
	buf     []byte
	timer   *time.Timer
	err     error // first emit error; the stream is dead after it
	stopped bool
	sent    bool // a chunk went out (the host has started the answer)
}

// open sends what is batched, or an empty chunk when nothing has been sent
// yet: the host then starts its answer (Stream.Open).
func (b *batcher) open() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.err != nil {
		return b.err
	}
	if b.sent && len(b.buf) == 0 {
		return nil
	}
	return b.flushLocked()
}

func (b *batcher) add(item json.RawMessage) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.err != nil {
		return b.err
	}
	if bytes.IndexByte(item, '\n') >= 0 {
		// NDJSON needs one line per item: compact it.
		var compact bytes.Buffer
		if err := json.Compact(&compact, item); err != nil {
			return Errorf(InternalError, "stream item is not valid JSON: %v", err)
		}
		item = compact.Bytes()
	}
	b.buf = append(append(b.buf, item...), '\n')
	if len(b.buf) >= maxChunkBytes {
		return b.flushLocked()
	}
	if b.timer == nil {
		b.timer = time.AfterFunc(flushDelay, b.timedFlush)
	}
	return nil
}

func (b *batcher) timedFlush() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.timer = nil
	if !b.stopped && b.err == nil && len(b.buf) > 0 {
		_ = b.flushLocked()
	}
}

func (b *batcher) flushLocked() error {
	if b.timer != nil {
		b.timer.Stop()
		b.timer = nil
	}
	if err := b.emit(&wire.Chunk{NDJSON: b.buf}); err != nil {
		b.err = err
	}
	b.sent = true
	b.buf = b.buf[:0]
	return b.err
}

// stop disables the flush timer; finish sends what is left.
func (b *batcher) stop() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.stopped = true
	if b.timer != nil {
		b.timer.Stop()
		b.timer = nil
	}
}

// finish sends the remaining items together with the final marker.
func (b *batcher) finish(final *wire.Chunk) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.err != nil {
		return b.err
	}
	final.NDJSON = b.buf
	return b.emit(final)
}

// wireError converts e for the host, masking live secrets in its message.
func (c *connector) wireError(e *Error, handler string) *wire.Error {
	code := e.Code
	msg := e.Message
	if !code.Valid() {
		msg = fmt.Sprintf("handler returned unknown error code %q: %s", code, msg)
		code = InternalError
	}
	raisedIn := e.raisedIn
	if raisedIn == "" {
		raisedIn = handler
	}
	return &wire.Error{
		Code:         string(code),
		AppErrorCode: e.AppErrorCode,
		Message:      secrets.String(msg),
		RaisedBy:     e.RaisedBy(),
		RaisedIn:     raisedIn,
		Retryable:    e.Retryable,
	}
}

// HandleInbound implements wire.Connector.
func (c *connector) HandleInbound(ctx context.Context, req *wire.InboundRequest) (*wire.InboundResponse, error) {
	return c.integ.serveInbound(ctx, req), nil
}
