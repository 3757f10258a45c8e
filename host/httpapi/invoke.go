package httpapi

import (
	"bytes"
	"errors"
	"net/http"
	"strconv"
	"sync"

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

// invokeStream answers a streaming capability with NDJSON: the items, one
// per line, then {"page":...} or {"error":{...}}. The answer starts (200 and
// headers) with the plugin's first chunk: its first items, or an empty
// chunk when the handler declares the stream open (sdk Stream.Open, e.g. a
// subscription that waits for events). An error before that is answered as
// a plain error envelope with its own status.
func (s *Server) invokeStream(w http.ResponseWriter, r *http.Request, req *router.Request) {
	flusher, _ := w.(http.Flusher)
	started := false
	var line []byte
	f := s.opts.Router.InvokeStream(r.Context(), req, func(ch *wire.Chunk) error {
		if !started && len(ch.NDJSON) == 0 && ch.Err != nil {
			started = true
			return answerFailure(w, &router.Failure{AppID: req.AppID, Err: ch.Err})
		}
		if !started {
			started = true
			w.Header().Set("Content-Type", "application/x-ndjson")
			w.WriteHeader(http.StatusOK)
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
	if f != nil && !started {
		writeFailure(w, f)
	}
}

// answerFailure answers with a failure envelope: the answer is complete,
// so the stream callback goes on (nil).
func answerFailure(w http.ResponseWriter, f *router.Failure) error {
	writeFailure(w, f)
	return nil
}

// codeStatus is the HTTP status of a code.
func codeStatus(code string) int { return sdk.Code(code).HTTPStatus() }

func badRequest(appID, msg string) *router.Failure {
	return &router.Failure{AppID: appID, Err: &wire.Error{Code: string(sdk.BadRequest), Message: msg, RaisedBy: "host", RaisedIn: "httpapi.invoke"}}
}
