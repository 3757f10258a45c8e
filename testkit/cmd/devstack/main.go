// Command devstack is `make run`: it starts the local emulators of every
// upstream service on 127.0.0.1, writes a host configuration whose
// connector settings point at them, runs `connector-host serve` with every
// built plugin, and prints the URL and curl commands that work as printed.
// Ctrl-C stops everything.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"gopkg.in/yaml.v3"
)

// emulator is one local upstream service.
type emulator struct {
	// name is shown to the user.
	name string
	// appID is the connector whose settings point at the emulator.
	appID string
	// start runs the emulator and returns the connector's default settings,
	// extra config, a line describing it, and a stop func.
	start func(ctx context.Context, dataDir string) (started, error)
}

type started struct {
	settings  map[string]any
	callbacks []string
	about     string
	examples  []string
	stop      func()
	// oauth overrides the connector's declared OAuth URLs
	// (connectors.<app_id>.oauth: token_url, authorization_url).
	oauth map[string]string
}

// emulators is filled by the emulator_*.go files of this command.
var emulators []emulator

func main() {
	listen := flag.String("listen", "127.0.0.1:8080", "host listen address")
	binDir := flag.String("bin", "bin", "directory with connector-host, plugins/ and testplugins/")
	dataDir := flag.String("data", "data/dev", "data directory for the host, plugins and emulators")
	flag.Parse()
	if err := run(*listen, *binDir, *dataDir); err != nil {
		fmt.Fprintln(os.Stderr, "devstack:", err)
		os.Exit(1)
	}
}

func run(listen, binDir, dataDir string) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return err
	}
	pluginDir, apps, err := linkPlugins(binDir, dataDir)
	if err != nil {
		return err
	}
	connectors := map[string]any{}
	var about, examples []string
	for _, e := range emulators {
		if !apps[e.appID] {
			continue
		}
		s, err := e.start(ctx, filepath.Join(dataDir, "emulators", e.appID))
		if err != nil {
			return fmt.Errorf("starting the %s emulator: %w", e.name, err)
		}
		defer s.stop()
		c := map[string]any{"settings": s.settings}
		if len(s.callbacks) > 0 {
			c["callbacks"] = s.callbacks
		}
		if len(s.oauth) > 0 {
			c["oauth"] = s.oauth
		}
		connectors[e.appID] = c
		about = append(about, fmt.Sprintf("  %-16s %s", e.name, s.about))
		examples = append(examples, s.examples...)
	}
	cfgPath := filepath.Join(dataDir, "connector-host.yaml")
	cfg := map[string]any{
		"listen":      listen,
		"plugins_dir": pluginDir,
		"data_dir":    filepath.Join(dataDir, "host"),
		"connectors":  connectors,
	}
	b, err := yaml.Marshal(cfg)
	if err != nil {
		return err
	}
	if err := os.WriteFile(cfgPath, b, 0o600); err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, filepath.Join(binDir, "connector-host"), "serve", "--config", cfgPath)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 15 * time.Second
	if err := cmd.Start(); err != nil {
		return err
	}
	go func() {
		if !waitReady(ctx, "http://"+listen+"/healthz", 60*time.Second) {
			return
		}
		if !waitReady(ctx, "http://"+listen+"/readyz", 20*time.Second) {
			fmt.Fprintf(os.Stderr, "devstack: some plugins are not ready: curl -s http://%s/readyz\n", listen)
		}
		printBanner(listen, cfgPath, apps, about, examples)
	}()
	err = cmd.Wait()
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// linkPlugins makes one plugin directory with every built plugin and test
// plugin, and returns it with the set of app_ids.
func linkPlugins(binDir, dataDir string) (string, map[string]bool, error) {
	dir := filepath.Join(dataDir, "plugins")
	if err := os.RemoveAll(dir); err != nil {
		return "", nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", nil, err
	}
	apps := map[string]bool{}
	for _, sub := range []string{"plugins", "testplugins"} {
		matches, _ := filepath.Glob(filepath.Join(binDir, sub, "connector-*"))
		for _, m := range matches {
			abs, err := filepath.Abs(m)
			if err != nil {
				return "", nil, err
			}
			name := filepath.Base(m)
			if err := os.Symlink(abs, filepath.Join(dir, name)); err != nil {
				return "", nil, err
			}
			apps[strings.TrimPrefix(name, "connector-")] = true
		}
	}
	if len(apps) == 0 {
		return "", nil, fmt.Errorf("no plugins in %s/plugins or %s/testplugins: run `make build`", binDir, binDir)
	}
	return dir, apps, nil
}

func printBanner(listen, cfgPath string, apps map[string]bool, about, examples []string) {
	var ids []string
	for id := range apps {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	u := "http://" + listen
	var b strings.Builder
	fmt.Fprintf(&b, "\n==> connector-host is serving at %s\n", u)
	fmt.Fprintf(&b, "    connectors: %s\n    config:     %s\n", strings.Join(ids, ", "), cfgPath)
	if len(about) > 0 {
		fmt.Fprintf(&b, "    local emulators:\n%s\n", strings.Join(about, "\n"))
	}
	fmt.Fprintf(&b, "\nTry:\n")
	fmt.Fprintf(&b, "  curl -s %s/v1/connectors\n", u)
	fmt.Fprintf(&b, "  curl -s %s/v1/connectors/reference/echo -d '{\"request\":{\"message\":\"hello\"}}'\n", u)
	fmt.Fprintf(&b, "  curl -s %s/v1/connectors/reference/stream -d '{\"request\":{\"n\":3}}'\n", u)
	for _, e := range examples {
		fmt.Fprintf(&b, "  %s\n", strings.ReplaceAll(e, "{URL}", u))
	}
	fmt.Fprintf(&b, "  curl -s %s/openapi.json | head -c 300; echo\n", u)
	fmt.Fprintf(&b, "\nCtrl-C stops the host, its plugins and the emulators.\n\n")
	fmt.Print(b.String())
}

func waitReady(ctx context.Context, url string, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if ctx.Err() != nil {
			return false
		}
		if ok := get(url); ok {
			return true
		}
		time.Sleep(100 * time.Millisecond)
	}
	return false
}
