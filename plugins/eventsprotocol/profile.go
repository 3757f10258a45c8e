//go:build eventsprofile

package main

import (
	"os"
	"runtime/pprof"
	"strconv"
	"strings"
	"time"
)

// A profiling build (go build -tags eventsprofile) writes a CPU profile of
// the plugin process to $EVENTS_CPUPROFILE ("{pid}" in it is replaced by
// the process id), covering the first $EVENTS_CPUPROFILE_SECONDS (default
// 60) seconds after start. The host passes the variables with
// connectors.events-protocol.env. Errors are ignored: this is a measuring
// aid, never built into the released plugin.
func init() {
	path := os.Getenv("EVENTS_CPUPROFILE")
	if path == "" {
		return
	}
	secs, err := strconv.Atoi(os.Getenv("EVENTS_CPUPROFILE_SECONDS"))
	if err != nil || secs <= 0 {
		secs = 60
	}
	f, err := os.Create(strings.ReplaceAll(path, "{pid}", strconv.Itoa(os.Getpid()))) //nolint:gosec // G703: the operator's own path, in a measuring build
	if err != nil {
		return
	}
	if pprof.StartCPUProfile(f) != nil {
		_ = f.Close()
		return
	}
	time.AfterFunc(time.Duration(secs)*time.Second, func() {
		pprof.StopCPUProfile()
		_ = f.Close()
	})
}
