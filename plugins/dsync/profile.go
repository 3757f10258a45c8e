//go:build dsyncprofile

package main

import "github.com/connector-host/connector-host/internal/cpuprofile"

// A profiling build (go build -tags dsyncprofile) writes a CPU profile of the
// plugin process to $DSYNC_CPUPROFILE ("{pid}" is replaced by the process
// id), covering the first $DSYNC_CPUPROFILE_SECONDS (default 60) seconds
// after start. The host passes the variables with connectors.dsync.env; dsync-hostbench passes them on from its own environment.
func init() { cpuprofile.FromEnv("DSYNC") }
