// Package dsyncemu is a local DSYNC platform for tests: it serves the
// realtime API (/api/realtime) with the checks of PROTOCOLS.md "DSYNC",
// stores the records it receives, injects programmable faults, and its Poller
// calls a connector's own endpoints (data layout and entities) the way the
// platform does.
//
// Realtime API as emulated:
//   - Only /api/realtime; other paths get 404. Methods: POST = create,
//     PUT = update, DELETE = delete; others get 405.
//   - Every call needs Content-Type: application/json, Auth-Token equal to
//     the configured API key (else 401 {"message":"Unauthorized"}) and
//     Entity-Token; DELETE needs Entity-Id and no body; POST/PUT need a JSON
//     object body (the record itself). Violations get 400 with a message.
//   - A record's id is the value of its primary key attribute (Config.IDKeys,
//     default "id"), or "#<n>" when it has none. Create of an existing id
//     gets 409, update or delete of a missing id gets 404.
//   - Success is 200 {"status":200,"message":"OK","detail":"","data":
//     {"entity_token":..,"entity_id":..}}; errors carry "message" likewise.
package dsyncemu

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// RealtimePath is the path of the realtime API.
const RealtimePath = "/api/realtime"

// MaxBody bounds a realtime request body.
const MaxBody = 4 << 20

// Config configures an Emulator.
type Config struct {
	// APIKey is the key every realtime call must carry in Auth-Token.
	// Required.
	APIKey string
	// IDKeys maps an entity token to the top-level record attribute holding
	// the record's id. Entities not listed use "id".
	IDKeys map[string]string
	// MaxCalls bounds how many calls Calls() keeps (default 100000); later
	// calls are counted but not kept.
	MaxCalls int
}

// Record is a record stored by the emulator.
type Record struct {
	EntityToken string
	ID          string
	Data        json.RawMessage
	// Version counts the writes (create = 1, each update +1).
	Version int
}

// Call is one realtime request the emulator received.
type Call struct {
	Seq         int64
	Method      string
	Path        string
	Header      http.Header
	Body        []byte
	EntityToken string
	EntityID    string // Entity-Id header (delete) or the record's id
	// Status is the HTTP status answered; 0 when the connection was reset.
	Status int
	// Fault is the fault applied to the call, if any.
	Fault *Fault
}

// Counters are running totals since the emulator started.
type Counters struct {
	Requests     int64 // every request to any path
	Creates      int64 // applied creates
	Updates      int64 // applied updates
	Deletes      int64 // applied deletes
	Unauthorized int64 // 401 answers
	Rejected     int64 // other 4xx answers (bad headers/body, 404, 405, 409)
	Faults       int64 // requests a fault was applied to
	Resets       int64 // connections reset by a fault
}

// Emulator is the local DSYNC platform. It is an http.Handler; Start runs it
// on 127.0.0.1.
type Emulator struct {
	cfg    Config
	keySum [32]byte

	seq                                   atomic.Int64
	requests, creates, updates, deletes   atomic.Int64
	unauthorized, rejected, faults, reset atomic.Int64

	mu        sync.Mutex
	records   map[string]map[string]*Record
	autoID    int64
	calls     []Call
	recorded  int           // calls recorded, kept or not
	recordCh  chan struct{} // closed and replaced when a call is recorded
	queue     []*Fault
	faultFunc func(r *http.Request, seq int64) *Fault

	srv  *http.Server
	ln   net.Listener
	done chan struct{}
}

// New returns an emulator handler (not listening; see Start).
func New(cfg Config) (*Emulator, error) {
	if cfg.APIKey == "" {
		return nil, errors.New("dsyncemu: Config.APIKey is required")
	}
	if cfg.MaxCalls <= 0 {
		cfg.MaxCalls = 100000
	}
	return &Emulator{cfg: cfg, keySum: sha256.Sum256([]byte(cfg.APIKey)), records: map[string]map[string]*Record{},
		recordCh: make(chan struct{})}, nil
}

// Start runs a new emulator on addr ("" = 127.0.0.1:0). Stop it with Close.
func Start(cfg Config, addr string) (*Emulator, error) {
	e, err := New(cfg)
	if err != nil {
		return nil, err
	}
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("dsyncemu: listen: %w", err)
	}
	e.ln = ln
	e.srv = &http.Server{Handler: e, ReadHeaderTimeout: 10 * time.Second}
	e.done = make(chan struct{})
	go func() {
		defer close(e.done)
		_ = e.srv.Serve(ln)
	}()
	return e, nil
}

// Addr is the listening address (host:port) of a started emulator.
func (e *Emulator) Addr() string { return e.ln.Addr().String() }

// URL is the base URL of a started emulator, e.g. "http://127.0.0.1:1234".
func (e *Emulator) URL() string { return "http://" + e.Addr() }

// RealtimeURL is the realtime endpoint of a started emulator.
func (e *Emulator) RealtimeURL() string { return e.URL() + RealtimePath }

// Close stops a started emulator, closing all connections, and waits for
// its server to return.
func (e *Emulator) Close() error {
	if e.srv == nil {
		return nil
	}
	err := e.srv.Close()
	<-e.done
	return err
}

// Counters returns a snapshot of the running totals.
func (e *Emulator) Counters() Counters {
	return Counters{
		Requests: e.requests.Load(), Creates: e.creates.Load(), Updates: e.updates.Load(), Deletes: e.deletes.Load(),
		Unauthorized: e.unauthorized.Load(), Rejected: e.rejected.Load(), Faults: e.faults.Load(), Resets: e.reset.Load(),
	}
}

// Calls returns a copy of the calls received so far, in arrival order.
func (e *Emulator) Calls() []Call {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.calls)
}

// Records returns the stored records of an entity, sorted by id.
func (e *Emulator) Records(entityToken string) []Record {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make([]Record, 0, len(e.records[entityToken]))
	for _, r := range e.records[entityToken] {
		out = append(out, *r)
	}
	slices.SortFunc(out, func(a, b Record) int { return strings.Compare(a.ID, b.ID) })
	return out
}

// Record returns one stored record.
func (e *Emulator) Record(entityToken, id string) (Record, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	r, ok := e.records[entityToken][id]
	if !ok {
		return Record{}, false
	}
	return *r, true
}

// ServeHTTP implements the realtime API.
func (e *Emulator) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	e.requests.Add(1)
	call := Call{Seq: e.seq.Add(1), Method: r.Method, Path: r.URL.Path, Header: r.Header.Clone(),
		EntityToken: r.Header.Get("Entity-Token"), EntityID: r.Header.Get("Entity-Id")}
	defer func() { e.record(call) }()

	if r.URL.Path != RealtimePath {
		call.Status = e.fail(w, http.StatusNotFound, "not found")
		return
	}
	if r.Method != http.MethodPost && r.Method != http.MethodPut && r.Method != http.MethodDelete {
		w.Header().Set("Allow", "POST, PUT, DELETE")
		call.Status = e.fail(w, http.StatusMethodNotAllowed, "method "+r.Method+" not allowed")
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBody))
	call.Body = body
	if err != nil {
		call.Status = e.fail(w, http.StatusBadRequest, "cannot read body: "+err.Error())
		return
	}
	if !e.authorized(r.Header.Get("Auth-Token")) {
		e.unauthorized.Add(1)
		call.Status = writeJSON(w, http.StatusUnauthorized, envelope{Status: 401, Message: "Unauthorized"})
		return
	}
	if msg := checkRequest(r, body); msg != "" {
		call.Status = e.fail(w, http.StatusBadRequest, msg)
		return
	}

	fault := e.nextFault(r, call.Seq)
	call.Fault = fault
	if fault != nil {
		e.faults.Add(1)
		if fault.Delay > 0 {
			t := time.NewTimer(fault.Delay)
			select {
			case <-t.C:
			case <-r.Context().Done():
				t.Stop()
				return
			}
		}
		if !fault.After && fault.applies() {
			call.Status = e.applyFault(w, fault)
			return
		}
	}

	status, resp, id := e.apply(r.Method, call.EntityToken, call.EntityID, body)
	call.EntityID = id
	if fault != nil && fault.After && fault.applies() {
		call.Status = e.applyFault(w, fault)
		return
	}
	if status != http.StatusOK {
		e.rejected.Add(1)
	}
	call.Status = writeJSON(w, status, resp)
}

// checkRequest returns why the headers or body break the protocol, or "".
func checkRequest(r *http.Request, body []byte) string {
	ct := r.Header.Get("Content-Type")
	if mt, _, err := mime.ParseMediaType(ct); err != nil || mt != "application/json" {
		return fmt.Sprintf("Content-Type must be application/json, got %q", ct)
	}
	if strings.TrimSpace(r.Header.Get("Entity-Token")) == "" {
		return "Entity-Token header is required"
	}
	if r.Method == http.MethodDelete {
		if strings.TrimSpace(r.Header.Get("Entity-Id")) == "" {
			return "Entity-Id header is required for delete"
		}
		if len(bytes.TrimSpace(body)) > 0 {
			return "delete takes no body"
		}
		return ""
	}
	if r.Header.Get("Entity-Id") != "" {
		return "Entity-Id header is only for delete"
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(body, &obj); err != nil || obj == nil {
		return "body must be the record as a JSON object"
	}
	return ""
}

// apply performs a create/update/delete and returns the answer.
func (e *Emulator) apply(method, token, headerID string, body []byte) (int, envelope, string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	recs := e.records[token]
	if recs == nil {
		recs = map[string]*Record{}
		e.records[token] = recs
	}
	id := headerID
	if method != http.MethodDelete {
		id = e.idOf(token, body)
	}
	existing, exists := recs[id]
	switch method {
	case http.MethodPost:
		if exists {
			return http.StatusConflict, envelope{Status: 409, Message: fmt.Sprintf("entity %q already exists", id)}, id
		}
		recs[id] = &Record{EntityToken: token, ID: id, Data: compact(body), Version: 1}
		e.creates.Add(1)
	case http.MethodPut:
		if !exists {
			return http.StatusNotFound, envelope{Status: 404, Message: fmt.Sprintf("entity %q not found", id)}, id
		}
		existing.Data = compact(body)
		existing.Version++
		e.updates.Add(1)
	case http.MethodDelete:
		if !exists {
			return http.StatusNotFound, envelope{Status: 404, Message: fmt.Sprintf("entity %q not found", id)}, id
		}
		delete(recs, id)
		e.deletes.Add(1)
	}
	return http.StatusOK, envelope{Status: 200, Message: "OK", Data: map[string]string{"entity_token": token, "entity_id": id}}, id
}

// idOf returns the record's id attribute as text, or a fresh "#n".
func (e *Emulator) idOf(token string, body []byte) string {
	key := "id"
	if k, ok := e.cfg.IDKeys[token]; ok {
		key = k
	}
	var obj map[string]json.RawMessage
	_ = json.Unmarshal(body, &obj)
	if raw, ok := obj[key]; ok {
		var s string
		if json.Unmarshal(raw, &s) == nil && s != "" {
			return s
		}
		var n json.Number
		if json.Unmarshal(raw, &n) == nil {
			return n.String()
		}
	}
	e.autoID++
	return fmt.Sprintf("#%d", e.autoID)
}

func (e *Emulator) authorized(key string) bool {
	sum := sha256.Sum256([]byte(key))
	return subtle.ConstantTimeCompare(sum[:], e.keySum[:]) == 1
}

func (e *Emulator) fail(w http.ResponseWriter, status int, msg string) int {
	e.rejected.Add(1)
	return writeJSON(w, status, envelope{Status: status, Message: msg})
}

func (e *Emulator) record(c Call) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.calls) < e.cfg.MaxCalls {
		e.calls = append(e.calls, c)
	}
	e.recorded++
	close(e.recordCh)
	e.recordCh = make(chan struct{})
}

// WaitCalls waits until at least n calls were recorded, or ctx ends, and
// returns the kept calls. A call is recorded when its handler returns:
// before the client reads an answer, but possibly after a client saw a
// connection reset or gave up, so tests about such calls wait here.
func (e *Emulator) WaitCalls(ctx context.Context, n int) ([]Call, error) {
	e.mu.Lock()
	for e.recorded < n {
		ch := e.recordCh
		e.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, fmt.Errorf("dsyncemu: waiting for %d calls: %w", n, ctx.Err())
		}
		e.mu.Lock()
	}
	defer e.mu.Unlock()
	return slices.Clone(e.calls), nil
}

// envelope is the platform's JSON answer.
type envelope struct {
	Status  int    `json:"status"`
	Message string `json:"message"`
	Detail  string `json:"detail"`
	Data    any    `json:"data"`
}

func writeJSON(w http.ResponseWriter, status int, v any) int {
	b, err := json.Marshal(v)
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"status":500,"message":"encoding failed"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(b)
	return status
}

func compact(b []byte) json.RawMessage {
	var buf bytes.Buffer
	if json.Compact(&buf, b) != nil {
		return slices.Clone(b)
	}
	return buf.Bytes()
}
