package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/connector-host/connector-host/testkit/harness"
)

func TestConformanceCommand(t *testing.T) {
	t.Parallel()
	fixtures := filepath.Join(harness.ModuleRoot(), "testkit", "reference", "testdata", "conformance")
	report := filepath.Join(t.TempDir(), "report.json")
	out, errOut, code := run(t, "conformance", harness.Reference(t), "--fixtures", fixtures, "--json-report", report)
	if code != 0 {
		t.Fatalf("reference: exit %d\n%s\n%s", code, out, errOut)
	}
	for _, check := range []string{"handshake", "describe", "unknown_capability", "bad_request", "error_envelope", "fixtures", "streaming", "cancellation", "concurrency", "logs", "secrets", "shutdown", "restart"} {
		if !strings.Contains(out, "PASS  "+check+" ") {
			t.Errorf("no PASS line for %s:\n%s", check, out)
		}
	}
	b, err := os.ReadFile(report)
	if err != nil {
		t.Fatal(err)
	}
	var rep struct {
		OK      bool   `json:"ok"`
		AppID   string `json:"app_id"`
		Summary struct{ Pass, Fail, Skip int }
		Checks  []struct{ Name, Status, Reason string }
	}
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatalf("report is not JSON: %v\n%s", err, b)
	}
	if !rep.OK || rep.AppID != "reference" || rep.Summary.Pass != 13 || len(rep.Checks) != 13 {
		t.Fatalf("report: %s", b)
	}
}

func TestConformanceCommandFails(t *testing.T) {
	t.Parallel()
	broken := harness.Build(t, "./testkit/conformance/brokenplugin", "connector-broken")
	out, _, code := run(t, "conformance", broken, "--env", "CONFORMANCE_BREAK=logs")
	if code != 1 || !strings.Contains(out, "FAIL  logs") || !strings.Contains(out, "1 FAIL") {
		t.Fatalf("broken plugin: exit %d\n%s", code, out)
	}
	for _, args := range [][]string{
		{"conformance", filepath.Join(t.TempDir(), "missing")},
		{"conformance", broken, "--env", "NOEQUALS"},
		{"conformance", broken, "--fixtures", filepath.Join(t.TempDir(), "none")},
		{"conformance"},
	} {
		if _, errOut, code := run(t, args...); code != 2 || errOut == "" {
			t.Errorf("%v: exit %d, stderr %q; want a usage error (2)", args, code, errOut)
		}
	}
}
