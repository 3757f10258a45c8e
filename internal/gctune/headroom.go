package gctune

import (
	"context"
	"math"
	"os"
	"runtime/debug"
	"runtime/metrics"
	"time"
)

const liveHeapMetric = "/gc/heap/live:bytes"

// HeadroomPercent is the GC percent that lets the heap grow by at least
// headroom bytes over the live heap before the next collection, within
// [100, maxPercent]: a process that keeps little alive collects far less
// often than with GOGC=100, and one with a large live heap is collected as
// GOGC=100 would, so the extra memory stays about headroom.
func HeadroomPercent(live, headroom int64, maxPercent int) int {
	if live <= 0 {
		return maxPercent
	}
	return max(int(min(headroom*100/live, int64(maxPercent))), 100)
}

// Headroom keeps the GC percent at HeadroomPercent of the live heap, read
// every interval, until ctx ends; it does nothing when the operator set
// GOGC. It is for processes whose live heap is small next to what they
// allocate per request, such as the host's request path.
func Headroom(ctx context.Context, headroom int64, maxPercent int, interval time.Duration) {
	if _, set := os.LookupEnv("GOGC"); set {
		return
	}
	sample := []metrics.Sample{{Name: liveHeapMetric}}
	current := -1
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		metrics.Read(sample)
		var live int64
		if sample[0].Value.Kind() == metrics.KindUint64 {
			live = int64(min(sample[0].Value.Uint64(), math.MaxInt64))
		}
		if p := HeadroomPercent(live, headroom, maxPercent); p != current {
			debug.SetGCPercent(p)
			current = p
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}
