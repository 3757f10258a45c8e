package main

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/connector-host/connector-host/testkit/harness"
)

// pluginDir returns a plugin directory holding the reference plugin.
func pluginDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.Symlink(harness.Reference(t), filepath.Join(dir, "connector-reference")); err != nil {
		t.Fatal(err)
	}
	return dir
}

func hostBinary(t *testing.T) string {
	return harness.Build(t, "./cmd/connector-host", "connector-host")
}

func run(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := exec.Command(hostBinary(t), args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	cmd.Dir = t.TempDir()
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		code = ee.ExitCode()
	case err != nil:
		t.Fatal(err)
	}
	return out.String(), errb.String(), code
}

func TestInvokeExitCodes(t *testing.T) {
	t.Parallel()
	dir := pluginDir(t)
	out, errOut, code := run(t, "invoke", "reference", "echo", "--plugins", dir, "--data", t.TempDir(), "--json", `{"request":{"message":"hi"}}`)
	if code != 0 || strings.TrimSpace(out) != `{"response":{"message":"hi"},"raw_data":null,"page":null}` {
		t.Fatalf("echo: code %d out %q err %q", code, out, errOut)
	}
	out, _, code = run(t, "invoke", "reference", "fail", "--plugins", dir, "--data", t.TempDir(), "--json", `{"request":{"code":"rate_limit"}}`)
	if code != 1 || !strings.Contains(out, `"error_code":"reference.rate_limit"`) {
		t.Fatalf("fail: code %d out %q", code, out)
	}
	envFile := filepath.Join(t.TempDir(), "req.json")
	_ = os.WriteFile(envFile, []byte(`{"request":{"n":3}}`), 0o600)
	result := filepath.Join(t.TempDir(), "out.ndjson")
	out, _, code = run(t, "invoke", "reference", "stream", "--plugins", dir, "--data", t.TempDir(), "--json-file", envFile, "--result-file", result)
	want := "{\"i\":0}\n{\"i\":1}\n{\"i\":2}\n{\"page\":null}\n"
	if code != 0 || out != want {
		t.Fatalf("stream: code %d out %q", code, out)
	}
	if b, _ := os.ReadFile(result); string(b) != want {
		t.Fatalf("result file: %q", b)
	}
	_, errOut, code = run(t, "invoke", "reference", "echo", "--plugins", dir)
	if code != 2 || !strings.Contains(errOut, "--json") {
		t.Fatalf("missing --json: code %d err %q", code, errOut)
	}
	_, errOut, code = run(t, "invoke", "nope", "echo", "--plugins", dir, "--json", `{"request":{}}`)
	if code != 2 || !strings.Contains(errOut, "nope") {
		t.Fatalf("unknown connector: code %d err %q", code, errOut)
	}
}

func TestListAndInfo(t *testing.T) {
	t.Parallel()
	dir := pluginDir(t)
	out, errOut, code := run(t, "list", "--plugins", dir, "--data", t.TempDir())
	if code != 0 || !strings.Contains(out, "reference") || !strings.Contains(out, "1.0.0") || !strings.Contains(out, "echo") {
		t.Fatalf("list: code %d out %q err %q", code, out, errOut)
	}
	out, errOut, code = run(t, "info", "reference", "--plugins", dir, "--data", t.TempDir())
	if code != 0 || !strings.Contains(out, `"capability_schema"`) || !strings.Contains(out, `"app_id": "reference"`) {
		t.Fatalf("info: code %d out %q err %q", code, out, errOut)
	}
	out, _, code = run(t, "--help")
	for _, sub := range []string{"serve", "list", "info", "invoke"} {
		if !strings.Contains(out, sub) {
			t.Errorf("--help lacks %s: %s", sub, out)
		}
	}
	if code != 0 {
		t.Fatalf("--help exit %d", code)
	}
}

// TestServeShutsDownOnSIGTERM runs `connector-host serve`, serves a call,
// sends SIGTERM and checks the host exits 0 with no plugin process left.
func TestServeShutsDownOnSIGTERM(t *testing.T) {
	t.Parallel()
	dir := pluginDir(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	cmd := exec.Command(hostBinary(t), "serve", "--plugins", dir, "--data", t.TempDir(), "--listen", addr)
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill() }()
	serving := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stderr)
		once := false
		for sc.Scan() {
			if !once && strings.Contains(sc.Text(), "serving") {
				once = true
				close(serving)
			}
		}
		_, _ = io.Copy(io.Discard, stderr)
	}()
	select {
	case <-serving:
	case <-time.After(30 * time.Second):
		t.Fatal("host did not start serving")
	}
	resp, err := http.Post("http://"+addr+"/v1/connectors/reference/noop", "application/json", strings.NewReader(`{"request":{}}`))
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("noop: %v %v", err, resp)
	}
	resp.Body.Close()
	children := childPIDs(t, cmd.Process.Pid)
	if len(children) == 0 {
		t.Fatal("found no plugin process under the host")
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("host exited with %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("host did not exit within 20s of SIGTERM")
	}
	for _, pid := range children {
		if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
			t.Errorf("plugin process %d still exists after the host exited", pid)
		}
	}
}

// childPIDs lists the direct children of pid (Linux /proc).
func childPIDs(t *testing.T, pid int) []int {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatalf("listing processes: %v", err)
	}
	var out []int
	for _, e := range entries {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...
		s := string(b)
		rest := s[strings.LastIndexByte(s, ')')+2:]
		fields := strings.Fields(rest)
		if len(fields) > 1 && fields[1] == strconv.Itoa(pid) {
			out = append(out, p)
		}
	}
	return out
}
