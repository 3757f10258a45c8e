// Package host assembles connector-host: it discovers plugin binaries,
// supervises one process per plugin, routes capability calls to them and
// serves the HTTP API.
//
// A request's path: httpapi (HTTP, envelope) → router (deadline,
// concurrency, credentials, error mapping) → supervisor (the live plugin
// process) → wire (gRPC) → sdk dispatch in the plugin → the handler.
package host

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/connector-host/connector-host/host/config"
	"github.com/connector-host/connector-host/host/httpapi"
	"github.com/connector-host/connector-host/host/metrics"
	"github.com/connector-host/connector-host/host/oauth"
	"github.com/connector-host/connector-host/host/router"
	"github.com/connector-host/connector-host/host/store"
	"github.com/connector-host/connector-host/host/supervisor"
	"github.com/connector-host/connector-host/internal/redact"
	"github.com/connector-host/connector-host/internal/wire"
)

// Host is a running connector-host.
type Host struct {
	cfg     config.Config
	logger  hclog.Logger
	secrets *redact.Set
	metrics *metrics.Metrics
	router  *router.Router
	api     *httpapi.Server
	sups    []*supervisor.Supervisor
	oauth   *oauth.Manager
	state   store.Store

	binaries []supervisor.Binary
	closeMu  sync.Mutex
	closed   bool
}

// Option configures a Host.
type Option func(*Host)

// WithLogger sets the host logger (default: NewLogger on stderr).
func WithLogger(l hclog.Logger) Option { return func(h *Host) { h.logger = l } }

// WithBinaries loads exactly these plugin binaries instead of discovering
// the plugin directory.
func WithBinaries(b ...supervisor.Binary) Option {
	return func(h *Host) { h.binaries = b }
}

// WithSecrets shares a redaction set with the caller (NewLogger's).
func WithSecrets(s *redact.Set) Option { return func(h *Host) { h.secrets = s } }

// NewLogger returns the host logger writing to w in the configured format,
// with every secret of s masked.
func NewLogger(cfg config.Config, s *redact.Set, w io.Writer) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{
		Name:       "connector-host",
		Level:      hclog.LevelFromString(cfg.LogLevel),
		Output:     s.Writer(w),
		JSONFormat: cfg.LogFormat == "json",
	})
}

// New checks cfg and builds a Host; Start launches the plugins.
func New(cfg config.Config, opts ...Option) (*Host, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	h := &Host{cfg: cfg, metrics: metrics.New()}
	for _, o := range opts {
		o(h)
	}
	if h.secrets == nil {
		h.secrets = redact.NewSet()
	}
	if h.logger == nil {
		h.logger = NewLogger(cfg, h.secrets, os.Stderr)
	}
	if cfg.APIToken != "" {
		h.secrets.Add(cfg.APIToken)
	}
	if cfg.EncryptionKey != "" {
		h.secrets.Add(cfg.EncryptionKey)
	}
	oauthOpts, err := h.setupOAuth()
	if err != nil {
		return nil, err
	}
	h.router = router.New(append(oauthOpts, router.WithObserver(h.metrics), router.WithSecrets(h.secrets), router.WithLogger(h.logger.Named("router")))...)
	h.api = httpapi.New(httpapi.Options{
		Router: h.router, Metrics: h.metrics, Logger: h.logger.Named("http"),
		APIToken: cfg.APIToken, MaxBodyBytes: cfg.MaxBodyBytes,
	})
	h.mountRoutes()
	h.mountOAuth()
	return h, nil
}

// Start discovers the plugins (unless given with WithBinaries) and launches
// them in parallel. A plugin that fails to start is logged and reported as
// failed in /readyz; it does not stop the host. Start fails only when the
// plugin directory cannot be read.
func (h *Host) Start(ctx context.Context) error {
	bins := h.binaries
	if bins == nil {
		var err error
		if bins, err = supervisor.Discover(h.cfg.PluginsDir); err != nil {
			return err
		}
	}
	if len(bins) == 0 {
		h.logger.Warn("no plugins found", "dir", h.cfg.PluginsDir)
	}
	var wg sync.WaitGroup
	for _, b := range bins {
		cc := h.cfg.For(b.AppID)
		if cc.Disabled {
			h.logger.Info("connector disabled by configuration", "app_id", b.AppID)
			continue
		}
		sup, err := h.newSupervisor(b, cc)
		if err != nil {
			return err
		}
		if err := h.router.Add(b.AppID, sup, router.ConnectorOptions{
			Timeout: cc.Timeout.D(), StreamTimeout: cc.StreamTimeout.D(), MaxConcurrency: cc.MaxConcurrency, Settings: cc.Settings,
		}); err != nil {
			return err
		}
		h.sups = append(h.sups, sup)
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := sup.Start(ctx); err != nil {
				h.logger.Error("plugin did not start; retrying in the background", "app_id", sup.AppID(), "error", err)
				return
			}
			d := sup.Description()
			h.logger.Info("plugin ready", "app_id", sup.AppID(), "version", d.Version, "capabilities", len(d.Capabilities))
		}()
	}
	wg.Wait()
	return ctx.Err()
}

func (h *Host) newSupervisor(b supervisor.Binary, cc config.Connector) (*supervisor.Supervisor, error) {
	var sum []byte
	if cc.SHA256 != "" {
		var err error
		if sum, err = hex.DecodeString(cc.SHA256); err != nil {
			return nil, fmt.Errorf("connectors.%s.sha256: %w", b.AppID, err)
		}
	}
	dataDir, err := filepath.Abs(filepath.Join(h.cfg.DataDir, "plugins", b.AppID))
	if err != nil {
		return nil, err
	}
	env := append(supervisor.HostEnv(),
		"CONNECTOR_DATA_DIR="+dataDir,
		"CONNECTOR_LOG_LEVEL="+strings.ToLower(h.cfg.LogLevel),
	)
	for k, v := range cc.Env {
		env = append(env, k+"="+v)
	}
	appID := b.AppID
	sc := h.cfg.Supervisor
	return supervisor.New(supervisor.Options{
		Binary:         b,
		SHA256:         sum,
		Env:            env,
		Logger:         h.logger.Named(appID),
		Callback:       newCallback(h.router, appID, cc.Callbacks),
		StartTimeout:   sc.StartTimeout.D(),
		HealthInterval: sc.HealthInterval.D(),
		InitialBackoff: sc.InitialBackoff.D(),
		MaxBackoff:     sc.MaxBackoff.D(),
		FailAfter:      sc.FailAfter,
		OnRestart:      func() { h.metrics.PluginRestarted(appID) },
		PatchDescription: func(d *wire.Description) {
			if d.OAuth == nil {
				return
			}
			if u := cc.OAuth.AuthorizationURL; u != "" {
				d.OAuth.AuthorizationURL = u
			}
			if u := cc.OAuth.TokenURL; u != "" {
				d.OAuth.TokenURL = u
			}
		},
	}), nil
}

// mountRoutes adds the routes of host features to the API.
func (h *Host) mountRoutes() {
	h.api.Handle("/v1/inbound/{app_id}/{path...}", h.inboundHandler(), true)
	h.api.AddOpenAPIPath("/v1/inbound/{app_id}/{path}", map[string]any{
		"summary":     "Inbound routes",
		"description": "Routes a plugin declares for upstream systems that call in (e.g. DSYNC). Forwarded to the plugin as is; the plugin checks the caller's credentials. Not behind the API token.",
		"parameters": []any{
			map[string]any{"name": "app_id", "in": "path", "required": true, "schema": map[string]any{"type": "string"}},
			map[string]any{"name": "path", "in": "path", "required": true, "schema": map[string]any{"type": "string"}},
		},
	})
	h.api.Handle("/events", h.eventsHandler(), false)
	h.api.Handle("/events/", h.eventsHandler(), false)
	events := map[string]any{"post": map[string]any{
		"summary":     "Events-protocol gateway",
		"description": "One GuiaBolso event in, its answer event out (HTTP 200 even for error events). Events named <app_id with - as _>:<capability> version 1 reach every connector; the payload is the request envelope.",
		"requestBody": map[string]any{"required": true, "content": map[string]any{"application/json": map[string]any{"schema": map[string]any{"type": "object"}}}},
		"responses":   map[string]any{"200": map[string]any{"description": "the answer event"}},
	}}
	h.api.AddOpenAPIPath("/events", events)
	h.api.AddOpenAPIPath("/events/", events)
}

// Router is the host's router (for in-process callers and benchmarks).
func (h *Host) Router() *router.Router { return h.router }

// API is the HTTP API, for mounting more routes.
func (h *Host) API() *httpapi.Server { return h.api }

// Handler is the host's HTTP handler.
func (h *Host) Handler() http.Handler { return h.api }

// Logger is the host logger.
func (h *Host) Logger() hclog.Logger { return h.logger }

// Serve serves the HTTP API on ln until ctx ends, then shuts down: it stops
// accepting, lets calls in flight finish (up to 10 s), and stops the
// plugins.
func (h *Host) Serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{
		Handler:           h.api,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          h.logger.Named("http").StandardLogger(&hclog.StandardLoggerOptions{InferLevels: true}),
	}
	errCh := make(chan error, 1)
	go func() { errCh <- srv.Serve(ln) }()
	select {
	case err := <-errCh:
		h.Close()
		return err
	case <-ctx.Done():
	}
	h.logger.Info("shutting down")
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := srv.Shutdown(shutdownCtx)
	h.Close()
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("calls still in flight after 10s were cut off")
	}
	return nil
}

// Close stops every plugin. It is safe to call more than once.
func (h *Host) Close() {
	h.closeMu.Lock()
	if h.closed {
		h.closeMu.Unlock()
		return
	}
	h.closed = true
	h.closeMu.Unlock()
	var wg sync.WaitGroup
	for _, s := range h.sups {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.Stop()
		}()
	}
	wg.Wait()
	if h.state != nil {
		_ = h.state.Close()
	}
}
