package conformance_test

import (
	"path/filepath"
	"testing"

	"github.com/connector-host/connector-host/testkit"
	"github.com/connector-host/connector-host/testkit/conformance"
	"github.com/connector-host/connector-host/testkit/harness"
)

// TestReference runs the suite against the reference plugin with its
// fixtures, through testkit.Conformance: every check must pass (none may
// be skipped).
func TestReference(t *testing.T) {
	t.Parallel()
	bin := harness.Reference(t)
	rep := testkit.Conformance(t, bin, conformance.Options{Fixtures: filepath.Join(harness.ModuleRoot(), "testkit", "reference", "testdata", "conformance")})
	for _, r := range rep.Results {
		if r.Status != conformance.Pass {
			t.Errorf("%s: %s, want PASS: %s", r.Check, r.Status, r.Reason)
		}
	}
}
