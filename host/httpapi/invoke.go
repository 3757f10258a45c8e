package httpapi

import (
	"bytes"
	"errors"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/connector-host/connector-host/host/router"
	"github.com/connector-host/connector-host/internal/envelope"
	"github.com/connector-host/connector-host/internal/wire"
	"github.com/connector-host/connector-host/sdk"
)

var bufPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// invoke serves POST /v1/connectors/{app_id}/{capability}.
func (s *Server) invoke(w http.ResponseWriter, r *http.Request) {
	appID, capability := r.PathValue("app_id"), r.PathValue("capability")
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		s.writeHostError(w, sdk.UnsupportedOperation, "httpapi.invoke", r.Method+" is not allowed: call capabilities with POST")
		return
	}
	sup, ok := s.opts.Router.Supervisor(appID)
	if !ok || sup == nil {
		s.writeHostError(w, sdk.NotFound, "httpapi.invoke", "no connector \""+appID+"\" is loaded")
		return
	}
	buf := bufPool.Get().(*bytes.Buffer)
	buf.Reset()
	defer bufPool.Put(buf)
	if _, err := buf.ReadFrom(http.MaxBytesReader(w, r.Body, s.opts.MaxBodyBytes)); err != nil {
		var tooBig *http.MaxBytesError
		msg := "body: " + err.Error()
		if errors.As(err, &tooBig) {
			msg = "body: larger than the limit of " + strconv.FormatInt(tooBig.Limit, 10) + " bytes"
		}
		writeFailure(w, badRequest(appID, msg))
		return
	}
	env, err := envelope.Parse(buf.Bytes())
	if err != nil {
		writeFailure(w, badRequest(appID, err.Error()))
		return
	}
	req := &router.Request{AppID: appID, Capability: capability, Envelope: env, RequestID: s.requestID(r)}
	w.Header().Set("X-Request-Id", req.RequestID)
	if s.opts.Router.IsStreaming(r.Context(), appID, capability) {
		s.invokeStream(w, r, req)
		return
	}
	res, f := s.opts.Router.Invoke(r.Context(), req)
	if f != nil {
		writeFailure(w, f)
		return
	}
	out := envelope.AppendSuccess(buf.Bytes()[:0], res)
	out = append(out, '\n')
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(out)
}

// streamCommitAfter is how long a stream may stay silent before the host
// commits to 200 and sends the response headers, so that a client of a
// quiet stream (a subscription) sees it open. An error before then still
// gets its own status; after it, errors arrive as the final line.
const streamCommitAfter = 500 * time.Millisecond

// invokeStream answers a streaming capability with NDJSON: the items, one
// per line, then {"page":...} or {"error":{...}}. An error before the first
// item (and within streamCommitAfter) is answered as a plain error envelope
// with its status instead.
func (s *Server) invokeStream(w http.ResponseWriter, r *http.Request, req *router.Request) {
	flusher, _ := w.(http.Flusher)
	var (
		mu      sync.Mutex // the timer's goroutine and emit both write
		started bool
		done    bool
		line    []byte
	)
	commit := func() {
		started = true
		w.Header().Set("Content-Type", "application/x-ndjson")
		w.WriteHeader(http.StatusOK)
	}
	timer := time.AfterFunc(streamCommitAfter, func() {
		mu.Lock()
		defer mu.Unlock()
		if started || done {
			return
		}
		commit()
		if flusher != nil {
			flusher.Flush()
		}
	})
	defer func() {
		timer.Stop()
		mu.Lock()
		done = true // a late timer must not touch w after the handler returns
		mu.Unlock()
	}()
	f := s.opts.Router.InvokeStream(r.Context(), req, func(ch *wire.Chunk) error {
		mu.Lock()
		defer mu.Unlock()
		if !started && len(ch.NDJSON) == 0 && ch.Err != nil {
			started = true
			writeFailure(w, &router.Failure{AppID: req.AppID, Err: ch.Err})
			return nil
		}
		if !started {
			commit()
		}
		if _, err := w.Write(ch.NDJSON); err != nil {
			return err
		}
		if ch.End() {
			line = envelope.AppendStreamLines(line[:0], &wire.Chunk{Err: ch.Err, FinalPage: ch.FinalPage, Done: ch.Done}, req.AppID, codeStatus)
			if _, err := w.Write(line); err != nil {
				return err
			}
		}
		if flusher != nil {
			flusher.Flush()
		}
		return nil
	})
	if f != nil {
		mu.Lock()
		defer mu.Unlock()
		if !started {
			writeFailure(w, f)
			return
		}
		// Committed to 200 by the timer: the failure is the final line.
		line = envelope.AppendStreamLines(line[:0], &wire.Chunk{Err: f.Err}, req.AppID, codeStatus)
		_, _ = w.Write(line)
	}
}

// codeStatus is the HTTP status of a code.
func codeStatus(code string) int { return sdk.Code(code).HTTPStatus() }

func badRequest(appID, msg string) *router.Failure {
	return &router.Failure{AppID: appID, Err: &wire.Error{Code: string(sdk.BadRequest), Message: msg, RaisedBy: "host", RaisedIn: "httpapi.invoke"}}
}
