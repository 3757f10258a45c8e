package stoaemu

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Fault is a misbehaviour injected into the responses to matching requests.
// Several effects may be combined; Status wins over the body effects.
type Fault struct {
	// Status, when non-zero, replaces the normal response with this status
	// and Body (default: a JSON {"detail": ...}).
	Status int
	// Body is the body sent with Status.
	Body string
	// RetryAfter, when set, is sent as the Retry-After header with Status
	// (e.g. "1" with 429).
	RetryAfter string
	// Delay holds the response back before anything is written.
	Delay time.Duration
	// SlowBody sends the normal body in 8 chunks with this pause between
	// them (the headers and the first chunk go out at once).
	SlowBody time.Duration
	// Truncate declares the full Content-Length, sends half the normal body
	// and then drops the connection.
	Truncate bool
	// ShortBody sends the first half of the normal body as if it were the
	// whole response (Content-Length of the half): the HTTP exchange looks
	// complete, the data is not.
	ShortBody bool
	// ExpiredSignature applies to sign requests: the presigned URL handed out
	// has already expired, so its download is rejected with 403.
	ExpiredSignature bool
	// Times is how many matching requests the fault applies to; 0 means every
	// matching request until ClearFaults.
	Times int
}

// request kinds, for matching faults by object key.
const (
	kindOther = iota
	kindSign
	kindObject
)

type faultEntry struct {
	target string
	fault  Fault
	left   int // remaining uses; -1 = unlimited
}

type faultTable struct {
	mu      sync.Mutex
	entries []*faultEntry
}

// InjectFault arms f for requests matching target. A target starting with "/"
// is a path prefix ("/api/v2/sign/", "/objects/", "/auth/oauth/token/", or
// "/" for everything); any other target is an object key, and the fault
// applies to downloads of that object (or, for ExpiredSignature, to sign
// requests for that key). Faults apply in the order they were injected; each
// request consumes at most one.
func (s *Server) InjectFault(target string, f Fault) {
	left := f.Times
	if left <= 0 {
		left = -1
	}
	s.faults.mu.Lock()
	defer s.faults.mu.Unlock()
	s.faults.entries = append(s.faults.entries, &faultEntry{target: target, fault: f, left: left})
}

// ClearFaults removes every injected fault.
func (s *Server) ClearFaults() {
	s.faults.mu.Lock()
	defer s.faults.mu.Unlock()
	s.faults.entries = nil
}

// take returns the first armed fault matching the request and consumes one of
// its uses.
func (t *faultTable) take(path string, kind int, key string) *Fault {
	t.mu.Lock()
	defer t.mu.Unlock()
	for i, e := range t.entries {
		if !e.matches(path, kind, key) {
			continue
		}
		f := e.fault
		if e.left > 0 {
			e.left--
			if e.left == 0 {
				t.entries = append(t.entries[:i:i], t.entries[i+1:]...)
			}
		}
		return &f
	}
	return nil
}

func (e *faultEntry) matches(path string, kind int, key string) bool {
	if e.fault.ExpiredSignature && kind != kindSign {
		return false
	}
	if strings.HasPrefix(e.target, "/") {
		return strings.HasPrefix(path, e.target)
	}
	if e.fault.ExpiredSignature {
		return key == e.target
	}
	return kind == kindObject && key == e.target
}

// startFault looks up the fault for r and applies Delay and Status. ok is
// false when the fault already answered the request.
func (s *Server) startFault(w http.ResponseWriter, r *http.Request, kind int, key string) (*Fault, bool) {
	f := s.faults.take(r.URL.Path, kind, key)
	if f == nil {
		return nil, true
	}
	if sleepCtx(r.Context(), f.Delay) != nil {
		return f, false
	}
	if f.Status == 0 {
		return f, true
	}
	if f.RetryAfter != "" {
		w.Header().Set("Retry-After", f.RetryAfter)
	}
	body := f.Body
	if body == "" {
		w.Header().Set("Content-Type", "application/json")
		b, _ := json.Marshal(map[string]any{"detail": "injected fault: " + http.StatusText(f.Status)})
		body = string(b)
	}
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(f.Status)
	_, _ = w.Write([]byte(body))
	return f, false
}

// response is a handler's answer before the body effects of a fault.
type response struct {
	status int
	header http.Header
	body   []byte
}

func jsonResponse(status int, v any) response {
	b, _ := json.Marshal(v)
	h := http.Header{}
	h.Set("Content-Type", "application/json")
	return response{status: status, header: h, body: b}
}

// respond writes resp, applying the body effects of f (SlowBody, Truncate,
// ShortBody).
func (s *Server) respond(w http.ResponseWriter, r *http.Request, resp response, f *Fault) {
	for k, v := range resp.header {
		w.Header()[k] = v
	}
	body := resp.body
	if f != nil && f.ShortBody {
		body = body[:len(body)/2]
	}
	w.Header().Set("Content-Length", strconv.Itoa(len(resp.body)))
	if f != nil && f.ShortBody {
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	}
	w.WriteHeader(resp.status)
	if f != nil && f.Truncate {
		_, _ = w.Write(body[:len(body)/2])
		if fl, ok := w.(http.Flusher); ok {
			fl.Flush()
		}
		panic(http.ErrAbortHandler) // drop the connection mid-body
	}
	if f == nil || f.SlowBody <= 0 {
		_, _ = w.Write(body)
		return
	}
	chunk := max(len(body)/8, 1)
	for off := 0; off < len(body); off += chunk {
		if off > 0 && sleepCtx(r.Context(), f.SlowBody) != nil {
			return
		}
		if _, err := w.Write(body[off:min(off+chunk, len(body))]); err != nil {
			return
		}
		if fl, ok := w.(http.Flusher); ok {
			fl.Flush()
		}
	}
}
