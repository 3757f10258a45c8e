package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/connector-host/connector-host/testkit/conformance"
)

// defaultFixtures is where a plugin's fixture cases live by convention.
const defaultFixtures = "testdata/conformance"

func newConformanceCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "conformance PLUGIN_BINARY [--fixtures DIR] [--json-report F]",
		Short: "Check that a plugin binary honours the connector-host contract",
		Long: `conformance launches the plugin binary exactly as connector-host does (go-plugin
handshake, the host's supervisor, router and HTTP API on 127.0.0.1) and runs every check:
handshake, describe, unknown_capability, bad_request, error_envelope, fixtures, streaming,
cancellation, concurrency, logs, secrets, shutdown and restart.

It prints PASS, FAIL or SKIP with the reason for each check, and exits 0 when no check
failed, 1 when one did, 2 on a usage error. A SKIP says why the check could not run (for
example, no fixture case marked "slow" for the cancellation check); it never hides a failure.

Fixture cases are JSON files, one per case (see docs/conformance.md). Without --fixtures,
./testdata/conformance is used when it exists.`,
		Example: `  connector-host conformance bin/testplugins/connector-reference --fixtures testkit/reference/testdata/conformance
  connector-host conformance ./bin/connector-acme --json-report conformance.json`,
		Args: cobra.ExactArgs(1),
		RunE: runConformance,
	}
	cmd.Flags().String("fixtures", "", "directory of fixture cases (default ./"+defaultFixtures+" when it exists)")
	cmd.Flags().String("json-report", "", "also write a machine-readable report to this file")
	cmd.Flags().StringArray("env", nil, "KEY=VALUE added to the plugin's environment (repeatable)")
	cmd.Flags().Duration("timeout", 10*time.Second, "deadline of each call")
	return cmd
}

func runConformance(cmd *cobra.Command, args []string) error {
	binary := args[0]
	info, err := os.Stat(binary)
	switch {
	case err != nil:
		return fmt.Errorf("plugin binary: %w", err)
	case !info.Mode().IsRegular() || info.Mode().Perm()&0o111 == 0:
		return fmt.Errorf("plugin binary %s is not an executable file", binary)
	}
	flags := cmd.Flags()
	fixtures, _ := flags.GetString("fixtures")
	reportFile, _ := flags.GetString("json-report")
	env, _ := flags.GetStringArray("env")
	timeout, _ := flags.GetDuration("timeout")
	if fixtures != "" {
		st, err := os.Stat(fixtures)
		if err != nil || !st.IsDir() {
			return fmt.Errorf("--fixtures %s: not a directory", fixtures)
		}
	} else if st, err := os.Stat(defaultFixtures); err == nil && st.IsDir() {
		fixtures = defaultFixtures
	}
	for _, kv := range env {
		if k, _, ok := strings.Cut(kv, "="); !ok || k == "" {
			return fmt.Errorf("--env %q: want KEY=VALUE", kv)
		}
	}
	if timeout <= 0 {
		return fmt.Errorf("--timeout must be positive")
	}
	ctx, stop := signalContext()
	defer stop()
	rep, err := conformance.Check(ctx, binary, conformance.Options{Fixtures: fixtures, Env: env, CallTimeout: timeout})
	if err != nil {
		return err
	}
	if err := rep.WriteText(cmd.OutOrStdout()); err != nil {
		return err
	}
	if reportFile != "" {
		if err := writeReport(reportFile, rep); err != nil {
			return err
		}
	}
	if !rep.OK() {
		return exitCode(1)
	}
	return nil
}

// writeReport writes the JSON report atomically (a temporary file renamed
// into place).
func writeReport(path string, rep *conformance.Report) error {
	b, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".conformance-report-*")
	if err != nil {
		return fmt.Errorf("--json-report: %w", err)
	}
	defer func() { _ = os.Remove(tmp.Name()) }()
	if _, err := tmp.Write(append(b, '\n')); err != nil {
		_ = tmp.Close()
		return fmt.Errorf("--json-report: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("--json-report: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("--json-report: %w", err)
	}
	return nil
}
