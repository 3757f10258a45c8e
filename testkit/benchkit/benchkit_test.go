package benchkit_test

import (
	"io"
	"net/http"
	"os"
	"strings"
	"testing"

	"github.com/connector-host/connector-host/testkit/benchkit"
	"github.com/connector-host/connector-host/testkit/harness"
)

func TestStartServe(t *testing.T) {
	t.Parallel()
	host := harness.Build(t, "./cmd/connector-host", "connector-host")
	s, err := benchkit.StartServe(benchkit.ServeOptions{
		Host:       host,
		Plugins:    map[string]string{"reference": harness.Reference(t)},
		Connectors: map[string]any{"reference": map[string]any{"timeout": "30s"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop) // also when the test fails early; Stop is idempotent
	resp, err := http.Post(s.URL+"/v1/connectors/reference/echo", "application/json", strings.NewReader(`{"request":{"message":"hi"}}`))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), `"hi"`) {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	pid, err := s.PluginPID("reference")
	if err != nil {
		t.Fatal(err)
	}
	if benchkit.RSS(pid) <= 0 || benchkit.RSS(s.PID()) <= 0 {
		t.Fatalf("RSS of plugin %d / host %d not readable", pid, s.PID())
	}
	if benchkit.CPU(pid) <= 0 && benchkit.CPU(s.PID()) <= 0 {
		t.Fatal("no CPU time read for the host or its plugin")
	}
	if benchkit.SelfCPU() <= 0 || benchkit.CPU(-1) != 0 {
		t.Fatal("SelfCPU or CPU of a missing process")
	}
	if _, err := s.PluginPID("nope"); err == nil {
		t.Fatal("found a plugin that is not loaded")
	}
	s.Stop()
	if _, err := os.Stat(s.Dir); !os.IsNotExist(err) {
		t.Fatalf("Stop left %s: %v", s.Dir, err)
	}
	if !strings.Contains(benchkit.Machine(), "GOMAXPROCS=") {
		t.Fatal(benchkit.Machine())
	}
}

func TestStartServeMissingBinary(t *testing.T) {
	t.Parallel()
	_, err := benchkit.StartServe(benchkit.ServeOptions{Host: "/nonexistent/connector-host"})
	if err == nil || !strings.Contains(err.Error(), "make build") {
		t.Fatalf("err %v", err)
	}
}

func TestEnvFlag(t *testing.T) {
	t.Parallel()
	e := benchkit.EnvFlag{}
	for _, s := range []string{"GOGC=200", "A=b=c", "EMPTY="} {
		if err := e.Set(s); err != nil {
			t.Fatalf("%s: %v", s, err)
		}
	}
	if e["GOGC"] != "200" || e["A"] != "b=c" || e["EMPTY"] != "" || e.String() != "A=b=c,EMPTY=,GOGC=200" {
		t.Fatalf("%v %q", map[string]string(e), e.String())
	}
	for _, bad := range []string{"novalue", "=v"} {
		if err := e.Set(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
