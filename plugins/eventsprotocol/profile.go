//go:build eventsprofile

package main

import "github.com/connector-host/connector-host/internal/cpuprofile"

// A profiling build (go build -tags eventsprofile) writes a CPU profile of the
// plugin process to $EVENTS_CPUPROFILE ("{pid}" is replaced by the process
// id), covering the first $EVENTS_CPUPROFILE_SECONDS (default 60) seconds
// after start. The host passes the variables with connectors.events-protocol.env.
func init() { cpuprofile.FromEnv("EVENTS") }
