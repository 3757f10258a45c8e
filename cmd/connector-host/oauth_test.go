package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/connector-host/connector-host/testkit/harness"
	"github.com/connector-host/connector-host/testkit/oauthserver"
)

const cliCanary = "CANARY-cli-client-secret-0b9e"

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func TestOAuthCommands(t *testing.T) {
	t.Parallel()
	srv, err := oauthserver.Start(oauthserver.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	if err := srv.AddClient(oauthserver.Client{ID: "cli", Secret: cliCanary}); err != nil {
		t.Fatal(err)
	}
	plugins := t.TempDir()
	bin := harness.Build(t, "./testkit/cmd/connector-reference-oauth", "connector-reference-oauth")
	for _, name := range []string{"connector-reference-oauth", "connector-reference-oauth-cc"} {
		if err := os.Symlink(bin, filepath.Join(plugins, name)); err != nil {
			t.Fatal(err)
		}
	}
	data := t.TempDir()
	cfgFile := filepath.Join(t.TempDir(), "host.yaml")
	cfg := fmt.Sprintf(`plugins_dir: %s
data_dir: %s
connectors:
  reference-oauth:
    settings: {port: %d}
  reference-oauth-cc:
    settings: {port: %d}
    env: {REFERENCE_OAUTH_APP_ID: reference-oauth-cc, REFERENCE_OAUTH_FLOW: CLIENT_CREDENTIALS}
`, plugins, data, srv.Port(), srv.Port())
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}

	// login: prints the URL, waits for the callback on its listener.
	listen := freeAddr(t)
	cmd := exec.Command(hostBinary(t), "oauth", "login", "reference-oauth", "--config", cfgFile,
		"--credential-id", "prod", "--client-id", "cli", "--listen", listen, "--timeout", "1m")
	cmd.Env = append(os.Environ(), DefaultClientSecretEnv+"="+cliCanary)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	lines := bufio.NewScanner(stdout)
	var authURL string
	var printed []string
	for lines.Scan() {
		line := lines.Text()
		printed = append(printed, line)
		if s := strings.TrimSpace(line); strings.HasPrefix(s, "http://") {
			authURL = s
		}
		if strings.HasPrefix(line, "Waiting") {
			break
		}
	}
	if authURL == "" {
		t.Fatalf("no authorization URL printed:\n%s\nstderr:\n%s", strings.Join(printed, "\n"), stderr.String())
	}
	noRedirect := &http.Client{Timeout: 10 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := noRedirect.Get(authURL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	callback := resp.Header.Get("Location")
	if !strings.HasPrefix(callback, "http://"+listen+"/v1/oauth/callback?") {
		t.Fatalf("redirected to %q", callback)
	}
	resp, err = noRedirect.Get(callback)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("callback: %d %s", resp.StatusCode, body)
	}
	rest, _ := io.ReadAll(stdout)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("login: %v\n%s\nstderr:\n%s", err, rest, stderr.String())
	}
	if !strings.Contains(string(rest), `Stored credential "prod" for reference-oauth`) {
		t.Fatalf("login output: %s", rest)
	}

	// client-credentials, secret from stdin.
	cc := exec.Command(hostBinary(t), "oauth", "client-credentials", "reference-oauth-cc", "--config", cfgFile,
		"--credential-id", "m2m", "--client-id", "cli", "--client-secret-env", "UNSET_SECRET_VAR_FOR_TEST", "--scopes", "profile:read")
	cc.Stdin = strings.NewReader(cliCanary + "\n")
	out, err := cc.CombinedOutput()
	if err != nil || !strings.Contains(string(out), `Stored credential "m2m" for reference-oauth-cc (CLIENT_CREDENTIALS, scopes "profile:read"`) {
		t.Fatalf("client-credentials: %v\n%s", err, out)
	}
	// The code flow connector has no client credentials capability.
	sout, _, code := run(t, "oauth", "client-credentials", "reference-oauth", "--config", cfgFile, "--credential-id", "x", "--client-id", "cli", "--client-secret-env", "HOME")
	if code != 1 || !strings.Contains(sout, "reference-oauth.not_implemented") {
		t.Fatalf("cc on code flow: %d %s", code, sout)
	}

	sout, _, code = run(t, "oauth", "list", "--config", cfgFile)
	if code != 0 || !strings.Contains(sout, "reference-oauth     prod") || !strings.Contains(sout, "reference-oauth-cc  m2m") || !strings.Contains(sout, "active") {
		t.Fatalf("list: %d\n%s", code, sout)
	}
	sout, _, code = run(t, "oauth", "revoke", "reference-oauth", "--credential-id", "prod", "--config", cfgFile)
	if code != 0 || !strings.Contains(sout, "Revoked") {
		t.Fatalf("revoke: %d %s", code, sout)
	}
	sout, _, _ = run(t, "oauth", "list", "reference-oauth", "--config", cfgFile)
	if !strings.Contains(sout, "revoked") || strings.Contains(sout, "m2m") {
		t.Fatalf("list after revoke:\n%s", sout)
	}
	_, errOut, code := run(t, "oauth", "revoke", "reference-oauth", "--credential-id", "nope", "--config", cfgFile)
	if code != 2 || !strings.Contains(errOut, `no credential "nope"`) {
		t.Fatalf("revoke missing: %d %s", code, errOut)
	}

	// No secret in the database files or the output.
	_ = filepath.Walk(data, func(p string, info os.FileInfo, err error) error {
		if err == nil && !info.IsDir() {
			if b, _ := os.ReadFile(p); bytes.Contains(b, []byte(cliCanary)) {
				t.Errorf("%s contains the client secret", p)
			}
		}
		return nil
	})
	if strings.Contains(string(rest)+stderr.String()+strings.Join(printed, ""), cliCanary) {
		t.Fatal("the client secret was printed")
	}
}
