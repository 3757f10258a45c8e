package conformance_test

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/connector-host/connector-host/testkit/conformance"
	"github.com/connector-host/connector-host/testkit/harness"
)

// knownIssues are conformance failures of plugins under plugins/ that
// their authors have been told about: plugin directory → check → why. Such
// a FAIL is logged as a known issue instead of failing the test; once the
// check passes the entry is reported as stale. Keep this list empty.
var knownIssues = map[string]map[string]string{}

// TestPlugins runs the suite against every plugin main package under
// plugins/, with its fixtures (plugins/<dir>/testdata/conformance) when it
// ships some; a plugin without fixtures still gets the generic checks.
func TestPlugins(t *testing.T) {
	t.Parallel()
	root := harness.ModuleRoot()
	mains, err := filepath.Glob(filepath.Join(root, "plugins", "*", "main.go"))
	if err != nil {
		t.Fatal(err)
	}
	if len(mains) == 0 {
		t.Skip("no plugin main package under plugins/ yet")
	}
	for _, m := range mains {
		dir := filepath.Base(filepath.Dir(m))
		t.Run(dir, func(t *testing.T) {
			t.Parallel()
			built := harness.Build(t, "./plugins/"+dir, "plugin-"+dir)
			bin := filepath.Join(t.TempDir(), "connector-"+appIDOf(t, built))
			if err := os.Symlink(built, bin); err != nil {
				t.Fatal(err)
			}
			fixtures := filepath.Join(root, "plugins", dir, "testdata", "conformance")
			if _, err := os.Stat(fixtures); err != nil {
				fixtures = ""
			}
			rep, err := conformance.Check(context.Background(), bin, conformance.Options{Fixtures: fixtures})
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range rep.Results {
				known, isKnown := knownIssues[dir][r.Check]
				switch {
				case r.Status == conformance.Fail && isKnown:
					t.Logf("KNOWN ISSUE %s: FAIL: %s (%s)", r.Check, r.Reason, known)
				case r.Status == conformance.Fail:
					t.Errorf("%s: FAIL: %s\n  %s", r.Check, r.Reason, strings.Join(r.Details, "\n  "))
				case isKnown:
					t.Logf("%s: %s; the known issue %q is fixed: remove it from knownIssues", r.Check, r.Status, known)
				default:
					t.Logf("%s: %s: %s", r.Check, r.Status, r.Reason)
				}
			}
			if t.Failed() {
				t.Logf("plugin stderr (last lines):\n%s", rep.PluginLog)
			}
		})
	}
}

// appIDOf asks an SDK plugin for its app_id (plugin binaries answer
// `info` when run by hand).
func appIDOf(t *testing.T, bin string) string {
	t.Helper()
	cmd := exec.Command(bin, "info")
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}
	cmd.Dir = t.TempDir()
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s info: %v", bin, err)
	}
	var info struct {
		AppID string `json:"app_id"`
	}
	if err := json.Unmarshal(out, &info); err != nil || info.AppID == "" {
		t.Fatalf("%s info: no app_id in %s", bin, out)
	}
	return info.AppID
}
