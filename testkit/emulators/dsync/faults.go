package dsyncemu

import (
	"net"
	"net/http"
	"time"
)

// Fault is a failure the emulator plays for matching realtime requests that
// passed the header checks. A fault with only Delay slows the request and
// then serves it normally.
type Fault struct {
	// Method restricts the fault to one HTTP method ("" = any).
	Method string
	// EntityToken restricts the fault to one entity ("" = any).
	EntityToken string
	// Times is how many matching requests the fault applies to (0 = 1).
	Times int

	// Delay holds the request this long before anything else (slow
	// platform). The wait ends early when the client goes away.
	Delay time.Duration
	// Status, when non-zero, is answered instead of processing the request,
	// with Message as the JSON "message".
	Status  int
	Message string
	// RetryAfter, when set, is sent as the Retry-After header.
	RetryAfter string
	// Reset closes the connection with a TCP RST instead of answering.
	Reset bool
	// After applies Status/Reset only after the request was processed (the
	// record is stored, the answer is lost or replaced): the case where
	// a client must not blindly repeat a create.
	After bool
}

// applies reports whether the fault replaces the answer.
func (f *Fault) applies() bool { return f.Status != 0 || f.Reset }

func (f *Fault) matches(r *http.Request) bool {
	return (f.Method == "" || f.Method == r.Method) &&
		(f.EntityToken == "" || f.EntityToken == r.Header.Get("Entity-Token"))
}

// Inject queues faults. Each request takes the first queued fault matching
// it; a fault is dropped once it was applied Times times.
func (e *Emulator) Inject(faults ...Fault) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, f := range faults {
		if f.Times <= 0 {
			f.Times = 1
		}
		e.queue = append(e.queue, &f)
	}
}

// SetFaultFunc installs fn, asked for every request (seq counts requests
// from 1) before the queue; a nil result falls back to the queue. Pass nil
// to remove it.
func (e *Emulator) SetFaultFunc(fn func(r *http.Request, seq int64) *Fault) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.faultFunc = fn
}

// ClearFaults drops queued faults and the fault function.
func (e *Emulator) ClearFaults() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.queue, e.faultFunc = nil, nil
}

// PendingFaults is the number of queued fault applications left.
func (e *Emulator) PendingFaults() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	n := 0
	for _, f := range e.queue {
		n += f.Times
	}
	return n
}

func (e *Emulator) nextFault(r *http.Request, seq int64) *Fault {
	e.mu.Lock()
	fn := e.faultFunc
	e.mu.Unlock()
	if fn != nil {
		if f := fn(r, seq); f != nil {
			return f
		}
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	for i, f := range e.queue {
		if !f.matches(r) {
			continue
		}
		f.Times--
		if f.Times <= 0 {
			e.queue = append(e.queue[:i], e.queue[i+1:]...)
		}
		c := *f
		return &c
	}
	return nil
}

// applyFault answers with the fault's status or resets the connection. It
// returns the status answered (0 for a reset).
func (e *Emulator) applyFault(w http.ResponseWriter, f *Fault) int {
	if f.Reset {
		e.reset.Add(1)
		resetConn(w)
		return 0
	}
	if f.RetryAfter != "" {
		w.Header().Set("Retry-After", f.RetryAfter)
	}
	msg := f.Message
	if msg == "" {
		msg = http.StatusText(f.Status)
	}
	return writeJSON(w, f.Status, envelope{Status: f.Status, Message: msg})
}

// resetConn hijacks the connection and closes it with SO_LINGER 0, so the
// client sees a TCP reset and no response.
func resetConn(w http.ResponseWriter) {
	hj, ok := w.(http.Hijacker)
	if !ok {
		panic(http.ErrAbortHandler) // net/http closes the connection quietly
	}
	conn, _, err := hj.Hijack()
	if err != nil {
		panic(http.ErrAbortHandler)
	}
	if tc, ok := conn.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = conn.Close()
}
