// Command brokenplugin is the conformance suite's self-test plugin. Built
// as connector-broken and run with no CONFORMANCE_BREAK, it passes every
// check; CONFORMANCE_BREAK names one defect, which must make exactly one
// check fail — proof that no check is a no-op (see Defects).
//
// It implements the plugin contract (internal/wire) by hand instead of
// with the SDK, because most defects (a wrong handshake, an incomplete
// error, a stream without its final chunk) cannot be written with the SDK.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	plugin "github.com/hashicorp/go-plugin"
	validator "github.com/santhosh-tekuri/jsonschema/v6"
	"golang.org/x/text/language"
	"golang.org/x/text/message"

	"github.com/connector-host/connector-host/internal/wire"
)

// EnvBreak names the defect to build in.
const EnvBreak = "CONFORMANCE_BREAK"

// Defects maps each defect to the check it must make fail.
var Defects = map[string]string{
	"handshake":          "handshake",          // speaks only protocol version 2
	"describe_version":   "describe",           // version "1.0"
	"describe_secret":    "describe",           // a "password" setting not marked x-secret
	"describe_schema":    "describe",           // a request schema that does not compile
	"unknown_capability": "unknown_capability", // answers internal_error for an unknown capability
	"bad_request":        "bad_request",        // refuses bad requests without naming the field
	"error_envelope":     "error_envelope",     // errors without raised_in
	"fixtures":           "fixtures",           // echo appends "!" to the message
	"streaming":          "streaming",          // streams end without a final chunk
	"cancellation":       "cancellation",       // sleep ignores cancellation
	"concurrency":        "concurrency",        // more than 4 calls at once fail
	"logs":               "logs",               // prints plain text on stderr
	"logs_timestamp":     "logs",               // JSON lines whose @timestamp the host cannot parse
	"secrets":            "secrets",            // logs the credentials
	"secrets_request":    "secrets",            // logs echo's secret request field (passphrase)
	"secrets_response":   "secrets",            // answers echo's passphrase in a field not marked secret
	"shutdown":           "shutdown",           // takes 5 s to exit
	"restart":            "restart",            // a stale lock file keeps it from starting after kill -9
}

var defect = os.Getenv(EnvBreak)

const appID = "broken"

//nolint:gosec // schemas, not credentials
var (
	echoRequest = `{"type":"object","properties":{"message":{"type":"string"},"count":{"type":"integer","minimum":0},"passphrase":{"type":"string","x-secret":true}},"additionalProperties":false}`
	echoResp    = `{"type":"object","properties":{"message":{"type":"string"},"count":{"type":"integer"},"passphrase":{"type":"string","x-secret":true}},"required":["message"]}`
	sleepReq    = `{"type":"object","properties":{"ms":{"type":"integer","minimum":0,"maximum":600000}},"required":["ms"],"additionalProperties":false}`
	sleepResp   = `{"type":"object","properties":{"slept_ms":{"type":"integer"}},"required":["slept_ms"]}`
	streamReq   = `{"type":"object","properties":{"n":{"type":"integer","minimum":0,"maximum":1000}},"additionalProperties":false}`
	streamItem  = `{"type":"object","properties":{"i":{"type":"integer"}},"required":["i"]}`
	settings    = `{"type":"object","properties":{"greeting":{"type":"string"},"api_key":{"type":"string","x-secret":true}},"additionalProperties":false}`
	tokenAuth   = `{"type":"object","properties":{"token":{"type":"string","minLength":1,"x-secret":true}},"required":["token"],"additionalProperties":false}`
	basicAuth   = `{"type":"object","properties":{"username":{"type":"string","minLength":1},"password":{"type":"string","x-secret":true}},"required":["username","password"],"additionalProperties":false}`
	authSchema  = `{"type":"object","properties":{"token":` + tokenAuth + `,"basic":` + basicAuth + `},"additionalProperties":false,"maxProperties":1}`
)

type capability struct {
	name      string
	streaming bool
	req, resp string
	compiled  *validator.Schema
}

var capabilities = map[string]*capability{
	"echo":   {name: "echo", req: echoRequest, resp: echoResp},
	"sleep":  {name: "sleep", req: sleepReq, resp: sleepResp},
	"stream": {name: "stream", streaming: true, req: streamReq, resp: streamItem},
}

var settingsSchema, authCompiled *validator.Schema

var printer = message.NewPrinter(language.English)

func mustCompile(name, raw string) *validator.Schema {
	doc, err := validator.UnmarshalJSON(strings.NewReader(raw))
	if err != nil {
		panic(err)
	}
	c := validator.NewCompiler()
	c.DefaultDraft(validator.Draft2020)
	if err := c.AddResource("mem:///"+name+".json", doc); err != nil {
		panic(err)
	}
	return c.MustCompile("mem:///" + name + ".json")
}

func init() {
	for _, c := range capabilities {
		c.compiled = mustCompile(c.name, c.req)
	}
	settingsSchema = mustCompile("settings", settings)
	authCompiled = mustCompile("auth", authSchema)
}

// connector implements wire.Connector.
type connector struct {
	log      hclog.Logger
	slog     *slog.Logger // hclog-shaped, with slog's timestamp layout
	inFlight atomic.Int32
}

func (c *connector) Describe(context.Context) (*wire.Description, error) {
	d := &wire.Description{
		AppID: appID, Version: "1.0.0", SDKVersion: "none",
		Info: wire.DescriptionData{UserFriendlyName: "Broken", Description: "The conformance suite's self-test plugin."},
		AuthModels: []wire.AuthModel{
			{Kind: "basic", Schema: json.RawMessage(basicAuth)},
			{Kind: "token", Schema: json.RawMessage(tokenAuth)},
		},
		SettingsSchema: json.RawMessage(settings),
	}
	names := make([]string, 0, len(capabilities))
	for n := range capabilities {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		capa := capabilities[n]
		d.Capabilities = append(d.Capabilities, wire.Capability{
			Name: n, Streaming: capa.streaming, RequestSchema: json.RawMessage(capa.req), ResponseSchema: json.RawMessage(capa.resp),
		})
	}
	switch defect {
	case "describe_version":
		d.Version = "1.0"
	case "describe_secret":
		d.SettingsSchema = json.RawMessage(`{"type":"object","properties":{"greeting":{"type":"string"},"api_key":{"type":"string","x-secret":true},"password":{"type":"string"}},"additionalProperties":false}`)
	case "describe_schema":
		d.Capabilities[0].RequestSchema = json.RawMessage(`{"type":5}`)
	}
	return d, nil
}

// fail builds an in-band error raised here.
func fail(code, where, format string, args ...any) *wire.Error {
	e := &wire.Error{Code: code, Message: fmt.Sprintf(format, args...), RaisedBy: "brokenplugin.error", RaisedIn: "main." + where}
	if defect == "error_envelope" {
		e.RaisedIn = ""
	}
	return e
}

// begin logs the call the way each defect wants and returns the function
// that logs its end.
func (c *connector) begin(call *wire.Call) (hclog.Logger, func()) {
	log := c.log.With("capability", call.Capability, "request_id", call.RequestID)
	switch defect {
	case "logs":
		fmt.Fprintf(os.Stderr, "handling %s\n", call.Capability)
	case "logs_timestamp":
		c.slog.Info("call received", "capability", call.Capability, "request_id", call.RequestID)
	case "secrets":
		log.Info("call received", "auth", string(call.Auth), "settings", string(call.Settings))
	}
	start := time.Now()
	log.Debug("call started")
	return log, func() { log.Debug("call finished", "duration_ms", time.Since(start).Milliseconds()) }
}

// prepare validates a call: auth, settings, then request.
func (c *connector) prepare(call *wire.Call, streaming bool) (*capability, *wire.Error) {
	capa := capabilities[call.Capability]
	if capa == nil {
		if defect == "unknown_capability" {
			return nil, fail("internal_error", "prepare", "no handler for %s", call.Capability)
		}
		return nil, fail("not_implemented", "prepare", "capability %q is not implemented by %s", call.Capability, appID)
	}
	if capa.streaming != streaming {
		return nil, fail("unsupported_operation", "prepare", "capability %q is streaming=%v", capa.name, capa.streaming)
	}
	for _, v := range []struct {
		root string
		s    *validator.Schema
		raw  json.RawMessage
	}{{"auth", authCompiled, call.Auth}, {"settings", settingsSchema, call.Settings}, {"request", capa.compiled, call.Request}} {
		if msg := validate(v.root, v.s, v.raw); msg != "" {
			if defect == "bad_request" {
				msg = "invalid input"
			}
			return nil, fail("bad_request", "prepare", "%s", msg)
		}
	}
	return capa, nil
}

// validate returns "" when raw is valid, else a message naming the first
// field at fault.
func validate(root string, s *validator.Schema, raw json.RawMessage) string {
	if len(bytes.TrimSpace(raw)) == 0 {
		raw = json.RawMessage("{}")
	}
	doc, err := validator.UnmarshalJSON(bytes.NewReader(raw))
	if err != nil {
		return root + ": not valid JSON"
	}
	err = s.Validate(doc)
	var ve *validator.ValidationError
	if err == nil || !errors.As(err, &ve) {
		return ""
	}
	for len(ve.Causes) > 0 {
		ve = ve.Causes[0]
	}
	path := root
	for _, seg := range ve.InstanceLocation {
		path += "." + seg
	}
	return path + ": " + ve.ErrorKind.LocalizedString(printer)
}

func (c *connector) Invoke(ctx context.Context, call *wire.Call) (*wire.Result, error) {
	log, end := c.begin(call)
	defer end()
	capa, werr := c.prepare(call, false)
	if werr != nil {
		return &wire.Result{Err: werr}, nil
	}
	switch capa.name {
	case "echo":
		return c.echo(ctx, call)
	case "sleep":
		var req struct {
			MS int `json:"ms"`
		}
		_ = json.Unmarshal(call.Request, &req)
		if defect == "cancellation" {
			ctx = context.WithoutCancel(ctx)
		}
		start := time.Now()
		t := time.NewTimer(time.Duration(req.MS) * time.Millisecond)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
			log.Info("sleep cancelled", "after_ms", time.Since(start).Milliseconds())
			return &wire.Result{Err: fail("request_timeout", "sleep", "cancelled")}, nil
		}
		b, _ := json.Marshal(map[string]int64{"slept_ms": time.Since(start).Milliseconds()})
		return &wire.Result{Response: b}, nil
	}
	return &wire.Result{Err: fail("internal_error", "Invoke", "unreachable")}, nil
}

func (c *connector) echo(ctx context.Context, call *wire.Call) (*wire.Result, error) {
	if defect == "concurrency" {
		n := c.inFlight.Add(1)
		defer c.inFlight.Add(-1)
		if n > 4 {
			return &wire.Result{Err: fail("service_error", "echo", "too busy: %d calls at once", n)}, nil
		}
		t := time.NewTimer(50 * time.Millisecond)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
		}
	}
	// The passphrase is a secret: it comes back only in the response
	// field marked x-secret (a declared secret output).
	var req struct {
		Message    string `json:"message"`
		Count      int    `json:"count,omitempty"`
		Passphrase string `json:"passphrase,omitempty"`
		Hint       string `json:"hint,omitempty"`
	}
	_ = json.Unmarshal(call.Request, &req)
	switch defect {
	case "fixtures":
		req.Message += "!"
	case "secrets_request":
		c.log.Info("echo", "request_id", call.RequestID, "passphrase", req.Passphrase)
	case "secrets_response":
		if req.Passphrase != "" {
			req.Hint = "passphrase " + req.Passphrase
		}
	}
	b, _ := json.Marshal(req)
	return &wire.Result{Response: b}, nil
}

func (c *connector) InvokeStream(ctx context.Context, call *wire.Call, emit func(*wire.Chunk) error) error {
	_, end := c.begin(call)
	defer end()
	if _, werr := c.prepare(call, true); werr != nil {
		return emit(&wire.Chunk{Err: werr})
	}
	req := struct {
		N *int `json:"n"`
	}{}
	_ = json.Unmarshal(call.Request, &req)
	n := 2
	if req.N != nil {
		n = *req.N
	}
	items := make([]json.RawMessage, 0, n)
	for i := range n {
		items = append(items, json.RawMessage(fmt.Sprintf(`{"i":%d}`, i)))
	}
	if defect == "streaming" {
		return emit(&wire.Chunk{Items: items})
	}
	return emit(&wire.Chunk{Items: items, Done: true})
}

func (c *connector) HandleInbound(context.Context, *wire.InboundRequest) (*wire.InboundResponse, error) {
	return &wire.InboundResponse{Status: 404}, nil
}

// slogger writes hclog-shaped JSON with log/slog: the keys are right, but
// slog's RFC 3339 timestamps are not the layout go-plugin parses.
func slogger(w io.Writer) *slog.Logger {
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			switch a.Key {
			case slog.TimeKey:
				a.Key = "@timestamp"
			case slog.LevelKey:
				a.Key, a.Value = "@level", slog.StringValue(strings.ToLower(a.Value.String()))
			case slog.MessageKey:
				a.Key = "@message"
			}
			return a
		},
	}))
}

// lockPath is the lock file of the "restart" defect.
func lockPath() string {
	dir := os.Getenv("CONNECTOR_DATA_DIR")
	if dir == "" {
		dir = os.TempDir()
	}
	return filepath.Join(dir, "broken.lock")
}

// cleanExit is what the plugin does when asked to stop.
func cleanExit(code int) {
	_ = os.Remove(lockPath())
	if defect == "shutdown" {
		time.Sleep(5 * time.Second) // the defect: a slow shutdown
	}
	os.Exit(code)
}

func main() {
	if _, ok := Defects[defect]; defect != "" && !ok {
		fmt.Fprintf(os.Stderr, "%s=%q: unknown defect\n", EnvBreak, defect)
		os.Exit(2)
	}
	log := hclog.New(&hclog.LoggerOptions{Name: appID, Level: hclog.Trace, Output: os.Stderr, JSONFormat: true})
	if os.Getenv(wire.Handshake.MagicCookieKey) != wire.Handshake.MagicCookieValue {
		fmt.Println("connector-broken is the conformance suite's self-test plugin; connector-host launches it")
		os.Exit(2)
	}
	if defect == "restart" {
		if _, err := os.Stat(lockPath()); err == nil {
			log.Error("another instance holds the lock file; refusing to start", "path", lockPath())
			os.Exit(1)
		}
		_ = os.MkdirAll(filepath.Dir(lockPath()), 0o700)
		_ = os.WriteFile(lockPath(), []byte(fmt.Sprint(os.Getpid())), 0o600)
	}
	term := make(chan os.Signal, 1)
	signal.Notify(term, syscall.SIGTERM)
	go func() {
		<-term
		cleanExit(0)
	}()
	go func() {
		parent := os.Getppid()
		for range time.Tick(time.Second) {
			if os.Getppid() != parent {
				cleanExit(1)
			}
		}
	}()
	handshake := wire.Handshake
	sets := wire.PluginSets(&connector{log: log, slog: slogger(os.Stderr)}, nil)
	if defect == "handshake" {
		handshake.ProtocolVersion = 2
		sets = map[int]plugin.PluginSet{2: sets[1]}
	}
	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig:  handshake,
		VersionedPlugins: sets,
		GRPCServer:       plugin.DefaultGRPCServer,
		Logger:           log,
	})
	cleanExit(0)
}
