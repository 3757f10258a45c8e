package router

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestWatcherEndsCallsAtTheirDeadline(t *testing.T) {
	t.Parallel()
	var w watcher
	var l expiry
	w.register(&l)
	start := time.Now()
	c, stop := w.start(context.Background(), &l, 50*time.Millisecond)
	defer stop()
	if _, ok := c.Deadline(); ok {
		t.Fatal("the call context reports a deadline (gRPC would send grpc-timeout)")
	}
	select {
	case <-c.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("not cancelled at its deadline")
	}
	if d := time.Since(start); d < 50*time.Millisecond {
		t.Fatalf("cancelled after %v, before its deadline", d)
	}
	if !errors.Is(c.Err(), context.DeadlineExceeded) {
		t.Fatalf("Err %v, want DeadlineExceeded", c.Err())
	}
}

func TestWatcherStopAndParent(t *testing.T) {
	t.Parallel()
	var w watcher
	var l expiry
	w.register(&l)
	// Stopped in any order, the calls leave the list.
	var stops []context.CancelFunc
	var calls []*timedCall
	for range 5 {
		c, stop := w.start(context.Background(), &l, time.Hour)
		calls, stops = append(calls, c), append(stops, stop)
	}
	for _, i := range []int{2, 0, 4, 1, 3} {
		stops[i]()
		stops[i]() // idempotent
		if !errors.Is(calls[i].Err(), context.Canceled) {
			t.Fatalf("call %d: Err %v", i, calls[i].Err())
		}
	}
	if l.head != nil || l.tail != nil {
		t.Fatal("stopped calls left in the list")
	}
	// A caller that goes away cancels its call.
	parent, cancel := context.WithCancel(context.Background())
	c, stop := w.start(parent, &l, time.Hour)
	defer stop()
	cancel()
	if !errors.Is(c.Err(), context.Canceled) {
		t.Fatalf("Err %v after the caller left", c.Err())
	}
}

func TestWatcherStopsWhenIdleAndRestarts(t *testing.T) {
	t.Parallel()
	var w watcher
	var l expiry
	w.register(&l)
	_, stop := w.start(context.Background(), &l, time.Hour)
	stop()
	deadline := time.Now().Add(10 * time.Second)
	for w.running.Load() {
		if time.Now().After(deadline) {
			t.Fatal("the watcher runs on with no calls")
		}
		time.Sleep(10 * time.Millisecond)
	}
	c, stop := w.start(context.Background(), &l, 20*time.Millisecond)
	defer stop()
	select {
	case <-c.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("a call after the watcher stopped is never ended")
	}
}
