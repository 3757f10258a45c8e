//go:build astarteprofile

package main

import "github.com/connector-host/connector-host/internal/cpuprofile"

// A profiling build (go build -tags astarteprofile) writes a CPU profile of
// the plugin process to $ASTARTE_CPUPROFILE ("{pid}" is replaced by the
// process id), covering the first $ASTARTE_CPUPROFILE_SECONDS (default 60)
// seconds after start. The host passes the variables with
// connectors.astarte.env; astarte-hostbench and msghub-hostbench pass them
// on from their own environment.
func init() { cpuprofile.FromEnv("ASTARTE") }
