// Command scaffold starts a new connector-host plugin:
//
//	scaffold new NAME DIR [--oauth code|client-credentials] [--module PATH] [--sdk-dir DIR] [--force]
//
// writes a complete plugin (main.go calling sdk.Serve, an integration with
// validate_credentials and a sample capability with typed request and
// response, a settings type, unit tests, conformance fixtures and a README)
// that builds and passes `connector-host conformance` as written.
package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"
)

func main() {
	if err := newRootCmd().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "scaffold:", err)
		os.Exit(2)
	}
}

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:           "scaffold",
		Short:         "Start a new connector-host plugin",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(newNewCmd())
	return root
}

func newNewCmd() *cobra.Command {
	var o Options
	cmd := &cobra.Command{
		Use:   "new NAME DIR",
		Short: "Write a new plugin named NAME (its app_id) into DIR",
		Long: `new writes a complete connector-host plugin into DIR: main.go calling sdk.Serve, an
integration with validate_credentials and a sample capability (get_item) with typed request
and response, a settings type, unit tests, conformance fixtures and a README. It builds and
passes connector-host conformance without edits.

NAME is the app_id: lowercase words joined by '-' (acme, acme-crm); the binary is
connector-NAME. DIR must not exist or be empty (--force writes into a non-empty DIR,
overwriting files of the same name).

Inside a connector-host checkout (e.g. DIR=plugins/acme) the plugin is a package of the
connector-host module. Anywhere else it is a module of its own (--module, default
example.com/connector-NAME) whose go.mod points at the connector-host checkout found around
the working directory or given with --sdk-dir.`,
		Example: `  scaffold new acme ../connector-acme
  scaffold new acme-crm plugins/acmecrm --oauth code
  scaffold new billing /src/connector-billing --oauth client-credentials --module github.com/example/connector-billing --sdk-dir /src/connector-host`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 2 {
				return errors.New("want NAME and DIR (see scaffold new --help)")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			o.AppID, o.Dir = args[0], args[1]
			res, err := Generate(o)
			if err != nil {
				return err
			}
			return printNextSteps(cmd.OutOrStdout(), o, res)
		},
	}
	cmd.Flags().StringVar(&o.OAuth, "oauth", "", "OAuth flow the host runs for the plugin: code or client-credentials (default: an API token)")
	cmd.Flags().StringVar(&o.Module, "module", "", "module path of a standalone plugin (default example.com/connector-NAME)")
	cmd.Flags().StringVar(&o.SDKDir, "sdk-dir", "", "connector-host checkout to build against (default: found around the working directory)")
	cmd.Flags().BoolVar(&o.Force, "force", false, "write into a non-empty DIR")
	return cmd
}

func printNextSteps(out io.Writer, o Options, res *Result) error {
	var w strings.Builder
	rel := res.Dir
	if wd, err := os.Getwd(); err == nil {
		if r, err := filepath.Rel(wd, res.Dir); err == nil {
			rel = r
		}
	}
	fmt.Fprintf(&w, "wrote connector-%s (%s) to %s:\n", o.AppID, res.ImportPath, rel)
	for _, f := range res.Files {
		fmt.Fprintf(&w, "  %s\n", f)
	}
	for _, warn := range res.Warnings {
		fmt.Fprintf(&w, "note: %s\n", warn)
	}
	fmt.Fprintf(&w, "\nnext:\n")
	if res.Standalone {
		fmt.Fprintf(&w, "  cd %s\n  go build -o bin/connector-%s .\n  go test ./...\n  connector-host conformance bin/connector-%s --fixtures testdata/conformance\n  connector-host serve --plugins bin\n", rel, o.AppID, o.AppID)
	} else {
		fmt.Fprintf(&w, "  go build -o bin/plugins/connector-%s ./%s\n  go test ./%s/...\n  bin/connector-host conformance bin/plugins/connector-%s --fixtures %s/testdata/conformance\n  bin/connector-host serve\n", o.AppID, rel, rel, o.AppID, rel)
	}
	_, err := io.WriteString(out, w.String())
	return err
}
