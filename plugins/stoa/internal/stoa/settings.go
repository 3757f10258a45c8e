// Package stoa is a client of the Stoa data-product service (PROTOCOLS.md
// "Stoa"), the Go port of the Python ds_stoa StoaClient: REST login or a
// ready OAuth2 bearer token, order, sign, and a streaming fetch engine that
// downloads the presigned Parquet objects concurrently, retries what fails,
// and hands rows on in order with bounded memory; Export writes the same data
// as one Parquet, Arrow IPC, CSV or NDJSON file.
//
// Differences from the Python client, on purpose:
//   - environment defaults to "prod" (ds_stoa defaults to "dev");
//   - a failed download is retried and then reported (by order id), never
//     skipped silently;
//   - rows are streamed row group by row group instead of concatenating every
//     object into one DataFrame in memory.
//
// Every error is an *sdk.Error with a contract code; errors about the input
// name the field ("request.limit", "settings.environment") and are returned
// before any network call. Error messages never contain passwords, tokens or
// presigned URLs.
package stoa

import (
	"math"
	"net/url"
	"strings"
	"time"

	"github.com/connector-host/connector-host/sdk"
)

// Environments and their base URLs (PROTOCOLS.md).
const (
	EnvProd = "prod"
	EnvDev  = "dev"

	ProdAuthURL = "https://auth.grasp-daas.com"
	ProdAPIURL  = "https://fmdp.io/api/stoa"
	DevAuthURL  = "https://auth-dev.grasp-daas.com"
	DevAPIURL   = "https://fmdp.io/api/stoa-dev"
)

// Defaults of Settings.
const (
	DefaultEnvironment     = EnvProd
	DefaultDownloadWorkers = 10
	DefaultTimeoutS        = 60
	// MaxDownloadWorkers bounds download_workers.
	MaxDownloadWorkers = 64
	// MaxTimeoutS bounds timeout_s (one hour).
	MaxTimeoutS = 3600
)

// Settings are the per-connector settings of the Stoa integration.
type Settings struct {
	// Environment selects the Stoa deployment: "prod" (default) or "dev".
	// The Python ds_stoa package defaults to "dev"; this plugin defaults to
	// "prod".
	Environment string `json:"environment,omitempty" jsonschema:"enum=prod,enum=dev,default=prod"`
	// AuthBaseURL overrides the auth host of the environment, e.g.
	// https://auth.grasp-daas.com.
	AuthBaseURL string `json:"auth_base_url,omitempty" jsonschema:"format=uri"`
	// APIBaseURL overrides the API base of the environment, e.g.
	// https://fmdp.io/api/stoa.
	APIBaseURL string `json:"api_base_url,omitempty" jsonschema:"format=uri"`
	// DownloadWorkers is how many objects are signed and downloaded at the
	// same time (default 10, as in ds_stoa).
	DownloadWorkers int `json:"download_workers,omitempty" jsonschema:"minimum=1,maximum=64,default=10"`
	// TimeoutS is the timeout of each HTTP request in seconds: the time to
	// the response headers, and the longest pause while a body arrives
	// (default 60, as in ds_stoa).
	TimeoutS float64 `json:"timeout_s,omitempty" jsonschema:"exclusiveMinimum=0,maximum=3600,default=60"`
}

// Config is Settings resolved: defaults applied, URLs chosen and checked.
type Config struct {
	Environment     string
	AuthBaseURL     string // without trailing slash
	APIBaseURL      string // without trailing slash
	DownloadWorkers int
	Timeout         time.Duration
}

// Resolve applies the defaults and checks every field; errors name the
// field as "settings.<name>".
func (s Settings) Resolve() (Config, error) {
	cfg := Config{Environment: s.Environment, DownloadWorkers: s.DownloadWorkers}
	if cfg.Environment == "" {
		cfg.Environment = DefaultEnvironment
	}
	switch cfg.Environment {
	case EnvProd:
		cfg.AuthBaseURL, cfg.APIBaseURL = ProdAuthURL, ProdAPIURL
	case EnvDev:
		cfg.AuthBaseURL, cfg.APIBaseURL = DevAuthURL, DevAPIURL
	default:
		return Config{}, sdk.Errorf(sdk.BadRequest, "settings.environment: must be %q or %q, got %q", EnvProd, EnvDev, s.Environment)
	}
	var err error
	if s.AuthBaseURL != "" {
		if cfg.AuthBaseURL, err = baseURL("settings.auth_base_url", s.AuthBaseURL); err != nil {
			return Config{}, err
		}
	}
	if s.APIBaseURL != "" {
		if cfg.APIBaseURL, err = baseURL("settings.api_base_url", s.APIBaseURL); err != nil {
			return Config{}, err
		}
	}
	switch {
	case cfg.DownloadWorkers == 0:
		cfg.DownloadWorkers = DefaultDownloadWorkers
	case cfg.DownloadWorkers < 1 || cfg.DownloadWorkers > MaxDownloadWorkers:
		return Config{}, sdk.Errorf(sdk.BadRequest, "settings.download_workers: must be between 1 and %d, got %d", MaxDownloadWorkers, s.DownloadWorkers)
	}
	timeout := s.TimeoutS
	switch {
	case timeout == 0:
		timeout = DefaultTimeoutS
	case math.IsNaN(timeout) || timeout < 0 || timeout > MaxTimeoutS:
		return Config{}, sdk.Errorf(sdk.BadRequest, "settings.timeout_s: must be a number of seconds above 0 and at most %d, got %v", MaxTimeoutS, s.TimeoutS)
	}
	cfg.Timeout = time.Duration(timeout * float64(time.Second))
	if cfg.Timeout <= 0 {
		return Config{}, sdk.Errorf(sdk.BadRequest, "settings.timeout_s: %v seconds is too small", s.TimeoutS)
	}
	return cfg, nil
}

// baseURL checks an absolute http(s) URL without query or fragment and
// drops its trailing slash.
func baseURL(field, raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		// The value is not echoed: it may carry credentials.
		return "", sdk.Errorf(sdk.BadRequest, "%s: must be an absolute http(s) URL such as https://fmdp.io/api/stoa", field)
	}
	if u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return "", sdk.Errorf(sdk.BadRequest, "%s: must not contain credentials, a query or a fragment", field)
	}
	return strings.TrimRight(raw, "/"), nil
}
