package sdk

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"runtime/debug"
	"sort"
	"strings"
	"syscall"
	"time"

	plugin "github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	"github.com/connector-host/connector-host/internal/envelope"
	"github.com/connector-host/connector-host/internal/plugintls"
	"github.com/connector-host/connector-host/internal/wire"
)

// MaxMessageBytes is the largest gRPC message a plugin accepts or sends.
const MaxMessageBytes = 64 << 20

// shutdownTimeout bounds the Shutdown hook.
const shutdownTimeout = 10 * time.Second

// Serve runs the plugin and never returns. Launched by connector-host, it
// serves the integration over go-plugin; run by a person, it is a small CLI
// (--help, info, CAPABILITY --json '{...}'). An integration that does not
// validate (see Integration.Validate) makes it exit with status 2.
func Serve(integ *Integration) {
	os.Exit(run(integ, os.Args[1:], os.Stdout, os.Stderr))
}

func run(integ *Integration, args []string, stdout, stderr io.Writer) int {
	if err := integ.Validate(); err != nil {
		_, _ = fmt.Fprintf(stderr, "connector-%s: invalid integration:\n%v\n", integ.AppID, err)
		return 2
	}
	if os.Getenv(wire.Handshake.MagicCookieKey) == wire.Handshake.MagicCookieValue {
		return servePlugin(integ)
	}
	return runCLI(integ, args, stdout, stderr)
}

func servePlugin(integ *Integration) int {
	logger := integ.logger()
	dir := integ.DataDir()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		logger.Error("cannot create the data directory", "dir", dir, "error", err)
		return 1
	}
	integ.dataDir = dir
	if integ.Setup != nil {
		if err := integ.Setup(context.Background(), Runtime{DataDir: dir, Logger: logger}); err != nil {
			logger.Error("setup failed", "error", secrets.String(err.Error()))
			return 1
		}
	}
	// go-plugin stops the server on the host's request; a SIGTERM (e.g.
	// from a process supervisor) gets the same clean shutdown.
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM)
	go func() {
		<-stop
		runShutdown(integ)
		os.Exit(0)
	}()
	go exitWithParent(integ)
	// The certificates the host made for this launch (ADR 0007); without
	// them (another go-plugin host) go-plugin's own AutoMTLS runs.
	tlsConfig, err := plugintls.ServerConfig()
	if err != nil {
		logger.Error("cannot set up TLS with the host", "error", err)
		return 1
	}
	// Schema generation and compilation at start-up leave garbage behind;
	// hand it back to the OS before serving.
	debug.FreeOSMemory()
	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig:  wire.Handshake,
		VersionedPlugins: wire.PluginSets(&connector{integ: integ}, nil),
		GRPCServer: func(opts []grpc.ServerOption) *grpc.Server {
			opts = append(opts, grpc.MaxRecvMsgSize(MaxMessageBytes), grpc.MaxSendMsgSize(MaxMessageBytes))
			// Fixed flow-control windows, as the host dials with.
			return grpc.NewServer(append(opts, wire.ServerWindows()...)...)
		},
		TLSProvider: func() (*tls.Config, error) { return tlsConfig, nil },
		Logger:      logger,
	})
	runShutdown(integ)
	return 0
}

// exitWithParent ends the plugin when the host that launched it is gone
// (the process was re-parented), so a killed host leaves no orphans.
func exitWithParent(integ *Integration) {
	parent := os.Getppid()
	for range time.Tick(time.Second) {
		if os.Getppid() != parent {
			integ.logger().Warn("the host process is gone; exiting")
			runShutdown(integ)
			os.Exit(1)
		}
	}
}

func runShutdown(integ *Integration) {
	if integ.Shutdown == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	if err := integ.Shutdown(ctx); err != nil {
		integ.logger().Error("shutdown failed", "error", secrets.String(err.Error()))
	}
}

// Invoke runs one capability in-process, exactly as the host would run it
// through the plugin, and returns the HTTP status and body the host would
// answer with: a JSON response envelope, or NDJSON lines for a streaming
// capability. envelope is a JSON request envelope. It is meant for tests
// and for running a plugin by hand.
func (i *Integration) Invoke(ctx context.Context, capability string, envelope []byte) (status int, body []byte) {
	var buf bytes.Buffer
	status = i.invokeTo(ctx, capability, envelope, &buf)
	return status, buf.Bytes()
}

func (i *Integration) invokeTo(ctx context.Context, capability string, body []byte, w io.Writer) int {
	if err := i.Validate(); err != nil {
		return writeError(w, i.AppID, &wire.Error{Code: string(InternalError), Message: err.Error(), RaisedBy: "sdk", RaisedIn: "sdk.Validate"})
	}
	env, err := envelope.Parse(body)
	if err != nil {
		return writeError(w, i.AppID, &wire.Error{Code: string(BadRequest), Message: err.Error(), RaisedBy: "envelope.FieldError", RaisedIn: "sdk.Invoke"})
	}
	if env.CredentialID != "" {
		return writeError(w, i.AppID, &wire.Error{Code: string(BadRequest), Message: "credential_id: stored credentials need connector-host; pass auth instead", RaisedBy: "sdk", RaisedIn: "sdk.Invoke"})
	}
	call := &wire.Call{
		Capability: capability, Request: env.Request, Settings: env.Settings, Auth: env.Auth,
		Page: env.Page, IncludeRawData: env.IncludeRawData, RequestID: "local",
	}
	c := &connector{integ: i}
	capa := i.caps[capability]
	if capa == nil || !capa.streaming {
		res, _ := c.Invoke(ctx, call)
		if res.Err != nil {
			return writeError(w, i.AppID, res.Err)
		}
		_, _ = w.Write(append(envelope.AppendSuccess(nil, res), '\n'))
		return http.StatusOK
	}
	status := 0
	var line []byte
	_ = c.InvokeStream(ctx, call, func(ch *wire.Chunk) error {
		if status == 0 && len(ch.NDJSON) == 0 && ch.Err != nil {
			status = writeError(w, i.AppID, ch.Err)
			return nil //nolint:nilerr // the error chunk is the response, written above; delivering it did not fail
		}
		status = http.StatusOK
		line = envelope.AppendStreamLines(line[:0], ch, i.AppID, codeStatus)
		_, err := w.Write(line)
		return err
	})
	return status
}

// codeStatus is the HTTP status of a code.
func codeStatus(code string) int { return Code(code).HTTPStatus() }

func writeError(w io.Writer, appID string, e *wire.Error) int {
	status := Code(e.Code).HTTPStatus()
	_, _ = w.Write(append(envelope.MarshalError(envelope.NewErrorBody(appID, e, status)), '\n'))
	return status
}

// runCLI is the plugin run by a person.
func runCLI(integ *Integration, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "--help" || args[0] == "-h" || args[0] == "help" {
		printUsage(integ, stdout)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	if args[0] == "info" {
		d, _ := integ.describe()
		out, _ := json.MarshalIndent(envelope.NewInfo(d, d.Capabilities), "", "  ")
		_, _ = fmt.Fprintln(stdout, string(out))
		return 0
	}
	name := args[0]
	if integ.caps[name] == nil {
		_, _ = fmt.Fprintf(stderr, "connector-%s: unknown command or capability %q (see --help)\n", integ.AppID, name)
		return 2
	}
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	jsonArg := fs.String("json", "", "request envelope as JSON, e.g. '{\"request\":{}}'")
	jsonFile := fs.String("json-file", "", "read the request envelope from this file")
	resultFile := fs.String("result-file", "", "also write the response to this file")
	if err := fs.Parse(args[1:]); err != nil {
		return 2
	}
	var body []byte
	switch {
	case *jsonArg != "" && *jsonFile != "":
		_, _ = fmt.Fprintln(stderr, "use either --json or --json-file, not both")
		return 2
	case *jsonFile != "":
		b, err := os.ReadFile(*jsonFile) //nolint:gosec // the path the person running the CLI passed
		if err != nil {
			_, _ = fmt.Fprintf(stderr, "reading --json-file: %v\n", err)
			return 2
		}
		body = b
	case *jsonArg != "":
		body = []byte(*jsonArg)
	default:
		_, _ = fmt.Fprintln(stderr, "missing --json or --json-file (the request envelope)")
		return 2
	}
	// A person at a terminal gets logs as text on stderr.
	if integ.Logger == nil {
		integ.Logger = newLogger(integ.AppID, stderr)
	}
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	out := stdout
	var file *os.File
	if *resultFile != "" {
		f, err := os.Create(*resultFile) //nolint:gosec // the path the person running the CLI passed
		if err != nil {
			_, _ = fmt.Fprintf(stderr, "creating --result-file: %v\n", err)
			return 2
		}
		file = f
		out = io.MultiWriter(stdout, f)
	}
	status := integ.invokeTo(ctx, name, body, out)
	if file != nil {
		if err := file.Close(); err != nil {
			_, _ = fmt.Fprintf(stderr, "writing --result-file: %v\n", err)
			return 1
		}
	}
	if status != http.StatusOK {
		return 1
	}
	return 0
}

func printUsage(integ *Integration, w io.Writer) {
	names := append([]string(nil), integ.order...)
	sort.Strings(names)
	var b strings.Builder
	fmt.Fprintf(&b, "connector-%s %s — %s\n\n", integ.AppID, integ.Version, integ.Description.Description)
	fmt.Fprintf(&b, "This binary is a connector-host plugin. connector-host launches it; run by hand it\n")
	fmt.Fprintf(&b, "runs one capability in-process.\n\nUsage:\n")
	fmt.Fprintf(&b, "  connector-%s info                          describe the connector (JSON)\n", integ.AppID)
	fmt.Fprintf(&b, "  connector-%s CAPABILITY --json '{\"request\":{...}}' [--result-file F]\n", integ.AppID)
	fmt.Fprintf(&b, "  connector-%s CAPABILITY --json-file F [--result-file F]\n\n", integ.AppID)
	fmt.Fprintf(&b, "The JSON is a request envelope: request, settings, auth, page, include_raw_data.\n")
	fmt.Fprintf(&b, "Exit status: 0 on success, 1 on an error envelope, 2 on a usage error.\n\nCapabilities:\n")
	for _, n := range names {
		c := integ.caps[n]
		kind := ""
		if c.streaming {
			kind = " (streaming, NDJSON)"
		}
		desc := c.description
		if desc != "" {
			desc = " — " + desc
		}
		fmt.Fprintf(&b, "  %s%s%s\n", n, kind, desc)
	}
	_, _ = io.WriteString(w, b.String())
}
