// Package gctune sets a plugin process's garbage collector defaults, leaving
// alone what the operator set through GOGC or GOMEMLIMIT (for a plugin:
// connectors.<app_id>.env in the host's config).
package gctune

import (
	"os"
	"runtime/debug"
)

// Apply sets the GC percent (unless GOGC is set) and the soft memory limit
// in bytes (unless GOMEMLIMIT is set); a value ≤ 0 leaves that one alone.
//
// Plugins that keep little alive but allocate for every message they send
// (requests, protobuf and gRPC buffers, contexts) collect every few hundred
// messages with the default GOGC=100; a higher percent collects less often,
// and the memory limit bounds what that may cost when the live heap grows.
func Apply(percent int, memoryLimit int64) {
	if _, set := os.LookupEnv("GOGC"); !set && percent > 0 {
		debug.SetGCPercent(percent)
	}
	if _, set := os.LookupEnv("GOMEMLIMIT"); !set && memoryLimit > 0 {
		debug.SetMemoryLimit(memoryLimit)
	}
}
