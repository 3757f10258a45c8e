package gctune

import (
	"context"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"testing"
	"time"
)

func TestHeadroomPercent(t *testing.T) {
	t.Parallel()
	const mib = 1 << 20
	cases := []struct {
		live, headroom int64
		max, want      int
	}{
		{0, 32 * mib, 400, 400},        // before the first collection
		{4 * mib, 32 * mib, 400, 400},  // capped
		{16 * mib, 32 * mib, 400, 200}, // 32 MiB over 16
		{32 * mib, 32 * mib, 400, 100},
		{256 * mib, 32 * mib, 400, 100}, // never below GOGC=100
		{4 * mib, 32 * mib, 50, 100},    // a max below 100 is not honoured downwards
	}
	for _, c := range cases {
		if got := HeadroomPercent(c.live, c.headroom, c.max); got != c.want {
			t.Errorf("HeadroomPercent(%d, %d, %d) = %d, want %d", c.live, c.headroom, c.max, got, c.want)
		}
	}
}

// Not parallel: the GC percent is process-wide.
func TestHeadroomSetsAndYieldsToGOGC(t *testing.T) {
	prev := debug.SetGCPercent(100)
	t.Cleanup(func() { debug.SetGCPercent(prev) })
	runtime.GC() // a live heap to read
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { Headroom(ctx, 1<<40, 300, time.Millisecond); close(done) }()
	deadline := time.Now().Add(5 * time.Second)
	for gogc() != 300 {
		if time.Now().After(deadline) {
			t.Fatal("the GC percent never became 300")
		}
		time.Sleep(time.Millisecond)
	}
	cancel()
	<-done

	t.Setenv("GOGC", "100")
	debug.SetGCPercent(100)
	Headroom(context.Background(), 1<<40, 300, time.Millisecond) // returns at once
	if got := gogc(); got != 100 {
		t.Fatalf("with GOGC set the percent became %d", got)
	}
}

func gogc() uint64 {
	s := []metrics.Sample{{Name: "/gc/gogc:percent"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}
