package main

import (
	"context"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/connector-host/connector-host/host"
	"github.com/connector-host/connector-host/host/config"
	"github.com/connector-host/connector-host/internal/redact"
)

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "connector-host",
		Short: "Run integration connectors as out-of-process plugins behind one HTTP API",
		Long: `connector-host loads every connector-<app_id> plugin binary in its plugin directory,
supervises one process per plugin (go-plugin over gRPC), and serves their capabilities:

  POST /v1/connectors/{app_id}/{capability}   with a JSON request envelope

Configuration comes from --config (YAML), then CONNECTOR_HOST_* environment variables,
then flags. With no configuration at all it serves 127.0.0.1:8080 with the plugins in
./bin/plugins (or the plugins/ directory next to this binary) and data in ./data.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.PersistentFlags().String("config", "", "YAML configuration file (env "+config.EnvConfig+")")
	root.PersistentFlags().String("plugins", "", "plugin directory (default ./bin/plugins, or plugins/ next to this binary)")
	root.PersistentFlags().String("data", "", "data directory (default ./data)")
	root.PersistentFlags().String("log-level", "", "trace, debug, info, warn or error")
	root.PersistentFlags().String("log-format", "", "text or json")
	root.AddCommand(newOAuthCmd())
	root.AddCommand(newConformanceCmd())
	root.AddCommand(newServeCmd(), newListCmd(), newInfoCmd(), newInvokeCmd())
	return root
}

// loadConfig builds the configuration: defaults, then the file, then the
// environment, then the flags that were set.
func loadConfig(cmd *cobra.Command) (config.Config, error) {
	path, _ := cmd.Flags().GetString("config")
	if path == "" {
		path = os.Getenv(config.EnvConfig)
	}
	cfg := config.Default()
	if path != "" {
		var err error
		if cfg, err = config.Load(path); err != nil {
			return cfg, err
		}
	}
	if err := cfg.ApplyEnv(os.Getenv); err != nil {
		return cfg, err
	}
	flags := cmd.Flags()
	str := func(name string, dst *string) {
		if f := flags.Lookup(name); f != nil && f.Changed {
			*dst = f.Value.String()
		}
	}
	str("plugins", &cfg.PluginsDir)
	str("data", &cfg.DataDir)
	str("log-level", &cfg.LogLevel)
	str("log-format", &cfg.LogFormat)
	str("listen", &cfg.Listen)
	str("api-token", &cfg.APIToken)
	if !flagOrEnvSet(flags, "plugins", config.EnvPlugins) && path == "" {
		cfg.PluginsDir = defaultPluginsDir()
	}
	return cfg, cfg.Validate()
}

func flagOrEnvSet(flags *pflag.FlagSet, name, env string) bool {
	if f := flags.Lookup(name); f != nil && f.Changed {
		return true
	}
	return os.Getenv(env) != ""
}

// defaultPluginsDir is ./bin/plugins, or plugins/ next to the executable
// when ./bin/plugins does not exist.
func defaultPluginsDir() string {
	if _, err := os.Stat(config.DefaultPluginsDir); err == nil {
		return config.DefaultPluginsDir
	}
	if exe, err := os.Executable(); err == nil {
		dir := filepath.Join(filepath.Dir(exe), "plugins")
		if _, err := os.Stat(dir); err == nil {
			return dir
		}
	}
	return config.DefaultPluginsDir
}

// newHost builds a host with a logger on stderr.
func newHost(cfg config.Config, opts ...host.Option) (*host.Host, error) {
	secrets := redact.NewSet()
	logger := host.NewLogger(cfg, secrets, os.Stderr)
	return host.New(cfg, append([]host.Option{host.WithLogger(logger), host.WithSecrets(secrets)}, opts...)...)
}

// signalContext is cancelled on SIGINT or SIGTERM.
func signalContext() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
}

func quietDefaults(cmd *cobra.Command, cfg *config.Config) {
	if f := cmd.Flags().Lookup("log-level"); (f == nil || !f.Changed) && os.Getenv(config.EnvLogLevel) == "" {
		cfg.LogLevel = "warn"
	}
}
