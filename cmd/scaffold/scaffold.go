package main

import (
	"bytes"
	"embed"
	"errors"
	"fmt"
	"go/format"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"text/template"

	"golang.org/x/mod/modfile"
	"golang.org/x/mod/module"
)

//go:embed templates
var templates embed.FS

// sdkModule is the module path of connector-host, whose sdk package a
// plugin imports.
const sdkModule = "github.com/connector-host/connector-host"

// sdkPlaceholderVersion is the version required of connector-host; the
// replace directive points it at a local checkout.
const sdkPlaceholderVersion = "v0.0.0-00010101000000-000000000000"

// appIDPattern is the pattern of an app_id (the same as the SDK's).
var appIDPattern = regexp.MustCompile(`^[a-z][a-z0-9]*(-[a-z0-9]+)*$`)

// OAuth modes of --oauth.
const (
	oauthNone              = ""
	oauthCode              = "code"
	oauthClientCredentials = "client-credentials"
)

// Options are what `scaffold new` was asked for.
type Options struct {
	// AppID is the new connector's app_id (NAME).
	AppID string
	// Dir is where to write it (DIR).
	Dir string
	// OAuth is "", "code" or "client-credentials".
	OAuth string
	// Module is the module path of a standalone plugin (default
	// example.com/connector-<app_id>).
	Module string
	// SDKDir is a connector-host checkout; empty means: look for one
	// around the working directory and the scaffold binary.
	SDKDir string
	// Force allows writing into a non-empty Dir (files of the same name
	// are overwritten; others are left alone).
	Force bool
}

// Result is what was written.
type Result struct {
	// Dir is the absolute directory written to.
	Dir string
	// Files are the paths written, relative to Dir.
	Files []string
	// Standalone is true for a module of its own (with go.mod), false for
	// a package inside the connector-host module.
	Standalone bool
	// ImportPath is the import path of the plugin's main package.
	ImportPath string
	// SDKDir is the connector-host checkout used ("" when none was found).
	SDKDir string
	// Warnings are things the user must fix by hand.
	Warnings []string
}

// data is what the templates see.
type data struct {
	AppID       string
	Title       string
	Binary      string
	Domain      string
	ImportPath  string
	Standalone  bool
	RelDir      string // in-repo: the directory relative to the checkout
	OAuth       string
	FixtureAuth string
}

// output is one file to write.
type output struct {
	tmpl           string // path under templates/
	out            string // path under Dir
	standaloneOnly bool
}

var outputs = []output{
	{"templates/main.go.tmpl", "main.go", false},
	{"templates/connector.go.tmpl", "connector/connector.go", false},
	{"templates/capabilities.go.tmpl", "connector/capabilities.go", false},
	{"templates/client.go.tmpl", "connector/client.go", false},
	{"templates/connector_test.go.tmpl", "connector/connector_test.go", false},
	{"templates/README.md.tmpl", "README.md", false},
	{"templates/Makefile.tmpl", "Makefile", true},
	{"templates/gitignore.tmpl", ".gitignore", true},
}

// Generate writes a new plugin. Everything is rendered and checked before
// the first file is written, so a refusal or an error leaves Dir as it was.
func Generate(o Options) (*Result, error) {
	if !appIDPattern.MatchString(o.AppID) {
		return nil, fmt.Errorf("NAME %q is not a valid app_id: use lowercase letters and digits, words joined by '-', starting with a letter (e.g. acme or acme-crm)", o.AppID)
	}
	switch o.OAuth {
	case oauthNone, oauthCode, oauthClientCredentials:
	default:
		return nil, fmt.Errorf("--oauth %q: want %q or %q", o.OAuth, oauthCode, oauthClientCredentials)
	}
	if o.Dir == "" {
		return nil, errors.New("DIR is empty")
	}
	dir, err := filepath.Abs(o.Dir)
	if err != nil {
		return nil, err
	}
	if err := checkDir(dir, o.Force); err != nil {
		return nil, err
	}
	res := &Result{Dir: dir}
	res.SDKDir, err = findSDK(o.SDKDir)
	if err != nil {
		return nil, err
	}
	d := data{
		AppID:  o.AppID,
		Title:  title(o.AppID),
		Binary: "connector-" + o.AppID,
		Domain: o.AppID + ".example.com",
		OAuth:  o.OAuth,
	}
	switch o.OAuth {
	case oauthCode:
		d.FixtureAuth = `{"oauth": {"access_token": "access-token-example"}}`
	case oauthClientCredentials:
		d.FixtureAuth = `{"oauth_client_credentials": {"client_id": "client-example", "client_secret": "client-secret-example", "access_token": "access-token-example"}}`
	default:
		d.FixtureAuth = `{"token": {"token": "api-token-example"}}`
	}
	if res.SDKDir != "" && filepath.Clean(res.SDKDir) == dir {
		return nil, fmt.Errorf("DIR %s is the connector-host checkout itself; name a new directory (e.g. plugins/%s)", dir, strings.ReplaceAll(o.AppID, "-", ""))
	}
	if rel, inside := within(res.SDKDir, dir); inside {
		if o.Module != "" {
			return nil, fmt.Errorf("--module: %s is inside the connector-host module, so the plugin's import path is %s/%s; --module is for a standalone plugin", dir, sdkModule, filepath.ToSlash(rel))
		}
		d.RelDir = filepath.ToSlash(rel)
		d.ImportPath = sdkModule + "/" + d.RelDir
	} else {
		d.Standalone = true
		d.ImportPath = o.Module
		if d.ImportPath == "" {
			d.ImportPath = "example.com/" + d.Binary
		}
		if err := module.CheckPath(d.ImportPath); err != nil {
			return nil, fmt.Errorf("--module %q: %w", d.ImportPath, err)
		}
	}
	res.Standalone, res.ImportPath = d.Standalone, d.ImportPath

	files, err := render(d)
	if err != nil {
		return nil, err
	}
	if d.Standalone {
		gomod, gosum, warn, err := moduleFiles(d.ImportPath, res.SDKDir)
		if err != nil {
			return nil, err
		}
		files["go.mod"] = gomod
		if gosum != nil {
			files["go.sum"] = gosum
		}
		res.Warnings = append(res.Warnings, warn...)
	} else {
		res.Warnings = append(res.Warnings, fmt.Sprintf("add %q to PLUGINS in the Makefile of %s so that make build builds it", filepath.Base(dir)+":"+o.AppID, res.SDKDir))
	}
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		path := filepath.Join(dir, filepath.FromSlash(n))
		//nolint:gosec // a source tree is world-readable, like any checkout
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return res, err
		}
		//nolint:gosec // source files are world-readable, like any checkout
		if err := os.WriteFile(path, files[n], 0o644); err != nil {
			return res, err
		}
		res.Files = append(res.Files, n)
	}
	return res, nil
}

// checkDir refuses a DIR that is a file, or a directory with anything in it
// unless force is set.
func checkDir(dir string, force bool) error {
	info, err := os.Stat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil
	case err != nil:
		return fmt.Errorf("DIR %s: %w", dir, err)
	case !info.IsDir():
		return fmt.Errorf("DIR %s exists and is not a directory; nothing was written", dir)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("DIR %s: %w", dir, err)
	}
	if len(entries) > 0 && !force {
		return fmt.Errorf("DIR %s exists and is not empty; nothing was written (use --force to write into it: files of the same name are overwritten)", dir)
	}
	return nil
}

// render executes every template; Go files are gofmt-ed (which also proves
// they parse).
func render(d data) (map[string][]byte, error) {
	files := map[string][]byte{}
	run := func(tmplPath, out string) error {
		src, err := templates.ReadFile(tmplPath)
		if err != nil {
			return err
		}
		t, err := template.New(filepath.Base(tmplPath)).Option("missingkey=error").Parse(string(src))
		if err != nil {
			return fmt.Errorf("template %s: %w", tmplPath, err)
		}
		var b bytes.Buffer
		if err := t.Execute(&b, d); err != nil {
			return fmt.Errorf("template %s: %w", tmplPath, err)
		}
		body := b.Bytes()
		if strings.HasSuffix(out, ".go") {
			if body, err = format.Source(body); err != nil {
				return fmt.Errorf("generated %s does not parse: %w", out, err)
			}
		}
		files[out] = body
		return nil
	}
	for _, o := range outputs {
		if o.standaloneOnly && !d.Standalone {
			continue
		}
		if err := run(o.tmpl, o.out); err != nil {
			return nil, err
		}
	}
	fixtures, err := fs.Glob(templates, "templates/fixtures/*.json.tmpl")
	if err != nil {
		return nil, err
	}
	for _, f := range fixtures {
		out := "testdata/conformance/" + strings.TrimSuffix(filepath.Base(f), ".tmpl")
		if err := run(f, out); err != nil {
			return nil, err
		}
	}
	return files, nil
}

// moduleFiles writes the go.mod of a standalone plugin: it requires
// connector-host and, when a checkout is known, replaces it by that
// checkout and requires what the checkout requires (so that the plugin
// builds offline, from the module cache, with the checkout's go.sum).
func moduleFiles(modPath, sdkDir string) (gomod, gosum []byte, warnings []string, err error) {
	f := &modfile.File{}
	if err := f.AddModuleStmt(modPath); err != nil {
		return nil, nil, nil, err
	}
	goVersion := "1.26"
	var reqs []*modfile.Require
	if sdkDir != "" {
		sdkMod, err := readModFile(filepath.Join(sdkDir, "go.mod"))
		if err != nil {
			return nil, nil, nil, err
		}
		if sdkMod.Go != nil {
			goVersion = sdkMod.Go.Version
		}
		for _, r := range sdkMod.Require {
			reqs = append(reqs, &modfile.Require{Mod: r.Mod, Indirect: true})
		}
		if gosum, err = os.ReadFile(filepath.Join(sdkDir, "go.sum")); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, nil, nil, err
		}
	}
	if err := f.AddGoStmt(goVersion); err != nil {
		return nil, nil, nil, err
	}
	reqs = append([]*modfile.Require{{Mod: module.Version{Path: sdkModule, Version: sdkPlaceholderVersion}}}, reqs...)
	f.SetRequireSeparateIndirect(reqs)
	if sdkDir != "" {
		if err := f.AddReplace(sdkModule, "", sdkDir, ""); err != nil {
			return nil, nil, nil, err
		}
	} else {
		warnings = append(warnings, fmt.Sprintf("no connector-host checkout was found (pass --sdk-dir DIR): add `replace %s => /path/to/connector-host` to go.mod, then run go mod tidy", sdkModule))
	}
	f.Cleanup()
	gomod, err = f.Format()
	if err != nil {
		return nil, nil, nil, err
	}
	return gomod, gosum, warnings, nil
}

func readModFile(path string) (*modfile.File, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return modfile.Parse(path, b, nil)
}

// findSDK returns the connector-host checkout: dir when given (it must be
// one), else the first one found walking up from the working directory or
// from the scaffold binary, else "".
func findSDK(dir string) (string, error) {
	if dir != "" {
		abs, err := filepath.Abs(dir)
		if err != nil {
			return "", err
		}
		if !isSDKRoot(abs) {
			return "", fmt.Errorf("--sdk-dir %s: no go.mod of module %s there", dir, sdkModule)
		}
		return abs, nil
	}
	var starts []string
	if wd, err := os.Getwd(); err == nil {
		starts = append(starts, wd)
	}
	if exe, err := os.Executable(); err == nil {
		if real, err := filepath.EvalSymlinks(exe); err == nil {
			exe = real
		}
		starts = append(starts, filepath.Dir(exe))
	}
	for _, s := range starts {
		for d := s; ; d = filepath.Dir(d) {
			if isSDKRoot(d) {
				return d, nil
			}
			if filepath.Dir(d) == d {
				break
			}
		}
	}
	return "", nil
}

func isSDKRoot(dir string) bool {
	f, err := readModFile(filepath.Join(dir, "go.mod"))
	return err == nil && f.Module != nil && f.Module.Mod.Path == sdkModule
}

// within reports whether dir is root or below it, with its relative path.
func within(root, dir string) (string, bool) {
	if root == "" {
		return "", false
	}
	rel, err := filepath.Rel(root, dir)
	if err != nil || rel == "." || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
		return "", false
	}
	return rel, true
}

// title turns an app_id into a display name: acme-crm → Acme Crm.
func title(appID string) string {
	words := strings.Split(appID, "-")
	for i, w := range words {
		words[i] = strings.ToUpper(w[:1]) + w[1:]
	}
	return strings.Join(words, " ")
}
