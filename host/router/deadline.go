package router

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"
)

// deadlineTick is how often the watcher looks for calls past their
// deadline: a call ends at most this late.
const deadlineTick = 10 * time.Millisecond

// watcherIdleTicks is how many empty ticks the watcher waits before it
// stops (it starts again with the next call).
const watcherIdleTicks = 100

// expiry is the in-flight unary calls of one connector, oldest first. A
// connector's timeout is fixed, so the oldest call has the earliest
// deadline: expired calls are found at the front.
type expiry struct {
	mu         sync.Mutex
	head, tail *timedCall
}

// timedCall is a unary call's context: cancelled by the watcher when its
// deadline passes (or by its stop function), without a runtime timer of its
// own (ADR 0009). It reports no deadline, so gRPC sends no grpc-timeout;
// Err says context.DeadlineExceeded once cancelled at or past the deadline.
type timedCall struct {
	context.Context
	cancel     context.CancelCauseFunc
	deadline   time.Time
	prev, next *timedCall
	linked     bool
}

func (c *timedCall) Err() error {
	err := c.Context.Err()
	if err != nil && errors.Is(context.Cause(c.Context), context.DeadlineExceeded) {
		return context.DeadlineExceeded
	}
	return err
}

// watcher cancels the calls of every connector whose deadline passed. Its
// goroutine runs while there are calls and stops when idle.
type watcher struct {
	mu      sync.Mutex
	lists   []*expiry
	running atomic.Bool
}

func (w *watcher) register(l *expiry) {
	w.mu.Lock()
	w.lists = append(w.lists, l)
	w.mu.Unlock()
}

// start returns the context of a call on l ending at now+timeout, and the
// function that ends it (idempotent).
func (w *watcher) start(parent context.Context, l *expiry, timeout time.Duration) (*timedCall, context.CancelFunc) {
	ctx, cancel := context.WithCancelCause(parent)
	c := &timedCall{Context: ctx, cancel: cancel, deadline: time.Now().Add(timeout)}
	l.mu.Lock()
	c.prev = l.tail
	if l.tail != nil {
		l.tail.next = c
	} else {
		l.head = c
	}
	l.tail = c
	c.linked = true
	l.mu.Unlock()
	if !w.running.Load() && w.running.CompareAndSwap(false, true) {
		go w.run()
	}
	return c, func() {
		l.unlink(c)
		cancel(context.Canceled)
	}
}

func (l *expiry) unlink(c *timedCall) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !c.linked {
		return
	}
	if c.prev != nil {
		c.prev.next = c.next
	} else {
		l.head = c.next
	}
	if c.next != nil {
		c.next.prev = c.prev
	} else {
		l.tail = c.prev
	}
	c.prev, c.next, c.linked = nil, nil, false
}

// expire cancels the calls past their deadline; it reports whether any
// call is still in flight.
func (l *expiry) expire(now time.Time) (busy bool) {
	var expired []*timedCall
	l.mu.Lock()
	for c := l.head; c != nil && !now.Before(c.deadline); c = l.head {
		l.head = c.next
		if l.head != nil {
			l.head.prev = nil
		} else {
			l.tail = nil
		}
		c.prev, c.next, c.linked = nil, nil, false
		expired = append(expired, c)
	}
	busy = l.head != nil
	l.mu.Unlock()
	for _, c := range expired {
		c.cancel(context.DeadlineExceeded)
	}
	return busy
}

func (w *watcher) run() {
	tick := time.NewTicker(deadlineTick)
	defer tick.Stop()
	idle := 0
	for now := range tick.C {
		w.mu.Lock()
		lists := w.lists
		w.mu.Unlock()
		busy := false
		for _, l := range lists {
			if l.expire(now) {
				busy = true
			}
		}
		if busy {
			idle = 0
			continue
		}
		if idle++; idle < watcherIdleTicks {
			continue
		}
		w.running.Store(false)
		// A call may have started between the last look and the Store:
		// go on if so (and nobody else took over).
		if !w.anyBusy() || !w.running.CompareAndSwap(false, true) {
			return
		}
		idle = 0
	}
}

func (w *watcher) anyBusy() bool {
	w.mu.Lock()
	lists := w.lists
	w.mu.Unlock()
	for _, l := range lists {
		l.mu.Lock()
		busy := l.head != nil
		l.mu.Unlock()
		if busy {
			return true
		}
	}
	return false
}
