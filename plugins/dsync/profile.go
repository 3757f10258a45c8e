//go:build dsyncprofile

package main

import (
	"os"
	"runtime/pprof"
	"strconv"
	"strings"
	"time"
)

// A profiling build (go build -tags dsyncprofile) writes a CPU profile of
// the plugin process to $DSYNC_CPUPROFILE ("{pid}" in it is replaced by
// the process id), covering the first $DSYNC_CPUPROFILE_SECONDS (default
// 60) seconds after start. The host passes the variables with
// connectors.dsync.env; dsync-hostbench passes them on from its own
// environment. Errors are ignored: this is a measuring aid, never built
// into the released plugin.
func init() {
	path := os.Getenv("DSYNC_CPUPROFILE")
	if path == "" {
		return
	}
	secs, err := strconv.Atoi(os.Getenv("DSYNC_CPUPROFILE_SECONDS"))
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
