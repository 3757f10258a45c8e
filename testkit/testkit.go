// Package testkit holds connector-host's test kit: the conformance suite
// (testkit/conformance), the reference plugin (testkit/reference), the
// harness that runs a real host in tests (testkit/harness) and local
// emulators of the upstream services (testkit/emulators).
package testkit

import (
	"testing"

	"github.com/connector-host/connector-host/testkit/conformance"
)

// Conformance runs the conformance suite against a plugin binary, each
// check as a subtest of t (see conformance.Run and docs/conformance.md).
func Conformance(t *testing.T, binaryPath string, opts conformance.Options) *conformance.Report {
	t.Helper()
	return conformance.Run(t, binaryPath, opts)
}
