// Package eventsemu is a local events-protocol service for tests: a real HTTP
// server on 127.0.0.1 serving POST /events and /events/ with the
// sdk/eventsprotocol Processor, and handlers that answer each way a remote
// service can (see the Name constants).
//
//	emu := eventsemu.New()
//	if err := emu.Start(); err != nil { … }
//	defer emu.Close()
//	resp, err := client.Send(ctx, emu.URL(), event, 0)
package eventsemu

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/connector-host/connector-host/plugins/eventsprotocol/exampleevent"
	"github.com/connector-host/connector-host/sdk/eventsprotocol"
)

// The events the emulator answers, all version 1 (plus the seed's
// "get:event:example" v1).
const (
	// NameEcho answers "…:response" with the request payload.
	NameEcho = "emulator:echo"
	// NameRedirect takes {"url", "queryParameters"} and answers "…:redirect".
	NameRedirect = "emulator:redirect"
	// NameFail takes {"type", "code", "parameters"} and answers the error
	// event "emulator:fail:<type>".
	NameFail = "emulator:fail"
	// NameSlow takes {"ms"} and answers {"sleptMs": ms} after ms
	// milliseconds (at most MaxSlow), or stops when the request is gone.
	NameSlow = "emulator:slow"
	// NamePanic panics in its handler ("…:error", UNHANDLED_ERROR).
	NamePanic = "emulator:panic"
	// NameHTTPStatus takes {"status"} and answers with that HTTP status and
	// a plain-text body instead of an event.
	NameHTTPStatus = "emulator:http_status"
	// NameInvalidJSON answers HTTP 200 with a body that is not JSON.
	NameInvalidJSON = "emulator:invalid_json"
	// NameInvalidEvent answers HTTP 200 with a JSON object that is not an
	// event (no name, version or payload).
	NameInvalidEvent = "emulator:invalid_event"
)

// Version is the version of every emulator event.
const Version = 1

// MaxSlow bounds NameSlow's wait.
const MaxSlow = time.Minute

// InvalidJSONBody is what NameInvalidJSON answers.
const InvalidJSONBody = `{"name": "emulator:invalid_json:response", "version": 1, "payload": {`

// InvalidEventBody is what NameInvalidEvent answers.
const InvalidEventBody = `{"hello": "world"}`

// Server is the emulator. Create it with New, then Start it.
type Server struct {
	// Addr is the listen address; New sets "127.0.0.1:0" (a free port).
	Addr string
	// Logger receives handler failures (set before Start); New sets a
	// logger that discards them, as the emulator fails on purpose.
	Logger *slog.Logger

	registry  *eventsprotocol.Registry
	processor *eventsprotocol.Processor

	mu       sync.Mutex
	listener net.Listener
	srv      *http.Server
	done     chan struct{}
	received []eventsprotocol.Event
	headers  []http.Header
}

// New returns a stopped emulator with every handler registered.
func New() *Server {
	reg := eventsprotocol.NewRegistry()
	mustAdd := func(err error) {
		if err != nil {
			panic(err) // unreachable: the names and payload types are fixed
		}
	}
	mustAdd(reg.Add(NameEcho, Version, eventsprotocol.HandlerFunc(echo)))
	mustAdd(eventsprotocol.Register(reg, NameRedirect, Version, redirect))
	mustAdd(eventsprotocol.Register(reg, NameFail, Version, fail))
	mustAdd(eventsprotocol.Register(reg, NameSlow, Version, slow))
	mustAdd(reg.Add(NamePanic, Version, eventsprotocol.HandlerFunc(panicking)))
	mustAdd(exampleevent.Register(reg))
	return &Server{
		Addr:      "127.0.0.1:0",
		Logger:    slog.New(slog.NewTextHandler(io.Discard, nil)),
		registry:  reg,
		processor: eventsprotocol.NewProcessor(reg),
	}
}

// Registry returns the emulator's registry, to add handlers of a test.
func (s *Server) Registry() *eventsprotocol.Registry { return s.registry }

// Start listens on Addr and serves in the background.
func (s *Server) Start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.listener != nil {
		return errors.New("eventsemu: already started")
	}
	ln, err := net.Listen("tcp", s.Addr)
	if err != nil {
		return fmt.Errorf("eventsemu: listen %s: %w", s.Addr, err)
	}
	s.processor.Logger = s.Logger
	mux := http.NewServeMux()
	mux.Handle("/events", http.HandlerFunc(s.serveEvents))
	mux.Handle("/events/", http.HandlerFunc(s.serveEvents))
	s.listener = ln
	s.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	s.done = make(chan struct{})
	go func(srv *http.Server, done chan struct{}) {
		defer close(done)
		_ = srv.Serve(ln)
	}(s.srv, s.done)
	return nil
}

// URL is the events endpoint, "http://127.0.0.1:<port>/events". Start first.
func (s *Server) URL() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.listener == nil {
		return ""
	}
	return "http://" + s.listener.Addr().String() + "/events"
}

// Close stops the server, ending in-flight requests, and waits for it.
func (s *Server) Close() error {
	s.mu.Lock()
	srv, done := s.srv, s.done
	s.srv, s.done, s.listener = nil, nil, nil
	s.mu.Unlock()
	if srv == nil {
		return nil
	}
	err := srv.Close()
	<-done
	return err
}

// Received returns the valid events received so far, in order.
func (s *Server) Received() []eventsprotocol.Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]eventsprotocol.Event(nil), s.received...)
}

// ReceivedHeaders returns the HTTP headers of the requests that carried
// the events of Received, in the same order.
func (s *Server) ReceivedHeaders() []http.Header {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]http.Header, len(s.headers))
	for k, h := range s.headers {
		out[k] = h.Clone()
	}
	return out
}

// serveEvents answers the HTTP-level behaviours itself and hands every other
// request to the Processor.
func (s *Server) serveEvents(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		s.processor.ServeHTTP(w, r)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, eventsprotocol.DefaultMaxBodyBytes))
	if err != nil {
		http.Error(w, "eventsemu: cannot read body", http.StatusRequestEntityTooLarge)
		return
	}
	ev, err := eventsprotocol.ParseEvent(body)
	if err == nil {
		s.mu.Lock()
		s.received = append(s.received, *ev)
		s.headers = append(s.headers, r.Header.Clone())
		s.mu.Unlock()
		switch ev.Name {
		case NameHTTPStatus:
			var p struct {
				Status int `json:"status"`
			}
			if ev.PayloadAs(&p) != nil || p.Status < 200 || p.Status > 599 {
				p.Status = http.StatusInternalServerError
			}
			http.Error(w, "eventsemu: answering with HTTP status as asked", p.Status)
			return
		case NameInvalidJSON:
			w.Header().Set("Content-Type", "application/json")
			_, _ = io.WriteString(w, InvalidJSONBody)
			return
		case NameInvalidEvent:
			w.Header().Set("Content-Type", "application/json")
			_, _ = io.WriteString(w, InvalidEventBody)
			return
		}
	}
	w.Header().Set("Content-Type", "application/json")
	resp, _ := json.Marshal(s.processor.Process(r.Context(), body))
	_, _ = w.Write(resp)
}

func echo(_ context.Context, ev *eventsprotocol.Event) (any, error) {
	return ev.Payload, nil
}

func panicking(context.Context, *eventsprotocol.Event) (any, error) {
	panic("eventsemu: panic as asked")
}

// RedirectPayload is NameRedirect's payload.
type RedirectPayload struct {
	URL             string         `json:"url"`
	QueryParameters map[string]any `json:"queryParameters,omitempty"`
}

func redirect(_ context.Context, req eventsprotocol.Request[RedirectPayload]) (struct{}, error) {
	return struct{}{}, &eventsprotocol.Redirect{URL: req.Payload.URL, QueryParameters: req.Payload.QueryParameters}
}

// FailPayload is NameFail's payload.
type FailPayload struct {
	Type       string         `json:"type"`
	Code       string         `json:"code"`
	Parameters map[string]any `json:"parameters,omitempty"`
}

func fail(_ context.Context, req eventsprotocol.Request[FailPayload]) (struct{}, error) {
	return struct{}{}, &eventsprotocol.EventError{
		Type:       eventsprotocol.ErrorType(req.Payload.Type),
		Code:       req.Payload.Code,
		Parameters: req.Payload.Parameters,
	}
}

// SlowPayload is NameSlow's payload.
type SlowPayload struct {
	MS int `json:"ms" jsonschema:"minimum=0"`
}

// SlowResponse is NameSlow's response payload.
type SlowResponse struct {
	SleptMS int `json:"sleptMs"`
}

func slow(ctx context.Context, req eventsprotocol.Request[SlowPayload]) (SlowResponse, error) {
	d := MaxSlow
	if req.Payload.MS < int(MaxSlow/time.Millisecond) {
		d = time.Duration(req.Payload.MS) * time.Millisecond
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return SlowResponse{SleptMS: req.Payload.MS}, nil
	case <-ctx.Done():
		return SlowResponse{}, ctx.Err()
	}
}
