// Package config is connector-host's configuration: one YAML file, then
// environment variables, then command-line flags, each overriding the one
// before. Every field has a working default, so no file is needed.
//
// docs/configuration.md is the reference; keep it in step with this file.
package config

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Defaults.
const (
	DefaultListen       = "127.0.0.1:8080"
	DefaultPluginsDir   = "./bin/plugins"
	DefaultDataDir      = "./data"
	DefaultMaxBodyBytes = 10 << 20
	DefaultTimeout      = 60 * time.Second
	DefaultConcurrency  = 256
)

// Config is the host's configuration.
type Config struct {
	// Listen is the HTTP listen address.
	Listen string `yaml:"listen"`
	// PluginsDir holds the connector-* plugin binaries.
	PluginsDir string `yaml:"plugins_dir"`
	// DataDir holds the host database and each plugin's data directory.
	DataDir string `yaml:"data_dir"`
	// APIToken, when set, is required as "Authorization: Bearer <token>" on
	// every /v1 route (except the OAuth callback and inbound routes, which
	// upstream systems call with their own credentials).
	APIToken string `yaml:"api_token"`
	// MaxBodyBytes limits request bodies.
	MaxBodyBytes int64 `yaml:"max_body_bytes"`
	// LogLevel is trace, debug, info, warn or error.
	LogLevel string `yaml:"log_level"`
	// LogFormat is text or json.
	LogFormat string `yaml:"log_format"`
	// EncryptionKey is the hex AES-256 key for secrets at rest; empty
	// means a generated key file (0600) in DataDir.
	EncryptionKey string `yaml:"encryption_key"`
	// PublicURL is the externally reachable base URL of this host (for the
	// OAuth redirect URI); default http://<listen>.
	PublicURL string `yaml:"public_url"`
	// Defaults apply to every connector; Connectors override per app_id.
	Defaults   Connector            `yaml:"defaults"`
	Connectors map[string]Connector `yaml:"connectors"`
	// Supervisor tunes plugin restarts.
	Supervisor Supervisor `yaml:"supervisor"`
}

// Connector configures one connector.
type Connector struct {
	// Timeout is each unary call's deadline (e.g. "60s").
	Timeout Duration `yaml:"timeout"`
	// StreamTimeout is each streaming call's deadline; zero (the default)
	// means none: a stream runs until it ends or its client goes away.
	StreamTimeout Duration `yaml:"stream_timeout"`
	// MaxConcurrency bounds calls in flight in the plugin; more wait.
	MaxConcurrency int `yaml:"max_concurrency"`
	// Settings are default settings; a request's settings override them
	// key by key.
	Settings map[string]any `yaml:"settings"`
	// SHA256 pins the plugin binary (hex).
	SHA256 string `yaml:"sha256"`
	// Disabled connectors are not loaded.
	Disabled bool `yaml:"disabled"`
	// Env adds environment variables to the plugin process.
	Env map[string]string `yaml:"env"`
	// Callbacks lists what the plugin may call through the host callback
	// service: "app_id", "app_id/capability" or "*". Empty allows nothing.
	Callbacks []string `yaml:"callbacks"`
	// OAuth overrides the OAuth URLs the plugin declares (e.g. to point a
	// connector at a staging or local identity provider). The operator
	// sets these; requests cannot.
	OAuth OAuthURLs `yaml:"oauth"`
}

// OAuthURLs are OAuth endpoint URLs (templates with {setting}
// placeholders are allowed, as in a plugin's declaration).
type OAuthURLs struct {
	AuthorizationURL string `yaml:"authorization_url"`
	TokenURL         string `yaml:"token_url"`
}

// Supervisor tunes plugin supervision.
type Supervisor struct {
	InitialBackoff Duration `yaml:"initial_backoff"`
	MaxBackoff     Duration `yaml:"max_backoff"`
	HealthInterval Duration `yaml:"health_interval"`
	FailAfter      int      `yaml:"fail_after"`
	StartTimeout   Duration `yaml:"start_timeout"`
}

// Duration is a time.Duration written as "1m30s" in YAML.
type Duration time.Duration

// UnmarshalYAML implements yaml.Unmarshaler.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	var s string
	if err := n.Decode(&s); err != nil {
		return err
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("line %d: %q is not a duration (e.g. 30s, 2m)", n.Line, s)
	}
	if v < 0 {
		return fmt.Errorf("line %d: duration %q is negative", n.Line, s)
	}
	*d = Duration(v)
	return nil
}

// D returns the time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// Default returns the zero-config configuration.
func Default() Config {
	return Config{
		Listen:       DefaultListen,
		PluginsDir:   DefaultPluginsDir,
		DataDir:      DefaultDataDir,
		MaxBodyBytes: DefaultMaxBodyBytes,
		LogLevel:     "info",
		LogFormat:    "text",
		Defaults: Connector{
			Timeout:        Duration(DefaultTimeout),
			MaxConcurrency: DefaultConcurrency,
		},
		// The events gateway reaches every connector by default; restrict
		// it with connectors.events-protocol.callbacks.
		Connectors: map[string]Connector{"events-protocol": {Callbacks: []string{"*"}}},
	}
}

// Load reads a YAML file over the defaults. Unknown keys are errors.
// ${VAR} in string values is replaced by the environment variable VAR, so
// secrets can stay out of the file.
func Load(path string) (Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Default(), fmt.Errorf("config: %w", err)
	}
	cfg, err := Parse(b, os.Getenv)
	if err != nil {
		return cfg, fmt.Errorf("config %s: %w", path, err)
	}
	return cfg, nil
}

// Parse reads YAML over the defaults, as Load does; getenv resolves ${VAR}
// references. They are replaced inside the parsed string values, not in
// the text, so a value with quotes, colons or line breaks (a password)
// stays one value and cannot change the file's structure.
func Parse(b []byte, getenv func(string) string) (Config, error) {
	cfg := Default()
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return cfg, err
	}
	if doc.Kind == 0 { // empty file
		return cfg, nil
	}
	expandEnv(&doc, getenv)
	out, err := yaml.Marshal(&doc)
	if err != nil {
		return cfg, err
	}
	dec := yaml.NewDecoder(bytes.NewReader(out))
	dec.KnownFields(true)
	if err := dec.Decode(&cfg); err != nil && !errors.Is(err, io.EOF) {
		return cfg, err
	}
	return cfg, nil
}

var envRef = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)\}`)

// expandEnv replaces ${VAR} in every scalar value of the tree (keys are
// left alone). An unquoted value that becomes a number or true/false keeps
// that type (max_concurrency: ${N}); anything else becomes a quoted string,
// never null or YAML structure.
func expandEnv(n *yaml.Node, getenv func(string) string) {
	if n.Kind == yaml.ScalarNode {
		if !envRef.MatchString(n.Value) {
			return
		}
		n.Value = envRef.ReplaceAllStringFunc(n.Value, func(m string) string {
			return getenv(envRef.FindStringSubmatch(m)[1])
		})
		if n.Style == 0 && isNumberOrBool(n.Value) {
			n.Tag = ""
			return
		}
		n.Tag, n.Style = "!!str", yaml.DoubleQuotedStyle
		return
	}
	for i, c := range n.Content {
		if n.Kind == yaml.MappingNode && i%2 == 0 {
			continue // a key
		}
		expandEnv(c, getenv)
	}
}

func isNumberOrBool(v string) bool {
	if v == "true" || v == "false" {
		return true
	}
	if _, err := strconv.ParseInt(v, 10, 64); err == nil {
		return true
	}
	_, err := strconv.ParseFloat(v, 64)
	return err == nil && !strings.ContainsAny(v, "xXpP_") && v != "" && strings.Trim(v, "+-.0123456789eE") == ""
}

// Env variables that override the file.
const (
	EnvConfig        = "CONNECTOR_HOST_CONFIG"
	EnvListen        = "CONNECTOR_HOST_LISTEN"
	EnvPlugins       = "CONNECTOR_HOST_PLUGINS"
	EnvData          = "CONNECTOR_HOST_DATA"
	EnvAPIToken      = "CONNECTOR_HOST_API_TOKEN"
	EnvLogLevel      = "CONNECTOR_HOST_LOG_LEVEL"
	EnvLogFormat     = "CONNECTOR_HOST_LOG_FORMAT"
	EnvEncryptionKey = "CONNECTOR_HOST_ENCRYPTION_KEY"
	EnvPublicURL     = "CONNECTOR_HOST_PUBLIC_URL"
	EnvMaxBodyBytes  = "CONNECTOR_HOST_MAX_BODY_BYTES"
)

// ApplyEnv overrides cfg with the CONNECTOR_HOST_* environment variables.
func (c *Config) ApplyEnv(getenv func(string) string) error {
	set := func(dst *string, key string) {
		if v := getenv(key); v != "" {
			*dst = v
		}
	}
	set(&c.Listen, EnvListen)
	set(&c.PluginsDir, EnvPlugins)
	set(&c.DataDir, EnvData)
	set(&c.APIToken, EnvAPIToken)
	set(&c.LogLevel, EnvLogLevel)
	set(&c.LogFormat, EnvLogFormat)
	set(&c.EncryptionKey, EnvEncryptionKey)
	set(&c.PublicURL, EnvPublicURL)
	if v := getenv(EnvMaxBodyBytes); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return fmt.Errorf("%s: %q is not a number of bytes", EnvMaxBodyBytes, v)
		}
		c.MaxBodyBytes = n
	}
	return nil
}

// Validate checks the configuration and returns every problem found.
func (c *Config) Validate() error {
	var errs []string
	if c.Listen == "" {
		errs = append(errs, "listen: must not be empty")
	}
	if c.PluginsDir == "" {
		errs = append(errs, "plugins_dir: must not be empty")
	}
	if c.DataDir == "" {
		errs = append(errs, "data_dir: must not be empty")
	}
	if c.MaxBodyBytes <= 0 {
		errs = append(errs, "max_body_bytes: must be positive")
	}
	switch c.LogFormat {
	case "text", "json":
	default:
		errs = append(errs, fmt.Sprintf("log_format: %q is not text or json", c.LogFormat))
	}
	switch strings.ToLower(c.LogLevel) {
	case "trace", "debug", "info", "warn", "error":
	default:
		errs = append(errs, fmt.Sprintf("log_level: %q is not trace, debug, info, warn or error", c.LogLevel))
	}
	if c.EncryptionKey != "" {
		if k, err := hex.DecodeString(c.EncryptionKey); err != nil || len(k) != 32 {
			errs = append(errs, "encryption_key: must be 64 hex characters (a 256-bit key)")
		}
	}
	names := make([]string, 0, len(c.Connectors))
	for n := range c.Connectors {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		cc := c.Connectors[n]
		if cc.SHA256 != "" {
			if k, err := hex.DecodeString(cc.SHA256); err != nil || len(k) != 32 {
				errs = append(errs, fmt.Sprintf("connectors.%s.sha256: must be 64 hex characters", n))
			}
		}
		if cc.MaxConcurrency < 0 {
			errs = append(errs, fmt.Sprintf("connectors.%s.max_concurrency: must not be negative", n))
		}
		for field, u := range map[string]string{"authorization_url": cc.OAuth.AuthorizationURL, "token_url": cc.OAuth.TokenURL} {
			if u == "" {
				continue
			}
			if p, err := url.Parse(u); err != nil || (p.Scheme != "https" && p.Scheme != "http") || p.Host == "" {
				errs = append(errs, fmt.Sprintf("connectors.%s.oauth.%s: %q is not an absolute http(s) URL", n, field, u))
			}
		}
	}
	if len(errs) > 0 {
		return errors.New("invalid configuration:\n  " + strings.Join(errs, "\n  "))
	}
	return nil
}

// For returns the effective configuration of one connector: Defaults
// overridden by Connectors[appID].
func (c *Config) For(appID string) Connector {
	out := c.Defaults
	cc, ok := c.Connectors[appID]
	if !ok {
		return out
	}
	if cc.Timeout != 0 {
		out.Timeout = cc.Timeout
	}
	if cc.StreamTimeout != 0 {
		out.StreamTimeout = cc.StreamTimeout
	}
	if cc.MaxConcurrency != 0 {
		out.MaxConcurrency = cc.MaxConcurrency
	}
	if len(cc.Settings) > 0 {
		merged := map[string]any{}
		for k, v := range out.Settings {
			merged[k] = v
		}
		for k, v := range cc.Settings {
			merged[k] = v
		}
		out.Settings = merged
	}
	out.SHA256 = cc.SHA256
	out.Disabled = cc.Disabled
	out.Env = cc.Env
	out.Callbacks = cc.Callbacks
	out.OAuth = cc.OAuth
	return out
}
