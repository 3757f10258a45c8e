//go:build hostprofile

package main

import "github.com/connector-host/connector-host/internal/cpuprofile"

// A profiling build (go build -tags hostprofile) writes a CPU profile of the
// host process to $CONNECTOR_HOST_CPUPROFILE ("{pid}" is replaced by the
// process id), covering the first $CONNECTOR_HOST_CPUPROFILE_SECONDS
// (default 60) seconds after start. Released binaries never carry it.
func init() { cpuprofile.FromEnv("CONNECTOR_HOST") }
