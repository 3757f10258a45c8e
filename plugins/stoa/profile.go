//go:build stoaprofile

package main

import "github.com/connector-host/connector-host/internal/cpuprofile"

// A profiling build (go build -tags stoaprofile) writes a CPU profile of the
// plugin process to $STOA_CPUPROFILE ("{pid}" is replaced by the process
// id), covering the first $STOA_CPUPROFILE_SECONDS (default 60) seconds
// after start. The host passes the variables with connectors.stoa.env; stoa-bench passes them with -plugin-env.
func init() { cpuprofile.FromEnv("STOA") }
