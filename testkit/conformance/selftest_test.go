package conformance_test

import (
	"context"
	"path/filepath"
	"sync"
	"testing"

	"github.com/connector-host/connector-host/testkit/conformance"
	"github.com/connector-host/connector-host/testkit/harness"
)

// defects are the self-test plugin's defects (CONFORMANCE_BREAK, see
// testkit/conformance/brokenplugin) and the one check each must fail.
var defects = []struct{ defect, check string }{
	{"handshake", conformance.CheckHandshake},
	{"describe_version", conformance.CheckDescribe},
	{"describe_secret", conformance.CheckDescribe},
	{"describe_schema", conformance.CheckDescribe},
	{"unknown_capability", conformance.CheckUnknownCapability},
	{"bad_request", conformance.CheckBadRequest},
	{"error_envelope", conformance.CheckErrorEnvelope},
	{"fixtures", conformance.CheckFixtures},
	{"streaming", conformance.CheckStreaming},
	{"cancellation", conformance.CheckCancellation},
	{"concurrency", conformance.CheckConcurrency},
	{"logs", conformance.CheckLogs},
	{"logs_timestamp", conformance.CheckLogs},
	{"secrets", conformance.CheckSecrets},
	{"secrets_request", conformance.CheckSecrets},
	{"secrets_response", conformance.CheckSecrets},
	{"shutdown", conformance.CheckShutdown},
	{"restart", conformance.CheckRestart},
}

// TestSelfTest proves that no check is a no-op: the self-test plugin
// passes every check, and each of its defects makes exactly the check it
// targets fail while every other check passes (or, when the plugin cannot
// start, is skipped).
func TestSelfTest(t *testing.T) {
	t.Parallel()
	bin := harness.Build(t, "./testkit/conformance/brokenplugin", "connector-broken")
	fixtures := filepath.Join(harness.ModuleRoot(), "testkit", "conformance", "testdata", "brokenplugin")

	covered := map[string]bool{}
	for _, d := range defects {
		covered[d.check] = true
	}
	for _, c := range conformance.Checks() {
		if !covered[c] {
			t.Errorf("no defect of the self-test plugin targets the %s check", c)
		}
	}

	type run struct {
		rep *conformance.Report
		err error
	}
	variants := append([]struct{ defect, check string }{{"", ""}}, defects...)
	runs := make([]run, len(variants))
	sem := make(chan struct{}, 6)
	var wg sync.WaitGroup
	for i, v := range variants {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			opts := conformance.Options{Fixtures: fixtures, Env: []string{"CONFORMANCE_BREAK=" + v.defect}}
			runs[i].rep, runs[i].err = conformance.Check(context.Background(), bin, opts)
		}()
	}
	wg.Wait()

	for i, v := range variants {
		name := v.defect
		if name == "" {
			name = "healthy"
		}
		t.Run(name, func(t *testing.T) {
			rep, err := runs[i].rep, runs[i].err
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range rep.Results {
				switch {
				case r.Check == v.check && r.Status != conformance.Fail:
					t.Errorf("%s: %s (%s), want FAIL", r.Check, r.Status, r.Reason)
				case r.Check == v.check:
					t.Logf("%s: FAIL as intended: %s", r.Check, r.Reason)
				case r.Status == conformance.Fail:
					t.Errorf("%s: FAIL, but the defect targets %q: %s %v", r.Check, v.check, r.Reason, r.Details)
				case r.Status == conformance.Skip && v.check != conformance.CheckHandshake:
					t.Errorf("%s: SKIP (%s), want PASS", r.Check, r.Reason)
				}
			}
			if t.Failed() {
				t.Logf("plugin stderr:\n%s", rep.PluginLog)
			}
		})
	}
}
