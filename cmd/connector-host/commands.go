package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/connector-host/connector-host/host"
	"github.com/connector-host/connector-host/host/supervisor"
)

func newListCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List the plugins in the plugin directory with their versions and capabilities",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig(cmd)
			if err != nil {
				return err
			}
			quietDefaults(cmd, &cfg)
			h, err := newHost(cfg)
			if err != nil {
				return err
			}
			defer h.Close()
			ctx, stop := signalContext()
			defer stop()
			if err := h.Start(ctx); err != nil {
				return err
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			_, _ = fmt.Fprintln(tw, "APP_ID\tVERSION\tSTATUS\tCAPABILITIES")
			r := h.Router()
			for _, id := range r.AppIDs() {
				sup, _ := r.Supervisor(id)
				st, _, _ := sup.Status()
				version, caps := "-", "-"
				if d := sup.Description(); d != nil {
					version = d.Version
					var names []string
					for _, c := range r.Capabilities(d) {
						names = append(names, c.Name)
					}
					caps = strings.Join(names, ",")
				}
				_, _ = fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", id, version, st, caps)
			}
			return tw.Flush()
		},
	}
}

// startOne starts a host with just appID's plugin.
func startOne(cmd *cobra.Command, appID string) (*host.Host, error) {
	cfg, err := loadConfig(cmd)
	if err != nil {
		return nil, err
	}
	quietDefaults(cmd, &cfg)
	bin, err := supervisor.FromPath(filepath.Join(cfg.PluginsDir, supervisor.BinaryPrefix+appID))
	if err != nil {
		return nil, fmt.Errorf("connector %q: %w (plugin directory %s)", appID, err, cfg.PluginsDir)
	}
	bin.AppID = appID
	h, err := newHost(cfg, host.WithBinaries(bin))
	if err != nil {
		return nil, err
	}
	ctx, stop := signalContext()
	defer stop()
	if err := h.Start(ctx); err != nil {
		h.Close()
		return nil, err
	}
	return h, nil
}

func newInfoCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "info APP_ID",
		Short: "Print a connector's description: capabilities, schemas, settings, auth, OAuth",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			h, err := startOne(cmd, args[0])
			if err != nil {
				return err
			}
			defer h.Close()
			return serveOnce(h, http.MethodGet, "/v1/connectors/"+args[0], nil, cmd.OutOrStdout(), true)
		},
	}
}

func newInvokeCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "invoke APP_ID CAPABILITY (--json '{...}' | --json-file F)",
		Short: "Start a connector, run one capability and print the response envelope",
		Long: `invoke starts the connector's plugin, runs one capability with the given request
envelope, prints the response envelope (NDJSON for a streaming capability) and exits:
0 on success, 1 on an error envelope, 2 on a usage error.`,
		Example: `  connector-host invoke reference echo --json '{"request":{"message":"hi"}}'
  connector-host invoke stoa fetch --json-file request.json --result-file rows.ndjson`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) (err error) {
			jsonArg, _ := cmd.Flags().GetString("json")
			jsonFile, _ := cmd.Flags().GetString("json-file")
			resultFile, _ := cmd.Flags().GetString("result-file")
			var body []byte
			switch {
			case jsonArg != "" && jsonFile != "":
				return fmt.Errorf("use either --json or --json-file, not both")
			case jsonFile != "":
				b, err := os.ReadFile(jsonFile)
				if err != nil {
					return fmt.Errorf("--json-file: %w", err)
				}
				body = b
			case jsonArg != "":
				body = []byte(jsonArg)
			default:
				return fmt.Errorf("missing --json or --json-file (the request envelope)")
			}
			h, err := startOne(cmd, args[0])
			if err != nil {
				return err
			}
			defer h.Close()
			out := cmd.OutOrStdout()
			var file *os.File
			if resultFile != "" {
				if file, err = os.Create(resultFile); err != nil {
					return fmt.Errorf("--result-file: %w", err)
				}
				defer func() {
					// The response is written through file: a failed close
					// may mean it was not all written.
					if cerr := file.Close(); cerr != nil && err == nil {
						err = fmt.Errorf("--result-file: %w", cerr)
					}
				}()
				out = io.MultiWriter(out, file)
			}
			return serveOnce(h, http.MethodPost, "/v1/connectors/"+args[0]+"/"+args[1], body, out, false)
		},
	}
	cmd.Flags().String("json", "", "request envelope as JSON")
	cmd.Flags().String("json-file", "", "file with the request envelope")
	cmd.Flags().String("result-file", "", "also write the response to this file")
	return cmd
}

// serveOnce runs one request through the host's HTTP handler in-process,
// streaming the answer to out. A non-200 answer ends the command with exit
// status 1.
func serveOnce(h *host.Host, method, path string, body []byte, out io.Writer, pretty bool) error {
	req, err := http.NewRequest(method, path, bytes.NewReader(body))
	if err != nil {
		return err
	}
	ctx, stop := signalContext()
	defer stop()
	req = req.WithContext(ctx)
	var buf bytes.Buffer
	w := &streamWriter{header: http.Header{}, out: out}
	if pretty {
		w.out = &buf
	}
	h.Handler().ServeHTTP(w, req)
	if pretty {
		var v any
		if json.Unmarshal(buf.Bytes(), &v) == nil {
			b, _ := json.MarshalIndent(v, "", "  ")
			_, _ = fmt.Fprintln(out, string(b))
		} else {
			_, _ = out.Write(buf.Bytes())
		}
	}
	if w.status != 0 && w.status != http.StatusOK {
		return exitCode(1)
	}
	return nil
}

// streamWriter is an http.ResponseWriter that writes the body straight to
// out (so streams are printed as they arrive).
type streamWriter struct {
	header http.Header
	status int
	out    io.Writer
}

func (w *streamWriter) Header() http.Header { return w.header }
func (w *streamWriter) WriteHeader(s int) {
	if w.status == 0 {
		w.status = s
	}
}
func (w *streamWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.out.Write(p)
}
func (w *streamWriter) Flush() {}
