package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/connector-host/connector-host/testkit/conformance"
	"github.com/connector-host/connector-host/testkit/harness"
)

// listFiles returns every file under dir, relative, sorted.
func listFiles(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		out = append(out, filepath.ToSlash(rel))
		return nil
	})
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	return out
}

func TestGenerateRefuses(t *testing.T) {
	t.Parallel()
	sdk := harness.ModuleRoot()
	nonEmpty := t.TempDir()
	if err := os.WriteFile(filepath.Join(nonEmpty, "keep.txt"), []byte("mine"), 0o600); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "a-file")
	if err := os.WriteFile(file, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	fresh := func() string { return filepath.Join(t.TempDir(), "new") }
	cases := []struct {
		name string
		o    Options
		want string
	}{
		{"upper case", Options{AppID: "Acme", Dir: fresh()}, `NAME "Acme" is not a valid app_id`},
		{"underscore", Options{AppID: "acme_crm", Dir: fresh()}, "is not a valid app_id"},
		{"leading digit", Options{AppID: "1acme", Dir: fresh()}, "is not a valid app_id"},
		{"trailing dash", Options{AppID: "acme-", Dir: fresh()}, "is not a valid app_id"},
		{"empty name", Options{AppID: "", Dir: fresh()}, "is not a valid app_id"},
		{"path in name", Options{AppID: "../acme", Dir: fresh()}, "is not a valid app_id"},
		{"non-empty dir", Options{AppID: "acme", Dir: nonEmpty, SDKDir: sdk}, "exists and is not empty; nothing was written (use --force"},
		{"dir is a file", Options{AppID: "acme", Dir: file, SDKDir: sdk, Force: true}, "is not a directory"},
		{"oauth flow", Options{AppID: "acme", Dir: fresh(), OAuth: "implicit"}, `--oauth "implicit"`},
		{"module path", Options{AppID: "acme", Dir: fresh(), SDKDir: sdk, Module: "Not A Module"}, `--module "Not A Module"`},
		{"sdk dir", Options{AppID: "acme", Dir: fresh(), SDKDir: t.TempDir()}, "--sdk-dir"},
		{"the checkout itself", Options{AppID: "acme", Dir: sdk, SDKDir: sdk, Force: true}, "is the connector-host checkout itself"},
		{"module inside the checkout", Options{AppID: "acme", Dir: filepath.Join(sdk, "plugins", "acme-never-written"), SDKDir: sdk, Module: "example.com/x"}, "--module is for a standalone plugin"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			before := listFiles(t, c.o.Dir)
			_, err := Generate(c.o)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want one containing %q", err, c.want)
			}
			if after := listFiles(t, c.o.Dir); strings.Join(after, ",") != strings.Join(before, ",") {
				t.Fatalf("files changed on a refusal: %v → %v", before, after)
			}
		})
	}
	if _, err := os.Stat(filepath.Join(sdk, "plugins", "acme-never-written")); err == nil {
		t.Fatal("a refused scaffold created a directory in the checkout")
	}
}

func TestGenerateForce(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for name, body := range map[string]string{"keep.txt": "mine", "README.md": "old"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	res, err := Generate(Options{AppID: "acme", Dir: dir, SDKDir: harness.ModuleRoot(), Force: true})
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "keep.txt")); string(b) != "mine" {
		t.Fatal("--force touched a file the scaffold does not write")
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "README.md")); !strings.Contains(string(b), "connector-acme") {
		t.Fatal("--force did not write README.md")
	}
	if !res.Standalone || res.ImportPath != "example.com/connector-acme" {
		t.Fatalf("result %+v", res)
	}
}

// TestGenerateInRepo scaffolds into a (fake) connector-host checkout: the
// plugin is a package of that module, with no go.mod of its own.
func TestGenerateInRepo(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	if err := os.WriteFile(filepath.Join(root, "go.mod"), []byte("module "+sdkModule+"\n\ngo 1.26\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	res, err := Generate(Options{AppID: "acme-crm", Dir: filepath.Join(root, "plugins", "acmecrm"), SDKDir: root, OAuth: oauthCode})
	if err != nil {
		t.Fatal(err)
	}
	if res.Standalone || res.ImportPath != sdkModule+"/plugins/acmecrm" {
		t.Fatalf("result %+v", res)
	}
	files := strings.Join(res.Files, ",")
	if strings.Contains(files, "go.mod") || strings.Contains(files, "Makefile") {
		t.Fatalf("in-repo plugin got module files: %s", files)
	}
	main, _ := os.ReadFile(filepath.Join(res.Dir, "main.go"))
	if !bytes.Contains(main, []byte(`"`+sdkModule+`/plugins/acmecrm/connector"`)) {
		t.Fatalf("main.go:\n%s", main)
	}
	if len(res.Warnings) == 0 || !strings.Contains(res.Warnings[0], `"acmecrm:acme-crm"`) {
		t.Fatalf("no Makefile note: %v", res.Warnings)
	}
}

// goEnv is the environment of the go tool building a generated plugin:
// only the local module cache, no network.
func goEnv() []string {
	return append(os.Environ(), "GOFLAGS=-mod=mod", "GOPROXY=off", "GOWORK=off", "GOTOOLCHAIN=local", "CGO_ENABLED=0")
}

// goTool is the go command: go test puts its own GOROOT/bin first in PATH.
func goTool() string { return "go" }

func goRun(t *testing.T, dir string, args ...string) {
	t.Helper()
	cmd := exec.Command(goTool(), args...)
	cmd.Dir = dir
	cmd.Env = goEnv()
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// TestGeneratedPluginIsGreen scaffolds a plugin in each credential mode
// into a temporary directory, builds it against this checkout's sdk
// offline, runs its unit tests and the conformance suite on it: no edits,
// no FAIL.
func TestGeneratedPluginIsGreen(t *testing.T) {
	t.Parallel()
	for _, mode := range []string{oauthNone, oauthCode, oauthClientCredentials} {
		name := mode
		if name == "" {
			name = "token"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			dir := filepath.Join(t.TempDir(), "connector-acme")
			t0 := time.Now()
			res, err := Generate(Options{AppID: "acme", Dir: dir, OAuth: mode, SDKDir: harness.ModuleRoot()})
			if err != nil {
				t.Fatal(err)
			}
			if len(res.Warnings) > 0 {
				t.Fatalf("warnings: %v", res.Warnings)
			}
			generated := time.Since(t0)
			goRun(t, dir, "build", "-o", "bin/connector-acme", ".")
			built := time.Since(t0)
			goRun(t, dir, "vet", "./...")
			goRun(t, dir, "test", "-count=1", "./...")
			tested := time.Since(t0)
			rep, err := conformance.Check(context.Background(), filepath.Join(dir, "bin", "connector-acme"), conformance.Options{Fixtures: filepath.Join(dir, "testdata", "conformance")})
			if err != nil {
				t.Fatal(err)
			}
			green := time.Since(t0)
			for _, r := range rep.Results {
				switch {
				case r.Status == conformance.Fail:
					t.Errorf("%s: FAIL: %s %v", r.Check, r.Reason, r.Details)
				case r.Status == conformance.Skip && r.Check != conformance.CheckStreaming && r.Check != conformance.CheckCancellation:
					t.Errorf("%s: SKIP: %s", r.Check, r.Reason)
				}
			}
			if rep.Result(conformance.CheckFixtures).Status != conformance.Pass || rep.Cases != 5 {
				t.Errorf("fixtures: %+v (%d cases)", rep.Result(conformance.CheckFixtures), rep.Cases)
			}
			t.Logf("scaffold %v, +build %v, +vet and unit tests %v, +conformance (green) %v; conformance alone %v",
				generated.Round(time.Millisecond), built.Round(time.Millisecond), tested.Round(time.Millisecond), green.Round(time.Millisecond), rep.Duration.Round(time.Millisecond))
		})
	}
}

// TestCommand runs the scaffold binary: usage errors exit 2 with a reason,
// success prints what was written and the next steps.
func TestCommand(t *testing.T) {
	t.Parallel()
	bin := harness.Build(t, "./cmd/scaffold", "scaffold")
	run := func(args ...string) (string, string, int) {
		cmd := exec.Command(bin, args...)
		cmd.Dir = harness.ModuleRoot()
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		err := cmd.Run()
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return out.String(), errb.String(), ee.ExitCode()
		}
		if err != nil {
			t.Fatal(err)
		}
		return out.String(), errb.String(), 0
	}
	dir := filepath.Join(t.TempDir(), "connector-acme")
	out, errOut, code := run("new", "acme", dir, "--oauth", "client-credentials")
	if code != 0 || !strings.Contains(out, "wrote connector-acme") || !strings.Contains(out, "connector-host conformance bin/connector-acme") {
		t.Fatalf("exit %d\n%s\n%s", code, out, errOut)
	}
	gomod, err := os.ReadFile(filepath.Join(dir, "go.mod"))
	if err != nil || !strings.Contains(string(gomod), "replace "+sdkModule+" => "+harness.ModuleRoot()) {
		t.Fatalf("go.mod (checkout found from the working directory):\n%s", gomod)
	}
	for _, args := range [][]string{
		{"new", "Acme", filepath.Join(t.TempDir(), "x")},
		{"new", "acme", dir},
		{"new", "acme"},
		{"new", "acme", filepath.Join(t.TempDir(), "x"), "--oauth", "password"},
		{"old", "acme", "x"},
	} {
		if _, errOut, code := run(args...); code != 2 || !strings.HasPrefix(errOut, "scaffold: ") {
			t.Errorf("%v: exit %d, stderr %q; want 2 with a reason", args, code, errOut)
		}
	}
}
