package conformance_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
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

// TestBinaryNames: a binary not named connector-<app_id> is launched to
// learn its app_id (and told so in describe); one named for another app_id
// is refused as the host refuses it.
func TestBinaryNames(t *testing.T) {
	t.Parallel()
	ref := harness.Reference(t)
	odd := filepath.Join(t.TempDir(), "reference-plugin")
	if err := os.Symlink(ref, odd); err != nil {
		t.Fatal(err)
	}
	rep, err := conformance.Check(context.Background(), odd, conformance.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK() || rep.AppID != "reference" {
		t.Fatalf("report: %+v", rep.Results)
	}
	if d := rep.Result(conformance.CheckDescribe).Details; len(d) != 1 || !strings.Contains(d[0], "not connector-reference") {
		t.Fatalf("describe details: %v", d)
	}

	rep, err = conformance.Check(context.Background(), ref, conformance.Options{Env: []string{"REFERENCE_APP_ID=other"}})
	if err != nil {
		t.Fatal(err)
	}
	h := rep.Result(conformance.CheckHandshake)
	if h.Status != conformance.Fail || !strings.Contains(h.Reason, `describes itself as app_id "other"`) {
		t.Fatalf("handshake: %+v", h)
	}
	for _, r := range rep.Results[1:] {
		if r.Status == conformance.Fail {
			t.Errorf("%s: FAIL after a failed handshake: %s", r.Check, r.Reason)
		}
	}
}
