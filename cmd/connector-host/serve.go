package main

import (
	"fmt"
	"net"
	"time"

	"github.com/spf13/cobra"

	"github.com/connector-host/connector-host/internal/gctune"
)

// The host's GC: up to gcHeadroom bytes of heap growth between collections
// over the live heap, at most GOGC=gcMaxPercent, never less than GOGC=100.
const (
	gcHeadroom   = 16 << 20
	gcMaxPercent = 400
)

func newServeCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Load the plugins and serve the HTTP API until SIGINT/SIGTERM",
		Example: `  connector-host serve
  connector-host serve --config connector-host.yaml --listen 127.0.0.1:9090 --api-token "$TOKEN"`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig(cmd)
			if err != nil {
				return err
			}
			h, err := newHost(cfg)
			if err != nil {
				return err
			}
			ctx, stop := signalContext()
			defer stop()
			// The request path keeps little alive but allocates per call:
			// collect less often while the live heap is small (unless
			// GOGC is set).
			go gctune.Headroom(ctx, gcHeadroom, gcMaxPercent, time.Second)
			ln, err := net.Listen("tcp", cfg.Listen)
			if err != nil {
				return fmt.Errorf("listen on %s: %w", cfg.Listen, err)
			}
			if err := h.Start(ctx); err != nil {
				_ = ln.Close()
				h.Close()
				return err
			}
			h.Logger().Info("serving", "url", "http://"+ln.Addr().String(), "plugins", cfg.PluginsDir, "data", cfg.DataDir)
			return h.Serve(ctx, ln)
		},
	}
	cmd.Flags().String("listen", "", "listen address (default 127.0.0.1:8080)")
	cmd.Flags().String("api-token", "", "require 'Authorization: Bearer <token>' on /v1 routes (env CONNECTOR_HOST_API_TOKEN)")
	return cmd
}
